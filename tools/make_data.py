"""Generate the built-in synthetic Chinese image-caption dataset (shapes on a 3x3 grid).

    python tools/make_data.py --out data/shapes --format tsv --seed 0 [--train 6000 --valid 500 --test 500]
                              [--image-size 64] [--corrupt N --corrupt-split train]

Same seed, same files. See docs/data.md for what the world contains.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from tqdm import tqdm

from paddle_mm.demo.shapes import DEFAULT_SIZES, SPLITS, make_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--format",
        choices=("tsv", "folder"),
        default="tsv",
        help="tsv: Chinese-CLIP {split}_imgs.tsv + {split}_texts.jsonl; folder: {split}/images/*.png",
    )
    p.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        p.add_argument(
            f"--{split}",
            type=int,
            default=DEFAULT_SIZES[split],
            metavar="N",
            help=f"images in the {split} split (default {DEFAULT_SIZES[split]}; 0 skips it)",
        )
    p.add_argument("--image-size", type=int, default=64, help="square image side in pixels (default 64)")
    p.add_argument(
        "--corrupt",
        type=int,
        default=0,
        metavar="N",
        help="replace N images of --corrupt-split with undecodable data, for tests and demos",
    )
    p.add_argument("--corrupt-split", choices=SPLITS, default="train")
    args = p.parse_args(argv)
    for name in (*SPLITS, "corrupt"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be 0 or more, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = {split: getattr(args, split) for split in SPLITS}
    t0 = time.perf_counter()
    with tqdm(total=sum(sizes.values()), unit="img", desc="generating") as bar:
        stats = make_dataset(
            args.out,
            sizes,
            args.format,
            args.seed,
            args.image_size,
            args.corrupt,
            args.corrupt_split,
            progress=bar.update,
        )
    seconds = time.perf_counter() - t0
    parts = [
        f"{s.split} {s.n_images} images/{s.n_texts} texts ({s.texts_single_image / max(s.n_texts, 1):.0%} "
        f"single-image captions{f', {len(s.corrupt)} corrupt' if s.corrupt else ''})"
        for s in stats
    ]
    print(f"wrote {args.format} to {args.out} in {seconds:.1f}s: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
