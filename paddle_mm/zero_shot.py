"""Zero-shot image classification with prompt ensembles, as cn_clip/eval/zeroshot_evaluation.py does it.

1. Every class name is put into every template (「{}的照片」 -> 「红色的圆形的照片」), preprocessed like cn_clip
   (lower-case, curly double quotes -> '"'), tokenized and encoded by the text tower.
2. Each prompt feature is L2-normalized, the features of one class are averaged over its templates and
   the mean is normalized again: one unit vector per class (``zero_shot_classifier``, [n_classes, D]).
3. An image is assigned the classes whose vectors have the highest cosine with its normalized feature
   (cn_clip applies ``softmax(100 * cos)``, which does not change the ranking).

Class embeddings are cached on disk (``cache_dir``): the key hashes the model weights and the exact token
ids of every prompt, so a changed checkpoint, class list, template set, tokenizer or context length can
never hit a stale entry. ImageNet-CN with the 183 "openai" prompts is 183,000 texts: about an hour on two
CPU cores for ViT-B-16, so the second run should not pay it again.

Accuracy is returned in percent (top-1 / top-5), like the retrieval metrics.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from .data.collate import BadSampleCounter, collate_skip_bad
from .data.datasets import bad_reason
from .data.zeroshot import ZeroShotFolder, check_templates
from .io import atomic_open, file_sha256
from .metrics import topk_indices
from .text.tokenizer import preprocess_caption, tokenize, trim_padding
from .vision.transforms import ImageDecodeError, ImageTransform

logger = logging.getLogger(__name__)

Tokenizer = Callable[[list[str]], np.ndarray]  # list of N texts -> int64 [N, L]


preprocess_text = preprocess_caption  # cn_clip's ``_preprocess_text``: lower-case, “ and ” -> '"'


def class_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[str]:
    """All prompts, class-major: ``[t0(c0), t1(c0), ..., t0(c1), ...]``, preprocessed like cn_clip."""
    check_templates(list(templates))
    return [preprocess_text(t.format(c)) for c in classnames for t in templates]


# ----------------------------------------------------------------------------- cache keys


def model_fingerprint(model) -> str:
    """Hex sha256 over the names, shapes, dtypes and values of every tensor in ``model.state_dict()``."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = np.ascontiguousarray(tensor.numpy())
        h.update(f"{name}|{array.dtype}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _cache_key(weights_digest: str, token_ids: np.ndarray, n_classes: int) -> str:
    h = hashlib.sha256(b"paddle_mm.zero_shot v1|")
    h.update(weights_digest.encode())
    h.update(f"|{n_classes}|{token_ids.shape}|".encode())
    h.update(np.ascontiguousarray(token_ids, dtype=np.int64).tobytes())
    return h.hexdigest()


def _load_cached(path: Path, n_classes: int) -> np.ndarray | None:
    try:
        cached = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except ValueError as err:  # a truncated or foreign file: recompute and overwrite it
        logger.warning("ignoring unreadable zero-shot cache %s (%s); recomputing", path, err)
        return None
    if cached.ndim != 2 or cached.shape[0] != n_classes or cached.dtype != np.float32:
        logger.warning("ignoring zero-shot cache %s of shape %s %s; recomputing", path, cached.shape, cached.dtype)
        return None
    return cached


def _save_cached(path: Path, embeddings: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.save(f, embeddings, allow_pickle=False)


# ----------------------------------------------------------------------------- classifier


@paddle.no_grad()
def encode_prompts(model, token_ids: np.ndarray, batch_size: int, progress: bool = False) -> np.ndarray:
    """L2-normalized text features [N, D] of token id rows [N, L], ``batch_size`` rows at a time."""
    feats = []
    for start in tqdm(range(0, len(token_ids), batch_size), desc="encode prompts", disable=not progress, leave=False):
        ids = trim_padding(token_ids[start : start + batch_size], model.config.pad_id)
        feats.append(F.normalize(model.encode_text(paddle.to_tensor(ids)), axis=-1).astype("float32").numpy())
    return np.concatenate(feats)


def zero_shot_classifier(
    model,
    classnames: Sequence[str],
    templates: Sequence[str],
    tokenizer: Tokenizer | None = None,
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    weights_file: str | os.PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Unit-norm class embeddings, float32 [n_classes, D], averaged over ``templates`` like cn_clip.

    ``templates`` are format strings with one ``{}`` (see :func:`paddle_mm.data.zeroshot.load_templates`);
    ``tokenizer`` maps a list of texts to int64 ids [N, L] (default: cn_clip's, at the model's context
    length). With ``cache_dir`` the result is stored as ``zs_<key>.npy`` and reused; the key hashes
    ``weights_file`` (the checkpoint's model.safetensors; faster) or, without it, every tensor of the model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(classnames) == 0:
        raise ValueError("no class names given; pass at least one class name")
    tokenizer = tokenizer or (lambda texts: tokenize(texts, context_length=model.config.context_length))
    token_ids = np.asarray(tokenizer(class_prompts(classnames, templates)), dtype=np.int64)
    cache_path = None
    if cache_dir is not None:
        digest = file_sha256(weights_file) if weights_file is not None else model_fingerprint(model)
        cache_path = Path(cache_dir) / f"zs_{_cache_key(digest, token_ids, len(classnames))[:32]}.npy"
        cached = _load_cached(cache_path, len(classnames))
        if cached is not None:
            logger.info("zero-shot classifier loaded from cache %s", cache_path)
            return cached
    was_training = model.training
    model.eval()
    try:
        feats = encode_prompts(model, token_ids, batch_size, progress)  # (C*T, D)
    finally:
        if was_training:
            model.train()
    per_class = feats.reshape(len(classnames), len(templates), -1).mean(axis=1)  # (C, D)
    embeddings = (per_class / np.linalg.norm(per_class, axis=1, keepdims=True)).astype(np.float32)
    if cache_path is not None:
        _save_cached(cache_path, embeddings)
        logger.info("zero-shot classifier cached in %s", cache_path)
    return embeddings


# ----------------------------------------------------------------------------- evaluation


class _FolderImages:
    """Items ``{"pixel_values", "label", "index"}`` of a ZeroShotFolder, or ``{"bad", "index"}``."""

    def __init__(self, data: ZeroShotFolder, transform: Callable[[bytes], np.ndarray]):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.data.images[i]
        try:
            pixels = self.transform(path.read_bytes())
        except OSError as err:
            return {"bad": bad_reason("unreadable", f"{path}: {err.strerror}"), "index": i}
        except (ImageDecodeError, ValueError) as err:
            return {"bad": bad_reason("undecodable", f"{path}: {err}"), "index": i}
        return {"pixel_values": np.asarray(pixels, np.float32), "label": self.data.labels[i], "index": i}


@paddle.no_grad()
def predict(
    model,
    data: ZeroShotFolder,
    classifier: np.ndarray,
    transform: Callable | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    k: int = 5,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(top-``k`` class indices [n, k] best first, labels [n], skipped-images summary) of the readable images."""
    transform = transform or ImageTransform(model.config.image_resolution)
    loader = paddle.io.DataLoader(
        _FolderImages(data, transform),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate_skip_bad,
        num_workers=num_workers,
        return_list=True,
    )
    was_training = model.training
    model.eval()
    counter, tops, labels = BadSampleCounter(), [], []
    try:
        for batch in tqdm(loader, desc="zero-shot", disable=not progress, leave=False):
            counter.update(batch)
            if int(batch["n_good"]) == 0:
                continue
            feats = F.normalize(model.encode_image(batch["pixel_values"]), axis=-1).astype("float32").numpy()
            tops.append(topk_indices(feats @ classifier.T, k))  # (B, k) of (B, n_classes) cosines
            labels.append(np.asarray(batch["label"]).reshape(-1))
    finally:
        if was_training:
            model.train()
    if not tops:
        raise ValueError(f"no readable image in {data.root}: {counter.summary()}")
    return np.concatenate(tops), np.concatenate(labels).astype(np.int64), counter.summary()


def accuracy(top: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"top1": %, "top5": %}``: share of rows whose label is among the first k predicted classes."""
    miss = np.iinfo(np.int64).max
    hit_rank = np.where(top == labels[:, None], np.arange(top.shape[1])[None, :], miss).min(axis=1)
    return {f"top{k}": float(np.mean(hit_rank < k) * 100) for k in ks}


def zero_shot_evaluate(
    model,
    data: ZeroShotFolder,
    templates: Sequence[str],
    tokenizer: Tokenizer | None = None,
    transform: Callable | None = None,
    batch_size: int = 64,
    text_batch_size: int = 256,
    num_workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    weights_file: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (%) of ``model`` on ``data`` (from :func:`load_zero_shot_folder`).

    Returns ``{"top1", "top5", "n_images", "n_classes", "n_templates", "skipped"}``; unreadable images are
    left out of the accuracy and summarized in ``skipped``. With fewer than 5 classes, top-5 is 100.
    """
    classifier = zero_shot_classifier(
        model, data.classnames, templates, tokenizer, text_batch_size, cache_dir, weights_file, progress
    )
    top, labels, skipped = predict(model, data, classifier, transform, batch_size, num_workers, 5, progress)
    return {
        **accuracy(top, labels),
        "n_images": int(len(labels)),
        "n_classes": len(data.classnames),
        "n_templates": len(templates),
        "skipped": skipped,
    }
