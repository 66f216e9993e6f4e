"""Build Chinese-CLIP's LMDB layout (``<lmdb_dir>/<split>/{imgs,pairs}``) from TSV/JSONL or folder-format splits.

    python tools/build_lmdb.py --data_dir datasets/MUGE --splits train,valid,test [--lmdb_dir datasets/MUGE/lmdb]

Same arguments and output as cn_clip/preprocess/build_lmdb_dataset.py (``--data-dir`` spellings work too), so
cn_clip's trainer reads the result, but the map grows with the data instead of being 1 TB (which needs 1 TB
of free disk on Windows, Chinese-CLIP #281). Images that cannot be read are left out and reported; their
pairs are kept, as cn_clip keeps them. Needs ``pip install lmdb``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from paddle_mm.data.datasets import ImageReadError, load_corpus, split_files
from paddle_mm.data.lmdb_reader import corpus_pairs, write_lmdb_split
from paddle_mm.data.writers import encode_image_field


def build_split(data_dir: Path, split: str, lmdb_dir: Path, fmt: str = "auto") -> dict[str, int]:
    """Write ``lmdb_dir/split``; returns counts for the summary line."""
    corpus = load_corpus(data_dir, split, fmt)
    skipped: list[str] = []

    def images():
        for image_id in corpus.images:
            try:
                yield image_id, encode_image_field(corpus.read_image_bytes(image_id))
            except ImageReadError as err:
                skipped.append(str(err))

    files = split_files(data_dir, split)
    tsv = files["tsv"]["images"]
    size_hint = tsv.stat().st_size if tsv.is_file() else _folder_bytes(files["folder"]["images"]) * 4 // 3
    n_images, n_pairs = write_lmdb_split(lmdb_dir / split, images(), corpus_pairs(corpus.texts), size_hint)
    for message in skipped[:5]:
        print(f"skipped {message}", file=sys.stderr)
    return {"images": n_images, "pairs": n_pairs, "skipped": len(skipped)}


def _folder_bytes(folder: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file()) if folder.is_dir() else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", "--data-dir", type=Path, required=True, help="folder with {split}_imgs.tsv etc.")
    p.add_argument("--splits", required=True, help="comma-separated splits, e.g. train,valid,test")
    p.add_argument("--lmdb_dir", "--lmdb-dir", type=Path, default=None, help="output (default <data_dir>/lmdb)")
    p.add_argument("--format", choices=("auto", "tsv", "folder"), default="auto", help="input layout (default auto)")
    args = p.parse_args(argv)
    lmdb_dir = args.lmdb_dir or args.data_dir / "lmdb"
    splits = list(dict.fromkeys(s.strip() for s in args.splits.split(",") if s.strip()))
    if not splits:
        p.error(f"--splits {args.splits!r} names no split; use e.g. --splits train,valid")
    for split in splits:
        try:
            n = build_split(args.data_dir, split, lmdb_dir, args.format)
        except (FileNotFoundError, ImportError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        skipped = f"; {n['skipped']} unreadable images skipped" if n["skipped"] else ""
        print(f"{split}: wrote {n['images']} images and {n['pairs']} pairs to {lmdb_dir / split}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
