"""Generate the built-in inspection data: textured parts, clean or with one defect (PaddleClas / PaddleX layout).

    python tools/make_inspection_data.py --out data/inspection --seed 0 [--train 300 --val 40 --test 60 --unseen 60]

Counts are parts per class. Same seed, same files. See paddle_mm/demo/inspection.py and docs/inspection.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.demo.inspection import DEFAULT_SIZES, write_dataset


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    for split, n in DEFAULT_SIZES.items():
        p.add_argument(f"--{split}", type=int, default=n, metavar="N", help=f"parts per class in {split} ({n})")
    args = p.parse_args(argv)
    start = time.time()
    counts = write_dataset(args.out, {s: getattr(args, s) for s in DEFAULT_SIZES}, args.seed, args.image_size)
    print(f"wrote {args.out}: {counts} images in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
