"""Writers for Chinese-CLIP's data files, shared by the synthetic generator and ``tools/folder_to_tsv.py``.

Formats (Chinese-CLIP README, "Data Preprocessing"):

- ``{split}_imgs.tsv``: one image a line, ``image_id<TAB>base64(image bytes)``;
- ``{split}_texts.jsonl``: one text a line, ``{"text_id": int, "text": str, "image_ids": [int, ...]}``,
  UTF-8 with Chinese kept as is (``ensure_ascii=False``).

Every file is written through :func:`paddle_mm.io.atomic_open` (a temporary name in the same folder, moved into
place with ``os.replace``), so a reader never sees half a file, even if the writer is killed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..io import atomic_open

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def encode_image_field(data: bytes) -> str:
    """Standard base64 of ``data``, as Chinese-CLIP's README writes it."""
    return base64.b64encode(data).decode("ascii")


def write_imgs_tsv(path: str | Path, items: Iterable[tuple[int, bytes | str]]) -> int:
    """Write ``(image_id, data)`` pairs as ``{split}_imgs.tsv``; returns the number of lines.

    ``data`` as bytes is base64-encoded; a str is written as is (already encoded, or deliberately invalid
    when making corrupt samples for tests).
    """
    n = 0
    with atomic_open(path) as f:
        for image_id, data in items:
            field = data if isinstance(data, str) else encode_image_field(data)
            f.write(f"{int(image_id)}\t{field}\n")
            n += 1
    return n


def text_line(text_id: int, text: str, image_ids: Sequence[int]) -> str:
    """One ``{split}_texts.jsonl`` line (without newline), keys in Chinese-CLIP's order."""
    record = {"text_id": int(text_id), "text": text, "image_ids": [int(i) for i in image_ids]}
    return json.dumps(record, ensure_ascii=False)


def write_texts_jsonl(path: str | Path, texts: Iterable[tuple[int, str, Sequence[int]]]) -> int:
    """Write ``(text_id, text, image_ids)`` records as ``{split}_texts.jsonl``; returns the number of lines."""
    n = 0
    with atomic_open(path) as f:
        for text_id, text, image_ids in texts:
            f.write(text_line(text_id, text, image_ids) + "\n")
            n += 1
    return n


def write_image_file(images_dir: str | Path, image_id: int, data: bytes, ext: str = ".png") -> Path:
    """Write one image of the folder format as ``images_dir/<image_id><ext>``; returns its path."""
    if not ext.startswith(".") or ext.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"image extension {ext!r} is not one of {IMAGE_EXTENSIONS}")
    path = Path(images_dir) / f"{int(image_id)}{ext}"
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path
