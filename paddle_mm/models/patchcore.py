"""Anomaly score for defect types never seen in training: PatchCore-style kNN on patch features.

Roth et al. 2022 ("Towards Total Recall in Industrial Anomaly Detection"): the patch features of clean parts
form a memory bank; a part's score is the largest, over its patches, of the distance from the patch to its
nearest bank entry. The features are the classifier's stride-8 and stride-16 maps
(:meth:`paddle_mm.models.inspection.InspectionClassifier.patch_embedding`), and the bank is thinned by greedy
k-centre selection (the paper's coreset) to ``coreset`` entries. Numpy here (fitting and evaluation); the
export puts the bank inside the scoring graph (:class:`paddle_mm.models.inspection.AnomalyScore`).
"""

from __future__ import annotations

import numpy as np


def greedy_coreset(feats: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` rows chosen by greedy k-centre (each pick is the row farthest from those chosen)."""
    n = len(feats)
    if k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    dist = np.linalg.norm(feats - feats[chosen[0]], axis=1)
    for _ in range(k - 1):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[i], axis=1))
    return np.array(chosen)


def nearest_distance(queries: np.ndarray, bank: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance from every row of ``queries`` [Q, D] to its nearest row of ``bank`` [M, D]."""
    bank_sq = (bank * bank).sum(1)
    out = np.empty(len(queries), np.float32)
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        d2 = (q * q).sum(1)[:, None] - 2.0 * q @ bank.T + bank_sq[None]
        out[s : s + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


class PatchCoreScorer:
    """Fit on the patch features of clean parts; score = max over a part's patches of the kNN distance."""

    def __init__(self, bank: np.ndarray):
        self.bank = np.asarray(bank, np.float32)

    @classmethod
    def fit(cls, patch_feats: np.ndarray, coreset: int = 2000, seed: int = 0) -> "PatchCoreScorer":
        """``patch_feats``: [N, P, D] of clean parts (``InspectionClassifier.patch_embedding``)."""
        flat = patch_feats.reshape(-1, patch_feats.shape[-1])
        return cls(flat[greedy_coreset(flat, coreset, seed)])

    def patch_scores(self, patch_feats: np.ndarray) -> np.ndarray:
        """[N, P] distances of every patch to the bank."""
        n, p, d = patch_feats.shape
        return nearest_distance(patch_feats.reshape(-1, d), self.bank).reshape(n, p)

    def score(self, patch_feats: np.ndarray) -> np.ndarray:
        """[N] anomaly scores (higher: less like any clean part)."""
        return self.patch_scores(patch_feats).max(axis=1)


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half), in [0, 1]."""
    from scipy.stats import rankdata

    scores, pos = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes: {n_pos} anomalous and {n_neg} clean scores given")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
