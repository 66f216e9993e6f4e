"""Convert an image folder + captions jsonl into Chinese-CLIP's {split}_imgs.tsv + {split}_texts.jsonl.

    python tools/folder_to_tsv.py --images my_data/train/images --texts my_data/train/texts.jsonl \\
                                  --out datasets/mine --split train

Images must be named <image_id>.<png|jpg|jpeg|bmp|webp|tif|tiff> with an integer id; the jsonl has lines
{"text_id": int, "text": str, "image_ids": [int, ...]}. Image bytes are copied unchanged (no re-encoding).
Unreadable images are left out and reported; malformed jsonl lines are skipped and reported.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.data.datasets import ImageReadError, ImageTextCorpus
from paddle_mm.data.writers import write_imgs_tsv, write_texts_jsonl


def convert(images: Path, texts: Path, out: Path, split: str) -> dict[str, int]:
    """Write ``out/{split}_imgs.tsv`` and ``out/{split}_texts.jsonl``; returns counts for the summary."""
    corpus = ImageTextCorpus.from_folder(images, texts, name=f"{images.parent} {split}")
    skipped: list[str] = []

    def readable():
        for image_id in corpus.images:
            try:
                yield image_id, corpus.read_image_bytes(image_id)
            except ImageReadError as err:
                skipped.append(str(err))

    n_images = write_imgs_tsv(out / f"{split}_imgs.tsv", readable())
    n_texts = write_texts_jsonl(out / f"{split}_texts.jsonl", corpus.texts)
    for message in skipped[:5]:
        print(f"skipped {message}", file=sys.stderr)
    return {
        "images": n_images,
        "texts": n_texts,
        "skipped_images": len(skipped),
        "load_problems": sum(corpus.report.counts.values()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, required=True, help="folder of <image_id>.<ext> files")
    p.add_argument("--texts", type=Path, required=True, help="captions jsonl (Chinese-CLIP schema)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--split", default="train", help="split name used in the output file names (default train)")
    args = p.parse_args(argv)
    try:
        n = convert(args.images, args.texts, args.out, args.split)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {n['images']} images and {n['texts']} texts to {args.out}/{args.split}_imgs.tsv and "
        f"{args.split}_texts.jsonl; {n['skipped_images']} unreadable images skipped, "
        f"{n['load_problems']} load problems (see warnings above)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
