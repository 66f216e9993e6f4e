"""Image decoding and the Chinese-CLIP preprocessing transform, without PIL or torch.

Chinese-CLIP (cn_clip.clip.utils.image_transform) preprocesses an image with torchvision on PIL:
``Resize((S, S), BICUBIC)`` (square, aspect ratio not kept, no crop), ``convert("RGB")``,
``ToTensor()`` and ``Normalize(CLIP_MEAN, CLIP_STD)``. PIL's bicubic resize is not OpenCV's: it
widens the kernel by the scale factor when it shrinks (anti-aliasing), uses a = -0.5, and runs two
separable passes in 22-bit fixed point, rounding and clipping to uint8 between them (horizontal
first; since Pillow 13 vertical first when the height shrinks much more than the width).
``cv2.INTER_CUBIC`` does none of that and differs a lot on large photos.

Deliberate differences from cn_clip on unusual inputs: images are converted to RGB before resizing
(cn_clip resizes in the source mode), so palette (P) images are resized bicubically rather than
with PIL's forced NEAREST, semi-transparent RGBA is not resized in premultiplied alpha, and CMYK
or 16-bit files go through OpenCV's conversion.

``resize_bicubic_pil`` reproduces Pillow's src/libImaging/Resample.c bit for bit: the same fixed-point
coefficients, applied as banded float32 matrix products (BLAS), then every output whose float32 sum
lies too close to a rounding boundary is recomputed in exact integer arithmetic. The result equals
PIL's to the last level; tests/vision checks this on photos and random images.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "INTERPOLATIONS",
    "ImageDecodeError",
    "ImageTransform",
    "TrainAugment",
    "load_image",
    "resize_bicubic_pil",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("pil_bicubic", "pil12_bicubic", "cv2_bicubic")

_PRECISION_BITS = 22  # Pillow's PRECISION_BITS = 32 - 8 - 2
_GROUP_ELEMENTS = 1 << 15  # float32 outputs finished together: small enough to stay in cache


class ImageDecodeError(ValueError):
    """An image could not be read or decoded; the message names the source. Data loaders skip these."""


# -- decoding ----------------------------------------------------------------------------------------
def load_image(image: Any, source: str | None = None) -> np.ndarray:
    """Return `image` as a uint8 RGB array of shape (H, W, 3).

    Accepts a path (str or os.PathLike), encoded bytes (bytes, bytearray, memoryview), a numpy array
    (H x W gray, H x W x 1, H x W x 3 RGB, or H x W x 4 RGBA whose alpha is dropped like PIL's
    ``convert("RGB")``) or a PIL image. Encoded images are decoded by OpenCV without EXIF rotation
    (PIL does not rotate either); formats OpenCV cannot read (GIF) fall back to PIL when installed.
    Raises ImageDecodeError, naming `source` (default: the path or a description), for a missing,
    empty, truncated or corrupt image.
    """
    if isinstance(image, (str, os.PathLike)):
        return _decode(_read_file(image), source or os.fspath(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(image, source or f"<{len(image)} bytes>")
    if isinstance(image, np.ndarray):
        return _from_array(image, source or f"<array {image.shape} {image.dtype}>")
    if _is_pil_image(image):
        return _from_pil(image, source or f"<PIL image {getattr(image, 'filename', '') or image.size}>")
    raise TypeError(
        f"cannot load an image from {type(image).__name__}; pass a path, encoded bytes, "
        "a uint8 numpy array (H, W[, 1|3|4]) or a PIL.Image"
    )


def _read_file(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ImageDecodeError(f"cannot read image file {os.fspath(path)!r}: {err.strerror or err}") from err


def _decode(data: bytes | bytearray | memoryview, source: str) -> np.ndarray:
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageDecodeError(f"image {source} is empty (0 bytes)")
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        bgr = None
    if bgr is not None:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _decode_with_pil(data, source)


def _decode_with_pil(data: bytes | bytearray | memoryview, source: str) -> np.ndarray:
    """Second chance for formats OpenCV lacks (GIF); OpenCV already refused truncated/corrupt files."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImageDecodeError(f"image {source} is corrupt, truncated or in a format OpenCV cannot decode") from None
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:  # its text names a BytesIO address: a message that differs run to run
        raise ImageDecodeError(
            f"image {source} is corrupt or truncated: neither OpenCV nor PIL recognises its format"
        ) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageDecodeError(f"image {source} is corrupt or truncated: {err}") from err


