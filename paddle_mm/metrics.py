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


def search(queries: np.ndarray, gallery: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Top-``k`` gallery rows per query as ``[(row, cosine), ...]``, best first (rows L2-normalised already)."""
    sim = queries @ gallery.T  # (n_queries, n_gallery)
    return [[(int(c), float(sim[q, c])) for c in row] for q, row in enumerate(topk_indices(sim, k))]


def retrieval_report(m: dict, topk: Sequence[int] = (1, 5, 10)) -> list[str]:
    """What eval and predict print for :func:`retrieval_metrics`' dict ``m``: a line a direction, then MR of both.

    ``text -> image: R@1: 61.20, R@5: ..., MR: 80.43`` / ``image -> text: ...`` / ``MR (both directions): 79.87``.
    """
    lines = [
        f"{name}: " + ", ".join(f"R@{k}: {m[key][f'r{k}']:.2f}" for k in topk) + f", MR: {m[key]['mean_recall']:.2f}"
        for name, key in (("text -> image", "t2i"), ("image -> text", "i2t"))
    ]
    return lines + [f"MR (both directions): {m['MR']:.2f}"]


def retrieval_log_line(m: dict, topk: Sequence[int] = (1, 5, 10)) -> str:
    """The same numbers on one line, for the training log: ``t2i R@1: .. i2t R@1: .., MR(t2i): .., MR: ..``."""
    line = " ".join(f"{d} R@{k}: {m[d][f'r{k}']:.2f}" for d in ("t2i", "i2t") for k in topk)
    return f"{line}, MR(t2i): {m['t2i']['mean_recall']:.2f}, MR(i2t): {m['i2t']['mean_recall']:.2f}, MR: {m['MR']:.2f}"


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


# ----------------------------------------------------------------------------- classification, VQA and ranking


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Share (x100) of ``pred`` equal to ``labels`` (1-D integer arrays of one length)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape or pred.ndim != 1:
        raise ValueError(f"pred {pred.shape} and labels {labels.shape} must be 1-D arrays of one length")
    return float(np.mean(pred == labels) * 100) if len(pred) else 0.0


def f1_scores(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """``macro_f1`` (unweighted mean over the classes that occur in ``labels`` or ``pred``) and ``micro_f1``
    (equal to accuracy for single-label data), both x100. A class with no true and no predicted sample is left
    out of the macro mean rather than counted as 0 or 1."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    tp = np.bincount(labels[pred == labels], minlength=n_classes).astype(np.float64)
    n_pred = np.bincount(pred, minlength=n_classes).astype(np.float64)
    n_true = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = (n_pred + n_true) > 0
    f1 = np.divide(2 * tp, n_pred + n_true, out=np.zeros(n_classes), where=present)
    micro = 2 * tp.sum() / max(n_pred.sum() + n_true.sum(), 1.0)
    return {"macro_f1": float(f1[present].mean() * 100) if present.any() else 0.0, "micro_f1": float(micro * 100)}


def vqa_soft_accuracy(pred: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    """VQA accuracy (x100) with the official formula: for a question with n >= 2 human answers, the mean over
    the n leave-one-out subsets of min(1, matches in the subset / 3); with a single answer, exact match.
    Answers are compared as given (normalise them beforehand if needed)."""
    if len(pred) != len(answers):
        raise ValueError(f"{len(pred)} predictions but {len(answers)} answer lists")
    scores = []
    for p, human in zip(pred, answers):
        matches = sum(a == p for a in human)
        if len(human) < 2:
            scores.append(float(matches > 0))
            continue
        # leaving out a matching annotator leaves matches - 1 matches, any other leaves all of them
        left_out = [min(1.0, (matches - (a == p)) / 3) for a in human]
        scores.append(float(np.mean(left_out)))
    return float(np.mean(scores) * 100) if scores else 0.0


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int) -> float:
    """Mean NDCG@K (x100) over queries: ``scores`` and graded ``relevance`` are [Q, N]; gains 2^rel - 1,
    discount log2(rank + 1); a query without relevant items scores 0."""
    if scores.shape != relevance.shape:
        raise ValueError(f"scores {scores.shape} and relevance {relevance.shape} must have one shape")
    top = topk_indices(scores, k)  # (Q, k)
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = ((2.0 ** np.take_along_axis(relevance, top, axis=1) - 1) * discount).sum(axis=1)
    ideal = np.sort(relevance, axis=1)[:, ::-1][:, : top.shape[1]]
    idcg = ((2.0**ideal - 1) * discount).sum(axis=1)
    return float(np.mean(np.divide(dcg, idcg, out=np.zeros_like(dcg, dtype=np.float64), where=idcg > 0)) * 100)


def mean_reciprocal_rank(scores: np.ndarray, positives: Sequence[set[int]]) -> float:
    """MRR (x100): mean over queries of 1 / rank of the first positive (ties broken by lower index, as in
    :func:`topk_indices`); a query whose positives are empty scores 0."""
    if scores.shape[0] != len(positives):
        raise ValueError(f"{scores.shape[0]} score rows but {len(positives)} ground-truth sets")
    order = topk_indices(scores, scores.shape[1])
    rr = []
    for q, gt in enumerate(positives):
        hits = np.flatnonzero(np.isin(order[q], list(gt)))
        rr.append(1.0 / (hits[0] + 1) if hits.size else 0.0)
    return float(np.mean(rr) * 100) if rr else 0.0
