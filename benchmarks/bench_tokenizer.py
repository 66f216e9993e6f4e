"""Side-by-side speed of cn_clip's tokenizer / image transform and paddle_mm's, on the same inputs.

Needs the reference environment for the cn_clip columns (torch, torchvision, cn_clip, Pillow) and
numpy + opencv-python-headless for paddle_mm:

    PYTHONPATH=. .venv-ref/bin/python benchmarks/bench_tokenizer.py

Without cn_clip it says so and prints paddle_mm's figures alone. Every figure is a median over
--repeats runs of the whole input set; the ratio is paddle_mm / cn_clip throughput (> 1: faster).
It also checks that both sides give the same ids and pixels on these inputs.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from paddle_mm.text.tokenizer import WordPieceTokenizer
from paddle_mm.vision.transforms import ImageTransform, load_image

try:
    import cn_clip.clip as cn_clip
    from PIL import Image
except ImportError as err:  # reported in the output, never faked
    cn_clip, Image, CN_CLIP_ERROR = None, None, f"{type(err).__name__}: {err}"
else:
    CN_CLIP_ERROR = ""

SUBJECTS = [
    "一只小猫",
    "两只小狗",
    "一位老人",
    "穿红裙子的女孩",
    "一辆自行车",
    "一群鸽子",
    "大熊猫",
    "一碗拉面",
    "高铁",
    "金毛犬",
]
ACTIONS = ["正在睡觉", "在草地上奔跑", "站在门口", "停在路边", "吃竹子", "在公园里打太极拳", "飞过天空", "冒着热气"]
PLACES = ["在北京的胡同里", "在海边", "在雨后的街道上", "在樱花树下", "在超市", "在山顶", "在夕阳下", ""]
ENGLISH = [
    "a photo of a cat",
    "two dogs playing frisbee",
    "sunset over the sea",
    "a red car parked outside",
    "people walking in Shanghai",
    "a bowl of noodles",
    "the Great Wall in winter",
    "an iPhone 15 Pro case",
]
EXTRAS = ["", "，高清", "。", "！", " 4K", "（摄影）", " #旅行", " 2024年"]


def make_texts(count: int, seed: int = 0) -> list[str]:
    """Caption-like strings: Chinese, English and mixed, with numbers and punctuation."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        kind = i % 4
        if kind < 2:
            text = rng.choice(SUBJECTS) + rng.choice(PLACES) + rng.choice(ACTIONS) + rng.choice(EXTRAS)
        elif kind == 2:
            text = f"{rng.choice(ENGLISH)} No.{rng.randint(1, 9999)}"
        else:
            text = f"{rng.choice(SUBJECTS)} {rng.choice(ENGLISH)}{rng.choice(EXTRAS)} {rng.randint(1, 99)}%"
        texts.append(text)
    return texts


def synthetic_jpeg(height: int, width: int, seed: int) -> bytes:
    """A photo-like JPEG (smooth shading plus sensor-like noise), encoded with OpenCV."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([127 + 100 * np.sin(xx / 97 + c) * np.cos(yy / 71 - c) for c in range(3)], axis=-1)
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def load_images(photo_dir: Path) -> dict[str, bytes]:
    images = {p.name: p.read_bytes() for p in sorted(photo_dir.glob("*.jpg"))}
    for h, w in [(375, 500), (768, 1024), (1080, 1920), (3000, 4000)]:
        images[f"synthetic {w}x{h}.jpg"] = synthetic_jpeg(h, w, seed=h)
    return images


def median_seconds(fn: Callable[[], object], repeats: int, calls: int = 1) -> float:
    """Median over `repeats` of the time per call of `calls` back-to-back calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def paired(ours: Callable[[], object], ref: Callable[[], object] | None, repeats: int) -> tuple[float, float | None]:
    """Per-call seconds of `ours` and `ref`, interleaved so that both see the same machine load."""
    start = time.perf_counter()
    ours()
    calls = max(1, int(0.2 / max(time.perf_counter() - start, 1e-6)))  # about 0.2 s per timed run
    our_times, ref_times = [], []
    for _ in range(repeats):
        our_times.append(median_seconds(ours, 1, calls))
        if ref is not None:
            ref_times.append(median_seconds(ref, 1, calls))
    return statistics.median(our_times), (statistics.median(ref_times) if ref_times else None)


