"""Gallery search on one machine: faiss (exact, HNSW, IVF; the embedded default) against Milvus Lite, through
the service's code path (:func:`write_gallery`, :func:`open_gallery`, ``Gallery.search``).

    python benchmarks/bench_search.py --sizes 100000 1000000 --backends faiss-auto faiss-exact   # random 512-d
    python benchmarks/bench_search.py --sizes 100000 --backends milvus-lite
    python benchmarks/bench_search.py --sizes 20000 --backends faiss-auto faiss-exact milvus-lite   # smoke
    python benchmarks/bench_search.py --builtin output/serve_demo --data data/shapes --sizes   # the demo model

For each size and backend: build time (tuning included), open time, the RSS the open gallery adds, the size
of its files, and for each query set p50/p99 latency of batch-1 top-10 queries (after 20 warm-up queries) and
recall@10 against the exact scan. Random data (unit vectors, no structure) has two query sets:

- ``near``: 200 gallery vectors plus Gaussian noise of standard deviation 0.5/sqrt(dim) per component (noise
  norm ~0.5, cosine ~0.89 to the vector it came from): a near-duplicate query, the proxy for a real query that
  has a match in the gallery. Its top-1 is easy; its other 9 neighbours are as unstructured as random ones.
- ``random``: 200 independent random unit vectors, the adversarial case: in 512-d their 10 nearest neighbours
  are barely nearer than the rest, and approximate indexes are known to degrade.

The approximate indexes are tuned at build as tools/build_index.py tunes them (``--tune near``: 200 other
perturbed gallery vectors; ``--tune random``: 200 other random queries as well), and ``--sweep`` measures
more efSearch/nprobe values on the built index (recall against latency for the random queries).
``--builtin``: the gallery is the image embeddings of every split, the queries the test captions' text
embeddings (the service's text -> image search), tuning on 200 train captions.
``--embeddings``: the tuning and measured queries are disjoint (see :func:`embeddings_case`).
``faiss-auto`` is what a gallery gets by default (exact up to 50k rows, IVF above where the lower 95% bound of its
tuned recall reaches 0.95, else exact).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_mm.serving.gallery import _set_knob, exact_similarities, open_gallery, recall_at_k, write_gallery

SPECS = {
    "faiss-auto": {"backend": "faiss", "index": "auto"},
    "faiss-exact": {"backend": "faiss", "index": "exact"},
    "faiss-hnsw": {"backend": "faiss", "index": "hnsw"},
    "faiss-ivf": {"backend": "faiss", "index": "ivf"},  # 8-bit codes + exact re-rank
    "faiss-ivf-flat": {"backend": "faiss", "index": "ivf", "ivf_codes": "flat"},
    "milvus-lite": {"backend": "milvus", "index": "exact", "uri": "gallery.db"},  # FLAT: exact, as the tests use
    "milvus-lite-auto": {"backend": "milvus", "index": "auto", "uri": "gallery.db"},  # AUTOINDEX
}


# the index settings, then what tuning measured
KNOBS = (
    *("ef_search", "nprobe", "nlist", "codes", "refine", "m", "ef_construction"),
    *("recall_at_10", "recall_at_10_lower"),
)


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids) of each query's exact top-k, best first."""
    sims, ids = [], []
    for i in range(0, len(queries), 32):
        scores = queries[i : i + 32] @ vectors.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
        ids.append(np.take_along_axis(top, order, 1))
        sims.append(np.take_along_axis(scores, ids[-1], 1))
    return np.concatenate(sims), np.concatenate(ids)


