"""A service to try and load: a signed random-weight deployment, ``tools/serve.py`` in a subprocess, and a
client load with malformed requests mixed in. Used by ``benchmarks/bench_serving.py``,
``benchmarks/load_serving.py`` and the serving tests (not imported by ``paddle_mm.serving``).

:func:`tiny_deployment` signs a seeded random-weight CN-CLIP-Tiny export (1-layer towers, 32 px, 32-d) with a
fresh key: enough to load the service, not to judge search quality. ``--deployment DIR`` of the benchmarks
takes what scripts/serve_demo.sh wrote instead (the trained quickstart model, signed, with galleries, tokens
and DIR/serve.yml). :func:`start_server` needs a source checkout (it runs ``tools/serve.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
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


def bomb_b64() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def requests_plan(n: int, malformed: float, seed: int = 0) -> list[tuple[str, str, dict]]:
    """(kind, path, httpx kwargs) for every request, malformed ones spread evenly."""
    rng = np.random.default_rng(seed)
    images = [png_b64(i) for i in range(8)]
    bomb, huge = bomb_b64(), b"{" + b" " * (9 << 20) + b"}"
    bad = [
        (
            "bad-json",
            "/v1/embeddings/text",
            {"content": b'{"texts": [', "headers": {"Content-Type": "application/json"}},
        ),
        ("huge-body", "/v1/embeddings/text", {"content": huge, "headers": {"Content-Type": "application/json"}}),
        (
            "not-image",
            "/v1/embeddings/image",
            {"json": {"images": [base64.b64encode(b"%PDF-1.4 not an image").decode()]}},
        ),
        ("bomb", "/v1/embeddings/image", {"json": {"images": [bomb]}}),
        ("bad-base64", "/v1/search/image-to-image", {"json": {"image": "@@not base64@@"}}),
        ("wrong-token", "/v1/embeddings/text", {"json": {"texts": ["圆形"]}, "headers": {"Authorization": "Bearer x"}}),
        ("missing-field", "/v1/search/text-to-image", {"json": {"k": 3}}),
    ]
    good = [
        ("text", "/v1/embeddings/text", lambda: {"json": {"texts": [f"红色的圆形 {rng.integers(1000)}"]}}),
        ("image", "/v1/embeddings/image", lambda: {"json": {"images": [images[rng.integers(8)]]}}),
        ("search", "/v1/search/text-to-image", lambda: {"json": {"text": "蓝色的三角形", "k": 5}}),
        ("image-search", "/v1/search/image-to-image", lambda: {"json": {"image": images[rng.integers(8)], "k": 5}}),
    ]
    every = int(round(1 / malformed)) if malformed > 0 else 0
    plan = []
    for i in range(n):
        if every and i % every == every - 1:
            plan.append(bad[(i // every) % len(bad)])
        else:
            kind, path, make = good[i % len(good)]
            plan.append((kind, path, make()))
    return plan


def run_clients(base: str, token: str, plan, clients: int):
    import httpx

    results: list[tuple[str, str, int, float]] = [None] * len(plan)  # type: ignore[list-item]
    cursor = iter(range(len(plan)))
    lock = threading.Lock()

    def worker():
        with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                kind, path, kwargs = plan[i]
                rid = uuid.uuid4().hex
                headers = {**client.headers, **kwargs.get("headers", {}), "X-Request-ID": rid}
                start = time.perf_counter()
                try:
                    status = client.post(
                        path, **{k: v for k, v in kwargs.items() if k != "headers"}, headers=headers
                    ).status_code
                except httpx.HTTPError as err:  # the server may answer 413 and close while a huge body uploads
                    status = -1
                    if "huge" not in kind:
                        print(f"transport error on {kind}: {err}", file=sys.stderr)
                results[i] = (rid, kind, status, time.perf_counter() - start)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start