def row(name: str, unit: str, ours: float, ref: float | None, count: int = 1) -> str:
    ours_rate = count / ours
    if ref is None:
        return f"| {name} | n/a | {ours_rate:,.0f} {unit}/s | n/a |"
    ref_rate = count / ref
    return f"| {name} | {ref_rate:,.0f} {unit}/s | {ours_rate:,.0f} {unit}/s | {ours_rate / ref_rate:.2f}x |"


def bench_text(texts: list[str], repeats: int) -> list[str]:
    def first_pass() -> float:  # a fresh tokenizer (empty word cache) on unseen data; vocab load not timed
        tokenizer = WordPieceTokenizer()
        start = time.perf_counter()
        tokenizer.encode_batch(texts)
        return time.perf_counter() - start

    warm = WordPieceTokenizer()
    warm.encode_batch(texts)
    ours_warm, ref = paired(
        partial(warm.encode_batch, texts), partial(cn_clip.tokenize, texts) if cn_clip else None, repeats
    )
    ours_cold = statistics.median(first_pass() for _ in range(repeats))
    n = len(texts)
    lines = [
        row(f"tokenize {n:,} texts, first pass (empty word cache)", "texts", ours_cold, ref, n),
        row(f"tokenize {n:,} texts, warm word cache", "texts", ours_warm, ref, n),
    ]
    if cn_clip:
        same = np.array_equal(cn_clip.tokenize(texts).numpy(), warm.encode_batch(texts))
        lines.append(f"\nids identical to cn_clip.clip.tokenize on all {n:,} texts: {same}")
    return lines


def bench_images(images: dict[str, bytes], repeats: int) -> list[str]:
    lines = []
    ours = ImageTransform(224)
    fast = ImageTransform(224, interpolation="cv2_bicubic")
    ref = cn_clip.image_transform(224) if cn_clip else None
    for name, data in images.items():
        array = load_image(data)
        label = f"{name} ({array.shape[1]}x{array.shape[0]})"
        ref_bytes = partial(_ref_from_bytes, ref, data) if ref else None
        ref_decoded = partial(ref, Image.fromarray(array)) if ref else None
        lines.append(row(f"{label}: bytes -> tensor", "img", *paired(partial(ours, data), ref_bytes, repeats)))
        lines.append(row(f"{label}: decoded -> tensor", "img", *paired(partial(ours, array), ref_decoded, repeats)))
        lines.append(
            row(f"{label}: bytes -> tensor, cv2_bicubic", "img", *paired(partial(fast, data), ref_bytes, repeats))
        )
    if ref:
        worst = max(float(np.abs(ours(d) - _ref_from_bytes(ref, d).numpy()).max()) for d in images.values())
        lines.append(f"\nmax |paddle_mm - cn_clip| over these images' normalized pixels (pil_bicubic): {worst:g}")
    return lines


def _ref_from_bytes(transform: Callable, data: bytes):
    return transform(Image.open(io.BytesIO(data)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=5)
    default_photos = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/sklearn/datasets/images"
    parser.add_argument("--photos", type=Path, default=default_photos, help="folder of extra .jpg photos")
    args = parser.parse_args()

    if cn_clip is None:
        print(f"cn_clip is NOT available ({CN_CLIP_ERROR}): only paddle_mm's figures are shown, no comparison.")
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"CPU cores: {os.cpu_count()}, thread env: {threads}\n")
    print("| workload | cn_clip | paddle_mm | ratio |\n|---|---|---|---|")
    for line in bench_text(make_texts(args.texts), args.repeats):
        print(line)
    print(
        "\n| workload | cn_clip (PIL + torchvision) | paddle_mm (pil_bicubic unless noted) | ratio |\n|---|---|---|---|"
    )
    for line in bench_images(load_images(args.photos), args.repeats):
        print(line)


if __name__ == "__main__":
    main()
