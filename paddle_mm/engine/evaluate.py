"""Encode a corpus and score retrieval in both directions (Chinese-CLIP's metric definitions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from ..data.collate import BadSampleCounter, collate_skip_bad
from ..data.datasets import ImageDataset, ImageTextCorpus
from ..metrics import retrieval_metrics
from .data import trim_padding
from .run import worker_init


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
    metrics["encoded"] = encoded  # for measures beyond recall (tools/eval.py: attribute precision on built-in data)
    return metrics
