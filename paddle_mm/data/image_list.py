"""PaddleClas / PaddleX classification data: ``<list>.txt`` lines ``<relative image path> <label>`` under a root,
with ``label_list.txt`` (``<label> <class name>``), or a plain folder per class (``<root>/<split>/<class>/*``).

Images are decoded and pre-processed once (:mod:`paddle_mm.vision.frame`) and kept as uint8 in memory: inspection
sets are small, and the per-epoch cost is then only the flips of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..vision.frame import preprocess_frame, read_rgb

LIST_NAMES = {"train": "train_list.txt", "val": "val_list.txt", "valid": "val_list.txt", "test": "test_list.txt"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_label_list(root: str | Path) -> list[str]:
    """Class names in label order from ``label_list.txt`` (PaddleClas) or ``label.txt`` (PaddleX)."""
    root = Path(root)
    for name in ("label_list.txt", "label.txt"):
        if (root / name).is_file():
            rows = [line.split(maxsplit=1) for line in (root / name).read_text(encoding="utf-8").splitlines()]
            rows = [r for r in rows if r]
            if [int(r[0]) for r in rows] != list(range(len(rows))):
                raise ValueError(f"{root / name}: labels must be 0..N-1 in order, one '<label> <name>' per line")
            return [r[1].strip() for r in rows]
    raise FileNotFoundError(f"{root}: no label_list.txt; run tools/make_inspection_data.py or write one")


def read_list(root: str | Path, split: str) -> tuple[list[str], np.ndarray]:
    """(image paths, int64 labels) of a split: its list file, else the ``<root>/<split>/<class>/`` folders."""
    root = Path(root)
    list_file = root / LIST_NAMES.get(split, f"{split}_list.txt")
    if list_file.is_file():
        rows = [line.rsplit(maxsplit=1) for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        bad = [r for r in rows if len(r) != 2 or not r[1].lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"{list_file}: line {bad[0]!r} is not '<image path> <integer label>'")
        return [str(root / r[0]) for r in rows], np.array([int(r[1]) for r in rows], np.int64)
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{root}: neither {list_file.name} nor a {split}/ folder with one folder per class")
    classes = read_label_list(root)
    paths, labels = [], []
    for label, name in enumerate(classes):
        for p in sorted((folder / name).glob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(p))
                labels.append(label)
    return paths, np.array(labels, np.int64)


class ImageListDataset:
    """A split as pre-processed uint8 frames [N, S, S, 3] and labels [N]; items are (frame, label)."""

    def __init__(self, root: str | Path, split: str, frame_cfg: dict[str, Any], train: bool = False):
        self.classes = read_label_list(root)
        self.paths, self.labels = read_list(root, split)
        if len(self.paths) == 0:
            raise ValueError(f"{root} split {split!r} has no images")
        self.frames = np.stack([preprocess_frame(read_rgb(p), frame_cfg) for p in self.paths])
        self.train = train

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.frames[i], int(self.labels[i])
