"""Write the built-in shapes world as a zero-shot dataset in Chinese-CLIP's folder format.

    python tools/make_zeroshot_data.py --out data/shapes_zs [--per-class 20] [--seed 0] [--image-size 64]
                                       [--colours red,blue] [--shapes circle,triangle]

Writes ``<out>/label_cn.txt`` (红色的圆形, 红色的正方形, ...) and ``<out>/test/000/00000.png ...``, one object
of its class per image. Then: ``python tools/zero_shot.py --model <run>/best_model --data <out>``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.demo.shapes import COLOURS, SHAPES
from paddle_mm.demo.shapes_zero_shot import make_shapes_zero_shot


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--per-class", type=int, default=20, help="images per class (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="square image side in pixels (default 64)")
    p.add_argument("--colours", default=None, help=f"comma-separated subset of {','.join(COLOURS)} (default all)")
    p.add_argument("--shapes", default=None, help=f"comma-separated subset of {','.join(SHAPES)} (default all)")
    args = p.parse_args(argv)
    try:
        names = make_shapes_zero_shot(
            args.out, args.per_class, args.seed, args.image_size, _names(args.colours), _names(args.shapes)
        )
    except ValueError as err:
        p.error(str(err))
    print(f"wrote {len(names)} classes x {args.per_class} images to {args.out} (label_cn.txt, test/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
