"""Losses, configured by ``Loss.Train: [{Name: {...}}]`` and built by :func:`build_loss`."""

from __future__ import annotations

from typing import Any

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .distributed import all_gather_no_grad, all_gather_with_grad, rank


class ClipLoss(nn.Layer):
    """Symmetric InfoNCE (image->text and text->image), as Chinese-CLIP trains.

    With several ranks, each rank scores its local images against the texts of *all* ranks (and vice
    versa); ``gather_with_grad`` keeps gradients flowing into the other ranks' features, so the loss
    and its gradients equal a single process holding the whole global batch.
    """

    def __init__(self, weight: float = 1.0, gather_with_grad: bool = True):
        super().__init__()
        self.weight = weight
        self.gather = all_gather_with_grad if gather_with_grad else all_gather_no_grad

    def forward(
        self, image_features: paddle.Tensor, text_features: paddle.Tensor, logit_scale: paddle.Tensor, **_: Any
    ) -> paddle.Tensor:
        all_images = self.gather(image_features)  # (world * B, D)
        all_texts = self.gather(text_features)
        logits_per_image = logit_scale * paddle.matmul(image_features, all_texts, transpose_y=True)  # (B, world*B)
        logits_per_text = logit_scale * paddle.matmul(text_features, all_images, transpose_y=True)
        B = image_features.shape[0]
        labels = paddle.arange(B, dtype="int64") + rank() * B
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        return self.weight * loss


LOSSES = {"ClipLoss": ClipLoss}


class CombinedLoss(nn.Layer):
    """Sum of weighted terms; returns a dict with ``loss`` and one entry per term."""

    def __init__(self, terms: dict[str, nn.Layer]):
        super().__init__()
        self.terms = nn.LayerDict(terms)

    def forward(self, outputs: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        parts = {name: term(**outputs) for name, term in self.terms.items()}
        parts["loss"] = paddle.add_n(list(parts.values()))
        return parts


def build_loss(items: list[dict[str, dict[str, Any]]]) -> CombinedLoss:
    """``[{"ClipLoss": {"weight": 1.0}}]`` -> CombinedLoss."""
    if not items:
        raise ValueError("Loss.Train is empty; add a term, e.g. Loss.Train: [{ClipLoss: {weight: 1.0}}]")
    terms = {}
    for item in items:
        ((name, kwargs),) = item.items()
        if name not in LOSSES:
            raise KeyError(f"unknown loss {name!r}; available: {sorted(LOSSES)}")
        terms[name] = LOSSES[name](**(kwargs or {}))
    return CombinedLoss(terms)


class VQALoss(nn.Layer):
    """Answer classification against VQA soft scores ``answer_scores`` [B, A] (min(1, annotators / 3)).

    ``softmax``: cross-entropy with the scores normalised to a distribution (a row without any known answer
    contributes 0); ``bce``: MMF's logit BCE, per answer, scaled by the number of answers as MMF does.
    """

    def __init__(self, weight: float = 1.0, kind: str = "softmax"):
        super().__init__()
        if kind not in ("softmax", "bce"):
            raise ValueError(f"VQALoss kind {kind!r}: expected 'softmax' or 'bce'")
        self.weight, self.kind = weight, kind

    def forward(self, logits: paddle.Tensor, answer_scores: paddle.Tensor, **_: Any) -> paddle.Tensor:
        if self.kind == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, answer_scores) * logits.shape[1]
            return self.weight * loss
        total = answer_scores.sum(axis=1, keepdim=True)  # (B, 1)
        target = answer_scores / total.clip(min=1e-6)
        per_row = -(target * F.log_softmax(logits, axis=-1)).sum(axis=1)  # (B,)
        return self.weight * per_row.sum() / (total > 0).astype(per_row.dtype).sum().clip(min=1.0)


class ClassificationLoss(nn.Layer):
    """Cross-entropy of ``logits`` [B, C] against integer ``labels`` [B] (multimodal classification)."""

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        self.weight, self.label_smoothing = weight, label_smoothing

    def forward(self, logits: paddle.Tensor, labels: paddle.Tensor, **_: Any) -> paddle.Tensor:
        return self.weight * F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


class MatchingLoss(nn.Layer):
    """Image-text matching: binary cross-entropy of ``match_logits`` [N] against ``match_labels`` [N] (the
    positives and in-batch hard negatives a matching :class:`~paddle_mm.models.fusion.FusionModel` returns)."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, match_logits: paddle.Tensor, match_labels: paddle.Tensor, **_: Any) -> paddle.Tensor:
        return self.weight * F.binary_cross_entropy_with_logits(match_logits, match_labels)


LOSSES.update({"VQALoss": VQALoss, "ClassificationLoss": ClassificationLoss, "MatchingLoss": MatchingLoss})
