"""Losses, configured by ``Loss.Train: [{Name: {...}}]`` and built by :func:`build_loss`."""

from __future__ import annotations

from typing import Any

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .distributed import all_gather_no_grad, all_gather_with_grad, rank

# What CombinedLoss adds to its output when asked to (Global.report_batch_acc): values x100, never differentiated.
BATCH_METRICS = ("i2t_acc", "t2i_acc")


class ClipLoss(nn.Layer):
    """Symmetric InfoNCE (image->text and text->image), as Chinese-CLIP trains.

    With several ranks, each rank scores its local images against the texts of *all* ranks (and vice
    versa); ``gather_with_grad`` keeps gradients flowing into the other ranks' features, so the loss
    and its gradients equal a single process holding the whole global batch.
    """

    def __init__(self, weight: float = 1.0, gather_with_grad: bool = True, aggregate: bool = True):
        super().__init__()
        self.weight, self.aggregate = weight, aggregate
        self.gather = all_gather_with_grad if gather_with_grad else all_gather_no_grad

    def forward(
        self, image_features: paddle.Tensor, text_features: paddle.Tensor, logit_scale: paddle.Tensor, **_: Any
    ) -> paddle.Tensor:
        if not self.aggregate:  # cn_clip --skip-aggregate: each rank's own batch only
            all_images, all_texts, offset = image_features, text_features, 0
        else:
            all_images = self.gather(image_features)  # (world * B, D)
            all_texts = self.gather(text_features)
            offset = rank() * image_features.shape[0]
        logits_per_image = logit_scale * paddle.matmul(image_features, all_texts, transpose_y=True)  # (B, world*B)
        logits_per_text = logit_scale * paddle.matmul(text_features, all_images, transpose_y=True)
        labels = paddle.arange(image_features.shape[0], dtype="int64") + offset
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        return self.weight * loss

    def batch_accuracy(
        self, image_features: paddle.Tensor, text_features: paddle.Tensor, **_: Any
    ) -> dict[str, paddle.Tensor]:
        """Chinese-CLIP's ``--report-training-batch-acc``: the share (x100) of this rank's images whose best-scoring
        text among the batch's (all ranks' when aggregating, as the loss sees them) is their own caption
        (``i2t_acc``), and of texts whose best image is their own (``t2i_acc``). The temperature does not change
        an argmax, so it is left out. No gradient."""
        with paddle.no_grad():
            if self.aggregate:
                all_images, all_texts = all_gather_no_grad(image_features), all_gather_no_grad(text_features)
                offset = rank() * image_features.shape[0]
            else:
                all_images, all_texts, offset = image_features, text_features, 0
            labels = paddle.arange(image_features.shape[0], dtype="int64") + offset
            i2t = paddle.matmul(image_features, all_texts, transpose_y=True).argmax(axis=-1) == labels  # (B,)
            t2i = paddle.matmul(text_features, all_images, transpose_y=True).argmax(axis=-1) == labels
            return {"i2t_acc": i2t.astype("float32").mean() * 100, "t2i_acc": t2i.astype("float32").mean() * 100}


