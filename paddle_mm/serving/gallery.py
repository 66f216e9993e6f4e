"""Gallery search: one interface, two backends (faiss in process, the embedded default; Milvus at scale).

A gallery is a directory described by ``gallery.json`` (what was embedded, by which model, with which index,
and the SM3 digest of every file the faiss backend reads):

    gallery.json     {"format": 1, "kind": "image"|"text", "backend": "faiss"|"milvus", "model", "version",
                      "sequence", "dim", "count", "index": {...}, "files": {name: sm3}, "milvus": {...}}
    index.faiss      faiss backend: the index (exact, HNSW or IVF over inner product of unit vectors)
    ids.npy          the int64 id of each row
    meta.jsonl       one JSON object per row (an image's source, a text's text): returned with each hit

The Milvus backend keeps vectors, ids and meta in a collection (``MilvusClient(uri)``: a Milvus cluster at
``http://host:19530`` or Milvus Lite in a local ``.db`` file, the same client API). Both backends answer
:meth:`Gallery.search` with the same hits, and the same tests run on both (tests/serving/test_gallery.py).

Why faiss is the default on one machine: measured here Milvus Lite answers a top-10 query over 200k vectors
in 71 ms after a 22 s load against 12 ms for a numpy scan (docs/deploy.md, benchmarks/bench_search.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..io import staged_directory
from ..package.sm3 import sm3

FORMAT = 1
KINDS = ("image", "text")
INDEXES = ("exact", "hnsw", "ivf", "auto")
IVF_CODES = ("flat", "sq8")
# "auto": the exact scan up to this many rows (a few ms); above, IVF (8-bit codes, exact re-rank) where the lower
# confidence bound of its tuned recall reaches target_recall, else the exact scan again. IVF, not HNSW: at 1M its
# build is minutes, not the 25 of an HNSW graph on 2 cores, and it reaches the target on the toolkit's own
# embeddings (docs/deploy.md, *Search*)
AUTO_EXACT_BELOW = 50_000
INDEX_DEFAULTS = {
    "hnsw_m": 32,
    # faiss's default. Measured on 20k random 512-d vectors (2 busy cores): 200 builds 4.6x slower (37 s against
    # 8 s) for a better graph; a larger efSearch, tuned at build, buys recall back at query time (docs/deploy.md)
    "ef_construction": 40,
    "ef_search": None,
    "nlist": None,
    "nprobe": None,
    # IVF lists hold 8-bit codes (a quarter of float32's bytes to scan); the best refine x k of them are re-ranked
    # on the float32 vectors, so every returned score is the exact cosine. 16, not 4: at 1M structured 512-d image
    # queries stopped at recall 0.938 with 40 candidates (near-duplicates 8-bit scores cannot order), 0.981 with 160
    "ivf_codes": "sq8",
    "refine": 16,
    "target_recall": 0.95,
    # a knob value passes when the one-sided lower confidence bound of its tuning recall clears target_recall, not the
    # point estimate: at 1M, nprobe tuned on 100 captions to 0.951 gave 0.940 on 200 others (docs/deploy.md)
    "tune_confidence": 0.95,
}
EF_CHOICES = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_CHOICES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# a returned id counts for recall@k when its exact similarity is at least the exact k-th one minus this: a gallery
# with near-duplicates has several ids at the k-th score, and any of them is a right answer
TIE_TOLERANCE = 1e-6


class GalleryError(RuntimeError):
    """A gallery cannot be used: missing, corrupt, locked, or built by another model. One line, with the fix."""


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    meta: dict[str, Any]


class Gallery(Protocol):
    info: dict[str, Any]

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]: ...

    def close(self) -> None: ...


# -- the faiss backend ---------------------------------------------------------------------------------
def _faiss():
    import hardware

    hardware.tune_openblas_env()  # before faiss loads its OpenBLAS: k-means, adds and tuning are GEMMs
    import faiss  # faiss-cpu; imported only when a faiss gallery is built or opened

    return faiss


def make_faiss_index(vectors: np.ndarray, spec: dict[str, Any], log: Callable[[str], None] = print):
    """An inner-product faiss index over unit ``vectors`` (float32, (N, D)) as ``spec['index']`` says.

    HNSW and IVF are tuned at build time: the smallest ``efSearch`` / ``nprobe`` for which the lower
    ``tune_confidence`` bound of recall@10 against the exact scan (:func:`recall_lower_bound`) reaches
    ``target_recall`` on 200 of the gallery's own vectors slightly perturbed and on every set of
    ``spec["tune_queries"]`` when given (tools/build_index.py passes the split's caption embeddings for an image
    gallery). ``gallery.json`` keeps the lowest point estimate (``recall_at_10``), the lowest bound
    (``recall_at_10_lower``) and each set's figures (``tuning``).
    """
    faiss = _faiss()
    # building is parallel over every core this process may use (a gallery opened in this process set 1)
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    n, dim = vectors.shape
    kind = spec["index"]
    if kind == "auto":
        kind = "exact" if n <= AUTO_EXACT_BELOW else "ivf"
    params: dict[str, Any] = {"type": kind}
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, params
    if kind == "hnsw":
        # float32 vectors, not 8-bit codes: HNSW over QT_8bit (with an exact re-rank to keep scores exact) built
        # slower (12 s against 8 s for 20k x 512) and searched slower on this AVX-512 CPU, and the re-rank keeps
        # the float32 vectors in memory anyway
        m, ef_construction = int(spec["hnsw_m"]), int(spec["ef_construction"])
        index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        params.update(m=m, ef_construction=ef_construction)
        _add_with_progress(index, vectors, log)
        knob, choices = "ef_search", ([spec["ef_search"]] if spec["ef_search"] else EF_CHOICES)
    elif kind == "ivf":
        index, ivf_params = _make_ivf(vectors, spec, log)
        params.update(ivf_params)
        knob = "nprobe"
        choices = [spec["nprobe"]] if spec["nprobe"] else [c for c in NPROBE_CHOICES if c <= ivf_params["nlist"]]
    else:
        raise GalleryError(f"unknown index {kind!r}; choose one of {INDEXES}")
    target, confidence = float(spec["target_recall"]), float(spec["tune_confidence"])
    value, sets = _tune(index, vectors, knob, choices, target, spec.get("tune_queries"), confidence)
    recall, lower = min(s["recall_at_10"] for s in sets), min(s["lower_bound"] for s in sets)
    params.update({knob: value, "recall_at_10": recall, "recall_at_10_lower": lower, "confidence": confidence})
    params["tuning"] = sets
    sizes = ", ".join(f"{s['queries']} {s['set']}" for s in sets)
    log(
        f"[gallery] {kind}: {knob}={value} gives recall@10 {recall:.3f} against exact search, lower "
        f"{confidence:.0%} bound {lower:.3f} (queries: {sizes})"
    )
    if spec["index"] == "auto" and lower < target:
        # "auto" never serves an index that missed the target: random 512-d vectors have no neighbourhood for IVF or
        # HNSW to find (HNSW: 0.26 at 1M with efSearch 1024), and the exact scan is right (docs/deploy.md, *Search*)
        log(
            f"[gallery] auto: {kind}'s lower bound of recall@10 missed {target}; the gallery uses the exact scan"
        )
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, {"type": "exact", "rejected": {**params, "type": kind}}
    return index, params


def _make_ivf(vectors: np.ndarray, spec: dict[str, Any], log: Callable[[str], None]):
    """IVF over ``nlist`` k-means lists (default ~4 sqrt(N)) holding float32 vectors or 8-bit codes + exact re-rank."""
    faiss = _faiss()
    n, dim = vectors.shape
    nlist = int(spec["nlist"] or max(16, min(65536, int(4 * np.sqrt(n)))))
    codes = spec["ivf_codes"]
    quantizer = faiss.IndexFlatIP(dim)
    if codes == "flat":
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    elif codes == "sq8":
        qtype = faiss.ScalarQuantizer.QT_8bit
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtype, faiss.METRIC_INNER_PRODUCT)
    else:
        raise GalleryError(f"unknown ivf_codes {codes!r}; choose one of {IVF_CODES}")
    # k-means on 64 rows a list (faiss wants >= 39) with faiss's 10 iterations for IVF
    train = vectors[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
    start = time.perf_counter()
    ivf.train(train)
    log(f"[gallery] ivf: {nlist} lists trained on {len(train)} rows in {time.perf_counter() - start:.0f} s")
    params: dict[str, Any] = {"nlist": nlist, "codes": codes}
    index = ivf
    if codes == "sq8":
        index = faiss.IndexRefineFlat(ivf)
        index.k_factor = float(spec["refine"])
        params["refine"] = float(spec["refine"])
    _add_with_progress(index, vectors, log)
    return index, params


def _add_with_progress(index, vectors: np.ndarray, log, step: int = 50_000) -> None:
    start = time.perf_counter()
    if len(vectors) > step:
        log(f"[gallery] adding {len(vectors)} rows on {_faiss().omp_get_max_threads()} threads")
    for i in range(0, len(vectors), step):
        index.add(vectors[i : i + step])
        if len(vectors) > step:
            log(f"[gallery] indexed {min(i + step, len(vectors))}/{len(vectors)} ({time.perf_counter() - start:.0f} s)")


def _set_knob(index, knob: str, value: int) -> None:
    if knob == "ef_search":
        index.hnsw.efSearch = int(value)
    else:
        _faiss().extract_index_ivf(index).nprobe = int(value)  # the IVF itself, or the one under a re-rank


def _tune(
    index,
    vectors: np.ndarray,
    knob: str,
    choices: Sequence[int],
    target: float,
    extra: np.ndarray | Sequence[np.ndarray] | None = None,
    confidence: float = INDEX_DEFAULTS["tune_confidence"],
) -> tuple[int, list[dict[str, Any]]]:
    """The smallest knob value whose recall@10 against exact, as a lower ``confidence`` bound, reaches ``target`` on
    every query set: 200 gallery vectors slightly perturbed and, when given, ``extra`` (the queries the gallery will
    really get, e.g. caption embeddings for an image gallery: cross-modal queries sit farther from the gallery than
    perturbed copies); a list of arrays is several sets, each judged on its own (image and text queries reach
    different recalls). Every query of every set is used: more queries, a tighter bound, a smaller knob.

    Returns the value (the last choice when none passes) and, per set, its name, size, recall and bound there."""
    faiss = _faiss()
    rng = np.random.default_rng(1)
    picks = rng.choice(len(vectors), min(200, len(vectors)), replace=False)
    near = vectors[picks] + rng.normal(0, 0.5 / np.sqrt(vectors.shape[1]), (len(picks), vectors.shape[1]))
    extras = [] if extra is None else [extra] if isinstance(extra, np.ndarray) else list(extra)
    named = [("near", near)] + [(f"tune_queries[{i}]", q) for i, q in enumerate(extras) if len(q)]
    sets = [(q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32) for _, q in named]
    k = min(10, len(vectors))
    # the exact top-k straight off the vectors (an IndexFlatIP would copy them: 2 GB more at 1M x 512)
    truths = [faiss.knn(q, vectors, k, metric=faiss.METRIC_INNER_PRODUCT) for q in sets]
    for value in choices:
        _set_knob(index, knob, value)
        stats = []
        for (name, _), q, (scores, ids) in zip(named, sets, truths):
            per_query = _recall_per_query(index, vectors, q, scores, ids)
            stats.append(
                {
                    "set": name,
                    "queries": len(q),
                    "recall_at_10": round(float(per_query.mean()), 4),
                    "lower_bound": round(recall_lower_bound(per_query, confidence), 4),
                }
            )
        if all(s["lower_bound"] >= target for s in stats):
            break
    return int(value), stats


def recall_lower_bound(per_query: np.ndarray, confidence: float) -> float:
    """One-sided lower ``confidence`` bound of the mean recall from each query's recall (normal approximation:
    mean - z * sample std / sqrt(n)). The query, not the hit, is the unit: a query's 10 hits miss together.

    One query has no sample std: 0.5, the largest a value in [0, 1] can have, stands in."""
    per_query = np.asarray(per_query, dtype=np.float64)
    if not len(per_query):
        raise ValueError("recall_lower_bound: no per-query recalls; tune on at least one query")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"tune_confidence {confidence!r}: give a value in [0.5, 1), e.g. 0.95 (0.5: point estimate)")
    std = per_query.std(ddof=1) if len(per_query) > 1 else 0.5
    return float(per_query.mean() - NormalDist().inv_cdf(confidence) * std / np.sqrt(len(per_query)))


def _recall_per_query(
    index, vectors: np.ndarray, queries: np.ndarray, exact_scores: np.ndarray, exact_ids: np.ndarray
) -> np.ndarray:
    found = index.search(queries, exact_ids.shape[1])[1]
    return recall_per_query(found, exact_ids, exact_similarities(vectors, queries, found), exact_scores[:, -1])


def exact_similarities(vectors: np.ndarray, queries: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The exact inner product of each query with each of its found rows (-inf where none was found: -1)."""
    rows = vectors[np.maximum(found, 0)]  # (Q, k, D)
    sims = np.einsum("qkd,qd->qk", rows, queries, dtype=np.float64)
    return np.where(found >= 0, sims, -np.inf)


