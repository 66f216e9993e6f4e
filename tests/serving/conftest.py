"""A signed tiny export, tokens, galleries and a serving config for the service tests (nothing downloads)."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SIGNED_MODEL, sign_copy

TEXTS = ["左上角有一个红色的圆形", "图中有两个蓝色的三角形", "一只猫", "绿色的正方形", "黄色的星星"]


def png(seed: int, size: tuple[int, int] = (40, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def gallery_images() -> list[bytes]:
    return [png(100 + i) for i in range(12)]


@pytest.fixture(scope="session")
def deployment(tower_export, signer, gallery_images, tmp_path_factory) -> dict:
    """Package v1 (sequence 1) with image and text galleries built from it, and the paths around them."""
    from paddle_mm.inference import Predictor
    from paddle_mm.serving.auth import add_token
    from paddle_mm.serving.gallery import write_gallery

    root = tmp_path_factory.mktemp("deploy")
    key, pub = signer
    package = sign_copy(tower_export, key, root / "model", 1, "1.0.0")
    predictor = Predictor(tower_export, backend="onnxruntime", threads=1)
    model = {"name": SIGNED_MODEL, "version": "1.0.0", "sequence": 1}
    image_vectors = predictor.encode_images(gallery_images)
    write_gallery(
        root / "images",
        image_vectors,
        range(100, 112),
        [{"source": f"img{i}.png"} for i in range(12)],
        kind="image",
        model=model,
        spec={"index": "exact"},
        log=lambda _m: None,
    )
    write_gallery(
        root / "texts",
        predictor.encode_texts(TEXTS),
        range(len(TEXTS)),
        [{"text": t} for t in TEXTS],
        kind="text",
        model=model,
        spec={"index": "exact"},
        log=lambda _m: None,
    )
    tokens = root / "tokens"
    client_token = add_token(tokens, "alice", "client")
    admin_token = add_token(tokens, "ops", "admin")
    return {
        "root": root,
        "package": package,
        "pub": pub,
        "key": key,
        "tokens": tokens,
        "client": client_token,
        "admin": admin_token,
        "image_vectors": image_vectors,
        "images": gallery_images,
    }


def serving_config(deployment: dict, tmp_path: Path, **sections) -> dict:
    from paddle_mm.serving.config import build_serving_config

    raw = {
        "Model": {
            "package": str(deployment["package"]),
            "name": SIGNED_MODEL,
            "trust": [str(deployment["pub"])],
            "state_file": str(tmp_path / "state.json"),
            "threads": 1,
        },
        "Gallery": {"images": str(deployment["root"] / "images"), "texts": str(deployment["root"] / "texts")},
        "Auth": {"tokens_file": str(deployment["tokens"])},
        "Audit": {"path": str(tmp_path / "audit" / "audit.log")},
        "Batching": {"max_batch": 8, "max_wait_ms": 2.0, "queue_size": 32},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return build_serving_config(raw)
