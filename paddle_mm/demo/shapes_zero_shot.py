"""The built-in shapes world as a zero-shot classification set in Chinese-CLIP's folder format.

Each class is one colour + shape, named as the captions of :mod:`paddle_mm.demo.shapes` name it
(「红色的圆形」, 「蓝色的三角形」...); each image holds exactly one object of its class, of random size and
cell, drawn on a random background by the same renderer. A model trained on the shapes captions can
therefore be scored zero-shot with prompts like 「{}的照片」 without ever having seen these images.

Same seed, same bytes (numpy Generator + OpenCV, as the caption dataset).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.writers import atomic_open
from .shapes import CELLS, COLOURS, SHAPES, SIZES, Obj, Scene, encode_png, random_style, render_scene


def shape_classes(colours: Sequence[str] | None = None, shapes: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(colour, shape) pairs in class order: colours outer, shapes inner, each in the world's order."""
    colours = list(COLOURS) if colours is None else list(colours)
    shapes = list(SHAPES) if shapes is None else list(shapes)
    bad = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
    if bad:
        raise ValueError(f"unknown colour/shape {bad}; colours: {list(COLOURS)}, shapes: {list(SHAPES)}")
    if not colours or not shapes:
        raise ValueError("need at least one colour and one shape")
    return [(c, s) for c in colours for s in shapes]


def class_name(colour: str, shape: str) -> str:
    """The Chinese class name, e.g. ("red", "circle") -> "红色的圆形"."""
    return f"{COLOURS[colour][0]}的{SHAPES[shape]}"


def make_shapes_zero_shot(
    out: str | Path,
    per_class: int = 20,
    seed: int = 0,
    image_size: int = 64,
    colours: Sequence[str] | None = None,
    shapes: Sequence[str] | None = None,
    split: str = "test",
) -> list[str]:
    """Write ``out/label_cn.txt`` and ``out/<split>/<000...>/<n>.png``; returns the class names in order.

    ``per_class`` images per class; ``colours`` / ``shapes`` restrict the classes (English keys of
    ``paddle_mm.demo.shapes.COLOURS`` / ``SHAPES``; default: all 8 x 6 = 48 classes).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    classes = shape_classes(colours, shapes)
    out = Path(out)
    rng = np.random.default_rng([seed, 0x2E50])  # its own stream: never the caption dataset's
    names = [class_name(c, s) for c, s in classes]
    width = max(3, len(str(len(classes) - 1)))  # 000, 001, ... so that sorted order is class order
    for k, (colour, shape) in enumerate(classes):
        folder = out / split / f"{k:0{width}d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            obj = Obj(CELLS[int(rng.integers(len(CELLS)))], colour, shape, list(SIZES)[int(rng.integers(len(SIZES)))])
            scene = Scene(k * per_class + n, k, "base", (obj,), random_style(rng))
            with atomic_open(folder / f"{n:05d}.png", "wb") as f:
                f.write(encode_png(render_scene(scene, image_size)))
    with atomic_open(out / "label_cn.txt") as f:
        f.write("\n".join(names) + "\n")
    return names
