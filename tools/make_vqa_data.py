"""Generate the built-in Chinese VQA data (questions on count, colour, shape, position, existence).

    python tools/make_vqa_data.py --out data/vqa --seed 0 [--train 30000 --valid 500 --test 1000] [--image-size 48]

Same seed, same files. The validation split is ``valid`` (``--val``, its old name, is still accepted). See
paddle_mm/data/vqa.py and docs/fusion.md for how the questions are made.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.data.vqa import OLD_SPLIT_NAMES, VQA_DEFAULT_SIZES, VQA_SPLITS, make_vqa_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    for split in VQA_SPLITS:
        n = VQA_DEFAULT_SIZES[split]
        flags = [f"--{split}"] + [f"--{old}" for old, new in OLD_SPLIT_NAMES.items() if new == split]
        help_text = f"questions (= images) in {split} ({n})"
        p.add_argument(*flags, dest=split, type=int, default=n, metavar="N", help=help_text)
    p.add_argument("--image-size", type=int, default=48, help="rendered image side in pixels (default 48: 3 x 16)")
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
