"""The serving image installs requirements/serve.txt (no paddle): same pins as lock.txt, and enough to serve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_serve_requirements_are_lock_pins_without_paddle():
    serve, lock = pins(ROOT / "requirements" / "serve.txt"), pins(ROOT / "requirements" / "lock.txt")
    assert {k: v for k, v in serve.items() if lock.get(k) != v} == {}
    assert not any(k.startswith("paddle") for k in serve)
    for top in ("fastapi", "uvicorn", "onnxruntime", "faiss-cpu", "pymilvus", "prometheus-client", "cryptography"):
        assert top in serve, top


BLOCKED = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"paddle", "paddlenlp", "paddlex", "paddle2onnx", "safetensors"}:
            raise ImportError(f"{name} is not in the serving image")
sys.meta_path.insert(0, Block())
"""


def test_the_service_runs_without_paddle(tmp_path):
    """What the container can do: verify, load and answer with no paddle importable."""
    script = (
        BLOCKED
        + f"""
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
import json
cfg_path = Path({str(tmp_path)!r}) / "serve.yml"
"""
    )
    # the deployment is built with paddle (export), in this process; the service runs in a blocked one
    from paddle_mm.serving.testing import tiny_deployment

    tiny_deployment(tmp_path, 0)
    script += """
from fastapi.testclient import TestClient
from paddle_mm.config import parse_yaml
from paddle_mm.serving.app import create_app
from paddle_mm.serving.config import build_serving_config
cfg = build_serving_config(parse_yaml(cfg_path.read_text()))
token = (cfg_path.parent / "token").read_text().strip()
with TestClient(create_app(cfg)) as c:
    r = c.post("/v1/search/text-to-image", json={"text": "圆形", "k": 2}, headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200, r.text
print("served", len(r.json()["hits"]), "paddle" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "served 2 False" in proc.stdout, proc.stderr[-2000:]