def _from_pil(image: Any, source: str) -> np.ndarray:
    try:  # a lazily opened PIL image decodes here, and may turn out truncated
        return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageDecodeError(f"image {source} is corrupt or truncated: {err}") from err


def _from_array(array: np.ndarray, source: str) -> np.ndarray:
    if array.size == 0:
        raise ImageDecodeError(f"image {source} is empty")
    if array.dtype != np.uint8:
        raise ImageDecodeError(
            f"image {source} must be uint8; convert it first, e.g. np.clip(a, 0, 255).astype(np.uint8)"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[:, :, :3])
    raise ImageDecodeError(f"image {source} must have shape (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA")


def _is_pil_image(obj: Any) -> bool:
    # duck-typed so that PIL is never imported just to check
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert") and hasattr(obj, "mode")


# -- PIL-exact bicubic resampling --------------------------------------------------------------------
def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic_filter (a = -0.5), written in the same operation order."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@dataclass(frozen=True)
class _Pass:
    """One separable pass from `in_size` to `out_size` samples along the first axis."""

    in_size: int
    out_size: int
    first: np.ndarray  # (out,) first input index of each output's taps
    coeffs: np.ndarray  # (out, ksize) int64 fixed-point coefficients, zero past each output's taps
    blocks: tuple  # (o0, o1, i0, i1, float32 matrix (o1 - o0, i1 - i0)) covering the band
    tolerance: float  # float32 sums this close to a rounding boundary are recomputed exactly


