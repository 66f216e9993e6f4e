"""Convert an image folder + captions jsonl into Chinese-CLIP's {split}_imgs.tsv + {split}_texts.jsonl.

    python tools/folder_to_tsv.py --images my_data/train/images --texts my_data/train/texts.jsonl \\
                                  --out datasets/mine --split train

Images must be named <image_id>.<png|jpg|jpeg|bmp|webp|tif|tiff|gif> with an integer id; the jsonl (UTF-8, a
BOM is fine) has lines {"text_id": int, "text": str, "image_ids": [int, ...]}. Image bytes are copied unchanged
(no re-encoding). Images that cannot be read or decoded are left out; malformed or non-UTF-8 jsonl lines are
skipped; every problem is printed before the summary. Exit 3 when the images folder or the jsonl is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.data.datasets import ImageReadError, ImageTextCorpus
from paddle_mm.data.writers import write_imgs_tsv, write_texts_jsonl
from paddle_mm.vision.transforms import ImageDecodeError, load_image


def convert(images: Path, texts: Path, out: Path, split: str) -> dict:
    """Write ``out/{split}_imgs.tsv`` and ``out/{split}_texts.jsonl``; returns counts and warnings for the summary."""
    corpus = ImageTextCorpus.from_folder(images, texts, name=f"{images.parent} {split}")
    skipped: list[str] = []

    def readable():
        for image_id in corpus.images:
            try:
                data = corpus.read_image_bytes(image_id)
                load_image(data, corpus.describe_image(image_id))  # decoded once, so a corrupt file stays out
            except (ImageReadError, ImageDecodeError) as err:
                skipped.append(str(err))
                continue
            yield image_id, data

    n_images = write_imgs_tsv(out / f"{split}_imgs.tsv", readable())
    n_texts = write_texts_jsonl(out / f"{split}_texts.jsonl", corpus.texts)
    report = corpus.report
    warnings = [f"skipped {m}" for m in skipped] + [f"{report.source}: {m}" for m in report.messages]
    return {
        "images": n_images,
        "texts": n_texts,
        "skipped_images": len(skipped),
        "load_problems": sum(report.counts.values()),
        "warnings": warnings,
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
        return 3  # a data error, as the other tools (docs/export.md, "Exit codes")
    for warning in n["warnings"]:  # on stdout with the summary, so they always come first
        print(f"warning: {warning}")
    print(
        f"wrote {n['images']} images and {n['texts']} texts to {args.out}/{args.split}_imgs.tsv and "
        f"{args.split}_texts.jsonl; {n['skipped_images']} unreadable images skipped, "
        f"{n['load_problems']} load problems" + (" (warnings above)" if n["warnings"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
