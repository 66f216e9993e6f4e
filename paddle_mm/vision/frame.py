"""Camera-frame pre-processing for inspection, on OpenCV, chosen by config (``DataLoader.*.dataset.preprocess``).

Order: colour (``rgb``, or ``gray`` replicated to three channels so the network keeps its stem), denoise
(``none`` / ``gaussian`` / ``median`` / ``bilateral``), contrast (``none`` / ``clahe`` on the luminance /
``equalize``: global histogram equalisation of the luminance), resize to ``size`` (INTER_AREA when shrinking),
then ImageNet mean / std normalisation to float32 CHW. The same function runs in training, evaluation and the
exported predictor, so a deployment sees exactly what training saw.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_FRAME = {"size": 64, "color": "rgb", "denoise": "none", "contrast": "none", "clahe_clip": 2.0}
CHOICES = {"color": ("rgb", "gray"), "denoise": ("none", "gaussian", "median", "bilateral"),
           "contrast": ("none", "clahe", "equalize")}  # fmt: skip


def check_frame_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with defaults filled in; unknown keys or values raise one line naming the choices."""
    out = dict(DEFAULT_FRAME)
    for key, value in cfg.items():
        if key not in DEFAULT_FRAME:
            raise ValueError(f"preprocess key {key!r}: expected one of {sorted(DEFAULT_FRAME)}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"preprocess.{key}={value!r}: choose one of {CHOICES[key]}")
        out[key] = value
    return out


def _on_luma(rgb: np.ndarray, fn) -> np.ndarray:
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = fn(np.ascontiguousarray(ycc[..., 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def preprocess_frame(rgb: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> the uint8 RGB [size, size, 3] frame the network sees (before normalisation)."""
    img = rgb
    if cfg["color"] == "gray":
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    if cfg["denoise"] == "gaussian":
        img = cv2.GaussianBlur(img, (3, 3), 0)
    elif cfg["denoise"] == "median":
        img = cv2.medianBlur(img, 3)
    elif cfg["denoise"] == "bilateral":
        img = cv2.bilateralFilter(img, 5, 30, 5)
    if cfg["contrast"] == "clahe":
        clahe = cv2.createCLAHE(clipLimit=float(cfg["clahe_clip"]), tileGridSize=(4, 4))
        img = _on_luma(img, clahe.apply)
    elif cfg["contrast"] == "equalize":
        img = _on_luma(img, cv2.equalizeHist)
    size = int(cfg["size"])
    if img.shape[:2] != (size, size):
        shrink = img.shape[0] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img


def normalize(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [N, S, S, 3] -> float32 [N, 3, S, S] with ImageNet mean / std (PaddleClas' NormalizeImage)."""
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    return (frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std


def read_rgb(path: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an image file; a missing or undecodable file raises naming it."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path!r}: missing or not an image OpenCV decodes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
