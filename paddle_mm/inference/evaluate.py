"""Retrieval metrics of an exported model on a data split, computed through a :class:`Predictor`.

The numbers are the ones ``tools/eval.py`` reports for the eager model (Chinese-CLIP's definitions), so
an INT8 or ONNX export can be compared with its source checkpoint on the same split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.datasets import ImageTextCorpus, load_pixels
from ..metrics import retrieval_metrics
from .predictor import Predictor


def encode_split(predictor: Predictor, corpus: ImageTextCorpus) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(readable image ids, their features, features of every text), all L2-normalized."""
    ids, pixels = [], []
    for image_id in corpus.images:
        value, _reason = load_pixels(corpus, predictor.transform, image_id)
        if value is not None:  # unreadable images are skipped, as in tools/eval.py (texts then count misses)
            ids.append(image_id)
            pixels.append(value)
    size = predictor.transform.size
    image_features = predictor.encode_pixels(np.stack(pixels) if pixels else np.zeros((0, 3, size, size), "float32"))
    text_features = predictor.encode_texts([t.text for t in corpus.texts])
    return ids, image_features, text_features


def evaluate_split(predictor: Predictor, corpus: ImageTextCorpus, topk: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """``{"t2i": {...}, "i2t": {...}, "MR": ...}`` (x100) like ``paddle_mm.tasks.retrieval.score``."""
    image_ids, image_features, text_features = encode_split(predictor, corpus)
    column = {image_id: c for c, image_id in enumerate(image_ids)}
    positives = [{column[i] for i in t.image_ids if i in column} for t in corpus.texts]
    return retrieval_metrics(text_features @ image_features.T, positives, topk)
