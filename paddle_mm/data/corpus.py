"""The corpus every reader returns: record types, bad-sample reasons, and the TSV and folder image sources.

``ImageTextCorpus`` holds one split: image ids, ``TextRecord`` texts and a ``LoadReport`` of what was wrong.
Readers (:mod:`.datasets` for TSV and folder layouts via ``load_corpus``, :mod:`.lmdb_reader` for LMDB) build it
from an image source with ``index`` / ``read`` / ``describe``; they share these types from here, so no reader
imports another. This module does not import paddle.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .writers import IMAGE_EXTENSIONS

logger = logging.getLogger("paddle_mm.data.datasets")  # the logger docs/data.md names, for every reader

# kind of a bad sample -> (singular, plural) for summaries; a reason string starts with "<kind>: "
BAD_KINDS: dict[str, tuple[str, str]] = {
    "undecodable": ("undecodable image", "undecodable images"),
    "missing": ("missing image", "missing images"),
    "bad_base64": ("image with invalid base64", "images with invalid base64"),
    "empty": ("empty image", "empty images"),
    "unreadable": ("unreadable image file", "unreadable image files"),
}

BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark

Transform = Callable[[bytes], np.ndarray]  # image bytes -> float32 CHW; raises ValueError if undecodable
Tokenizer = Callable[[list], np.ndarray]  # list[str] -> int64 [N, L]


def bad_reason(kind: str, detail: str) -> str:
    """The reason string of a bad sample: ``"<kind>: <detail>"``, kind one of BAD_KINDS."""
    if kind not in BAD_KINDS:
        raise ValueError(f"unknown bad-sample kind {kind!r}; expected one of {sorted(BAD_KINDS)}")
    return f"{kind}: {detail}"


def reason_kind(reason: str) -> str:
    """The kind a reason string starts with, or "other" for a reason not made by :func:`bad_reason`."""
    kind = reason.split(":", 1)[0]
    return kind if kind in BAD_KINDS else "other"


class DatasetError(FileNotFoundError):
    """A dataset root or split that is missing or holds nothing; ``str(err)`` is one line naming it and the fix."""


class ImageReadError(ValueError):
    """An image that cannot be read from the corpus; ``kind`` is a key of BAD_KINDS, ``image_id`` the image."""

    def __init__(self, kind: str, image_id: int, message: str):
        super().__init__(message)
        self.kind = kind
        self.image_id = image_id

    @property
    def reason(self) -> str:
        return bad_reason(self.kind, str(self))


class TextRecord(NamedTuple):
    text_id: int
    text: str
    image_ids: list[int]


# ----------------------------------------------------------------------------- load report


@dataclass
class LoadReport:
    """Problems found while loading a corpus: counts per kind and the first few messages (with line numbers)."""

    source: str
    counts: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    max_messages: int = 5

    def add(self, kind: str, message: str, n: int = 1) -> None:
        self.counts[kind] += n
        if len(self.messages) < self.max_messages:
            self.messages.append(message)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def summary(self) -> str:
        """One line, e.g. "data/shapes train: 2 malformed text lines, 1 missing image id; first: ..."."""
        if not self.counts:
            return f"{self.source}: no problems"
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        return f"{self.source}: {parts}; first: " + " | ".join(self.messages)


# ----------------------------------------------------------------------------- image sources


class _TsvImages:
    """Images of a ``{split}_imgs.tsv``, found by byte offset; the file is reopened in every process."""

    def __init__(self, path: Path, report: LoadReport):
        self.path = path
        self.index: dict[int, tuple[int, int, int]] = {}  # image_id -> (payload offset, payload length, line)
        self._handle = None
        self._pid = -1
        self._build_index(report)

    def _build_index(self, report: LoadReport) -> None:
        offset = 0
        with open(self.path, "rb") as f:
            for line_no, line in enumerate(f, start=1):
                self._index_line(line, offset, line_no, report)
                offset += len(line)

    def _index_line(self, line: bytes, offset: int, line_no: int, report: LoadReport) -> None:
        if not line.strip():
            return
        if line_no == 1 and line.startswith(BOM):  # written by some Windows editors; not part of the id
            line, offset = line[len(BOM) :], offset + len(BOM)
        id_field, tab, _ = line.partition(b"\t")
        try:
            image_id = int(id_field)
        except ValueError:
            image_id = None
        if not tab or image_id is None:
            report.add(
                "malformed image lines",
                f"{self.path.name} line {line_no}: expected 'image_id<TAB>base64', got {line[:40]!r}",
            )
            return
        if image_id in self.index:
            report.add(
                "duplicate image ids",
                f"{self.path.name} line {line_no}: image id {image_id} already on "
                f"line {self.index[image_id][2]}; keeping the first",
            )
            return
        start = len(id_field) + 1
        self.index[image_id] = (offset + start, len(line.rstrip(b"\r\n")) - start, line_no)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, -1
        return state

    def _file(self):
        # a handle inherited through fork shares its file position with the parent: reopen per process
        if self._handle is None or self._pid != os.getpid():
            self._handle = open(self.path, "rb")
            self._pid = os.getpid()
        return self._handle

    def _read_at(self, offset: int, length: int) -> bytes:
        f = self._file()
        if hasattr(os, "pread"):  # no shared file position: safe from threads too
            return os.pread(f.fileno(), length, offset)
        f.seek(offset)
        return f.read(length)

    def read(self, image_id: int) -> bytes:
        offset, length, line_no = self.index[image_id]
        where = f"image {image_id} ({self.path}, line {line_no})"
        try:
            payload = self._read_at(offset, length).strip()
        except OSError as err:
            raise ImageReadError("unreadable", image_id, f"{where}: {err}") from None
        return decode_image_payload(payload, image_id, where)

    def describe(self, image_id: int) -> str:
        return f"{self.path}, line {self.index[image_id][2]}"


_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")


def decode_image_payload(payload: bytes, image_id: int, where: str) -> bytes:
    """Base64 image bytes (TSV cell or LMDB value) -> raw image bytes; ImageReadError naming ``where``.

    Chinese-CLIP decodes with urlsafe_b64decode, so both alphabets are accepted, but no other characters.
    """
    if not payload:
        raise ImageReadError("empty", image_id, f"{where} has no image data")
    try:
        return base64.b64decode(payload.translate(_URLSAFE_TO_STD), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageReadError("bad_base64", image_id, f"{where}: invalid base64 ({err})") from None


class _FolderImages:
    """Images of a folder named ``<image_id>.<ext>``, any extension of IMAGE_EXTENSIONS."""

    def __init__(self, folder: Path, report: LoadReport):
        self.folder = folder
        self.index: dict[int, str] = {}  # image_id -> file name
        for name in sorted(os.listdir(folder)):
            self._index_file(name, report)

    def _index_file(self, name: str, report: LoadReport) -> None:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
            return
        if not stem.isdigit():
            report.add(
                "image files without an integer id",
                f"{self.folder}/{name}: name the file <image_id><ext> with an integer id, or it is ignored",
            )
            return
        image_id = int(stem)
        if image_id in self.index:
            report.add(
                "duplicate image ids",
                f"{self.folder}: {name} and {self.index[image_id]} both have id "
                f"{image_id}; keeping {self.index[image_id]}",
            )
            return
        self.index[image_id] = name

    def read(self, image_id: int) -> bytes:
        path = self.folder / self.index[image_id]
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageReadError("unreadable", image_id, f"image {image_id} ({path}): {err.strerror}") from None
        if not data:
            raise ImageReadError("empty", image_id, f"image {image_id} ({path}) is an empty file")
        return data

    def describe(self, image_id: int) -> str:
        return str(self.folder / self.index[image_id])


# ----------------------------------------------------------------------------- texts


def _parse_text(line: str) -> TextRecord:
    """One jsonl line -> TextRecord; raises ValueError (not JSON) or TypeError (wrong field types)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise TypeError(f"expected a JSON object, got {type(obj).__name__}")
    text_id, text, image_ids = obj.get("text_id"), obj.get("text"), obj.get("image_ids", [])
    if not _is_int(text_id):
        raise TypeError(f"text_id must be an integer, got {text_id!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {text!r}")
    if not isinstance(image_ids, list) or not all(_is_int(i) for i in image_ids):
        raise TypeError(f"image_ids must be a list of integers, got {image_ids!r}")
    return TextRecord(text_id, text, list(image_ids))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_texts(path: Path, report: LoadReport) -> list[TextRecord]:
    """All valid records of a texts jsonl; bad lines and duplicate text ids are skipped and counted."""
    texts: list[TextRecord] = []
    seen: dict[int, int] = {}  # text_id -> line
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                # utf-8-sig on the first line: a BOM (Windows editors write one) is not part of the record
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                record = _parse_text(line)
            except UnicodeDecodeError as err:  # counted, never turned into U+FFFD: a text must be what was written
                report.add(
                    "malformed text lines",
                    f"{path.name} line {line_no}: not UTF-8 (byte {raw[err.start]:#04x} at byte {err.start}); "
                    "line skipped: convert the file to UTF-8",
                )
                continue
            except (ValueError, TypeError) as err:
                report.add("malformed text lines", f"{path.name} line {line_no}: {err}; line skipped")
                continue
            if record.text_id in seen:
                report.add(
                    "duplicate text ids",
                    f"{path.name} line {line_no}: text id {record.text_id} already "
                    f"on line {seen[record.text_id]}; keeping the first",
                )
                continue
            seen[record.text_id] = line_no
            texts.append(record)
    return texts


