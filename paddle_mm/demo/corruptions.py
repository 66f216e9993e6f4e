"""Corrupted copies of demo images and questions, for robustness benchmarks (benchmarks/benchmark_tasks.py).

- image corruptions in the ImageNet-C style at severities 1-5 (:data:`IMAGE_CORRUPTIONS`): gaussian noise,
  gaussian blur, occlusion, brightness, JPEG;
- Chinese text perturbations at severities 1-5 (per-character rate 0.1 ... 0.5, :data:`TEXT_PERTURBATIONS`):
  character deletion, swap of adjacent characters, near-homophone / synonym substitution.

Seeded: the same arguments give the same bytes. Needs OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)
IMAGE_CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "occlusion", "brightness", "jpeg")
TEXT_PERTURBATIONS = ("char_delete", "char_swap", "homophone")
TEXT_RATES = (0.1, 0.2, 0.3, 0.4, 0.5)
# Near-homophones (same or close pinyin) and synonyms for the characters of the question templates.
HOMOPHONES = {
    "蓝": "兰", "红": "洪", "绿": "律", "黄": "皇", "紫": "子", "橙": "成", "黑": "嘿", "白": "百",
    "圆": "园", "方": "芳", "角": "脚", "星": "心", "形": "型", "菱": "凌", "色": "瑟", "几": "机",
    "个": "各", "有": "友", "图": "涂", "中": "钟", "左": "佐", "右": "又", "上": "尚", "下": "夏",
    "间": "坚", "位": "为", "置": "至", "哪": "那", "里": "理", "状": "壮", "颜": "言", "么": "嘛",
}  # fmt: skip


# ----------------------------------------------------------------------------- corruptions


def corrupt_images(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB [N, S, S, 3] -> corrupted copy. Parameters follow ImageNet-C (Hendrycks & Dietterich, 2019);
    blur radii and occluder sizes are scaled to the image side."""
    rng = np.random.default_rng([seed, severity, IMAGE_CORRUPTIONS.index(kind)])
    x = images.astype(np.float32) / 255.0
    S = images.shape[1]
    s = severity - 1
    if kind == "gaussian_noise":
        x = x + rng.normal(0.0, (0.08, 0.12, 0.18, 0.26, 0.38)[s], x.shape)
    elif kind == "gaussian_blur":
        sigma = (0.5, 0.8, 1.1, 1.5, 2.0)[s] * S / 64  # ImageNet-C's 1-6 px at 224 px, for 64-px shapes
        k = 2 * int(np.ceil(3 * sigma)) + 1
        x = np.stack([cv2.GaussianBlur(im, (k, k), sigma) for im in x])
    elif kind == "occlusion":  # grey squares covering about this share of the image, at random places
        share = (0.05, 0.1, 0.2, 0.3, 0.4)[s]
        side = max(1, int(round(S * np.sqrt(share / 2))))
        x = x.copy()
        for im in x:
            for _ in range(2):
                r, c = rng.integers(0, S - side + 1, size=2)
                im[r : r + side, c : c + side] = 0.5
    elif kind == "brightness":
        hsv = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2HSV) for im in x])
        hsv[..., 2] = np.clip(hsv[..., 2] + (0.1, 0.2, 0.3, 0.4, 0.5)[s], 0, 1)
        x = np.stack([cv2.cvtColor(im, cv2.COLOR_HSV2RGB) for im in hsv])
    elif kind == "jpeg":
        q = (25, 18, 15, 10, 7)[s]
        out = []
        for im in images:
            ok, buf = cv2.imencode(".jpg", im[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        return np.stack(out)
    else:
        raise ValueError(f"unknown image corruption {kind!r}; expected one of {IMAGE_CORRUPTIONS}")
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def perturb_text(text: str, kind: str, severity: int, rng: np.random.Generator) -> str:
    """One question perturbed: each character (each adjacent pair for swaps) is hit with rate TEXT_RATES[s-1];
    the final question mark is kept."""
    p = TEXT_RATES[severity - 1]
    body, end = (text[:-1], text[-1]) if text.endswith("？") else (text, "")
    chars = list(body)
    if kind == "char_delete":
        chars = [c for c in chars if rng.random() >= p]
    elif kind == "char_swap":
        i = 0
        while i < len(chars) - 1:
            if rng.random() < p:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
                i += 1
            i += 1
    elif kind == "homophone":
        chars = [HOMOPHONES[c] if c in HOMOPHONES and rng.random() < p else c for c in chars]
    else:
        raise ValueError(f"unknown text perturbation {kind!r}; expected one of {TEXT_PERTURBATIONS}")
    return "".join(chars) + end


# ----------------------------------------------------------------------------- evaluation
