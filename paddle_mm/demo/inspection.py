"""The built-in inspection world: synthetic parts on textured surfaces, clean or with one defect.

Every part is a square surface (``metal``: brushed steel, ``fabric``: a weave, ``wood``: grain rings, ``pcb``:
green board with copper traces) carrying four fasteners / components near its corners. A defective part gets
one defect of a class at a severity 1..3:

- ``scratch``: a thin straight bright or dark line (length and contrast grow with severity)
- ``spot``: a filled blotch of a foreign colour
- ``crack``: a jagged dark random walk with a branch
- ``dent``: a round depression lit from the top left (a light and a dark half)
- ``missing``: one of the four components is absent (severity: how much of it is gone)

``burn`` (a brown scorch with a darker core) is never in the training classes: it is the held-out defect type
that the anomaly score must flag without having seen it. The camera then adds a lighting gradient, a small
rotation, blur and sensor noise, so no two clean parts are the same.

Same seed, same pixels: sample ``i`` of a split draws from ``SeedSequence([seed, split_id, i])``.

:func:`write_dataset` writes the PaddleClas / PaddleX classification layout: ``images/<class>/<name>.png``,
``train_list.txt`` / ``val_list.txt`` / ``test_list.txt`` (``images/<class>/<name>.png <label>``),
``label_list.txt`` (``<label> <class>``) and ``unseen_list.txt`` (clean test parts and ``burn`` parts, for the
anomaly AUROC; label ``-1`` marks the unseen defect).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("good", "scratch", "spot", "crack", "dent", "missing")
UNSEEN = "burn"
SURFACES = ("metal", "fabric", "wood", "pcb")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "unseen": 3}
DEFAULT_SIZES = {"train": 300, "val": 40, "test": 60, "unseen": 60}  # per class


@dataclass(frozen=True)
class Part:
    image: np.ndarray  # uint8 RGB [S, S, 3]
    label: str  # a class of CLASSES, or UNSEEN
    surface: str
    severity: int  # 0 for good parts


# ----------------------------------------------------------------------------- surfaces


def _surface(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """float32 RGB [S, S, 3] in 0..1."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "metal":
        streaks = cv2.blur(rng.normal(0, 1, (size, size)).astype(np.float32), (size // 3, 1))
        base = 0.55 + 0.08 * streaks + rng.uniform(-0.05, 0.05)
        rgb = np.stack([base, base * 1.01, base * 1.04], -1)
    elif kind == "fabric":
        f = rng.uniform(10, 14)
        weave = 0.5 + 0.5 * np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy)
        colour = np.array([0.25, 0.35, 0.6]) + rng.uniform(-0.05, 0.05, 3)
        rgb = colour * (0.75 + 0.3 * weave[..., None])
    elif kind == "wood":
        cx, cy = rng.uniform(-1.0, 2.0, 2)
        r = np.sqrt((xx - cx) ** 2 * 0.15 + (yy - cy) ** 2) * rng.uniform(14, 20)
        rings = 0.5 + 0.5 * np.sin(r + 0.6 * rng.normal(0, 1, (size, size)).astype(np.float32) * 0.3)
        rgb = np.array([0.62, 0.42, 0.22]) * (0.8 + 0.25 * rings[..., None])
    elif kind == "pcb":
        rgb = np.broadcast_to(np.array([0.08, 0.42, 0.2]), (size, size, 3)).copy()
        for _ in range(4):
            y = int(rng.uniform(0.2, 0.8) * size)
            x0, x1 = sorted(rng.integers(0, size, 2))
            rgb[y : y + max(1, size // 40), x0:x1] = (0.75, 0.55, 0.25)
    else:
        raise ValueError(f"surface {kind!r}: choose one of {SURFACES}")
    return np.clip(rgb + rng.normal(0, 0.015, (size, size, 3)), 0, 1).astype(np.float32)


def _component_boxes(size: int) -> list[tuple[int, int, int]]:
    """(centre y, centre x, half side) of the four components near the corners."""
    m, h = size // 5, max(2, size // 14)
    return [(m, m, h), (m, size - m, h), (size - m, m, h), (size - m, size - m, h)]


def _draw_components(img: np.ndarray, skip: int | None, keep_fraction: float) -> None:
    for k, (cy, cx, h) in enumerate(_component_boxes(img.shape[0])):
        if k == skip:
            if keep_fraction > 0:  # a partly broken-off component: only its top strip is left
                rows = max(1, int(2 * h * keep_fraction))
                img[cy - h : cy - h + rows, cx - h : cx + h] = (0.15, 0.15, 0.17)
            continue
        img[cy - h : cy + h, cx - h : cx + h] = (0.15, 0.15, 0.17)
        cv2.circle(img, (cx, cy), max(1, h // 2), (0.8, 0.8, 0.82), -1)


# ----------------------------------------------------------------------------- defects


def _centre(size: int, rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.uniform(0.3, 0.7) * size), int(rng.uniform(0.3, 0.7) * size)


def _scratch(img: np.ndarray, sev: int, rng: np.random.Generator) -> None:
    s = img.shape[0]
    cy, cx = _centre(s, rng)
    angle = rng.uniform(0, np.pi)
    half = s * (0.12 + 0.1 * sev)
    p0 = (int(cx - half * np.cos(angle)), int(cy - half * np.sin(angle)))
    p1 = (int(cx + half * np.cos(angle)), int(cy + half * np.sin(angle)))
    colour = (0.95,) * 3 if rng.random() < 0.5 else (0.05,) * 3
    overlay = img.copy()
    cv2.line(overlay, p0, p1, colour, 1, cv2.LINE_AA)
    alpha = 0.45 + 0.18 * sev
    img[:] = (1 - alpha) * img + alpha * overlay


def _spot(img: np.ndarray, sev: int, rng: np.random.Generator) -> None:
    s = img.shape[0]
    cy, cx = _centre(s, rng)
    axes = (int(s * (0.03 + 0.025 * sev) * rng.uniform(0.7, 1.3)), int(s * (0.03 + 0.025 * sev)))
    colour = tuple(float(c) for c in rng.choice([(0.9, 0.85, 0.2), (0.05, 0.05, 0.05), (0.8, 0.1, 0.1)]))
    cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)


def _crack(img: np.ndarray, sev: int, rng: np.random.Generator) -> None:
    s = img.shape[0]
    y, x = (float(v) for v in _centre(s, rng))
    heading = rng.uniform(0, 2 * np.pi)
    steps = 4 + 3 * sev
    points = [(int(x), int(y))]
    for k in range(steps):
        heading += rng.uniform(-0.9, 0.9)
        x, y = x + np.cos(heading) * s / 20, y + np.sin(heading) * s / 20
        points.append((int(x), int(y)))
        if k == steps // 2:  # a branch
            b = rng.uniform(0.8, 1.4) * rng.choice([-1, 1])
            end = (int(x + np.cos(heading + b) * s / 8), int(y + np.sin(heading + b) * s / 8))
            cv2.line(img, points[-1], end, (0.06, 0.05, 0.05), 1, cv2.LINE_AA)
    cv2.polylines(img, [np.array(points, np.int32)], False, (0.06, 0.05, 0.05), 1 + (sev == 3), cv2.LINE_AA)


def _dent(img: np.ndarray, sev: int, rng: np.random.Generator) -> None:
    s = img.shape[0]
    cy, cx = _centre(s, rng)
    r = s * (0.07 + 0.035 * sev)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
    inside = np.clip(1 - d, 0, 1)
    # lit from the top left: the far (bottom-right) wall of the depression is bright, the near wall dark
    shade = ((xx - cx) + (yy - cy)) / (r * 1.4)
    img += (0.22 + 0.08 * sev) * (inside * shade)[..., None]
    img *= (1 - 0.15 * inside)[..., None]


def _missing(img: np.ndarray, sev: int, rng: np.random.Generator) -> int:
    return int(rng.integers(0, 4))


def _burn(img: np.ndarray, sev: int, rng: np.random.Generator) -> None:
    s = img.shape[0]
    cy, cx = _centre(s, rng)
    r = s * (0.08 + 0.04 * sev)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), s / 24)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r + 0.6 * noise
    weight = np.clip(1.2 - d, 0, 1)[..., None]
    scorch = np.array([0.32, 0.18, 0.06], np.float32) * (1 - 0.6 * np.clip(0.6 - d, 0, 1)[..., None])
    img[:] = (1 - weight) * img + weight * scorch


_DEFECTS = {"scratch": _scratch, "spot": _spot, "crack": _crack, "dent": _dent, UNSEEN: _burn}


# ----------------------------------------------------------------------------- camera


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = img.shape[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    a = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.05, 0.25) * ((xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a))
    img = img * light[..., None] * rng.uniform(0.85, 1.15)
    rot = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(-6, 6)), 1.0)
    img = cv2.warpAffine(img, rot, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.9)))
    img = img + rng.normal(0, rng.uniform(0.005, 0.03), img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_part(label: str, rng: np.random.Generator, size: int = 64) -> Part:
    """One part of class ``label`` (a class of :data:`CLASSES` or :data:`UNSEEN`)."""
    if label not in CLASSES and label != UNSEEN:
        raise ValueError(f"defect class {label!r}: choose one of {CLASSES + (UNSEEN,)}")
    surface = SURFACES[int(rng.integers(0, len(SURFACES)))]
    severity = 0 if label == "good" else int(rng.integers(1, 4))
    img = _surface(surface, size, rng)
    skip, keep = None, 0.0
    if label == "missing":
        skip, keep = _missing(img, severity, rng), (0.0, 0.5, 0.25, 0.0)[severity]
    _draw_components(img, skip, keep)
    if label in _DEFECTS:
        _DEFECTS[label](img, severity, rng)
    return Part(_camera(np.clip(img, 0, 1), rng), label, surface, severity)


def make_split(split: str, per_class: int, seed: int = 0, size: int = 64) -> list[Part]:
    """``per_class`` parts of each class (the ``unseen`` split: clean parts and ``burn`` parts)."""
    labels = ("good", UNSEEN) if split == "unseen" else CLASSES
    parts = []
    for i in range(per_class * len(labels)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_IDS[split], i]))
        parts.append(make_part(labels[i % len(labels)], rng, size))
    return parts


LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt", "unseen": "unseen_list.txt"}


def write_dataset(
    out: str | Path, sizes: dict[str, int] | None = None, seed: int = 0, image_size: int = 64
) -> dict[str, int]:
    """Write the PaddleClas / PaddleX folder layout (module docstring); return the number of images per split."""
    out = Path(out)
    sizes = dict(DEFAULT_SIZES, **(sizes or {}))
    label_of = {c: i for i, c in enumerate(CLASSES)}
    for c in CLASSES + (UNSEEN,):
        (out / "images" / c).mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, n in sizes.items():
        lines = []
        for i, part in enumerate(make_split(split, n, seed, image_size)):
            rel = f"images/{part.label}/{split}_{i:05d}_{part.surface}_s{part.severity}.png"
            cv2.imwrite(str(out / rel), cv2.cvtColor(part.image, cv2.COLOR_RGB2BGR))
            lines.append(f"{rel} {label_of.get(part.label, -1)}")
        (out / LIST_FILES[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = len(lines)
    (out / "label_list.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(CLASSES)), encoding="utf-8")
    return counts
