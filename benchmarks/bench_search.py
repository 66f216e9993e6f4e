"""Gallery search on one machine: faiss (exact, HNSW, IVF; the embedded default) against Milvus Lite.

    python benchmarks/bench_search.py --sizes 100000 1000000                     # random unit 512-d vectors
    python benchmarks/bench_search.py --sizes 20000 --backends faiss-auto faiss-exact milvus-lite   # smoke
    python benchmarks/bench_search.py --builtin output/serve_demo --data data/shapes   # the demo model's
                                                                                     # embeddings of shapes

For each size and backend: build time (tools/build_index.py's code path, :func:`write_gallery`, tuning
included), open time, p50/p99 latency of batch-1 top-10 queries (after 20 warm-up queries), recall@10
against the exact scan, and the RSS the open gallery adds. Random data: queries are fresh random unit
vectors (the hardest case for an approximate index: no structure at all), and HNSW/IVF are tuned on 200 other
random queries. ``--builtin``: the gallery is the image embeddings of every split, the queries the test
captions' text embeddings (the service's text -> image search), tuning on 200 train captions.
``faiss-auto`` is what a gallery gets by default (exact up to 50k rows, HNSW above).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_mm.serving.gallery import open_gallery, recall_at_k, write_gallery

SPECS = {
    "faiss-auto": {"backend": "faiss", "index": "auto"},
    "faiss-exact": {"backend": "faiss", "index": "exact"},
    "faiss-hnsw": {"backend": "faiss", "index": "hnsw"},
    "faiss-ivf": {"backend": "faiss", "index": "ivf"},
    "milvus-lite": {"backend": "milvus", "index": "exact", "uri": "gallery.db"},  # FLAT: exact, as the tests use
    "milvus-lite-auto": {"backend": "milvus", "index": "auto", "uri": "gallery.db"},  # AUTOINDEX
}


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    out = []
    for i in range(0, len(queries), 32):
        scores = queries[i : i + 32] @ vectors.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
        out.append(np.take_along_axis(top, order, 1))
    return np.concatenate(out)


def measure(name: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path, tune=None) -> dict:
    out = work / name
    start = time.perf_counter()
    info = write_gallery(
        out,
        vectors,
        np.arange(len(vectors)),
        [{}] * len(vectors),
        kind="image",
        model={"name": "bench"},
        spec={**SPECS[name], "tune_queries": tune},
        log=lambda m: print("   ", m, flush=True),
    )
    build = time.perf_counter() - start
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    gallery = open_gallery(out)
    opened = time.perf_counter() - start
    added = rss_mb() - before
    for q in queries[:20]:
        gallery.search(q[None], 10)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = gallery.search(q[None], 10)[0]
        times.append(time.perf_counter() - t)
        found.append([h.id for h in hits] + [-1] * (10 - len(hits)))
    gallery.close()
    shutil.rmtree(out, ignore_errors=True)
    ms = np.array(times) * 1000
    return {
        "backend": name,
        "index": info["index"].get("type"),
        "build_s": build,
        "open_s": opened,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "recall10": recall_at_k(np.array(found), truth),
        "rss_mb": added,
        "knob": {k: v for k, v in info["index"].items() if k in ("ef_search", "nprobe", "nlist", "m")},
    }


def builtin_data(deployment: Path, data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    from paddle_mm.config import parse_yaml
    from paddle_mm.data.datasets import load_corpus
    from paddle_mm.inference import Predictor

    cfg = parse_yaml((deployment / "serve.yml").read_text())["Model"]
    predictor = Predictor.from_package_files(
        cfg["package"],
        cfg["trust"],
        model=cfg["name"],
        state_file=cfg["state_file"],
        backend="onnxruntime",
        batch_size=64,
    )
    images = []
    for split in ("train", "valid", "test"):
        corpus = load_corpus(data, split)
        images += [corpus.read_image_bytes(i) for i in corpus.images]
    vectors = predictor.encode_images(images)
    texts = [t.text for t in load_corpus(data, "test").texts][:500]
    tune = predictor.encode_texts([t.text for t in load_corpus(data, "train").texts][:200])  # not the test queries
    return (
        vectors,
        predictor.encode_texts(texts),
        tune,
        f"{cfg['name']} on {data} ({len(vectors)} images, {len(texts)} captions)",
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--backends", nargs="+", default=[s for s in SPECS if s != "milvus-lite-auto"], choices=list(SPECS))
    p.add_argument("--builtin", help="a scripts/serve_demo.sh output directory: use its model on --data")
    p.add_argument("--data", default="data/shapes")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cases = []
    if args.builtin:
        vectors, queries, tune, what = builtin_data(Path(args.builtin), Path(args.data))
        cases.append((what, vectors, queries, tune))
    for n in args.sizes:
        cases.append((f"{n} random unit {args.dim}-d vectors", None, n, None))
    work = Path(tempfile.mkdtemp(prefix="bench_search_"))
    rows = []
    try:
        for what, vectors, queries, tune in cases:
            if vectors is None:
                n = queries
                vectors = np.empty((n, args.dim), np.float32)
                for i in range(0, n, 100_000):
                    vectors[i : i + 100_000] = unit(rng.standard_normal((min(100_000, n - i), args.dim)))
                queries = unit(rng.standard_normal((args.queries, args.dim)))
                tune = unit(rng.standard_normal((200, args.dim)))  # the same kind of query, not the same ones
            truth = exact_top(vectors, queries)
            for name in args.backends:
                print(f"[{what}] {name} ...", flush=True)
                rows.append({"data": what, **measure(name, vectors, queries, truth, work, tune)})
                r = rows[-1]
                print(
                    f"    build {r['build_s']:.1f} s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                    f"recall@10 {r['recall10']:.3f}",
                    flush=True,
                )
            del vectors
            gc.collect()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| data | backend | index | build s | open s | p50 ms | p99 ms | recall@10 | +RSS MB | knobs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['data']} | {r['backend']} | {r['index']} | {r['build_s']:.1f} | {r['open_s']:.2f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall10']:.3f} | {r['rss_mb']:.0f} | {r['knob']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
