"""What the service runs: a verified package's predictor, its runners and its galleries, swapped as one.

:func:`load_model_state` is the only way in: :meth:`Predictor.from_package_files` verifies the package
(SM2 signature by a configured anchor, model name, rollback sequence, expiry, every file's SM3 digest, SM4
decryption) and refuses with a :class:`paddle_mm.package.PackageRefused` subclass before any byte reaches a
runtime. A reload builds a complete new state before the old one is replaced, so a refused package leaves
the running version serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..inference import Predictor
from .batching import Batcher, DirectRunner, build_runner
from .gallery import Gallery, GalleryError, open_gallery


@dataclass
class ModelState:
    predictor: Predictor
    name: str
    version: str
    sequence: int
    runners: dict[str, Batcher | DirectRunner]
    galleries: dict[str, Gallery] = field(default_factory=dict)

    @property
    def label(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "sequence": self.sequence}

    def close(self, timeout: float = 30.0) -> None:
        for runner in self.runners.values():
            runner.close(timeout)
        for gallery in self.galleries.values():
            gallery.close()


def _model_fn(predictor: Predictor, graph: str, serialize: bool) -> Callable[[np.ndarray], np.ndarray]:
    encode = predictor.encode_pixels if graph == "image" else predictor.encode_ids
    if not serialize:
        return encode
    lock = threading.Lock()  # Paddle Inference predictors are not safe to run from two threads

    def run(rows: np.ndarray) -> np.ndarray:
        with lock:
            return encode(rows)

    return run


def load_model_state(cfg: dict[str, Any], on_batch=None) -> ModelState:
    """Verify and load ``cfg['Model']['package']``, warm both towers, open the galleries, start the runners."""
    m, batching = cfg["Model"], cfg["Batching"]
    predictor = Predictor.from_package_files(
        m["package"],
        m["trust"],
        model=m["name"],
        state_file=m["state_file"],
        decrypt_key_file=m["decrypt_key"],
        passphrase_env=m["passphrase_env"],
        backend=m["backend"],
        precision=m["precision"],
        device=m["device"],
        threads=m["threads"],
        batch_size=batching["max_batch"],
        varying_shapes=True,  # dynamic batches of any size and text length: no runtime that compiles per shape
    )
    predictor.encode_texts(["warm up"])  # builds both runtimes now: a broken graph fails the load, not a request
    dim = int(predictor.encode_pixels(predictor.sample_feeds("image", batch=1)["pixel_values"]).shape[1])
    galleries = {}
    token_file = cfg["Gallery"]["milvus_token_file"]
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip() if token_file else ""
    except OSError as err:
        raise GalleryError(f"Gallery.milvus_token_file {token_file!r}: {err.strerror or err}; fix the path") from None
    milvus = {"milvus_uri": cfg["Gallery"]["milvus_uri"], "milvus_token": token}
    try:
        for kind in ("images", "texts"):
            if cfg["Gallery"][kind]:
                galleries[kind] = open_gallery(cfg["Gallery"][kind], expect_model=m["name"], expect_dim=dim, **milvus)
                wanted = kind[:-1]
                if galleries[kind].info["kind"] != wanted:
                    raise GalleryError(
                        f"Gallery.{kind}={cfg['Gallery'][kind]!r} holds {galleries[kind].info['kind']} "
                        f"embeddings; build it with --kind {wanted}"
                    )
    except Exception:
        for gallery in galleries.values():
            gallery.close()
        raise
    serialize = predictor.backend != "onnxruntime"
    runners = {g: build_runner(_model_fn(predictor, g, serialize), g, batching, on_batch) for g in ("image", "text")}
    manifest = predictor.manifest
    return ModelState(predictor, manifest.model, manifest.version, manifest.sequence, runners, galleries)
