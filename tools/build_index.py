"""Build a search gallery from a folder, TSV or LMDB split with a verified model package (docs/deploy.md):

    python tools/build_index.py --package pkg/ --trust signer.pub --package_model cn-clip-tiny-shapes \
        --data data/shapes --split test --kind image --out galleries/images [--backend faiss|milvus] \
        [--index auto|exact|hnsw|ivf] [--format auto|tsv|folder|lmdb]

Embeddings are written in shards to ``<out>.work/`` as they are computed (with progress); an interrupted run
started again with the same arguments resumes after the last finished shard. The gallery is then written
atomically and records the model's name, version and sequence, which the service checks.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path; tunes the CPU before paddle can load)
import numpy as np
from _errors import exit_on_predictor_error


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package", required=True)
    p.add_argument("--trust", nargs="+", required=True)
    p.add_argument("--package_model", required=True)
    p.add_argument("--package_state", help="rollback state file (default: the package tool's)")
    p.add_argument("--data", required=True, help="dataset root (Chinese-CLIP TSV/JSONL, folder or lmdb layout)")
    p.add_argument("--split", default="test")
    p.add_argument("--format", default="auto", choices=("auto", "tsv", "folder", "lmdb"))
    p.add_argument("--kind", required=True, choices=("image", "text"))
    p.add_argument("--out", required=True)
    p.add_argument("--backend", default="faiss", choices=("faiss", "milvus"))
    p.add_argument("--index", default="auto", choices=("auto", "exact", "hnsw", "ivf"))
    p.add_argument("--milvus_uri", default="gallery.db", help="http://host:19530, or a Milvus Lite file in --out")
    p.add_argument("--shard", type=int, default=512, help="rows per resumable shard")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def items(corpus, kind: str):
    """(ids, meta, loader) for the split: images by image id, or texts by text id."""
    if kind == "image":
        ids = list(corpus.images)
        return ids, [{"image_id": i} for i in ids], corpus.read_image_bytes
    texts = {t.text_id: t.text for t in corpus.texts}
    ids = sorted(texts)
    return ids, [{"text_id": i, "text": texts[i]} for i in ids], texts.__getitem__


def main(argv) -> int:
    args = parse_args(argv)
    from paddle_mm.data.datasets import load_corpus
    from paddle_mm.inference import Predictor
    from paddle_mm.serving.gallery import GalleryError, exclusive_lock, write_gallery

    with exit_on_predictor_error(f"--package {args.package}", "--device"):  # a refusal: REFUSED, exit 10-14
        predictor = Predictor.from_package_files(
            args.package,
            args.trust,
            model=args.package_model,
            state_file=args.package_state,
            backend="onnxruntime",
            threads=args.threads,
            batch_size=32,
        )
    corpus = load_corpus(args.data, args.split, args.format)
    ids, meta, load = items(corpus, args.kind)
    out = Path(args.out)
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    m = predictor.manifest
    stamp = {
        "model": m.model,
        "version": m.version,
        "sequence": m.sequence,
        "kind": args.kind,
        "count": len(ids),
        "shard": args.shard,
        "data": str(Path(args.data).resolve()),
        "split": args.split,
    }
    stamp_file = work / "job.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) != stamp:
        print(f"{work} holds shards of another job; delete it to start over", file=sys.stderr)
        return 3
    stamp_file.write_text(json.dumps(stamp))
    encode = predictor.encode_images if args.kind == "image" else predictor.encode_texts
    start, shards = time.perf_counter(), range(0, len(ids), args.shard)
    try:
        with exclusive_lock(out):
            for n, lo in enumerate(shards):
                shard = work / f"{n:06d}.npy"
                if not shard.exists():
                    vectors = encode([load(i) for i in ids[lo : lo + args.shard]])
                    np.save(work / "tmp.npy", vectors.astype(np.float32), allow_pickle=False)
                    (work / "tmp.npy").replace(shard)
                done = min(lo + args.shard, len(ids))
                print(
                    f"[build_index] {done}/{len(ids)} {args.kind}s embedded ({time.perf_counter() - start:.1f} s)",
                    flush=True,
                )
            vectors = np.concatenate([np.load(work / f"{n:06d}.npy") for n in range(len(shards))])
            spec = {"backend": args.backend, "index": args.index, "uri": args.milvus_uri}
            if args.kind == "image" and corpus.texts:  # tune HNSW/IVF on the queries it will get: captions
                # all of them up to 2000: tuning passes on a lower confidence bound, which more queries tighten
                spec["tune_queries"] = predictor.encode_texts([t.text for t in corpus.texts[:2000]])
            info = write_gallery(
                out,
                vectors,
                ids,
                meta,
                kind=args.kind,
                spec=spec,
                model={"name": m.model, "version": m.version, "sequence": m.sequence},
            )
    except GalleryError as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 3
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    print(
        f"[build_index] wrote {out}: {info['count']} x {info['dim']} {info['backend']} {info['index']['type']} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
