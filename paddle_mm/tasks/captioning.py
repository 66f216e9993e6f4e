"""``Global.task: captioning``: describe images in Chinese with a decoder over Chinese-CLIP image tokens.

Data: Chinese-CLIP's image-caption files (``ImageTextDataset``; the built-in shapes world from
``tools/make_data.py``). Training is teacher-forced next-token cross-entropy (``ClassificationLoss`` over the
non-padding targets; the model is :class:`~paddle_mm.models.captioning.CaptionModel`). Evaluation decodes every
image of the split (greedy, or beam search with ``Arch.caption.beam_size`` / ``length_penalty``) and scores the
captions against all of that image's references with :mod:`paddle_mm.caption_metrics` on character and jieba
segmentation; CIDEr-D on characters (x100) selects the best epoch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import paddle

from ..caption_metrics import caption_scores
from ..config import ConfigError
from ..data.corpus import ImageTextCorpus
from ..data.datasets import load_pixels
from ..text.tokenizer import WordPieceTokenizer, preprocess_caption, tokenize, trim_padding
from .base import Batch, Task
from .loaders import build_pair_loader, build_transform, load_split

logger = logging.getLogger("paddle_mm")


class CaptioningTask(Task):
    """``Global.task: captioning``: see the module docstring."""

    name = "captioning"
    main_metric = "CIDEr"
    losses = ("ClassificationLoss",)

    def __init__(self, cfg: dict[str, Any]):
        train = cfg["DataLoader"]["Train"]
        if train["dataset"]["name"] != "ImageTextDataset":
            raise ConfigError(
                f"Global.task=captioning reads DataLoader.Train.dataset.name: ImageTextDataset, not "
                f"{train['dataset']['name']!r}; set it (data from tools/make_data.py)"
            )
        self.context_length = cfg["Arch"].get("context_length") or 52
        corpus = load_split(train["dataset"])
        self.train_ids = tokenize([preprocess_caption(t.text) for t in corpus.texts], self.context_length)
        self.model = None

    def build_model(self, arch: dict[str, Any]) -> paddle.nn.Layer:
        from ..models.captioning import build_caption_model, compact_vocabulary

        self.model = build_caption_model(arch, compact_vocabulary(self.train_ids, 0))
        return self.model

    def build_train_loader(self, section: dict[str, Any], model_config, world: int, rank: int, seed: int):
        return build_pair_loader(section, model_config.image_resolution, model_config.context_length, world, rank, seed)

    def prepare(self, batch: dict[str, Any], pad_id: int) -> Batch:
        n = int(batch["n_good"])
        if n == 0:
            return Batch((), {}, 0)
        ids = paddle.to_tensor(trim_padding(np.asarray(batch["input_ids"][:n]), pad_id))
        _, labels = self.model.targets(ids)
        return Batch((batch["pixel_values"][:n], ids), {"labels": labels}, n)

    def load_eval(self, dataset_cfg: dict[str, Any], model_config) -> tuple[ImageTextCorpus, Any]:
        return load_split(dataset_cfg), build_transform(dataset_cfg, model_config.image_resolution)

    def evaluate(self, model, data, batch_size: int) -> dict[str, Any]:
        corpus, transform = data
        image_ids, captions = caption_corpus(model, corpus, transform, batch_size)
        return score_captions(captions, references(corpus, image_ids))

    def log_eval(self, metrics: dict[str, Any], epoch: int) -> dict[str, float]:
        logger.info(f"[Eval][Epoch {epoch}] {format_scores(metrics)}")
        return {k: v for k, v in metrics["char"].items()} | {f"jieba_{k}": v for k, v in metrics["jieba"].items()}


def references(corpus: ImageTextCorpus, image_ids: list[int]) -> list[list[str]]:
    refs: dict[int, list[str]] = {i: [] for i in image_ids}
    for t in corpus.texts:
        for i in t.image_ids:
            if i in refs:
                refs[i].append(t.text)
    return [refs[i] for i in image_ids]


def score_captions(captions: list[str], refs: list[list[str]]) -> dict[str, Any]:
    """caption_scores on char and jieba segmentation (x100; chrF as sacrebleu gives it); ``CIDEr``: char CIDEr-D."""
    out: dict[str, Any] = {}
    for how in ("char", "jieba"):
        s = caption_scores(captions, refs, how)
        out[how] = {k: (v if k == "chrF" else 100 * v) for k, v in s.items()}
    out["CIDEr"] = out["char"]["CIDEr"]
    out["n_images"] = len(captions)
    return out


def format_scores(m: dict[str, Any]) -> str:
    parts = [
        f"{how}: " + ", ".join(f"{k}: {v:.2f}" for k, v in m[how].items()) for how in ("char", "jieba") if how in m
    ]
    return f"CIDEr-D(char): {m['CIDEr']:.2f} on {m['n_images']} images; " + "; ".join(parts)


def ids_to_text(ids: list[int]) -> str:
    """WordPiece ids -> a Chinese caption (pieces joined; ``##`` continuation marks dropped)."""
    tok = WordPieceTokenizer()
    return "".join(p[2:] if p.startswith("##") else p for p in tok.convert_ids_to_tokens(ids))


@paddle.no_grad()
def caption_images(
    model, pixels: np.ndarray, beam: int | None = None, alpha: float | None = None, max_length: int | None = None
) -> list[str]:
    """Captions of float32 images [B, 3, S, S]: greedy when the beam is 1, beam search otherwise."""
    from ..models.captioning import beam_search, greedy_search

    c = model.caption
    beam, alpha = c.beam_size if beam is None else beam, c.length_penalty if alpha is None else alpha
    max_length = max_length or c.max_length
    step = model.step_fn(paddle.to_tensor(pixels))
    if beam == 1:
        seqs = greedy_search(step, len(pixels), model.bos, model.eos, max_length)
    else:
        seqs = beam_search(step, len(pixels), model.bos, model.eos, max_length, beam, alpha)
    return [ids_to_text(s) for s in model.to_wordpiece(seqs)]


def caption_corpus(
    model, corpus: ImageTextCorpus, transform, batch_size: int, beam: int | None = None, alpha: float | None = None
) -> tuple[list[int], list[str]]:
    """(image ids, captions) of every readable image of a split, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    ids, captions = [], []
    try:
        for s in range(0, len(corpus.images), batch_size):
            chunk = [(i, load_pixels(corpus, transform, i)[0]) for i in corpus.images[s : s + batch_size]]
            chunk = [(i, p) for i, p in chunk if p is not None]
            if not chunk:
                continue
            ids += [i for i, _ in chunk]
            captions += caption_images(model, np.stack([p for _, p in chunk]), beam, alpha)
    finally:
        if was_training:
            model.train()
    return ids, captions