def timed_search(gallery, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch-1 top-10 of every query: (wall latencies in ms, the search thread's CPU ms, found ids). On a loaded
    machine wall - CPU is mostly time the thread waited for a core (faiss searches on this thread: one OpenMP one)."""
    for q in queries[:20]:
        gallery.search(q[None], 10)
    times, cpu, found = [], [], []
    for q in queries:
        t, c = time.perf_counter(), time.thread_time()
        hits = gallery.search(q[None], 10)[0]
        times.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
        found.append([h.id for h in hits] + [-1] * (10 - len(hits)))
    return np.array(times) * 1000, np.array(cpu) * 1000, np.array(found)


def judged(vectors: np.ndarray, queries: np.ndarray, truth, ms: np.ndarray, cpu_ms: np.ndarray, found) -> tuple:
    """(p50, p99, recall@10, CPU p99); a found id counts when its exact similarity ties or beats the exact 10th
    (1e-6)."""
    sims, ids = truth
    recall = recall_at_k(found, ids, exact_similarities(vectors, queries, found), sims[:, -1])
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), recall, float(np.percentile(cpu_ms, 99))


def measure(
    name: str, vectors: np.ndarray, query_sets: dict, work: Path, tune, sweep: list[int], extra: dict, keep: bool
) -> dict:
    """Build, open and query one backend; ``query_sets``: {name: (queries, exact top-10)}. ``keep``: leave the
    gallery in ``work`` and, when one is already there, measure it instead of building (its build_s is the first's)."""
    out = work / f"{name}_{len(vectors)}"
    if keep and (out / "gallery.json").exists():
        info = json.loads((out / "gallery.json").read_text())
        build = info["build_seconds"]
        print(f"    measuring the gallery kept in {out} (built in {build:.1f} s)", flush=True)
    else:
        start = time.perf_counter()
        info = write_gallery(
            out,
            vectors,
            np.arange(len(vectors)),
            [{}] * len(vectors),
            kind="image",
            model={"name": "bench"},
            spec={**SPECS[name], **extra, "tune_queries": tune},
            log=lambda m: print("   ", m, flush=True),
        )
        build = time.perf_counter() - start
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    gc.collect()
    before = rss_mb() + children_rss_mb()
    start = time.perf_counter()
    gallery = open_gallery(out)
    opened = time.perf_counter() - start
    added = rss_mb() + children_rss_mb() - before
    row = {
        "backend": name,
        "index": info["index"].get("type"),
        "build_s": build,
        "open_s": opened,
        "rss_mb": added,
        "disk_mb": disk,
        "knob": {k: info["index"][k] for k in KNOBS if k in info["index"]},
        "tuning": info["index"].get("tuning") or info["index"].get("rejected", {}).get("tuning"),
        "sets": {},
        "sweep": [],
    }
    for set_name, (queries, truth) in query_sets.items():
        row["sets"][set_name] = judged(vectors, queries, truth, *timed_search(gallery, queries))
    knob = {"hnsw": "ef_search", "ivf": "nprobe"}.get(row["index"])
    for value in sweep if knob else []:
        _set_knob(gallery._index, knob, value)
        for set_name, (queries, truth) in query_sets.items():
            p50, p99, recall, cpu99 = judged(vectors, queries, truth, *timed_search(gallery, queries))
            row["sweep"].append((f"{knob} {value}", set_name, p50, p99, recall, cpu99))
            print(
                f"    {knob} {value} {set_name}: p50 {p50:.2f} ms p99 {p99:.2f} ms (CPU p99 {cpu99:.2f} ms) "
                f"recall {recall:.3f} ({load()})",
                flush=True,
            )
    gallery.close()
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


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


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def random_case(n: int, dim: int, queries: int, rng) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    vectors = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):
        vectors[i : i + 100_000] = unit(rng.standard_normal((min(100_000, n - i), dim), dtype=np.float32))
    picks = rng.choice(n, queries, replace=False)
    near = unit(vectors[picks] + rng.normal(0, 0.5 / np.sqrt(dim), (queries, dim)).astype(np.float32))
    return vectors, {"near": near, "random": unit(rng.standard_normal((queries, dim), dtype=np.float32))}


def embeddings_case(directory: Path, n: int, queries: int) -> tuple[np.ndarray, dict[str, np.ndarray], list]:
    """The first ``n`` rows of benchmarks/embed_shapes.py's gallery and held-out queries, tuning and measured sets
    disjoint: image scenes 100 .. 100 + ``queries`` are measured, all the others tune; the test split's first
    ``queries`` captions are measured, the valid split's captions (another split: no caption in both) tune."""
    vectors = np.ascontiguousarray(np.load(directory / "gallery.npy", mmap_mode="r")[:n])
    if len(vectors) < n:
        raise SystemExit(f"{directory}/gallery.npy has {len(vectors)} rows, fewer than --sizes {n}")
    if not (directory / "text_tune_queries.npy").exists():
        raise SystemExit(f"{directory} has no text_tune_queries.npy; rerun benchmarks/embed_shapes.py (it adds them)")
    image, text = np.load(directory / "image_queries.npy"), np.load(directory / "text_queries.npy")
    tune = [np.concatenate([image[:100], image[100 + queries :]]), np.load(directory / "text_tune_queries.npy")]
    sets = {"image": image[100 : 100 + queries], "text": text[:queries]}  # tune: judged apart, both must pass
    if min(len(q) for q in sets.values()) < queries:
        raise SystemExit(f"{directory}: fewer than 100 + {queries} image or {queries} text queries; lower --queries")
    return vectors, sets, tune


def children_rss_mb() -> float:
    """RSS of this process's children (the Milvus Lite server runs as one)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            continue
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--backends", nargs="+", default=["faiss-auto", "faiss-exact", "milvus-lite"], choices=list(SPECS))
    p.add_argument("--tune", choices=("near", "random"), default="near", help="random data: what HNSW/IVF tune on")
    p.add_argument("--sweep", type=int, nargs="*", default=[], help="more efSearch / nprobe values to measure")
    p.add_argument("--ef_construction", type=int, help="HNSW build effort (default: the gallery's, 40)")
    p.add_argument("--nlist", type=int, help="IVF lists (default: the gallery's, 4 sqrt(N))")
    p.add_argument("--refine", type=float, help="IVF 8-bit codes: re-rank refine x 10 candidates (default 4)")
    p.add_argument("--embeddings", help="a benchmarks/embed_shapes.py output directory (e.g. output/shapes_emb/512d)")
    p.add_argument("--builtin", help="a scripts/serve_demo.sh output directory: use its model on --data")
    p.add_argument("--data", default="data/shapes")
    p.add_argument("--keep", help="keep the galleries in this folder; a gallery already there is measured, not rebuilt")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cases = []
    if args.builtin:
        vectors, queries, tune, what = builtin_data(Path(args.builtin), Path(args.data))
        cases.append((what, vectors, {"captions": queries}, tune))
    for n in args.sizes:
        if args.embeddings:
            source = json.loads((Path(args.embeddings) / "source.json").read_text())
            what = f"shapes scenes embedded by {source['checkpoint']} ({Path(args.embeddings).name})"
            cases.append((what, None, n, None))
        else:
            cases.append((f"random unit {args.dim}-d", None, n, None))
    extra = {k: getattr(args, k) for k in ("ef_construction", "nlist", "refine") if getattr(args, k)}
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_search_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for what, vectors, sets, tune in cases:
            if vectors is None and args.embeddings:
                vectors, sets, tune = embeddings_case(Path(args.embeddings), sets, args.queries)
            elif vectors is None:
                vectors, sets = random_case(sets, args.dim, args.queries, rng)
                if args.tune == "random":  # the same kind of query, not the same ones
                    tune = unit(rng.standard_normal((200, args.dim), dtype=np.float32))
            query_sets = {k: (q, exact_top(vectors, q)) for k, q in sets.items()}
            for name in args.backends:
                print(f"[{what}, {len(vectors)}] {name} ... ({load()})", flush=True)
                row = measure(name, vectors, query_sets, work, tune, args.sweep, extra, bool(args.keep))
                rows.append({"data": what, "size": len(vectors), **row})
                for t in row["tuning"] or []:
                    print(f"    tuning {t}", flush=True)
                print(
                    f"    build {row['build_s']:.1f} s, "
                    + ", ".join(
                        f"{k}: p50 {v[0]:.2f} ms p99 {v[1]:.2f} ms (CPU p99 {v[3]:.2f} ms) recall@10 {v[2]:.3f}"
                        for k, v in row["sets"].items()
                    )
                    + f" ({load()})",
                    flush=True,
                )
            del vectors
            gc.collect()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    print(load())
    return 0


def print_table(rows: list[dict]) -> None:
    print(
        "\n| backend | index | size | data | build s | memory MB | queries | p50 ms | p99 ms | CPU p99 ms | recall@10 "
        "| knobs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for set_name, (p50, p99, recall, cpu99) in r["sets"].items():
            print(
                f"| {r['backend']} | {r['index']} | {r['size']} | {r['data']} | {r['build_s']:.1f} | "
                f"{r['rss_mb']:.0f} | {set_name} | {p50:.2f} | {p99:.2f} | {cpu99:.2f} | {recall:.3f} | {r['knob']} |"
            )
    for r in rows:
        for knob, set_name, p50, p99, recall, cpu99 in r["sweep"]:
            print(
                f"| {r['backend']} | sweep {knob} | {r['size']} | {r['data']} | | | {set_name} | {p50:.2f} | "
                f"{p99:.2f} | {cpu99:.2f} | {recall:.3f} | |"
            )


if __name__ == "__main__":
    sys.exit(main())