def recall_at_k(
    found: np.ndarray,
    truth: np.ndarray,
    found_sims: np.ndarray | None = None,
    kth_sims: np.ndarray | None = None,
    tol: float = TIE_TOLERANCE,
) -> float:
    """Mean share of the exact top-k (``truth``, (Q, k) ids) found, row by row.

    With ``found_sims`` (the exact similarity of each found id, :func:`exact_similarities`) and ``kth_sims`` (each
    row's exact k-th similarity), a found id also counts when it ties the k-th: similarity >= k-th - ``tol``. So a
    near-duplicate returned in place of its twin is not a miss. Without them, ids must match.
    """
    return float(recall_per_query(found, truth, found_sims, kth_sims, tol).mean())


def recall_per_query(
    found: np.ndarray,
    truth: np.ndarray,
    found_sims: np.ndarray | None = None,
    kth_sims: np.ndarray | None = None,
    tol: float = TIE_TOLERANCE,
) -> np.ndarray:
    """Each row's share of its exact top-k found, (Q,) float64: :func:`recall_at_k` before the mean."""
    k = truth.shape[1]
    if found_sims is None:
        hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
        return np.array(hits, dtype=np.float64) / k
    if kth_sims is None:
        raise ValueError("recall_at_k: found_sims needs kth_sims, the exact k-th similarity of each row")
    good = (found >= 0) & (found_sims >= np.asarray(kth_sims, dtype=np.float64)[:, None] - tol)
    return np.array([min(k, len(set(f[g].tolist()))) for f, g in zip(found, good)], dtype=np.float64) / k


