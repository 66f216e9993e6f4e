"""Image files and raw strings to normalized embeddings, with pre-processing overlapping inference.

    with FeaturePipeline(predictor, workers=2) as pipe:
        image_features = pipe.encode_image_files(["a.jpg", "b.png", ...])   # (N, D), L2-normalized
        text_features = pipe.encode_texts(["一只猫", ...])                    # (N, D)

Decoding, resizing and normalizing images (and tokenizing texts) runs in a pool of ``workers`` processes,
``workers + 1`` batches ahead of the batch being encoded, so on a CPU with cores to spare the towers never
wait for pre-processing. The workers get the predictor's own transform and tokenizer (rebuilt from
``inference.yml``), so the features equal ``predictor.encode_images`` / ``encode_texts`` of the same inputs.
Processes, not threads: the WordPiece tokenizer is pure Python and would hold the GIL. They are started with
``spawn`` (a fork of a process holding runtime thread pools is unsafe), once per pipeline.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from .predictor import Predictor

_WORKER: dict[str, Any] = {}  # the pool workers' transform and tokenizer, set once by _init


def _init(transform, tokenizer) -> None:
    _WORKER["transform"], _WORKER["tokenizer"] = transform, tokenizer


def _pixels(images: Sequence[Any]) -> np.ndarray:
    return np.stack([_WORKER["transform"](image) for image in images])


def _ids(texts: Sequence[str]) -> np.ndarray:
    return _WORKER["tokenizer"].encode_batch(list(texts))


def pipelined(
    items: Sequence, batch: int, prepare: Callable, encode: Callable, pool: Executor, depth: int
) -> list[np.ndarray]:
    """``encode(prepare(b))`` for each batch ``b`` of ``items`` in order, ``depth`` batches being prepared in
    ``pool`` while one is encoded."""
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    pending = deque(pool.submit(prepare, b) for b in batches[:depth])
    out, nxt = [], depth
    while pending:
        x = pending.popleft().result()
        if nxt < len(batches):
            pending.append(pool.submit(prepare, batches[nxt]))
            nxt += 1
        out.append(encode(x))
    return out


class FeaturePipeline:
    """A pool of pre-processing processes in front of a :class:`Predictor` (use it as a context manager)."""

    def __init__(self, predictor: Predictor, workers: int = 1):
        if workers < 1:
            raise ValueError(f"workers={workers}: use a positive number of pre-processing processes")
        self.predictor, self.depth = predictor, workers + 1
        context = multiprocessing.get_context("spawn")
        init = (predictor.transform, predictor.tokenizer)
        self._pool = ProcessPoolExecutor(workers, context, initializer=_init, initargs=init)

    def encode_image_files(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalized features (N, D) of image files (paths or bytes), in order."""
        p = self.predictor
        out = pipelined(list(images), p.batch_size, _pixels, p.encode_pixels, self._pool, self.depth)
        return np.concatenate(out) if out else p.encode_pixels(p.preprocess_images([]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized features (N, D) of raw strings, in order."""
        p = self.predictor
        out = pipelined(list(texts), p.batch_size, _ids, p.encode_ids, self._pool, self.depth)
        return np.concatenate(out) if out else p.encode_texts([])

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> FeaturePipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
