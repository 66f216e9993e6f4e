"""Generate the built-in Chinese VQA data (questions on count, colour, shape, position, existence).

    python tools/make_vqa_data.py --out data/vqa --seed 0 [--train 30000 --val 500 --test 1000] [--image-size 96]

Same seed, same files. See paddle_mm/data/vqa.py and docs/fusion.md for how the questions are made.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.data.vqa import VQA_DEFAULT_SIZES, VQA_SPLITS, make_vqa_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    for split in VQA_SPLITS:
        n = VQA_DEFAULT_SIZES[split]
        p.add_argument(f"--{split}", type=int, default=n, metavar="N", help=f"questions (= images) in {split} ({n})")
    p.add_argument("--image-size", type=int, default=96, help="rendered image side in pixels (default 96: 3 x 32)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.time()
    sizes = {split: getattr(args, split) for split in VQA_SPLITS}
    for s in make_vqa_dataset(args.out, sizes, seed=args.seed, image_size=args.image_size):
        print(f"{s.split}: {s.n} questions, per type {s.per_type}, {len(s.answers)} distinct answers")
    print(f"wrote {args.out} in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
