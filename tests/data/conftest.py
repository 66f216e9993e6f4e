"""Shared fixtures for tests/data: small generated datasets, a local image transform and a toy tokenizer.

The transform and tokenizer are deliberately local (the brief for paddle_mm.data: readers take them as
arguments and must not import paddle_mm.vision or paddle_mm.text).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from paddle_mm.demo.shapes import make_dataset

SMALL_SIZES = {"train": 240, "valid": 60, "test": 0}
SEED = 3


def local_transform(data: bytes, size: int = 32) -> np.ndarray:
    """bytes -> float32 CHW RGB in [0, 1]; ValueError for anything OpenCV cannot decode."""
    if not data:
        raise ValueError("empty image data")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode {len(data)} bytes as an image")
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return (img[:, :, ::-1].transpose(2, 0, 1) / 255.0).astype(np.float32)


def char_tokenizer(texts: list[str], length: int = 16) -> np.ndarray:
    """A toy tokenizer: [1] + one id per character + [2], zero-padded to ``length``."""
    out = np.zeros((len(texts), length), dtype=np.int64)
    for row, text in enumerate(texts):
        ids = [1] + [ord(ch) % 997 + 3 for ch in text[: length - 2]] + [2]
        out[row, : len(ids)] = ids
    return out


@pytest.fixture(scope="session")
def shapes_tsv(tmp_path_factory):
    """A small synthetic dataset in Chinese-CLIP TSV format: (root, per-split stats)."""
    root = tmp_path_factory.mktemp("shapes_tsv")
    return root, make_dataset(root, SMALL_SIZES, "tsv", seed=SEED)


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    """The same dataset as ``shapes_tsv`` in the folder format."""
    root = tmp_path_factory.mktemp("shapes_folder")
    return root, make_dataset(root, SMALL_SIZES, "folder", seed=SEED)
