"""paddle_mm.vision.transforms: decoding, PIL-exact bicubic resize, cn_clip transform parity (golden file)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from paddle_mm.vision.transforms import ImageDecodeError, ImageTransform, load_image, resize_bicubic_pil

GOLDEN = Path(__file__).parent / "golden" / "cn_clip_transform.npz"
REPO = Path(__file__).resolve().parents[2]
Image = pytest.importorskip("PIL.Image")  # Pillow comes with paddle; only these comparisons need it
PILLOW_MAJOR = int(Image.__version__.split(".")[0])


def _sklearn_photo(name: str) -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "images" / f"{name}.jpg"
    return path if path.exists() else None


def _golden_cases() -> list[tuple[str, int]]:
    with np.load(GOLDEN) as golden:
        return sorted((k.split("/")[1], int(k.split("/")[2])) for k in golden.files if k.startswith("levels/"))


def _golden_source(golden: dict, name: str) -> bytes | Path:
    if f"bytes/{name}" in golden:
        return golden[f"bytes/{name}"].tobytes()
    path = _sklearn_photo(name)
    if path is None:
        pytest.skip(f"{name}.jpg ships with scikit-learn, which is not installed")
    if hashlib.sha256(path.read_bytes()).hexdigest() != str(golden[f"sha256/{name}"]):
        pytest.skip(f"{path} is not the file the golden was made from")
    return path


@pytest.fixture(scope="module")
def golden() -> dict:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize(("name", "size"), _golden_cases())
def test_cn_clip_transform_parity(golden, name, size):
    """Exact parity: same uint8 levels after resize, bit-identical float tensors."""
    g = golden
    source = _golden_source(g, name)
    want_levels = np.cumsum(g[f"levels/{name}/{size}"], axis=-1, dtype=np.uint8)  # (3, S, S)
    transform = ImageTransform(size)
    levels = transform.resize(source).transpose(2, 0, 1)
    assert levels.shape == want_levels.shape
    diff = np.abs(levels.astype(int) - want_levels).max()
    assert diff == 0, f"{name}@{size}: max level difference {diff} vs cn_clip"
    pixels = transform(source)
    assert pixels.shape == (3, size, size) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels[:, :16, :16], g[f"crop/{name}/{size}"])
    np.testing.assert_allclose(pixels.astype(np.float64).mean(axis=(1, 2)), g[f"mean/{name}/{size}"], atol=1e-7)


def test_cv2_bicubic_is_the_fast_approximation(golden):
    g = golden
    source = g["bytes/jpeg_large_1500x2000"].tobytes()
    want = np.cumsum(g["levels/jpeg_large_1500x2000/224"], axis=-1, dtype=np.uint8).transpose(1, 2, 0)
    fast = ImageTransform(224, interpolation="cv2_bicubic").resize(source)
    # not anti-aliased: far from cn_clip when shrinking ~7x, which is why it is not the default
    assert np.abs(fast.astype(int) - want).mean() > 1.0


# -- resize_bicubic_pil against Pillow itself ---------------------------------------------------------
def _pil_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))


SHAPES = [(1, 1), (1, 9), (9, 1), (3, 5), (37, 61), (224, 224), (240, 320), (333, 1000), (1000, 333), (1, 700)]
SIZES = [(224, 224), (336, 336), (7, 5), (1, 1), (64, 480)]


@pytest.mark.skipif(PILLOW_MAJOR < 13, reason="default pass order is Pillow 13's")
@pytest.mark.parametrize("shape", SHAPES)
def test_resize_equals_pillow_on_random_images(shape):
    rng = np.random.default_rng(sum(shape))
    noise = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    binary = (rng.integers(0, 2, (*shape, 3)) * 255).astype(np.uint8)  # extreme overshoot and clipping
    for image in (noise, binary):
        for size in SIZES:
            np.testing.assert_array_equal(resize_bicubic_pil(image, size), _pil_resize(image, size), err_msg=str(size))


def test_resize_gray_and_rgba_equal_pillow():
    rng = np.random.default_rng(7)
    gray = rng.integers(0, 256, (120, 90), dtype=np.uint8)
    np.testing.assert_array_equal(resize_bicubic_pil(gray, (50, 70)), _pil_resize(gray, (50, 70)))
    four = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    four[..., 3] = 255  # Pillow premultiplies RGBA; with opaque alpha that changes nothing
    np.testing.assert_array_equal(resize_bicubic_pil(four, (30, 100)), _pil_resize(four, (30, 100)))


def test_pillow12_order_is_horizontal_then_vertical():
    """Pillow <= 12 always ran the horizontal pass first: two single-axis PIL resizes do exactly that."""
    rng = np.random.default_rng(3)
    tall = rng.integers(0, 256, (900, 300, 3), dtype=np.uint8)
    two_pass = _pil_resize(_pil_resize(tall, (900, 224)), (224, 224))
    np.testing.assert_array_equal(resize_bicubic_pil(tall, (224, 224), pillow13_order=False), two_pass)
    assert not np.array_equal(resize_bicubic_pil(tall, (224, 224)), two_pass)


def test_resize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="size must be positive"):
        resize_bicubic_pil(np.zeros((4, 4, 3), np.uint8), (0, 4))
    with pytest.raises(ValueError, match="float32"):
        resize_bicubic_pil(np.zeros((4, 4, 3), np.float32), (2, 2))


# -- load_image -----------------------------------------------------------------------------------------
def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def rgb() -> np.ndarray:
    image = np.zeros((6, 8, 3), np.uint8)
    image[0, 0] = (255, 0, 0)  # red top-left: catches BGR/RGB swaps
    image[5, 7] = (0, 0, 255)
    image[2:4, 2:6] = (10, 200, 90)
    return image


def test_load_image_from_path_bytes_array_and_pil(rgb, tmp_path):
    path = tmp_path / "img.png"
    path.write_bytes(_png(rgb))
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes()), rgb, Image.fromarray(rgb)):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
        np.testing.assert_array_equal(out, rgb, err_msg=type(source).__name__)


def test_load_image_gray_and_alpha_like_pil_convert_rgb(rgb):
    gray = rgb[:, :, 1].copy()
    rgba = np.dstack([rgb, np.arange(48, dtype=np.uint8).reshape(6, 8)])
    for image in (gray, gray[:, :, None], rgba):
        expected = np.asarray(Image.fromarray(image.squeeze()).convert("RGB"))
        np.testing.assert_array_equal(load_image(image), expected)  # array input
        np.testing.assert_array_equal(load_image(_png(image.squeeze())), expected)  # decoded input
        np.testing.assert_array_equal(load_image(Image.fromarray(image.squeeze())), expected)  # PIL input


def test_jpeg_decode_matches_pil_and_ignores_exif_rotation():
    yy, xx = np.mgrid[0:64, 0:96]
    image = np.stack([xx * 2, yy * 3, (xx + yy) % 256], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": PIL (and so cn_clip) does not apply it
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90, exif=exif)
    out = load_image(buffer.getvalue())
    assert out.shape == (64, 96, 3)
    np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))


def test_gif_falls_back_to_pil(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "GIF")
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(load_image(buffer.getvalue()), expected)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_images_raise(fmt, keep):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, fmt)
    data = buffer.getvalue()
    with pytest.raises(ImageDecodeError, match="sample-42"):
        load_image(data[: int(len(data) * keep)], source="sample-42")


def test_truncated_pil_image_raises_with_its_file_name(tmp_path):
    path = tmp_path / "cut.png"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[:2000])
    with Image.open(path) as lazy, pytest.raises(ImageDecodeError, match="cut.png"):
        load_image(lazy)  # PIL decodes lazily: the error appears in load_image


def test_jpeg_missing_only_its_end_marker_raises():
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(buffer, "JPEG")
    with pytest.raises(ImageDecodeError):
        load_image(buffer.getvalue()[:-2])


def test_bad_sources_raise_with_their_name(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageDecodeError, match="nope.jpg"):
        load_image(missing)
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageDecodeError, match="corrupt"):
        load_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ImageDecodeError, match=str(tmp_path.name)):
        load_image(tmp_path)  # a directory
    with pytest.raises(ImageDecodeError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageDecodeError, match=r"\(H, W, 4\)"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(TypeError, match="int"):
        load_image(42)
    assert issubclass(ImageDecodeError, ValueError)  # the data pipeline catches ValueError


def test_transform_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bilinear"):
        ImageTransform(interpolation="bilinear")
    with pytest.raises(ValueError, match="size"):
        ImageTransform(size=0)
    with pytest.raises(ValueError, match="mean"):
        ImageTransform(mean=(0.5, 0.5))


def test_transform_normalization_values(rgb):
    out = ImageTransform(size=6, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(np.full((6, 6, 3), 255, np.uint8))
    np.testing.assert_array_equal(out, np.ones((3, 6, 6), np.float32))
    fast = ImageTransform(size=32, interpolation="cv2_bicubic")(rgb)
    assert fast.shape == (3, 32, 32) and fast.dtype == np.float32


def test_import_does_not_load_paddle_torch_or_pil():
    code = (
        "import sys; import paddle_mm.vision.transforms; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'torch', 'PIL', 'cn_clip')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_common_formats_decode_without_pil(rgb, monkeypatch):
    """Guard the fast path: JPEG/PNG/WebP/BMP come from OpenCV, never from the PIL fallback."""
    from paddle_mm.vision import transforms

    def no_pil(data, source):
        raise AssertionError(f"PIL fallback used for {source}")

    monkeypatch.setattr(transforms, "_decode_with_pil", no_pil)
    for ext in (".png", ".bmp", ".webp", ".jpg"):
        ok, encoded = cv2.imencode(ext, rgb[:, :, ::-1], [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else [])
        assert ok
        out = load_image(encoded.tobytes())
        assert out.shape == rgb.shape
        if ext != ".jpg":  # lossless ones come back exactly, in RGB order
            np.testing.assert_array_equal(out, rgb)
