"""Shared by bench_serving.py and load_serving.py: a deployment to serve, and tools/serve.py in a subprocess.

``--deployment DIR`` takes what scripts/serve_demo.sh wrote (the trained quickstart model, signed, with
galleries, tokens and DIR/serve.yml). Without it, :func:`tiny_deployment` signs a seeded random-weight
CN-CLIP-Tiny export (1-layer towers, 32 px, 32-d) with a fresh key: enough to load the service, not to
judge search quality; every figure printed says which one ran.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = {"image_resolution": 32, "vision_layers": 1, "text_num_hidden_layers": 1, "embed_dim": 32}


def tiny_deployment(out: Path, port: int, arch: str = "tiny", **sections) -> Path:
    """Write a signed export of a seeded random-weight model, a 64-image gallery, tokens and serve.yml under
    ``out``; return serve.yml. ``arch``: "tiny" (CN-CLIP-Tiny cut to 1-layer towers at 32 px), or a model
    config name at its full size ("CN-CLIP-Tiny" = the quickstart's shape, "ViT-B-16", ...)."""
    import cv2
    import paddle

    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.inference import Predictor
    from paddle_mm.models import create_model
    from paddle_mm.package import LocalSigner, PrivateKey, sign_package
    from paddle_mm.serving.auth import add_token
    from paddle_mm.serving.gallery import write_gallery
    from paddle_mm.vision.transforms import ImageTransform

    out.mkdir(parents=True, exist_ok=True)
    paddle.seed(5)
    name, overrides = ("CN-CLIP-Tiny", TINY_ARCH) if arch == "tiny" else (arch, {})
    model = create_model(name, **overrides)
    model.eval()
    export_model(
        model,
        out / "model",
        ImageTransform(int(model.config.image_resolution)),
        name,
        ExportOptions(graphs=("image", "text"), int8=False, verify_batches=(2,), threads=1),
        log=lambda _m: None,
    )
    key = PrivateKey.generate()
    (out / "signer.pub").write_bytes(key.public_key.to_pem())
    now = dt.datetime.now(dt.timezone.utc)
    sign_package(
        out / "model",
        LocalSigner(key),
        model="tiny-random",
        version="1.0.0",
        sequence=1,
        now=now,
        expires=now + dt.timedelta(days=7),
    )
    predictor = Predictor(out / "model", backend="onnxruntime", threads=1)
    rng = np.random.default_rng(0)
    images = [cv2.imencode(".png", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))[1].tobytes() for _ in range(64)]
    write_gallery(
        out / "images",
        predictor.encode_images(images),
        range(64),
        [{"n": i} for i in range(64)],
        kind="image",
        model={"name": "tiny-random", "version": "1.0.0", "sequence": 1},
        spec={"index": "exact"},
        log=lambda _m: None,
    )
    (out / "token").write_text(add_token(out / "tokens", "bench", "client"))
    cfg = {
        "Model": {
            "package": str(out / "model"),
            "name": "tiny-random",
            "trust": [str(out / "signer.pub")],
            "state_file": str(out / "state.json"),
        },
        "Gallery": {"images": str(out / "images")},
        "Auth": {"tokens_file": str(out / "tokens")},
        "Audit": {"path": str(out / "audit" / "audit.log")},
        "Server": {"port": port},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    (out / "serve.yml").write_text(json.dumps(cfg, indent=1))
    return out / "serve.yml"


def start_server(config: Path, *overrides: str, timeout: float = 120) -> subprocess.Popen:
    """tools/serve.py in a subprocess; returns once /healthz answers (raises with its stderr if it exits)."""
    import httpx

    from paddle_mm.config import parse_yaml

    port = parse_yaml(config.read_text(encoding="utf-8")).get("Server", {}).get("port", 8080)
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "serve.py"),
        "-c",
        str(config),
        *(["-o", *overrides] if overrides else []),
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    deadline = time.monotonic() + timeout
    port = next((o.split("=")[1] for o in overrides if o.startswith("Server.port=")), port)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve.py exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"serve.py did not answer on port {port} within {timeout} s")


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png_b64(seed: int, size: int = 48) -> str:
    import cv2

    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()