class FaissGallery:
    def __init__(self, directory: Path, info: dict[str, Any]):
        faiss = _faiss()
        # one OpenMP thread per search: requests search concurrently from the thread pool anyway, and a batch-1
        # query on 2 busy cores took 29 ms p50 with 2 threads against 1.7 ms with 1 (20k x 512 exact scan)
        faiss.omp_set_num_threads(1)
        self.info, self.directory = info, directory
        data = {name: _read_checked(directory, name, digest) for name, digest in info["files"].items()}
        try:
            self._index = faiss.deserialize_index(np.frombuffer(data["index.faiss"], dtype=np.uint8))
        except RuntimeError as err:
            raise GalleryError(
                f"{directory}/index.faiss is not a faiss index ({str(err).splitlines()[0][:120]}); "
                "rebuild it with tools/build_index.py"
            ) from None
        self._ids = np.load(_bytes_io(data["ids.npy"]), allow_pickle=False)
        self._meta = [json.loads(line) for line in data["meta.jsonl"].decode("utf-8").splitlines()]
        if not (self._index.ntotal == len(self._ids) == len(self._meta) == info["count"]):
            raise GalleryError(
                f"{directory}: index has {self._index.ntotal} rows, ids {len(self._ids)}, meta "
                f"{len(self._meta)}, gallery.json {info['count']}; rebuild with tools/build_index.py"
            )
        params = info["index"]
        if params["type"] == "hnsw":
            _set_knob(self._index, "ef_search", params["ef_search"])
        elif params["type"] == "ivf":
            _set_knob(self._index, "nprobe", params["nprobe"])

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, len(self._ids))
        scores, rows = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [
            [Hit(int(self._ids[r]), float(s), self._meta[r]) for s, r in zip(srow, rrow) if r >= 0]
            for srow, rrow in zip(scores, rows)
        ]

    def close(self) -> None:
        self._index = None


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)


