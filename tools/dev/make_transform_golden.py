"""Write tests/vision/golden/cn_clip_transform.npz: cn_clip's image_transform() output for sample images.

Run with the reference environment (torch + torchvision + cn_clip 1.6.0 + Pillow), never from the tests:

    .venv-ref/bin/python tools/dev/make_transform_golden.py [--photos DIR]

Images: the two photos scikit-learn ships (china.jpg, flower.jpg; found in DIR, default the sklearn
package of the repository's .venv) identified by sha256, and synthetic images whose encoded bytes are stored
in the file (JPEG, PNG, grayscale, RGBA, tall, tiny, large). For each image and size the file keeps,
compactly:
  levels/<name>/<size>   uint8 (3, S, S): the image after cn_clip's Resize + convert("RGB") (what
                         ToTensor scales; image_transform(img) == table[c][levels] exactly), stored
                         as differences along each row modulo 256 so that it compresses:
                         levels = np.cumsum(stored, axis=-1, dtype=np.uint8)
  crop/<name>/<size>     float32 (3, 16, 16): image_transform(img)[:, :16, :16], the real tensor
  mean/<name>/<size>     float64 (3,): per-channel mean of image_transform(img)
The generator checks that levels reproduce the full tensor through ToTensor + Normalize.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np
import PIL
import torch
from cn_clip.clip.utils import image_transform
from PIL import Image
from torchvision.transforms import Compose, Normalize, ToTensor

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "vision" / "golden" / "cn_clip_transform.npz"
DEFAULT_PHOTOS = ROOT / ".venv" / "lib" / "python3.11" / "site-packages" / "sklearn" / "datasets" / "images"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """Gradients, a hard-edged disc and a checkerboard corner: compresses well, still stresses resampling."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [255 * xx / max(width - 1, 1), 255 * yy / max(height - 1, 1), 128 + 100 * np.sin(xx / 40 + yy / (50 + seed))],
        axis=-1,
    )
    img[(yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (min(height, width) / 4) ** 2] = (250, 20, 30)
    corner = (yy < height / 3) & (xx > 2 * width / 3)
    img[corner & ((xx // 8 + yy // 8) % 2 == 0)] = (255, 255, 255)  # edges: aliasing if not anti-aliased
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_images() -> dict[str, bytes]:
    scene = _scene(480, 640, 1)
    rgba = np.dstack([_scene(300, 200, 2), np.full((300, 200), 255, np.uint8)])  # opaque: see docs
    return {
        "jpeg_480x640": _encode(scene, "JPEG", quality=90),
        "png_tall_1000x333": _encode(_scene(1000, 333, 3), "PNG"),  # Pillow 13 runs the vertical pass first
        "png_tiny_37x61": _encode(_scene(37, 61, 4), "PNG"),  # upscaling
        "png_gray_300x200": _encode(_scene(300, 200, 5)[:, :, 1], "PNG"),  # mode L
        "png_rgba_300x200": _encode(rgba, "PNG"),
        "jpeg_large_1500x2000": _encode(_scene(1500, 2000, 6), "JPEG", quality=85),
        "png_wide_1x700": _encode(_scene(1, 700, 7), "PNG"),
        "png_exact_224": _encode(_scene(224, 224, 8), "PNG"),  # no resize at 224
    }


def reference_outputs(data: bytes, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(levels uint8 (S, S, 3), tensor float32 (3, S, S)) from cn_clip's own transform."""
    tensor = image_transform(size)(Image.open(io.BytesIO(data))).numpy()
    resize_and_rgb = Compose(image_transform(size).transforms[:2])
    levels = np.asarray(resize_and_rgb(Image.open(io.BytesIO(data))))
    again = Compose([ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)])(levels).numpy()
    if not np.array_equal(again, tensor):
        raise AssertionError("levels do not reproduce cn_clip's tensor; the golden format would be lossy")
    return levels, tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder with china.jpg, flower.jpg")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    images = synthetic_images()
    photos = {p.stem: p.read_bytes() for p in sorted(args.photos.glob("*.jpg"))}
    if set(photos) != {"china", "flower"}:
        raise SystemExit(f"expected china.jpg and flower.jpg in {args.photos}, found {sorted(photos)}")
    arrays: dict[str, np.ndarray] = {
        "reference": np.array(f"cn_clip 1.6.0 image_transform, torch {torch.__version__}, Pillow {PIL.__version__}"),
        "mean_std": np.array([CLIP_MEAN, CLIP_STD]),
    }
    for name, data in images.items():
        arrays[f"bytes/{name}"] = np.frombuffer(data, dtype=np.uint8)
    for name, data in photos.items():
        arrays[f"sha256/{name}"] = np.array(hashlib.sha256(data).hexdigest())
    for name, data in {**photos, **images}.items():
        for size in (224, 336) if name == "png_tall_1000x333" else (224,):
            levels, tensor = reference_outputs(data, size)
            planar = levels.transpose(2, 0, 1)
            arrays[f"levels/{name}/{size}"] = np.diff(planar, axis=-1, prepend=np.uint8(0)).astype(np.uint8)
            arrays[f"crop/{name}/{size}"] = tensor[:, :16, :16]
            arrays[f"mean/{name}/{size}"] = tensor.astype(np.float64).mean(axis=(1, 2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    size = args.out.stat().st_size
    print(f"wrote {len(arrays)} arrays for {len(images) + len(photos)} images to {args.out} ({size} bytes)")


if __name__ == "__main__":
    main()