# ----------------------------------------------------------------------------- corpus


class ImageTextCorpus:
    """One split: ``images`` (image ids), ``texts`` (TextRecord(text_id, text, image_ids)) and ``report``.

    Texts keep image ids that have no image, so training reports them as missing samples; the loader counts
    them in ``report`` ("references to missing images"). Build with :func:`load_corpus` or the
    ``from_tsv`` / ``from_folder`` class methods.
    """

    def __init__(self, images: _TsvImages | _FolderImages, texts: list[TextRecord], report: LoadReport):
        self._images = images
        self.images: list[int] = list(images.index)
        self.texts = texts
        self.report = report
        self._count_missing()
        if report:
            logger.warning("problems while loading %s", report.summary())

    @classmethod
    def from_tsv(cls, imgs_tsv: str | Path, texts_jsonl: str | Path, name: str | None = None) -> ImageTextCorpus:
        imgs_tsv, texts_jsonl = Path(imgs_tsv), Path(texts_jsonl)
        report = LoadReport(name or str(imgs_tsv.parent))
        return cls(_TsvImages(_existing(imgs_tsv), report), read_texts(_existing(texts_jsonl), report), report)

    @classmethod
    def from_folder(cls, images_dir: str | Path, texts_jsonl: str | Path, name: str | None = None) -> ImageTextCorpus:
        images_dir, texts_jsonl = Path(images_dir), Path(texts_jsonl)
        if not images_dir.is_dir():
            raise FileNotFoundError(f"image folder {str(images_dir)!r} not found; it should hold <image_id>.png files")
        report = LoadReport(name or str(images_dir.parent))
        return cls(_FolderImages(images_dir, report), read_texts(_existing(texts_jsonl), report), report)

    def _count_missing(self) -> None:
        known = self._images.index
        missing = Counter(i for t in self.texts for i in t.image_ids if i not in known)
        if missing:
            first = sorted(missing)[:5]
            self.report.add(
                "references to missing images",
                f"{len(missing)} image ids listed by texts have no image, e.g. {first}",
                n=sum(missing.values()),
            )
        self.missing_image_ids: set[int] = set(missing)

    def __repr__(self) -> str:
        return f"ImageTextCorpus({self.report.source!r}, {len(self.images)} images, {len(self.texts)} texts)"

    def has_image(self, image_id: int) -> bool:
        return image_id in self._images.index

    def read_image_bytes(self, image_id: int) -> bytes:
        """The encoded image (PNG, JPEG...) of ``image_id``; raises ImageReadError naming the id, file and line."""
        if image_id not in self._images.index:
            raise ImageReadError("missing", image_id, f"image {image_id} is not in {self.report.source}")
        return self._images.read(image_id)

    def describe_image(self, image_id: int) -> str:
        """Where ``image_id`` is stored (file, and line for TSV), for messages."""
        return self._images.describe(image_id)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found")
    return path