class DistillLoss(nn.Layer):
    """Feature distillation from a frozen teacher CLIP (Chinese-CLIP's ``--distllation``, made to train).

    ``teacher``: the teacher CLIP. In YAML, ``teacher`` is a path (a paddle_mm model or checkpoint directory, a
    training run's folder, or a Chinese-CLIP / QA-CLIP ``.pt`` converted in memory) that the task loads once
    with :func:`paddle_mm.tasks.base.load_teacher`. It is kept in eval mode and never trained; it sees the
    student's pixels (bicubically resized when its resolution differs) and token ids.

    ``kind``:
      - ``cosine``: 1 - cos(student image feature, teacher image feature), averaged over the batch: the term
        Chinese-CLIP adds. Needs the same embed_dim in both models.
      - ``kl``: KL(teacher || student) of the image->text and text->image similarity distributions over the
        batch (texts of all ranks), each model at its own temperature. Works across embedding sizes.

    Chinese-CLIP computes its cosine term on ``student_features.detach()`` (and interpolates the student vector
    to the teacher's size), so in its code the term is logged but sends no gradient; here it does.
    """

    def __init__(self, teacher: nn.Layer, weight: float = 1.0, kind: str = "cosine"):
        super().__init__()
        if kind not in ("cosine", "kl"):
            raise ValueError(f"DistillLoss kind {kind!r}: expected 'cosine' or 'kl'")
        if not isinstance(teacher, nn.Layer):
            raise TypeError(
                f"DistillLoss teacher {teacher!r}: pass the model (paddle_mm.tasks.base.load_teacher builds it from "
                "the path in Loss.Train)"
            )
        self.weight, self.kind = weight, kind
        teacher.eval()
        for p in teacher.parameters():
            p.stop_gradient = True
        object.__setattr__(self, "teacher", teacher)  # not a sublayer: not saved, not trained

    def extra_targets(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> dict[str, paddle.Tensor]:
        """The teacher's normalized features for one (micro-)batch, without gradients."""
        teacher = self.teacher
        size = teacher.config.image_resolution
        with paddle.no_grad():
            if pixel_values.shape[-1] != size:
                pixel_values = F.interpolate(pixel_values, size=[size, size], mode="bicubic", align_corners=False)
            out = {"teacher_image_features": F.normalize(teacher.encode_image(pixel_values), axis=-1)}
            if self.kind == "kl":
                out["teacher_text_features"] = F.normalize(teacher.encode_text(input_ids), axis=-1)
                out["teacher_logit_scale"] = teacher.logit_scale.exp().reshape([1]).expand([input_ids.shape[0]])
        return {k: v.astype("float32").detach() for k, v in out.items()}

    def forward(
        self,
        image_features: paddle.Tensor,
        text_features: paddle.Tensor,
        logit_scale: paddle.Tensor,
        teacher_image_features: paddle.Tensor,
        teacher_text_features: paddle.Tensor | None = None,
        teacher_logit_scale: paddle.Tensor | None = None,
        **_: Any,
    ) -> paddle.Tensor:
        if self.kind == "cosine":
            if image_features.shape[-1] != teacher_image_features.shape[-1]:
                raise ValueError(
                    f"DistillLoss kind cosine: student embed_dim {image_features.shape[-1]} != teacher embed_dim "
                    f"{teacher_image_features.shape[-1]}; use kind: kl, which compares similarity distributions"
                )
            cos = (F.normalize(image_features, axis=-1) * teacher_image_features).sum(axis=-1)  # (B,)
            return self.weight * (1.0 - cos.mean())
        t_scale = teacher_logit_scale[0]
        all_texts = all_gather_with_grad(text_features)  # (world * B, D): columns as ClipLoss has them
        all_images = all_gather_with_grad(image_features)
        t_texts, t_images = all_gather_no_grad(teacher_text_features), all_gather_no_grad(teacher_image_features)
        kl_i2t = _kl(t_scale * teacher_image_features @ t_texts.t(), logit_scale * image_features @ all_texts.t())
        kl_t2i = _kl(t_scale * teacher_text_features @ t_images.t(), logit_scale * text_features @ all_images.t())
        return self.weight * (kl_i2t + kl_t2i) / 2


def _kl(teacher_logits: paddle.Tensor, student_logits: paddle.Tensor) -> paddle.Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student))."""
    p = F.softmax(teacher_logits, axis=-1)
    return (p * (F.log_softmax(teacher_logits, axis=-1) - F.log_softmax(student_logits, axis=-1))).sum(-1).mean()


LOSSES = {"ClipLoss": ClipLoss, "DistillLoss": DistillLoss}


class CombinedLoss(nn.Layer):
    """Sum of weighted terms; returns a dict with ``loss`` and one entry per term."""

    def __init__(self, terms: dict[str, nn.Layer]):
        super().__init__()
        self.terms = nn.LayerDict(terms)
        self._accuracy_from: nn.Layer | None = None  # the term whose batch_accuracy forward() adds

    def names(self) -> list[str]:
        return list(self.terms.keys())

    def report_batch_accuracy(self) -> bool:
        """From now on ``forward`` also returns :data:`BATCH_METRICS` (``Global.report_batch_acc``), from the first
        term that computes them; False (and nothing changes) when no term does."""
        self._accuracy_from = next((t for t in self.terms.values() if hasattr(t, "batch_accuracy")), None)
        return self._accuracy_from is not None

    def extra_targets(self, *inputs: paddle.Tensor) -> dict[str, paddle.Tensor]:
        """Per-sample inputs some terms need besides the model's outputs (a teacher's features from the batch's
        model inputs), no gradients; empty when no term needs any."""
        out: dict[str, paddle.Tensor] = {}
        for term in self.terms.values():
            if hasattr(term, "extra_targets"):
                out.update(term.extra_targets(*inputs))
        return out

    def forward(self, outputs: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        parts = {name: term(**outputs) for name, term in self.terms.items()}
        parts["loss"] = paddle.add_n(list(parts.values()))
        if self._accuracy_from is not None:
            parts.update(self._accuracy_from.batch_accuracy(**outputs))
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


class CellLoss(nn.Layer):
    """Grounding supervision for the image tower: cross-entropy of ``cell_logits`` [B, cells, C] (the cell head of a
    :class:`~paddle_mm.models.fusion.FusionModel`, on the ViT's patch tokens) against ``cell_labels`` [B, cells]
    (what each cell of the image holds, from the training split's scene records), averaged over the cells;
    a label of -1 is ignored. An auxiliary term beside VQALoss (multi-task training, as the attribute head of
    bottom-up attention): it teaches the patch tokens what each cell shows, which the answer loss alone does not
    (docs/fusion.md, "Why the data looks like this"). Training only: evaluation and exports never read it.
    """

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(
        self, cell_logits: paddle.Tensor | None = None, cell_labels: paddle.Tensor | None = None, **_: Any
    ) -> paddle.Tensor:
        if cell_logits is None or cell_labels is None:
            missing = "cell_logits (a model with a cell head)" if cell_logits is None else "cell_labels (the batch)"
            raise ValueError(
                f"CellLoss got no {missing}; it trains Global.task vqa / classification models, whose task adds "
                "the cell head and the scene labels when Loss.Train lists CellLoss"
            )
        C = cell_logits.shape[-1]
        logits = cell_logits.reshape([-1, C])  # (B * cells, C)
        labels = cell_labels.reshape([-1, 1]).astype("int64")  # (B * cells, 1)
        known = (labels >= 0).astype(logits.dtype)  # (B * cells, 1); -1: no label
        # per-cell terms masked by hand: Paddle's mean with ignore_index divides by every cell, ignored ones included
        nll = -paddle.take_along_axis(F.log_softmax(logits, axis=-1), labels.clip(min=0), axis=1)  # (B * cells, 1)
        return self.weight * (nll * known).sum() / known.sum().clip(min=1.0)


class AttendLoss(nn.Layer):
    """Attention supervision for the fusion: -log of the share of the question's attention over the patches
    (``image_attention`` [B, N], from ``cross_attention`` or ``mfb`` with ``attend``) that falls on the cells it
    refers to (``attend_cells`` [B, cells], 0/1, from the training split's scene records and the question's words).
    Rows that refer to no cell (existence 否, count 0) add nothing; the mean is over the others. Patches are summed
    into cells when the patch grid is finer than the cell grid. Training only.
    """

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(
        self, image_attention: paddle.Tensor | None = None, attend_cells: paddle.Tensor | None = None, **_: Any
    ) -> paddle.Tensor:
        if image_attention is None or attend_cells is None:
            missing = "attend_cells (the batch)"
            if image_attention is None:
                missing = "image_attention (a fusion that attends over patches)"
            raise ValueError(
                f"AttendLoss got no {missing}; it trains cross_attention and mfb (attend: true) on Global.task vqa / "
                "classification, whose task adds the targets when Loss.Train lists AttendLoss"
            )
        B, N = image_attention.shape
        cells = attend_cells.shape[1]
        g, c = int(round(N**0.5)), int(round(cells**0.5))
        grid = image_attention.reshape([B, 1, g, g])  # (B, 1, g, g)
        per_cell = (F.adaptive_avg_pool2d(grid, c) * (g * g / cells)).reshape([B, cells])  # (B, cells): sums
        mask = attend_cells.astype(per_cell.dtype)
        share = (per_cell * mask).sum(axis=1)  # (B,)
        rows = (mask.sum(axis=1) > 0).astype(share.dtype)
        return self.weight * (-paddle.log(share.clip(min=1e-6)) * rows).sum() / rows.sum().clip(min=1.0)


LOSSES.update(
    {
        "AttendLoss": AttendLoss,
        "VQALoss": VQALoss,
        "ClassificationLoss": ClassificationLoss,
        "MatchingLoss": MatchingLoss,
        "CellLoss": CellLoss,
    }
)