def _read_checked(directory: Path, name: str, digest: str) -> bytes:
    try:
        data = (directory / name).read_bytes()
    except OSError as err:
        raise GalleryError(
            f"cannot read gallery file {str(directory / name)!r}: {err.strerror}; rebuild it with tools/build_index.py"
        ) from None
    if sm3(data).hex() != digest:
        raise GalleryError(
            f"{directory / name}: SM3 does not match gallery.json (corrupt or modified); "
            "rebuild it with tools/build_index.py"
        )
    return data


# -- the Milvus backend --------------------------------------------------------------------------------
def _milvus_client(uri: str, token: str = ""):
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise GalleryError(
            "the milvus backend needs pymilvus (and milvus-lite for a local .db file): "
            "pip install -r requirements/lock.txt"
        ) from None
    try:
        return MilvusClient(uri, token=token) if token else MilvusClient(uri)
    except Exception as err:
        raise GalleryError(
            f"cannot open Milvus at {uri!r}: {type(err).__name__}: {str(err).splitlines()[0][:200]}; "
            "is another process holding a Milvus Lite file, or is the server down?"
        ) from None


class MilvusGallery:
    def __init__(self, directory: Path, info: dict[str, Any], uri: str | None = None, token: str = ""):
        self.info, self.directory = info, directory
        spec = info["milvus"]
        self.collection = spec["collection"]
        self._uri = uri or _resolve_uri(spec["uri"], directory)
        self._client = _milvus_client(self._uri, token)
        try:
            if not self._client.has_collection(self.collection):
                raise GalleryError(
                    f"Milvus at {spec['uri']!r} has no collection {self.collection!r}; "
                    "rebuild with tools/build_index.py --backend milvus"
                )
            self._client.load_collection(self.collection)
            count = int(self._client.get_collection_stats(self.collection)["row_count"])
        except GalleryError:
            raise
        except Exception as err:
            raise GalleryError(f"Milvus collection {self.collection!r} cannot be loaded: {str(err)[:200]}") from None
        if count != info["count"]:
            raise GalleryError(
                f"Milvus collection {self.collection!r} has {count} rows, gallery.json says "
                f"{info['count']}; rebuild with tools/build_index.py --backend milvus"
            )

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, self.info["count"])
        results = self._client.search(
            self.collection,
            data=[q.tolist() for q in queries],
            limit=k,
            output_fields=["meta"],
            search_params={"metric_type": "IP"},
        )
        return [
            [Hit(int(h["id"]), float(h["distance"]), json.loads(h["entity"]["meta"])) for h in row] for row in results
        ]

    def close(self) -> None:
        self._client.close()
        _release_lite(self._uri)


