"""What bounds batch-1 search on this machine, measured: memory bandwidth, exact scans in float32 / float16 / 8 bits,
the neighbourhood structure of random against real embeddings, and the recall/latency curve of IVF.

    python benchmarks/search_physics.py bandwidth
    python benchmarks/search_physics.py exact --n 1000000 --dim 512 [--threads 1 2]
    python benchmarks/search_physics.py structure --n 1000000 --dim 512 [--embeddings output/shapes_emb/512d]
    python benchmarks/search_physics.py ivf --n 1000000 --nlist 4096 16384 --nprobe 1 4 16 64 256 [--embeddings ...]

Random data: unit vectors in ``--dim`` dimensions; queries ``near`` (a gallery vector plus noise of norm ~0.5, as
benchmarks/bench_search.py) and ``random``. ``--embeddings``: benchmarks/embed_shapes.py's gallery (first ``--n``
rows) with its held-out ``image`` and ``text`` queries. Latencies: 200 queries one at a time after 20 warm-up
ones, one OpenMP/BLAS thread unless ``--threads`` says otherwise. Recall@10 counts a found id when its exact
similarity is at least the exact 10th minus 1e-6 (ties are right answers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's scan on one thread, like a gallery search

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hardware
from paddle_mm.serving.gallery import exact_similarities, recall_at_k


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def data(args) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    rng = np.random.default_rng(0)
    if args.embeddings:
        d = Path(args.embeddings)
        vectors = np.ascontiguousarray(np.load(d / "gallery.npy", mmap_mode="r")[: args.n])
        image, text = np.load(d / "image_queries.npy"), np.load(d / "text_queries.npy")
        return vectors, {"image": image[100:300], "text": text[100:300]}, f"{d} ({len(vectors)} rows)"
    vectors = np.empty((args.n, args.dim), np.float32)
    for i in range(0, args.n, 100_000):
        vectors[i : i + 100_000] = unit(rng.standard_normal((min(100_000, args.n - i), args.dim), dtype=np.float32))
    picks = rng.choice(args.n, 200, replace=False)
    near = unit(vectors[picks] + rng.normal(0, 0.5 / np.sqrt(args.dim), (200, args.dim)).astype(np.float32))
    queries = {"near": near, "random": unit(rng.standard_normal((200, args.dim), dtype=np.float32))}
    return vectors, queries, f"random unit {args.dim}-d ({args.n} rows)"


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def top10(index):
    return lambda q: index.search(q, 10)[1]


def timed(search, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    for q in queries[:20]:
        search(q[None])
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q[None])[0])
        times.append(time.perf_counter() - t)
    return *percentiles(times), np.array(found)


# -- bandwidth -------------------------------------------------------------------------------------------
def bandwidth(args) -> None:
    """One thread: a 1 GiB copy (numpy.copyto) and a 1 GiB read (BLAS sdot of a vector with itself)."""
    n = 2**28  # float32: 1 GiB
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    copy, read = [], []
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        copy.append(time.perf_counter() - t)
        t = time.perf_counter()
        np.dot(src, src)
        read.append(time.perf_counter() - t)
    gib = n * 4 / 1e9
    print(
        f"copy 1 GiB: best {gib / min(copy):.1f} GB/s, median {gib / np.median(copy):.1f} GB/s "
        "(bytes read; as many written)"
    )
    print(f"read 1 GiB (sdot): best {gib / min(read):.1f} GB/s, median {gib / np.median(read):.1f} GB/s  ({load()})")


# -- exact scans -----------------------------------------------------------------------------------------
def exact(args) -> None:
    import faiss

    vectors, query_sets, what = data(args)
    n, dim = vectors.shape
    queries = query_sets[next(iter(query_sets))]
    truth = _truth(vectors, queries)
    print(f"exact scans over {what}, batch 1, top-10 ({load()})")
    print("| scan | threads | bytes scanned MB | p50 ms | p99 ms | GB/s at p50 | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        faiss.omp_set_num_threads(threads)
        _numpy_scan(vectors, queries, truth, threads)
        for name, make in (
            ("faiss IndexFlatIP float32", lambda: faiss.IndexFlatIP(dim)),
            ("faiss SQ fp16", lambda: faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, 0)),
            ("faiss SQ 8-bit", lambda: faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, 0)),
        ):
            index = make()
            index.train(vectors[:100_000])
            index.add(vectors)
            p50, p99, found = timed(top10(index), queries)
            size = index.sa_code_size() * n if hasattr(index, "sa_code_size") else 4 * n * dim
            _row(name, threads, size, p50, p99, _recall(vectors, queries, truth, found))
            del index
    print(load())


def _numpy_scan(vectors, queries, truth, threads: int) -> None:
    if threads != 1:
        return  # numpy's BLAS thread count is fixed at import (OPENBLAS_NUM_THREADS)

    def search(q):
        scores = vectors @ q[0]
        top = np.argpartition(-scores, 10)[:10]
        return [top[np.argsort(-scores[top])]]

    p50, p99, found = timed(search, queries)
    _row("numpy float32 (sgemv + argpartition)", 1, vectors.nbytes, p50, p99, _recall(vectors, queries, truth, found))


def _row(name, threads, size, p50, p99, recall) -> None:
    print(
        f"| {name} | {threads} | {size / 2**20:.0f} | {p50:.2f} | {p99:.2f} | {size / 1e6 / p50:.1f} | {recall:.3f} |"
    )


def _truth(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    sims, ids = [], []
    for i in range(0, len(queries), 16):
        scores = queries[i : i + 16] @ vectors.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        top = np.take_along_axis(top, np.take_along_axis(-scores, top, 1).argsort(axis=1), 1)
        ids.append(top)
        sims.append(np.take_along_axis(scores, top, 1))
    return np.concatenate(sims), np.concatenate(ids)


def _recall(vectors, queries, truth, found) -> float:
    sims, ids = truth
    return recall_at_k(found, ids, exact_similarities(vectors, queries, found), sims[:, -1])


# -- neighbourhood structure -----------------------------------------------------------------------------
def structure(args) -> None:
    """Per query: similarity of the 1st, 10th, 11th, 100th, 1000th neighbour, the mean and std of all; medians."""
    vectors, query_sets, what = data(args)
    print(f"neighbourhood structure of {what} ({load()})")
    print(
        "| queries | s1 | s10 | s11 | s100 | s1000 | mean | std | (s10-mean)/std | s10-s11 | rows within 0.01 of s10 "
        "| LID@100 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, queries in query_sets.items():
        stats = []
        for i in range(0, len(queries), 16):
            scores = queries[i : i + 16] @ vectors.T
            top = -np.sort(-np.partition(scores, -1001, axis=1)[:, -1001:], axis=1)  # (q, 1001) best first
            mean, std = scores.mean(axis=1), scores.std(axis=1)
            within = (scores >= top[:, 9:10] - 0.01).sum(axis=1)
            dist = np.sqrt(np.maximum(2 - 2 * top[:, :100].astype(np.float64), 1e-12))  # unit vectors: L2
            lid = -1 / np.mean(np.log(dist / dist[:, -1:]), axis=1)  # MLE of local intrinsic dimension, k = 100
            stats.append(
                np.stack(
                    [top[:, 0], top[:, 9], top[:, 10], top[:, 99], top[:, 999], mean, std,
                     (top[:, 9] - mean) / std, top[:, 9] - top[:, 10], within, lid],
                    axis=1,
                )
            )  # fmt: skip
        m = np.median(np.concatenate(stats), axis=0)
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in m[:9]) + f" | {m[9]:.0f} | {m[10]:.1f} |")
    print(load())


# -- IVF curves ------------------------------------------------------------------------------------------
def ivf(args) -> None:
    """One k-means per nlist, shared by the float32 lists and the 8-bit lists (+ exact re-rank of 40)."""
    import faiss

    vectors, query_sets, what = data(args)
    n, dim = vectors.shape
    truths = {k: _truth(vectors, q) for k, q in query_sets.items()}
    print(f"IVF over {what}, batch 1, one thread at search ({load()})")
    rows = []
    for nlist in args.nlist:
        faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
        quantizer = faiss.IndexFlatIP(dim)
        train = vectors[np.random.default_rng(0).choice(n, min(n, args.train_per_list * nlist), replace=False)]
        t = time.perf_counter()
        km = faiss.Clustering(dim, nlist)
        km.niter, km.spherical = 10, False
        km.train(train, quantizer)
        train_s = time.perf_counter() - t
        print(f"  nlist {nlist}: k-means on {len(train)} rows {train_s:.0f} s ({load()})", flush=True)
        for codes in args.codes:
            if codes == "flat":
                index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                sq = faiss.ScalarQuantizer.QT_8bit
                index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, sq, faiss.METRIC_INNER_PRODUCT)
                index.train(train)  # the quantizer is trained already: this trains the 8-bit ranges only
            t = time.perf_counter()
            index.add(vectors)
            search_index = index
            if codes == "sq8":
                search_index = faiss.IndexRefineFlat(index, faiss.swig_ptr(vectors))
                search_index.k_factor = 4.0
            add_s = time.perf_counter() - t
            faiss.omp_set_num_threads(1)
            for nprobe in [p for p in args.nprobe if p <= nlist]:
                index.nprobe = nprobe
                for name, queries in query_sets.items():
                    faiss.cvar.indexIVF_stats.reset()
                    p50, p99, found = timed(top10(search_index), queries)
                    scanned = faiss.cvar.indexIVF_stats.ndis / (len(queries) + 20) / n
                    recall = _recall(vectors, queries, truths[name], found)
                    rows.append((nlist, codes, train_s, add_s, nprobe, name, scanned, p50, p99, recall))
                    print(f"    {codes} nprobe {nprobe} {name}: scanned {scanned:.3%} p50 {p50:.2f} p99 {p99:.2f} "
                          f"recall {recall:.3f}", flush=True)  # fmt: skip
            del search_index, index
    print(
        "\n| nlist | lists hold | k-means s | add s | nprobe | queries | rows scanned | p50 ms | p99 ms | recall@10 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for nlist, codes, train_s, add_s, nprobe, name, scanned, p50, p99, recall in rows:
        label = "float32" if codes == "flat" else "8-bit + re-rank 40"
        print(f"| {nlist} | {label} | {train_s:.0f} | {add_s:.0f} | {nprobe} | {name} | {scanned:.2%} | {p50:.2f} | "
              f"{p99:.2f} | {recall:.3f} |")  # fmt: skip
    print(load())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("bandwidth", "exact", "structure", "ivf"))
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--embeddings", help="a benchmarks/embed_shapes.py output directory instead of random vectors")
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--nlist", type=int, nargs="+", default=[4096, 16384])
    p.add_argument("--codes", nargs="+", choices=("flat", "sq8"), default=["flat", "sq8"])
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    p.add_argument("--train_per_list", type=int, default=40, help="k-means rows per list (faiss wants >= 39)")
    args = p.parse_args()
    hardware.tune_openblas_env()  # as the gallery does, before faiss loads its OpenBLAS
    {"bandwidth": bandwidth, "exact": exact, "structure": structure, "ivf": ivf}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