@lru_cache(maxsize=128)
def _pass(in_size: int, out_size: int) -> _Pass:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bicubic filter, cached per size pair."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale  # bicubic support 2, widened when shrinking
    ksize = math.ceil(support) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - first
    taps = np.arange(ksize)
    weights = _bicubic(((taps + first[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    weights = np.where(taps < count[:, None], weights, 0.0)
    total = np.zeros(out_size)
    for t in range(ksize):  # sequential sum, the order Pillow adds in
        total = total + weights[:, t]
    weights = weights / np.where(total == 0.0, 1.0, total)[:, None]
    scaled = weights * (1 << _PRECISION_BITS)
    coeffs = np.trunc(np.where(weights < 0, scaled - 0.5, scaled + 0.5)).astype(np.int64)
    # Rows of outputs per matrix block: blocks skip most of the band's zeros, but each is one BLAS call.
    rows = 16 if scale <= 1.0 else max(4, min(16, int(24 / scale)))
    return _Pass(in_size, out_size, first, coeffs, *_band_blocks(first, count, coeffs, rows))


def _band_blocks(first: np.ndarray, count: np.ndarray, coeffs: np.ndarray, rows: int) -> tuple[tuple, float]:
    """Split the banded (out, in) coefficient matrix into dense row blocks of float32 weights."""
    blocks, longest = [], 0
    for o0 in range(0, len(first), rows):
        o1 = min(o0 + rows, len(first))
        i0, i1 = int(first[o0:o1].min()), int((first[o0:o1] + count[o0:o1]).max())
        matrix = np.zeros((o1 - o0, i1 - i0), dtype=np.float32)
        for o in range(o0, o1):
            n = int(count[o])
            # k / 2**22 is exact in float32: |k| < 2**23
            matrix[o - o0, first[o] - i0 : first[o] - i0 + n] = coeffs[o, :n] / float(1 << _PRECISION_BITS)
        blocks.append((o0, o1, i0, i1, matrix))
        longest = max(longest, i1 - i0)
    # A float32 dot product of n terms is within n * 2**-24 * sum|w_i * p_i| of the exact value
    # (p <= 255), whatever the summation order; one more rounding stores it. Doubled for margin.
    abs_sum = float(np.abs(coeffs).sum(axis=1).max()) / (1 << _PRECISION_BITS)
    tolerance = 2.0 * (longest + 1) * 2.0**-24 * 256.0 * max(abs_sum, 1.0)
    return tuple(blocks), tolerance


def _resample_axis0(x: np.ndarray, p: _Pass) -> np.ndarray:
    """Resample uint8 `x` (in, M) along its first axis to (out, M) exactly like Pillow's 8-bit pass."""
    out = np.empty((p.out_size, x.shape[1]), dtype=np.uint8)
    rows_per_group = max(1, _GROUP_ELEMENTS // x.shape[1])
    unsure, group = [], []
    for block in p.blocks:
        group.append(block)
        if block[1] - group[0][0] >= rows_per_group or block is p.blocks[-1]:
            unsure.append(_resample_group(x, p, group, out))
            group = []
    flat = np.concatenate(unsure)
    if flat.size:
        out.ravel()[flat] = _exact(x, p, *np.divmod(flat, x.shape[1]))
    return out


def _resample_group(x: np.ndarray, p: _Pass, blocks: list, out: np.ndarray) -> np.ndarray:
    """Fill the output rows of consecutive `blocks`; return the flat indices float32 cannot decide."""
    first_row, last_row = blocks[0][0], blocks[-1][1]
    y = np.empty((last_row - first_row, x.shape[1]), dtype=np.float32)  # ~ sum / 2**22
    for o0, o1, i0, i1, matrix in blocks:
        np.matmul(matrix, x[i0:i1].astype(np.float32), out=y[o0 - first_row : o1 - first_row])
    # Pillow returns floor(sum / 2**22 + 0.5) clipped to 0..255. OpenCV's saturating rounding (half to
    # even) agrees except on exact ties, which are among the outputs recomputed exactly afterwards.
    cv2.addWeighted(y, 1.0, y, 0.0, 0.0, dst=out[first_row:last_row], dtype=cv2.CV_8U)
    distance = np.rint(y)
    np.subtract(y, distance, out=distance)
    np.abs(distance, out=distance)
    near = np.flatnonzero(distance > 0.5 - p.tolerance)  # too close to a .5 boundary to trust float32
    return near + first_row * x.shape[1]


def _exact(x: np.ndarray, p: _Pass, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pillow's integer arithmetic for a few outputs: clip((sum k_i * p_i + 2**21) >> 22, 0, 255)."""
    taps = np.minimum(p.first[rows][:, None] + np.arange(p.coeffs.shape[1]), p.in_size - 1)
    pixels = x[taps, cols[:, None]].astype(np.int64)  # taps past the end have coefficient 0
    sums = (pixels * p.coeffs[rows]).sum(axis=1) + (1 << (_PRECISION_BITS - 1))
    return np.clip(sums >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def _resize_vertical(image: np.ndarray, height: int) -> np.ndarray:
    h, w, c = image.shape
    if h == height:
        return image
    return _resample_axis0(image.reshape(h, w * c), _pass(h, height)).reshape(height, w, c)


def _resize_horizontal(image: np.ndarray, width: int) -> np.ndarray:
    h, w, c = image.shape
    if w == width:
        return image
    columns = cv2.transpose(image).reshape(w, h * c)  # (W, H, C): the pass runs along the first axis
    resized = _resample_axis0(columns, _pass(w, width)).reshape(width, h, c)
    return cv2.transpose(resized).reshape(h, width, c)


def resize_bicubic_pil(image: np.ndarray, size: tuple[int, int], pillow13_order: bool = True) -> np.ndarray:
    """Resize uint8 (H, W) or (H, W, C) to `size` = (height, width) exactly like PIL's BICUBIC resize.

    Equals ``np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))`` for 8-bit
    images, anti-aliasing included. Pillow rounds to uint8 between its horizontal and vertical
    passes; since Pillow 13 it runs the vertical pass first when the height shrinks by more than twice
    as many pixels as the width. `pillow13_order=False` always runs the horizontal pass first, like
    Pillow 12 and older (the results differ by a few levels on such images only).
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (height, width), got {size}")
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or 0 in image.shape
        or image.ndim == 3
        and image.shape[2] > 4
    ):
        raise ValueError(f"expected a non-empty uint8 (H, W) or (H, W, C<=4) image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    hwc = np.ascontiguousarray(image.reshape(h, w, -1))
    if pillow13_order and h - height > 0 and h - height > (w - width) * 2:
        out = _resize_horizontal(_resize_vertical(hwc, height), width)
    else:
        out = _resize_vertical(_resize_horizontal(hwc, width), height)
    return out.reshape((height, width) + image.shape[2:])


# -- the Chinese-CLIP transform ----------------------------------------------------------------------
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """cv2.LUT table (1, 256, 3) float32 of ((v / 255) - mean) / std, in torchvision's float32 order."""
    levels = np.arange(256, dtype=np.float32)[:, None] / np.float32(255)
    table = (levels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(table.astype(np.float32)[None])


class ImageTransform:
    """Chinese-CLIP's image preprocessing: any image -> float32 (3, size, size), normalized.

    Args:
        size: output side S; the image is resized to S x S without keeping the aspect ratio or
            cropping, as cn_clip does (224, or 336 for ViT-L-14-336).
        mean, std: per-channel RGB normalization (CLIP's by default).
        interpolation: "pil_bicubic" (default) equals cn_clip's output with Pillow >= 13 exactly;
            "pil12_bicubic" equals it with Pillow <= 12 (horizontal pass always first); "cv2_bicubic"
            is OpenCV's INTER_CUBIC: faster but not anti-aliased, so it differs from cn_clip when
            shrinking large images.

    Calling it accepts whatever ``load_image`` accepts and raises ImageDecodeError on bad images.
    """

    def __init__(
        self,
        size: int = 224,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
        interpolation: str = "pil_bicubic",
    ):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {INTERPOLATIONS}")
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB) and std > 0, got mean={mean} std={std}")
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation
        self._table = _normalize_table(self.mean, self.std)
        self._planes = [np.ascontiguousarray(self._table[:, :, c]) for c in range(3)]  # (1, 256) per channel

    def resize(self, image: Any) -> np.ndarray:
        """Decoded and resized uint8 RGB image (size, size, 3), before normalization."""
        rgb = load_image(image)
        if self.interpolation == "cv2_bicubic":
            return cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_CUBIC)
        return resize_bicubic_pil(rgb, (self.size, self.size), pillow13_order=self.interpolation == "pil_bicubic")

    def __call__(self, image: Any) -> np.ndarray:
        """float32 (3, size, size) pixel values of `image`, normalized like cn_clip."""
        return self.normalize(self.resize(image).transpose(2, 0, 1))

    def normalize(self, planes: np.ndarray) -> np.ndarray:
        """uint8 RGB planes (..., 3, H, W) (:meth:`resize`'s output transposed) -> float32 (..., 3, H, W): one table
        lookup per value, so a batch of cached images normalizes to exactly what ``__call__`` gives one by one."""
        if planes.dtype != np.uint8 or planes.ndim < 3 or planes.shape[-3] != 3:
            raise ValueError(f"normalize takes uint8 (..., 3, H, W) RGB planes; got {planes.dtype} {planes.shape}")
        out = np.empty(planes.shape, dtype=np.float32)
        w = planes.shape[-1]
        for c in range(3):  # cv2.LUT on each plane's rows (2-D images): no per-value Python, no transpose copy
            plane = np.ascontiguousarray(planes[..., c, :, :])
            out[..., c, :, :] = cv2.LUT(plane.reshape(-1, w), self._planes[c]).reshape(plane.shape)
        return out

    def __repr__(self) -> str:
        return (
            f"ImageTransform(size={self.size}, mean={self.mean}, std={self.std}, interpolation={self.interpolation!r})"
        )


def split_readable(paths: list[str]) -> tuple[list[str], list[str]]:
    """(readable image paths, one line per unreadable one): tools skip and count bad inputs, as training does."""
    kept, skipped = [], []
    for path in paths:
        try:
            load_image(path)
            kept.append(path)
        except ImageDecodeError as err:
            skipped.append(str(err))
    return kept, skipped


# --- Training augmentation: Chinese-CLIP's --use-augment -------------------------------------------------------
#
# cn_clip builds it with timm's create_transform(is_training=True, scale=(0.9, 1.0), auto_augment="original",
# interpolation="bicubic", color_jitter=None): RandomResizedCrop (area 90-100 %, aspect ratio 3/4..4/3, bicubic),
# horizontal flip with probability 0.5, AutoAugment's ImageNet policy, then the usual normalization. Here the
# same steps run on uint8 numpy / OpenCV. What is equal and what cannot be (tests/vision/test_augment.py):
# - the crop box distribution, the flip, the policy table, the probabilities and the magnitudes are the same;
#   the resize after the crop is the exact PIL bicubic (resize_bicubic_pil);
# - the point operations (Solarize, SolarizeAdd, Posterize, Invert, AutoContrast, Equalize, Color) equal
#   PIL's ImageOps / ImageEnhance to the last level;
# - the geometric operations (Rotate, ShearX/Y, TranslateX/YRel) use cv2.warpAffine with bicubic
#   interpolation: PIL's affine resampler uses other filter taps and edge handling, so pixels differ (by
#   small amounts away from edges), not the geometry;
# - the random numbers come from numpy, not Python's `random` / torch, so the same seed does not give the
#   same draws as cn_clip: only the distribution of augmentations is the same.

# AutoAugment's ImageNet policy (Cubuk et al., "AutoAugment", 2019, appendix; timm's "original"): 25 sub-policies of
# two (operation, probability, magnitude 0..10) steps; one sub-policy is drawn per image.
AUTOAUGMENT_ORIGINAL = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateYRel", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table.astype(np.uint8)[image]


def solarize(image: np.ndarray, threshold: int) -> np.ndarray:
    """PIL ImageOps.solarize: levels >= threshold are inverted."""
    i = np.arange(256)
    return _lut(image, np.where(i < threshold, i, 255 - i))


def solarize_add(image: np.ndarray, add: int, threshold: int = 128) -> np.ndarray:
    i = np.arange(256)
    return _lut(image, np.where(i < threshold, np.minimum(i + add, 255), i))


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """PIL ImageOps.posterize: keep the ``bits`` most significant bits."""
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF) if bits < 8 else image


def autocontrast(image: np.ndarray) -> np.ndarray:
    """PIL ImageOps.autocontrast (cutoff 0), per channel: stretch [min, max] to [0, 255]."""
    out = image.copy()
    for c in range(image.shape[2]):
        lo, hi = int(image[..., c].min()), int(image[..., c].max())
        if hi <= lo:
            continue
        scale = 255.0 / (hi - lo)
        table = np.clip((np.arange(256) * scale + (-lo * scale)).astype(np.int64), 0, 255)
        out[..., c] = _lut(image[..., c], table)
    return out


def equalize(image: np.ndarray) -> np.ndarray:
    """PIL ImageOps.equalize, per channel (its histogram-step rule, not OpenCV's equalizeHist)."""
    out = image.copy()
    for c in range(image.shape[2]):
        hist = np.bincount(image[..., c].ravel(), minlength=256)
        used = hist[hist > 0]
        step = (int(hist.sum()) - int(used[-1])) // 255
        if step == 0:
            continue
        table = (step // 2 + np.concatenate([[0], np.cumsum(hist)[:-1]])) // step
        out[..., c] = _lut(image[..., c], np.clip(table, 0, 255))
    return out


def enhance_color(image: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance.Color: blend with the image's grey version (ITU-R 601-2 luma, PIL's integer rounding)."""
    rgb = image.astype(np.int64)
    grey = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16  # (H, W)
    grey = grey[..., None].astype(np.float32)
    blended = grey + np.float32(factor) * (image.astype(np.float32) - grey)
    return np.clip(blended, 0, 255).astype(np.uint8)  # PIL truncates toward zero, then clips


def _affine(image: np.ndarray, matrix: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """Output pixel (x, y) samples the input at ``matrix @ (x, y, 1)`` (PIL's AFFINE data), bicubic."""
    h, w = image.shape[:2]
    return cv2.warpAffine(
        image,
        matrix.astype(np.float64),
        (w, h),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )


def _rotate(image: np.ndarray, degrees: float, fill: tuple[int, int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)  # counter-clockwise, as PIL
    return cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )


class TrainAugment:
    """Chinese-CLIP's ``--use-augment`` training transform: any image -> float32 (3, size, size), normalized.

    Steps: RandomResizedCrop (area share ``scale``, aspect ratio ``ratio``; the crop resized with the exact PIL
    bicubic), horizontal flip with probability ``hflip``, AutoAugment's ImageNet policy (``auto_augment``
    "original", or "none"), normalization as :class:`ImageTransform`. See the block comment above for what
    equals cn_clip and what cannot.

    Caution: a flip turns "left" into "right"; set ``hflip: 0`` when captions name positions.

    Draws are seeded from (seed, epoch, data-loader worker): a run repeats with the same seed; call
    :meth:`set_epoch` before each epoch (the train loader's sampler does).
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.9, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        auto_augment: str = "original",
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
        seed: int = 0,
    ):
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"crop scale {scale} / ratio {ratio}: need 0 < min <= max (scale <= 1)")
        if auto_augment not in ("original", "none"):
            raise ValueError(f"auto_augment {auto_augment!r}: choose 'original' (cn_clip's) or 'none'")
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip {hflip} is a probability: give a value in [0, 1]")
        self.normalize = ImageTransform(size, mean, std)
        self.size, self.scale, self.ratio, self.hflip = int(size), tuple(scale), tuple(ratio), float(hflip)
        self.auto_augment = auto_augment
        self.fill = tuple(int(round(m * 255)) for m in mean)  # timm fills uncovered pixels with the mean colour
        self.seed, self.epoch = int(seed), 0
        self._rng: np.random.Generator | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._rng = int(epoch), None

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            worker = 0
            try:
                import paddle.io

                info = paddle.io.get_worker_info()
                worker = 0 if info is None else int(info.id) + 1
            except ImportError:
                pass
            self._rng = np.random.default_rng([self.seed, self.epoch, worker])
        return self._rng

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, h, w) as torchvision / timm RandomResizedCrop draw it: 10 tries, then a centre crop."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def apply_op(self, image: np.ndarray, name: str, level: int, rng: np.random.Generator) -> np.ndarray:
        """One AutoAugment operation at magnitude ``level`` (0..10), timm's level-to-argument rules."""
        frac = level / 10.0
        sign = -1.0 if rng.random() < 0.5 else 1.0  # drawn for every op, used by the geometric ones
        h, w = image.shape[:2]
        if name == "Rotate":
            return _rotate(image, sign * frac * 30.0, self.fill)
        if name in ("ShearX", "ShearY"):
            s = sign * frac * 0.3
            m = np.array([[1, s, 0], [0, 1, 0]]) if name == "ShearX" else np.array([[1, 0, 0], [s, 1, 0]])
            return _affine(image, m, self.fill)
        if name in ("TranslateXRel", "TranslateYRel"):
            t = sign * frac * 0.45
            m = (
                np.array([[1, 0, t * w], [0, 1, 0]])
                if name == "TranslateXRel"
                else np.array([[1, 0, 0], [0, 1, t * h]])
            )
            return _affine(image, m, self.fill)
        if name == "Color":
            return enhance_color(image, frac * 1.8 + 0.1)
        if name == "Solarize":
            return solarize(image, int(frac * 256))
        if name == "SolarizeAdd":
            return solarize_add(image, int(frac * 110))
        if name == "Posterize":
            return posterize(image, int(frac * 4) + 4)  # the paper's 4..8 bits
        if name == "Equalize":
            return equalize(image)
        if name == "AutoContrast":
            return autocontrast(image)
        if name == "Invert":
            return 255 - image
        raise KeyError(f"unknown AutoAugment operation {name!r}")

    def augment(self, image: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        """The augmented uint8 RGB image (size, size, 3), before normalization."""
        rng = self._generator() if rng is None else rng
        rgb = load_image(image)
        top, left, h, w = self.crop_box(rgb.shape[0], rgb.shape[1], rng)
        out = resize_bicubic_pil(np.ascontiguousarray(rgb[top : top + h, left : left + w]), (self.size, self.size))
        if rng.random() < self.hflip:
            out = np.ascontiguousarray(out[:, ::-1])
        if self.auto_augment == "original":
            for name, prob, level in AUTOAUGMENT_ORIGINAL[int(rng.integers(len(AUTOAUGMENT_ORIGINAL)))]:
                if rng.random() < prob:
                    out = self.apply_op(out, name, level, rng)
        return out

    def __call__(self, image: Any) -> np.ndarray:
        normalized = cv2.LUT(self.augment(image), self.normalize._table)  # (S, S, 3) float32
        return np.ascontiguousarray(normalized.transpose(2, 0, 1))

    def __repr__(self) -> str:
        return (
            f"TrainAugment(size={self.size}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}, "
            f"auto_augment={self.auto_augment!r})"
        )