def _release_lite(uri: str) -> None:
    """Stop this process's Milvus Lite server for ``uri`` (pymilvus keeps it, and its file lock, until exit)."""
    if "://" not in uri:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def _resolve_uri(uri: str, directory: Path) -> str:
    """A relative Milvus Lite file is relative to the gallery directory; URLs are used as they are."""
    if "://" in uri or os.path.isabs(uri):
        return uri
    return str(directory / uri)


def _write_milvus(directory: Path, spec: dict[str, Any], vectors, ids, meta, log) -> dict[str, Any]:
    uri, collection = spec.get("uri") or "gallery.db", spec["collection"]
    client = _milvus_client(_resolve_uri(uri, directory))
    try:
        _fill_collection(client, collection, vectors, ids, meta, spec, log)
    finally:
        client.close()
        _release_lite(_resolve_uri(uri, directory))
    return {"uri": uri, "collection": collection, "index_type": _milvus_index_type(spec)}


def _milvus_index_type(spec: dict[str, Any]) -> str:
    return {"exact": "FLAT", "ivf": "IVF_FLAT"}.get(spec["index"], "AUTOINDEX")


def _fill_collection(client, collection: str, vectors, ids, meta, spec: dict[str, Any], log) -> None:
    from pymilvus import DataType, MilvusClient

    if client.has_collection(collection):
        client.drop_collection(collection)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    schema.add_field("meta", DataType.VARCHAR, max_length=8192)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=_milvus_index_type(spec), metric_type="IP")
    client.create_collection(collection, schema=schema, index_params=index)
    step = 5000
    for i in range(0, len(vectors), step):
        rows = [
            {"id": int(ids[j]), "vector": vectors[j].tolist(), "meta": json.dumps(meta[j], ensure_ascii=False)}
            for j in range(i, min(i + step, len(vectors)))
        ]
        client.insert(collection, rows)
        if len(vectors) > step:
            log(f"[gallery] milvus inserted {min(i + step, len(vectors))}/{len(vectors)}")
    client.flush(collection)


