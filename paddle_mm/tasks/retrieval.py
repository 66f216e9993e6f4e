"""Image-text retrieval (``Global.task: retrieval``, the default): train CLIP's two towers with a contrastive
loss; evaluate by encoding a corpus and scoring retrieval in both directions (Chinese-CLIP's metric definitions).

The task's batch preparation counts undecodable images, drops repeated captions when
``Global.drop_duplicate_captions`` asks (Chinese-CLIP #240) and trims trailing padding; after every optimizer step
it clamps the logit scale at log(100), as CLIP does. ``MR`` (mean of R@1/5/10 over both directions) selects the
best epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from ..data.collate import BadSampleCounter, collate_skip_bad
from ..data.datasets import ImageDataset, ImageTextCorpus
from ..data.duplicates import DuplicateCaptionGuard
from ..data.workers import worker_init
from ..metrics import chinese_clip_score_json, retrieval_log_line, retrieval_metrics, retrieval_report
from ..models import build_model
from ..text.tokenizer import trim_padding
from .base import Batch, Task
from .loaders import build_pair_loader, build_tokenizer, build_transform, load_split

logger = logging.getLogger("paddle_mm")
MAX_LOGIT_SCALE = 4.6052  # log(100): CLIP caps the temperature at 100


@dataclass
class EncodedCorpus:
    image_ids: list[int]
    image_features: np.ndarray  # (n_images, D), L2-normalized
    texts: list  # TextRecord(text_id, text, image_ids)
    text_features: np.ndarray  # (n_texts, D), L2-normalized
    skipped: str  # summary of undecodable / missing images


@paddle.no_grad()
def encode_images(
    model, corpus: ImageTextCorpus, transform: Callable, batch_size: int, num_workers: int = 0, progress: bool = True
) -> tuple[list[int], np.ndarray, str]:
    """Normalized features of every readable image; bad images are skipped and summarized."""
    dataset = ImageDataset(corpus, transform)
    loader = paddle.io.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate_skip_bad,
        num_workers=num_workers,
        worker_init_fn=worker_init(),  # workers die with the trainer, even after kill -9
        return_list=True,
    )
    counter, ids, feats = BadSampleCounter(), [], []
    for batch in tqdm(loader, desc="encode images", disable=not progress, leave=False):
        counter.update(batch)
        if int(batch["n_good"]) == 0:
            continue
        feats.append(F.normalize(model.encode_image(batch["pixel_values"]), axis=-1).numpy())
        ids.extend(int(i) for i in np.asarray(batch["image_id"]))
    dim = model.config.embed_dim
    return ids, (np.concatenate(feats) if feats else np.zeros((0, dim), "float32")), counter.summary()


@paddle.no_grad()
def encode_texts(model, texts: list[str], tokenizer: Callable, batch_size: int, progress: bool = True) -> np.ndarray:
    feats = []
    for start in tqdm(range(0, len(texts), batch_size), desc="encode texts", disable=not progress, leave=False):
        ids = trim_padding(np.asarray(tokenizer(texts[start : start + batch_size])), model.config.pad_id)
        feats.append(F.normalize(model.encode_text(paddle.to_tensor(ids)), axis=-1).numpy())
    return np.concatenate(feats) if feats else np.zeros((0, model.config.embed_dim), "float32")


def encode_corpus(
    model,
    corpus: ImageTextCorpus,
    transform: Callable,
    tokenizer: Callable,
    batch_size: int,
    num_workers: int = 0,
    progress: bool = True,
) -> EncodedCorpus:
    was_training = model.training
    model.eval()
    try:
        image_ids, image_features, skipped = encode_images(model, corpus, transform, batch_size, num_workers, progress)
        text_features = encode_texts(model, [t.text for t in corpus.texts], tokenizer, batch_size, progress)
    finally:
        if was_training:
            model.train()
    return EncodedCorpus(image_ids, image_features, list(corpus.texts), text_features, skipped)


def score(encoded: EncodedCorpus, topk: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """Retrieval metrics (x100) of an encoded corpus: ``{"t2i": {...}, "i2t": {...}, "MR": ...}``.

    A text whose images were all unreadable stays a query and counts as a miss, as in Chinese-CLIP.
    """
    column = {image_id: c for c, image_id in enumerate(encoded.image_ids)}
    positives = [{column[i] for i in t.image_ids if i in column} for t in encoded.texts]
    sim = encoded.text_features @ encoded.image_features.T  # (n_texts, n_images)
    return retrieval_metrics(sim, positives, topk)


def evaluate(
    model,
    corpus: ImageTextCorpus,
    transform: Callable,
    tokenizer: Callable,
    batch_size: int,
    num_workers: int = 0,
    topk: tuple[int, ...] = (1, 5, 10),
    progress: bool = True,
) -> dict[str, Any]:
    encoded = encode_corpus(model, corpus, transform, tokenizer, batch_size, num_workers, progress)
    metrics = score(encoded, topk)
    metrics["skipped"] = encoded.skipped
    return metrics


class EvalData(NamedTuple):
    """An evaluation split of caption data, ready to encode (:meth:`RetrievalTask.load_eval`)."""

    corpus: ImageTextCorpus
    transform: Callable
    tokenizer: Callable
    root: str  # for the built-in data's scene records (attribute precision)
    split: str


# ----------------------------------------------------------------------------- the task


class RetrievalTask(Task):
    """``Global.task: retrieval``: see the module docstring."""

    name = "retrieval"
    main_metric = "MR"
    losses = ("ClipLoss", "DistillLoss")
    contrastive = True  # one loss over the whole batch: Global.accum_mode features applies

    def __init__(self, cfg: dict[str, Any]):
        g, eval_section = cfg["Global"], cfg["DataLoader"]["Eval"]
        self.topk = tuple(sorted({k for item in cfg["Metric"]["Eval"] for k in item["Recall"]["topk"]} | {1, 5, 10}))
        self.eval_workers = 0 if eval_section is None else eval_section["loader"]["num_workers"]
        self.progress = g["progress_bar"]
        self.dup_guard = DuplicateCaptionGuard(drop=g["drop_duplicate_captions"], log=logger.warning)
        self.bad = BadSampleCounter()  # undecodable training images, per epoch

    def build_model(self, arch: dict[str, Any]) -> paddle.nn.Layer:
        return build_model({k: v for k, v in arch.items() if v is not None and k != "fusion"})

    def build_train_loader(self, section: dict[str, Any], model_config, world: int, rank: int, seed: int):
        mc = model_config
        return build_pair_loader(section, mc.image_resolution, mc.context_length, world, rank, seed)

    def prepare(self, batch: dict[str, Any], pad_id: int) -> Batch:
        self.bad.update(batch)
        n = int(batch["n_good"])  # undecodable images were moved to the end of the batch
        if n == 0:
            return Batch((), {}, 0)
        ids = np.asarray(batch["input_ids"][:n])
        keep = self.dup_guard(ids)  # all rows, or the first of each repeated caption
        pixels = batch["pixel_values"][:n]
        if len(keep) < n:  # a copy of the batch's pixels only when captions were dropped
            pixels = paddle.gather(pixels, paddle.to_tensor(keep))
            ids = ids[keep]
        return Batch((pixels, paddle.to_tensor(trim_padding(ids, pad_id))), {}, len(keep))

    def logit_scale(self, model: paddle.nn.Layer) -> paddle.Tensor:
        return model.logit_scale

    def after_step(self, model: paddle.nn.Layer) -> None:
        scale = self.logit_scale(model)
        with paddle.no_grad():
            scale.set_value(paddle.clip(scale, 0, MAX_LOGIT_SCALE))

    def step_scalars(self, model: paddle.nn.Layer) -> dict[str, float]:
        return {"logit_scale": float(self.logit_scale(model).exp())}

    def log_epoch(self, epoch: int) -> None:
        if self.bad.n_bad:
            logger.warning(f"[Train][Epoch {epoch}] {self.bad.summary()}")
        if self.dup_guard.n_batches_with_repeats:  # counts since the start of the run
            logger.info(f"[Train][Epoch {epoch}] {self.dup_guard.summary()}")
        self.bad.reset()

    def load_eval(self, dataset_cfg: dict[str, Any], model_config) -> EvalData:
        return EvalData(
            load_split(dataset_cfg),
            build_transform(dataset_cfg, model_config.image_resolution),
            build_tokenizer(model_config.context_length),
            dataset_cfg["root"],
            dataset_cfg["split"],
        )

    def evaluate(self, model: paddle.nn.Layer, data: EvalData, batch_size: int) -> dict[str, Any]:
        """``{"t2i": {...}, "i2t": {...}, "MR": ..., "skipped": "skipped 0 of N samples"}`` (x100), and on built-in
        data (it has scene records) ``attribute_precision`` of the text -> image top 5
        (:func:`paddle_mm.demo.shape_queries.search_attribute_precision`)."""
        from ..demo.shape_queries import search_attribute_precision

        enc = encode_corpus(model, data.corpus, data.transform, data.tokenizer, batch_size, self.eval_workers,
                            self.progress)  # fmt: skip
        metrics = score(enc, self.topk)
        metrics["skipped"] = enc.skipped
        attributes = search_attribute_precision(
            data.root, data.split, enc.image_ids, enc.image_features, enc.texts, enc.text_features
        )
        if attributes is not None:
            metrics["attribute_precision"] = attributes
        return metrics

    def log_eval(self, metrics: dict[str, Any], epoch: int) -> dict[str, float]:
        m = metrics
        logger.info(f"[Eval][Epoch {epoch}] {retrieval_log_line(m, self.topk)}")
        if not m["skipped"].startswith("skipped 0 "):
            logger.warning(f"[Eval][Epoch {epoch}] {m['skipped']}")
        return {"MR": m["MR"], **{f"{d}_R@{k}": m[d][f"r{k}"] for d in ("t2i", "i2t") for k in self.topk}}

    def check_checkpoint(self, model: paddle.nn.Layer, path) -> None:
        if hasattr(model, "fusion_name") or getattr(model, "model_type", "clip") != "clip":
            raise self.wrong_checkpoint("a CLIP", model, path)

    def report(self, metrics: dict[str, Any]) -> list[str]:
        from ..demo.shape_queries import format_attribute_precision

        skipped = [] if metrics["skipped"].startswith("skipped 0 ") else [metrics["skipped"]]
        attributes = metrics.get("attribute_precision")
        return retrieval_report(metrics, self.topk) + skipped + ([format_attribute_precision(attributes)] if
                                                                   attributes else [])  # fmt: skip

    def eval_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """R@K both ways and MR, and Chinese-CLIP's ``{"success", "score", "scoreJson"}`` per direction."""
        return {
            "MR": metrics["MR"],
            "t2i": metrics["t2i"],
            "i2t": metrics["i2t"],
            "text_to_image": chinese_clip_score_json(metrics["t2i"]),
            "image_to_text": chinese_clip_score_json(metrics["i2t"]),
            **({"attribute_precision": metrics["attribute_precision"]} if "attribute_precision" in metrics else {}),
        }
