"""``load_corpus`` for image-text retrieval data in Chinese-CLIP's format, and the datasets built on it.

The corpus, its record types and the TSV / folder image sources live in :mod:`.corpus` (shared with
:mod:`.lmdb_reader`); they are re-exported here.

Two layouts of a split are read (see docs/data.md):

- tsv (Chinese-CLIP's own, used by MUGE and Flickr30K-CN): ``{root}/{split}_imgs.tsv`` with lines
  ``image_id<TAB>base64(image bytes)`` and ``{root}/{split}_texts.jsonl`` with lines
  ``{"text_id": int, "text": str, "image_ids": [int, ...]}``;
- folder: ``{root}/{split}/images/<image_id>.<png|jpg|...>`` and ``{root}/{split}/texts.jsonl`` (same schema).

Loading never crashes on bad records: malformed lines, duplicate ids and texts that point at missing images are
counted in ``corpus.report`` and logged once as a warning. Images are read lazily: the TSV reader keeps only a
byte offset per image and reopens its file in each process, so a corpus can be used by DataLoader workers.

Datasets never raise for one bad image either: an item whose image is missing or undecodable is returned as
``{"bad": "<kind>: <reason naming the image id>", "index": i}``, and ``paddle_mm.data.collate.collate_skip_bad``
drops it from the batch and counts it. This module does not import paddle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .corpus import (  # noqa: F401  (the record types are imported from here across the tree)
    BAD_KINDS,
    DatasetError,
    ImageReadError,
    ImageTextCorpus,
    TextRecord,
    Tokenizer,
    Transform,
    bad_reason,
    reason_kind,
)


def split_files(root: str | Path, split: str) -> dict[str, dict[str, Path]]:
    """The files each format expects for ``split`` under ``root``."""
    root = Path(root)
    return {
        "tsv": {"images": root / f"{split}_imgs.tsv", "texts": root / f"{split}_texts.jsonl"},
        "folder": {"images": root / split / "images", "texts": root / split / "texts.jsonl"},
    }


def load_corpus(root: str | Path, split: str, format: str = "auto") -> ImageTextCorpus:
    """Load ``split`` ("train", "valid", "test"...) of the dataset in ``root``.

    ``format`` is "tsv", "folder", "lmdb" (Chinese-CLIP's ``lmdb/{split}/{imgs,pairs}``) or "auto" (tsv or
    folder, whichever layout is present; an error if both or neither are).
    """
    if not Path(root).is_dir():
        what = "is not a folder" if Path(root).exists() else "does not exist"
        raise DatasetError(
            f"dataset root {str(root)!r} {what}; point DataLoader.*.dataset.root at your data "
            "(python tools/make_data.py --out data/shapes writes the built-in one)"
        )
    if format == "lmdb":
        from .lmdb_reader import load_lmdb_corpus

        return load_lmdb_corpus(root, split)
    files = split_files(root, split)
    if format == "auto":
        present = [fmt for fmt, p in files.items() if p["images"].exists() and p["texts"].exists()]
        if len(present) != 1:
            expected = "; ".join(f"{fmt}: {p['images']} + {p['texts']}" for fmt, p in files.items())
            found = "both layouts" if present else "neither layout"
            error = FileNotFoundError if present else DatasetError
            raise error(
                f"found {found} for split {split!r} in {str(root)!r} (splits there: {_splits_in(root) or 'none'}); "
                f"expected exactly one of ({expected}); pass format='tsv' or 'folder' to choose"
            )
        format = present[0]
    if format not in files:
        raise ValueError(f"unknown format {format!r}; use 'tsv', 'folder', 'lmdb' or 'auto'")
    name = f"{root} {split}"
    if format == "tsv":
        corpus = ImageTextCorpus.from_tsv(files["tsv"]["images"], files["tsv"]["texts"], name)
    else:
        corpus = ImageTextCorpus.from_folder(files["folder"]["images"], files["folder"]["texts"], name)
    if not corpus.images or not corpus.texts:
        raise DatasetError(
            f"split {split!r} in {str(root)!r} is empty ({len(corpus.images)} images, {len(corpus.texts)} texts); "
            "fill it or point DataLoader.*.dataset at another split"
        )
    return corpus


def _splits_in(root: str | Path) -> str:
    """The split names present in ``root`` (either layout), for error messages."""
    root = Path(root)
    names = {p.name[: -len("_texts.jsonl")] for p in root.glob("*_texts.jsonl")}
    names |= {p.parent.name for p in root.glob("*/texts.jsonl")}
    return ", ".join(sorted(names))


# ----------------------------------------------------------------------------- datasets


def load_pixels(corpus: ImageTextCorpus, transform: Transform, image_id: int) -> tuple[np.ndarray | None, str]:
    """(float32 CHW pixels, "") or (None, reason) when the image is missing or cannot be decoded."""
    pixels, reason = _convert_image(corpus, transform, image_id)
    return (None if pixels is None else np.asarray(pixels, dtype=np.float32)), reason


def _convert_image(corpus: ImageTextCorpus, convert: Transform, image_id: int) -> tuple[np.ndarray | None, str]:
    """(``convert(image bytes)``, "") or (None, reason) when the image is missing or ``convert`` finds it
    undecodable (a ValueError; other errors are bugs and propagate)."""
    try:
        data = corpus.read_image_bytes(image_id)
    except ImageReadError as err:
        return None, err.reason
    try:
        return convert(data), ""
    except ValueError as err:
        return None, bad_reason("undecodable", f"image {image_id} ({corpus.describe_image(image_id)}): {err}")


def _tokenize_one(tokenizer: Tokenizer, text: str) -> np.ndarray:
    ids = np.asarray(tokenizer([text]))
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(f"tokenizer must map a list of N texts to an [N, L] array; got shape {ids.shape} for 1 text")
    return ids[0].astype(np.int64)


def _check_index(i: int, n: int) -> int:
    i = int(i)
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for a dataset of {n} items")
    return i % n


class PairDataset:
    """Training pairs: one item per (text, image id) of every text, in file order.

    ``dataset[i]`` is ``{"pixel_values": float32 CHW, "input_ids": int64 [L], "index": i}``, or
    ``{"bad": reason, "index": i}`` when the image cannot be read or decoded. ``pair(i)`` gives
    (text_id, image_id).
    """

    def __init__(self, corpus: ImageTextCorpus, transform: Transform, tokenizer: Tokenizer):
        self.corpus, self.transform, self.tokenizer = corpus, transform, tokenizer
        text_index = [k for k, t in enumerate(corpus.texts) for _ in t.image_ids]
        self.text_index = np.asarray(text_index, dtype=np.int64)
        self.image_ids = np.asarray([i for t in corpus.texts for i in t.image_ids], dtype=np.int64)
        self.cached: _PairCache | None = None  # set by cache()

    def __len__(self) -> int:
        return len(self.image_ids)

    def pair(self, i: int) -> tuple[int, int]:
        i = _check_index(i, len(self))
        return self.corpus.texts[self.text_index[i]].text_id, int(self.image_ids[i])

    def __getitem__(self, i: int) -> dict:
        i = _check_index(i, len(self))
        if self.cached is not None:
            return self.cached.item(i)
        pixels, reason = load_pixels(self.corpus, self.transform, int(self.image_ids[i]))
        if pixels is None:
            return {"bad": reason, "index": i}
        text = self.corpus.texts[self.text_index[i]].text
        return {"pixel_values": pixels, "input_ids": _tokenize_one(self.tokenizer, text), "index": i}

    def cache(self) -> PairDataset:
        """Decode and resize every image and tokenize every text once, into memory (uint8, 3 x S x S bytes per
        image); items and :meth:`batch` are then read from there and equal the uncached ones. Needs a transform
        with ``resize`` (bytes -> uint8 S x S x 3) and ``normalize`` (uint8 CHW -> float32 CHW), i.e.
        :class:`~paddle_mm.vision.transforms.ImageTransform`: an augmenting transform draws anew every epoch."""
        if not (hasattr(self.transform, "resize") and hasattr(self.transform, "normalize")):
            raise TypeError(
                f"cannot cache images through {type(self.transform).__name__}: it needs resize() and normalize() "
                "(ImageTransform); an augmenting transform draws anew every epoch, so train it uncached"
            )
        self.cached = _PairCache(self)
        return self

    def batch(self, indices: list[int]) -> dict:
        """``collate_skip_bad([self[i] for i in indices])``, made from the cache in a few array operations."""
        if self.cached is None:
            raise RuntimeError("PairDataset.batch needs the cache: call cache() first")
        return self.cached.batch([_check_index(i, len(self)) for i in indices])


class _PairCache:
    """What :meth:`PairDataset.cache` keeps: one uint8 image per readable image id and the token ids of every text."""

    def __init__(self, pairs: PairDataset):
        self.transform = pairs.transform
        texts = [t.text for t in pairs.corpus.texts]
        ids = np.asarray(pairs.tokenizer(texts))
        if ids.ndim != 2 or ids.shape[0] != len(texts):
            raise ValueError(
                f"tokenizer must map a list of N texts to an [N, L] array; got shape {ids.shape} for {len(texts)}"
            )
        self.input_ids = ids.astype(np.int64)[pairs.text_index]  # (n_pairs, L)
        unique, self.row = np.unique(pairs.image_ids, return_inverse=True)  # pair -> row of self.images
        self.images, self.reasons = self._decode(pairs.corpus, [int(i) for i in unique])

    def _decode(self, corpus: ImageTextCorpus, image_ids: list[int]) -> tuple[np.ndarray, list[str]]:
        """uint8 (n, 3, S, S) images (zeros where unreadable) and the reason per image ("" when readable)."""
        images, reasons = None, []
        for row, image_id in enumerate(image_ids):
            rgb, reason = _convert_image(corpus, self.transform.resize, image_id)
            if rgb is not None:
                if images is None:  # RGB planes, (n, 3, S, S): batches then normalize without a transpose
                    images = np.zeros((len(image_ids), rgb.shape[2], *rgb.shape[:2]), dtype=np.uint8)
                images[row] = rgb.transpose(2, 0, 1)
            reasons.append(reason)
        return (np.zeros((len(image_ids), 3, 0, 0), np.uint8) if images is None else images), reasons

    def item(self, i: int) -> dict:
        row = self.row[i]
        if self.reasons[row]:
            return {"bad": self.reasons[row], "index": i}
        return {"pixel_values": self.transform.normalize(self.images[row]), "input_ids": self.input_ids[i], "index": i}

    def batch(self, indices: list[int]) -> dict:
        good = np.asarray([i for i in indices if not self.reasons[self.row[i]]], dtype=np.int64)
        bad = [i for i in indices if self.reasons[self.row[i]]]
        out: dict = {"index": good}  # collate_skip_bad's keys: the item's keys, then the bad-sample report
        if len(good):
            pixels = self.transform.normalize(self.images[self.row[good]])  # (B, 3, S, S)
            out = {"pixel_values": pixels, "input_ids": self.input_ids[good], "index": good}
        out.update(n_good=len(good), n_bad=len(bad), bad_reasons=[self.reasons[self.row[i]] for i in bad])
        out["bad_index"] = bad
        return out


class ImageDataset:
    """Every image of the corpus once, for evaluation: ``{"pixel_values", "image_id", "index"}`` or
    ``{"bad": reason, "index": i}``."""

    def __init__(self, corpus: ImageTextCorpus, transform: Transform):
        self.corpus, self.transform = corpus, transform
        self.image_ids: list[int] = list(corpus.images)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> dict:
        i = _check_index(i, len(self))
        image_id = self.image_ids[i]
        pixels, reason = load_pixels(self.corpus, self.transform, image_id)
        if pixels is None:
            return {"bad": reason, "index": i}
        return {"pixel_values": pixels, "image_id": image_id, "index": i}


class TextDataset:
    """Every text of the corpus once, for evaluation: ``{"input_ids", "text_id", "index"}``."""

    def __init__(self, corpus: ImageTextCorpus, tokenizer: Tokenizer):
        self.corpus, self.tokenizer = corpus, tokenizer

    def __len__(self) -> int:
        return len(self.corpus.texts)

    def __getitem__(self, i: int) -> dict:
        i = _check_index(i, len(self))
        record = self.corpus.texts[i]
        return {"input_ids": _tokenize_one(self.tokenizer, record.text), "text_id": record.text_id, "index": i}

    def ground_truth(self) -> dict[int, list[int]]:
        """text_id -> image ids, as listed in the jsonl (missing images included)."""
        return {t.text_id: list(t.image_ids) for t in self.corpus.texts}
