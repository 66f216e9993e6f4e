"""Retrieval metrics with Chinese-CLIP's definitions (cn_clip/eval/evaluation.py).

Recall@K is the share of queries with at least one ground-truth item among the top K; MR is *mean
recall* = (R@1 + R@5 + R@10) / 3. All values are percentages, as Chinese-CLIP reports them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """[Q, N] scores -> [Q, min(k, N)] column indices, best first (ties broken by lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(scores: np.ndarray, positives: Sequence[set[int]], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K (x100) for each K in ``ks`` plus ``mean_recall`` over K in (1, 5, 10)."""
    if scores.shape[0] != len(positives):
        raise ValueError(f"{scores.shape[0]} score rows but {len(positives)} ground-truth sets")
    ks = sorted(set(ks) | {1, 5, 10})
    top = topk_indices(scores, max(ks))
    hit_rank = np.full(len(positives), np.inf)
    for q, gt in enumerate(positives):
        hits = np.flatnonzero(np.isin(top[q], list(gt)))
        if hits.size:
            hit_rank[q] = hits[0]
    out = {f"r{k}": float(np.mean(hit_rank < k) * 100) for k in ks}
    out["mean_recall"] = (out["r1"] + out["r5"] + out["r10"]) / 3
    return out


def retrieval_metrics(sim: np.ndarray, text_to_images: Sequence[set[int]], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Both directions from one [n_texts, n_images] similarity matrix.

    ``text_to_images[t]`` holds the image columns that are correct for text row ``t``.
    Returns ``{"t2i": {...}, "i2t": {...}, "MR": mean of both mean recalls}``.
    """
    image_to_texts: list[set[int]] = [set() for _ in range(sim.shape[1])]
    for t, images in enumerate(text_to_images):
        for i in images:
            image_to_texts[i].add(t)
    t2i = recall_at_k(sim, text_to_images, ks)
    keep = [i for i, texts in enumerate(image_to_texts) if texts]  # images no caption describes are no query
    i2t = recall_at_k(sim.T[keep], [image_to_texts[i] for i in keep], ks)
    return {"t2i": t2i, "i2t": i2t, "MR": (t2i["mean_recall"] + i2t["mean_recall"]) / 2}


def chinese_clip_score_json(direction: dict[str, float]) -> dict:
    """The ``{"success", "score", "scoreJson"}`` dict cn_clip's evaluation.py writes (unrounded, x100)."""
    mr = direction["mean_recall"]
    return {
        "success": True,
        "score": mr,
        "scoreJson": {
            "score": mr,
            "mean_recall": mr,
            "r1": direction["r1"],
            "r5": direction["r5"],
            "r10": direction["r10"],
        },
    }
