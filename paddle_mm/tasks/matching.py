"""Image-text matching (``Global.task: matching``) on caption data (``ImageTextDataset``).

A one-logit fusion head scores pairs, trained on the batch's positives and in-batch hard negatives
(``MatchingLoss``), with ``ClipLoss`` on the pooled embeddings that mine them. Training batches are prepared as
for retrieval (skipped images, repeated captions, the logit-scale clamp). Evaluation re-ranks the contrastive top
``RERANK_K`` images of every caption with the fusion score: R@1/5/10 (``mean_recall`` selects the best epoch),
MRR and NDCG@10, next to the same metrics of the contrastive ranking alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import paddle

from ..config import ConfigError
from ..data.datasets import ImageDataset
from ..metrics import mean_reciprocal_rank, ndcg_at_k, recall_at_k
from ..models.fusion import build_fusion_model
from ..text.tokenizer import trim_padding
from .retrieval import RetrievalTask, encode_corpus

logger = logging.getLogger("paddle_mm")
RERANK_K = 10


class MatchingTask(RetrievalTask):
    """``Global.task: matching``: see the module docstring."""

    name = "matching"
    main_metric = "mean_recall"
    losses = ("ClipLoss", "MatchingLoss")
    contrastive = False  # the matching head scores in-batch hard negatives: accumulate gradients

    def __init__(self, cfg: dict[str, Any]):
        if cfg["Arch"].get("fusion") is None:
            raise ConfigError("Global.task=matching needs an Arch.fusion section, e.g. {name: cross_attention}")
        for key in ("Train", "Eval"):
            section = cfg["DataLoader"][key]
            if section is not None and section["dataset"]["name"] != "ImageTextDataset":
                raise ConfigError(
                    f"Global.task=matching reads caption data: set DataLoader.{key}.dataset.name: ImageTextDataset"
                )
        super().__init__(cfg)

    def build_model(self, arch: dict[str, Any]) -> paddle.nn.Layer:
        return build_fusion_model(arch, 1, matching=True)

    def logit_scale(self, model: paddle.nn.Layer) -> paddle.Tensor:
        return model.clip.logit_scale

    @paddle.no_grad()
    def evaluate(self, model: paddle.nn.Layer, data, batch_size: int) -> dict[str, Any]:
        """Contrastive top-``RERANK_K`` per caption, re-ranked by the fusion's matching logit (metrics x100)."""
        corpus, transform, tokenizer = data.corpus, data.transform, data.tokenizer
        was_training = model.training
        model.eval()
        enc = encode_corpus(model, corpus, transform, tokenizer, batch_size, progress=False)
        pixels = {int(item["image_id"]): item["pixel_values"] for item in ImageDataset(corpus, transform)}
        column = {image_id: c for c, image_id in enumerate(enc.image_ids)}
        positives = [{column[i] for i in t.image_ids if i in column} for t in enc.texts]
        sim = enc.text_features @ enc.image_features.T  # (n_texts, n_images)
        reranked = sim.copy()
        k = min(RERANK_K, sim.shape[1])
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        ids_all = np.asarray(tokenizer([t.text for t in enc.texts]))
        for t in range(len(enc.texts)):
            px = paddle.to_tensor(np.stack([pixels[enc.image_ids[c]] for c in top[t]]))
            ids = paddle.to_tensor(trim_padding(np.repeat(ids_all[t : t + 1], k, axis=0), model.config.pad_id))
            scores = model.fusion(model.features(px, ids))["logits"][:, 0].numpy()
            reranked[t, top[t]] = 10.0 + scores - scores.min()  # above every image outside the top k, in fusion order
        if was_training:
            model.train()
        return {**ranking_metrics(reranked, positives), "contrastive": ranking_metrics(sim, positives)}

    def log_eval(self, metrics: dict[str, Any], epoch: int) -> dict[str, float]:
        m, c = metrics, metrics["contrastive"]
        logger.info(
            f"[Eval][Epoch {epoch}] re-ranked t2i {ranking_line(m)} "
            f"(contrastive only: R@1 {c['r1']:.2f}, mean_recall {c['mean_recall']:.2f})"
        )
        return {self.main_metric: m[self.main_metric]}

    def check_checkpoint(self, model: paddle.nn.Layer, path) -> None:
        if not getattr(model, "matching", False):
            raise self.wrong_checkpoint("a matching fusion model", model, path)

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"re-ranked by the fusion: {ranking_line(metrics)}",
            f"contrastive only: {ranking_line(metrics['contrastive'])}",
        ]

    def eval_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"task": self.name, "metrics": metrics}


def ranking_line(m: dict[str, float]) -> str:
    """``R@1: .. R@5: .. R@10: .., mean_recall: .., MRR: .., NDCG@10: ..`` of :func:`ranking_metrics`' dict."""
    recall = " ".join(f"R@{k}: {m[f'r{k}']:.2f}" for k in (1, 5, 10))
    return f"{recall}, mean_recall: {m['mean_recall']:.2f}, MRR: {m['mrr']:.2f}, NDCG@10: {m['ndcg@10']:.2f}"


def ranking_metrics(sim: np.ndarray, positives: list[set[int]]) -> dict[str, float]:
    """R@1/5/10, mean_recall, MRR and NDCG@10 (x100) of text -> image scores [n_texts, n_images]."""
    relevance = np.zeros_like(sim)
    for t, cols in enumerate(positives):
        relevance[t, list(cols)] = 1.0
    r = recall_at_k(sim, positives, (1, 5, 10))
    return {**r, "mrr": mean_reciprocal_rank(sim, positives), "ndcg@10": ndcg_at_k(sim, relevance, 10)}
