"""Vision side of paddle_mm: image decoding and the Chinese-CLIP transform (numpy + OpenCV, no paddle)."""

from paddle_mm.vision.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    ImageDecodeError,
    ImageTransform,
    load_image,
    resize_bicubic_pil,
)

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageDecodeError", "ImageTransform", "load_image", "resize_bicubic_pil"]
