"""A local image transform and a toy tokenizer for the data tests (helpers, not tests).

They are deliberately local (the brief for paddle_mm.data: readers take them as arguments and must not import
paddle_mm.vision or paddle_mm.text).
"""

from __future__ import annotations

import cv2
import numpy as np


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