# -- writing and opening ---------------------------------------------------------------------------------
def write_gallery(
    directory: str | os.PathLike,
    vectors: np.ndarray,
    ids: Sequence[int],
    meta: Sequence[dict[str, Any]],
    *,
    kind: str,
    model: dict[str, Any],
    spec: dict[str, Any],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write a gallery of unit ``vectors`` to ``directory`` atomically (a sibling temp dir, then rename).

    ``model``: name, version, sequence of the package that embedded them (the service refuses a gallery of
    another model). ``spec``: backend (faiss | milvus), index (exact | hnsw | ivf | auto) and its knobs.
    """
    if kind not in KINDS:
        raise GalleryError(f"kind {kind!r}: choose one of {KINDS}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(ids) or len(ids) != len(meta) or not len(ids):
        raise GalleryError(f"vectors {vectors.shape}, {len(ids)} ids and {len(meta)} meta rows must agree (and be >0)")
    if len(np.unique(ids)) != len(ids):
        raise GalleryError("gallery ids must be unique; found duplicates")
    spec = {**INDEX_DEFAULTS, "backend": "faiss", "index": "auto", **spec}
    directory = Path(directory)
    # one Milvus collection per gallery directory: galleries sharing a server never drop each other's rows
    spec["collection"] = spec.get("collection") or re.sub(r"[^A-Za-z0-9_]", "_", f"pmm_{directory.name}")
    info: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "backend": spec["backend"],
        "dim": int(vectors.shape[1]),
        "count": len(ids),
        "model": model["name"],
        "version": model.get("version"),
        "sequence": model.get("sequence"),
        "files": {},
    }
    start = time.perf_counter()
    with staged_directory(directory) as tmp:  # complete or not at all; a failed build leaves nothing behind
        if spec["backend"] == "faiss":
            index, info["index"] = make_faiss_index(vectors, spec, log)
            buf = _bytes_io(b"")
            np.save(buf, ids, allow_pickle=False)
            payload = {
                "index.faiss": memoryview(_faiss().serialize_index(index)),  # not .tobytes(): one copy less
                "ids.npy": buf.getvalue(),
                "meta.jsonl": "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in meta).encode("utf-8"),
            }
            for name, data in payload.items():
                (tmp / name).write_bytes(data)
                info["files"][name] = sm3(data).hex()
        elif spec["backend"] == "milvus":
            info["index"] = {"type": spec["index"]}
            info["milvus"] = _write_milvus(tmp, spec, vectors, ids, meta, log)
        else:
            raise GalleryError(f"unknown gallery backend {spec['backend']!r}; choose 'faiss' or 'milvus'")
        info["build_seconds"] = round(time.perf_counter() - start, 3)
        (tmp / "gallery.json").write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
    return info


def open_gallery(
    directory: str | os.PathLike,
    expect_model: str | None = None,
    expect_dim: int | None = None,
    milvus_uri: str | None = None,
    milvus_token: str = "",
):
    """Open the gallery at ``directory`` (either backend) and check it belongs to ``expect_model``.

    ``milvus_uri`` / ``milvus_token``: for a Milvus gallery, the server to use instead of gallery.json's."""
    directory = Path(directory)
    try:
        info = json.loads((directory / "gallery.json").read_text(encoding="utf-8"))
    except OSError as err:
        raise GalleryError(
            f"no gallery at {str(directory)!r} ({err.strerror}); build one with tools/build_index.py"
        ) from None
    except ValueError:
        raise GalleryError(
            f"{directory}/gallery.json is not JSON (corrupt); rebuild with tools/build_index.py"
        ) from None
    if info.get("format") != FORMAT or info.get("kind") not in KINDS:
        raise GalleryError(
            f"{directory}/gallery.json: format {info.get('format')!r} kind {info.get('kind')!r} not "
            f"supported (format {FORMAT}, kinds {KINDS}); rebuild with tools/build_index.py"
        )
    if expect_model is not None and info["model"] != expect_model:
        raise GalleryError(
            f"gallery {str(directory)!r} was embedded by model {info['model']!r}, the service runs "
            f"{expect_model!r}; rebuild it with this model's package"
        )
    if expect_dim is not None and info["dim"] != expect_dim:
        raise GalleryError(
            f"gallery {str(directory)!r} holds {info['dim']}-d vectors, the model gives {expect_dim}-d; "
            "rebuild it with this model's package"
        )
    with _shared_lock(directory):
        if info["backend"] == "faiss":
            return FaissGallery(directory, info)
        if info["backend"] == "milvus":
            return MilvusGallery(directory, info, milvus_uri, milvus_token)
    raise GalleryError(f"{directory}/gallery.json: unknown backend {info['backend']!r}")


LOCK_NAME = ".lock"


class _shared_lock:
    """A shared flock on ``<gallery>.lock`` beside the gallery: refused at once while a writer holds it."""

    def __init__(self, directory: Path):
        self.path = directory.with_name(directory.name + LOCK_NAME)

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644) if self._creatable() else None
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                raise GalleryError(
                    f"gallery {str(self.path)[: -len(LOCK_NAME)]!r} is locked by a writer "
                    "(tools/build_index.py running?); retry when it finishes"
                ) from None
        return self

    def _creatable(self) -> bool:
        return self.path.exists() or os.access(self.path.parent, os.W_OK)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


class exclusive_lock:
    """What tools/build_index.py holds while it writes a gallery (readers are refused meanwhile)."""

    def __init__(self, directory: str | os.PathLike):
        directory = Path(directory)
        self.path = directory.with_name(directory.name + LOCK_NAME)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise GalleryError(f"{self.path} is held by another writer or reader; wait for it") from None
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
