"""One gallery interface, the same tests on every backend: faiss exact / HNSW / IVF and Milvus (Lite)."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from paddle_mm.serving.gallery import (
    GalleryError,
    exact_similarities,
    exclusive_lock,
    open_gallery,
    recall_at_k,
    write_gallery,
)

MODEL = {"name": "m", "version": "1", "sequence": 1}
SPECS = {
    "faiss-exact": {"backend": "faiss", "index": "exact"},
    "faiss-hnsw": {"backend": "faiss", "index": "hnsw"},
    "faiss-ivf": {"backend": "faiss", "index": "ivf"},  # 8-bit codes + exact re-rank, the default
    "faiss-ivf-flat": {"backend": "faiss", "index": "ivf", "ivf_codes": "flat"},
    "milvus-lite": {"backend": "milvus", "index": "exact", "uri": "gallery.db"},
}


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 fixed centres: structure like real embeddings, so approximate indexes can be judged."""
    centres = np.random.default_rng(0).standard_normal((50, dim))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 50, n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(3000), clustered(40, seed=9)


@pytest.fixture(scope="module", params=list(SPECS))
def built(request, data, tmp_path_factory):
    vectors, _ = data
    out = tmp_path_factory.mktemp(request.param) / "g"
    info = write_gallery(
        out,
        vectors,
        np.arange(3000) * 7,
        [{"n": i} for i in range(3000)],
        kind="image",
        model=MODEL,
        spec=SPECS[request.param],
        log=lambda _m: None,
    )
    return request.param, out, info


def test_search_agrees_with_exact(built, data):
    name, out, info = built
    vectors, queries = data
    gallery = open_gallery(out, expect_model="m", expect_dim=64)
    try:
        hits = gallery.search(queries, 10)
    finally:
        gallery.close()
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] * 7
    found = np.array([[h.id for h in row] for row in hits])
    assert found.shape == (40, 10)
    recall = recall_at_k(found, truth)
    assert recall >= (0.999 if "exact" in name or "milvus" in name else 0.95), (name, recall)
    for row, query in zip(hits, queries):  # every hit's meta and exact score
        for hit in row:
            assert hit.meta == {"n": hit.id // 7}
            assert abs(hit.score - float(query @ vectors[hit.id // 7])) < 1e-5, (name, hit)
    if info["index"]["type"] in ("hnsw", "ivf"):
        assert info["index"]["recall_at_10"] >= 0.95


def test_wrong_model_or_dim_is_refused(built):
    _, out, _ = built
    with pytest.raises(GalleryError, match="embedded by model 'm'"):
        open_gallery(out, expect_model="other")
    with pytest.raises(GalleryError, match="64-d vectors"):
        open_gallery(out, expect_dim=32)


def test_locked_gallery_is_refused_not_waited_for(built):
    _, out, _ = built
    with exclusive_lock(out):
        with pytest.raises(GalleryError, match="locked by a writer"):
            open_gallery(out)
    open_gallery(out).close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "json"])
def test_corrupt_faiss_files_are_refused(damage, data, tmp_path):
    vectors, _ = data
    out = tmp_path / "g"
    write_gallery(
        out,
        vectors[:500],
        range(500),
        [{}] * 500,
        kind="image",
        model=MODEL,
        spec={"index": "hnsw"},
        log=lambda _m: None,
    )
    index = out / "index.faiss"
    if damage == "flip":  # one bit of one stored vector: faiss itself would load this without complaint
        raw = bytearray(index.read_bytes())
        raw[len(raw) - 4 * 64 * 250] ^= 0x01
        index.write_bytes(bytes(raw))
    elif damage == "truncate":
        index.write_bytes(index.read_bytes()[:1000])
    else:
        (out / "gallery.json").write_text("{not json")
    with pytest.raises(GalleryError, match="SM3 does not match" if damage != "json" else "not JSON"):
        open_gallery(out)


def _hold_milvus(uri, ready, done):
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    ready.set()
    done.wait(60)
    client.close()


def test_milvus_lite_file_held_by_another_process_is_refused(data, tmp_path):
    vectors, _ = data
    out = tmp_path / "g"
    write_gallery(
        out,
        vectors[:200],
        range(200),
        [{}] * 200,
        kind="image",
        model=MODEL,
        spec=SPECS["milvus-lite"],
        log=lambda _m: None,
    )
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_milvus, args=(str(out / "gallery.db"), ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(GalleryError, match="cannot open Milvus"):
            open_gallery(out)
    finally:
        done.set()
        holder.join(30)
    open_gallery(out).close()


def test_corrupt_milvus_lite_file_is_refused(data, tmp_path):
    vectors, _ = data
    out = tmp_path / "g"
    write_gallery(
        out,
        vectors[:200],
        range(200),
        [{}] * 200,
        kind="image",
        model=MODEL,
        spec=SPECS["milvus-lite"],
        log=lambda _m: None,
    )
    files = sorted((p for p in (out / "gallery.db").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    for f in files:  # Milvus Lite keeps a data directory: garble every file in it
        f.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(GalleryError):
        open_gallery(out)


def test_info_is_written(built):
    _, out, info = built
    on_disk = json.loads((out / "gallery.json").read_text())
    assert on_disk["count"] == 3000 and on_disk["dim"] == 64 and on_disk["model"] == "m"


def test_tuning_covers_the_queries_the_gallery_will_get(data, tmp_path):
    """Queries far from the gallery (cross-modal ones are) need a larger efSearch than perturbed gallery vectors."""
    vectors, _ = data
    rng = np.random.default_rng(3)
    far = rng.standard_normal((200, 64)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    plain = write_gallery(
        tmp_path / "a",
        vectors,
        range(3000),
        [{}] * 3000,
        kind="image",
        model=MODEL,
        spec={"index": "hnsw", "hnsw_m": 8},
        log=lambda _m: None,
    )
    tuned = write_gallery(
        tmp_path / "b",
        vectors,
        range(3000),
        [{}] * 3000,
        kind="image",
        model=MODEL,
        spec={"index": "hnsw", "hnsw_m": 8, "tune_queries": far[:100]},
        log=lambda _m: None,
    )
    assert tuned["index"]["ef_search"] > plain["index"]["ef_search"], (plain["index"], tuned["index"])
    gallery = open_gallery(tmp_path / "b")
    found = np.array([[h.id for h in row] for row in gallery.search(far[100:], 10)])
    gallery.close()
    assert recall_at_k(found, np.argsort(-(far[100:] @ vectors.T), axis=1)[:, :10]) >= 0.9


def test_auto_is_exact_when_small_and_ivf_above(data, tmp_path, monkeypatch):
    from paddle_mm.serving import gallery as gallery_module

    vectors, queries = data
    common = {"kind": "image", "model": MODEL, "spec": {}, "log": lambda _m: None}
    small = write_gallery(tmp_path / "a", vectors, range(3000), [{}] * 3000, **common)
    monkeypatch.setattr(gallery_module, "AUTO_EXACT_BELOW", 1000)
    large = write_gallery(tmp_path / "b", vectors, range(3000), [{}] * 3000, **common)
    assert small["index"]["type"] == "exact" and large["index"]["type"] == "ivf", (small, large)
    params = large["index"]
    assert params["codes"] == "sq8" and params["refine"] == 16 and params["nlist"] == int(4 * np.sqrt(3000))
    assert params["recall_at_10"] >= params["recall_at_10_lower"] >= 0.95 and 1 <= params["nprobe"] < params["nlist"]
    assert params["confidence"] == 0.95 and [(s["set"], s["queries"]) for s in params["tuning"]] == [("near", 200)]
    gallery = open_gallery(tmp_path / "b")  # the tuned nprobe is the one the opened gallery searches with
    try:
        import faiss

        assert faiss.extract_index_ivf(gallery._index).nprobe == params["nprobe"]
        found = np.array([[h.id for h in row] for row in gallery.search(queries, 10)])
    finally:
        gallery.close()
    assert recall_at_k(found, np.argsort(-(queries @ vectors.T), axis=1)[:, :10]) >= 0.9


def test_recall_counts_ties_at_the_kth_similarity():
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 1, 2, 3]]  # rows 1 and 2 are the same vector
    query = np.array([[0.8, 0.6, 0.0, 0.0]], np.float32)  # sims 0.8, 0.6, 0.6, 0, 0
    truth = np.array([[0, 1]])
    kth = np.array([0.6])
    twin = np.array([[0, 2]])  # the twin of the exact 2nd: a right answer
    assert recall_at_k(twin, truth) == 0.5  # ids alone call it a miss
    assert recall_at_k(twin, truth, exact_similarities(vectors, query, twin), kth) == 1.0
    assert recall_at_k(twin, truth, np.array([[0.8, 0.6 - 5e-7]]), kth) == 1.0  # within 1e-6: a tie (float noise)
    assert recall_at_k(twin, truth, np.array([[0.8, 0.6 - 2e-6]]), kth) == 0.5
    below = np.array([[0, 3]])
    assert recall_at_k(below, truth, exact_similarities(vectors, query, below), kth) == 0.5
    missing = np.array([[2, -1]])  # -1: nothing found; never counts, even though row 0 "ties" nothing
    sims = exact_similarities(vectors, query, missing)
    assert sims[0, 1] == -np.inf and recall_at_k(missing, truth, sims, kth) == 0.5
    repeated = np.array([[1, 1]])  # one id twice counts once
    assert recall_at_k(repeated, truth, exact_similarities(vectors, query, repeated), kth) == 0.5
    with pytest.raises(ValueError, match="kth_sims"):
        recall_at_k(twin, truth, exact_similarities(vectors, query, twin))


def test_tuning_judges_duplicates_by_similarity():
    """A gallery holding every vector three times: the exact top-10 is 3 + 3 + 3 + 1 copies, and an index that
    returns another copy of the 10th is right (recall 1.0). By ids it would be 0.9 at every efSearch."""
    import faiss

    from paddle_mm.serving.gallery import _tune

    n = 400
    vectors = np.concatenate([clustered(n)] * 3)  # rows i, i + n, i + 2n tie for every query
    exact = faiss.IndexFlatIP(64)
    exact.add(vectors)

    class CopyIndex:  # returns what the exact scan returns, except another copy of the 10th hit
        hnsw = faiss.IndexHNSWFlat(64, 4).hnsw

        def search(self, queries, k):
            top = exact.search(queries, k)[1]
            for row in top:
                row[k - 1] = next(c for c in row[k - 1] % n + n * np.arange(3) if c not in row)
            return None, top

    value, sets = _tune(CopyIndex(), vectors, "ef_search", (32, 64), 0.95)
    assert value == 32 and [s["recall_at_10"] for s in sets] == [1.0], sets


def test_recall_lower_bound_values():
    from paddle_mm.serving.gallery import recall_lower_bound

    # mean 0.5, sample std sqrt(1/3), n 4: 0.5 - 1.6449 * 0.57735 / 2
    assert recall_lower_bound(np.array([1.0, 1.0, 0.0, 0.0]), 0.95) == pytest.approx(0.025164, abs=1e-5)
    assert recall_lower_bound(np.array([1.0, 1.0, 0.0, 0.0]), 0.5) == pytest.approx(0.5)  # z = 0: the mean
    assert recall_lower_bound(np.ones(50), 0.95) == 1.0
    assert recall_lower_bound(np.array([1.0]), 0.95) == pytest.approx(1 - 1.6449 * 0.5, abs=1e-4)
    with pytest.raises(ValueError, match="tune_confidence 1.0"):
        recall_lower_bound(np.ones(3), 1.0)


def test_tuning_picks_the_larger_knob_when_only_the_point_estimate_passes():
    """At efSearch 32 every 20th of the 200 tuning queries finds 1 of its 10: recall 0.955 (passes 0.95) but its
    95% lower bound is 0.932 (fails), so tuning must go on to 64, where the index is exact. With confidence 0.5
    (the point estimate) it stops at 32."""
    import faiss

    from paddle_mm.serving.gallery import _tune

    vectors = clustered(2000)
    exact = faiss.IndexFlatIP(64)
    exact.add(vectors)

    class ShakyIndex:
        hnsw = faiss.IndexHNSWFlat(64, 4).hnsw

        def search(self, queries, k):
            top = exact.search(queries, k)[1]
            if self.hnsw.efSearch == 32:
                top[::20, 1:] = -1  # every 20th query: only its best hit
            return None, top

    value, sets = _tune(ShakyIndex(), vectors, "ef_search", (32, 64), 0.95)
    assert value == 64 and sets[0]["recall_at_10"] == 1.0, sets
    value, sets = _tune(ShakyIndex(), vectors, "ef_search", (32, 64), 0.95, confidence=0.5)
    assert value == 32 and sets == [{"set": "near", "queries": 200, "recall_at_10": 0.955, "lower_bound": 0.955}]
    far = clustered(500, seed=5)  # every tuning query counts (there was a cap of 200 a set)
    value, sets = _tune(ShakyIndex(), vectors, "ef_search", (32, 64), 0.95, [far], confidence=0.5)
    assert value == 32 and [(s["set"], s["queries"]) for s in sets] == [("near", 200), ("tune_queries[0]", 500)]
    value, sets = _tune(ShakyIndex(), vectors, "ef_search", (32,), 0.95)  # none passes: the last, with its figures
    assert value == 32 and sets[0]["recall_at_10"] == 0.955 and sets[0]["lower_bound"] == pytest.approx(0.9321, 1e-3)


def _auto_gallery(path, vectors, spec, monkeypatch) -> dict:
    """An `auto` gallery of the 3000 test vectors, IVF allowed from 1000 rows; returns gallery.json's dict."""
    from paddle_mm.serving import gallery as gallery_module

    monkeypatch.setattr(gallery_module, "AUTO_EXACT_BELOW", 1000)
    ids, meta = range(3000), [{}] * 3000
    return write_gallery(path, vectors, ids, meta, kind="image", model=MODEL, spec=spec, log=lambda _m: None)


def test_auto_falls_back_to_exact_when_ivf_misses_the_target(data, tmp_path, monkeypatch):
    vectors, queries = data
    no_index_reaches_it = {"target_recall": 1.01}
    info = _auto_gallery(tmp_path / "g", vectors, no_index_reaches_it, monkeypatch)
    assert info["index"]["type"] == "exact" and info["index"]["rejected"]["type"] == "ivf", info["index"]
    gallery = open_gallery(tmp_path / "g")
    found = np.array([[h.id for h in row] for row in gallery.search(queries, 10)])
    gallery.close()
    assert recall_at_k(found, np.argsort(-(queries @ vectors.T), axis=1)[:, :10]) == 1.0


def test_auto_falls_back_when_only_the_point_estimate_reaches_the_target(data, tmp_path, monkeypatch):
    """One tuning caption: IVF finds its top-10 (recall 1.0), but one query bounds nothing (lower bound ~0.18)."""
    vectors, queries = data
    info = _auto_gallery(tmp_path / "g", vectors, {"tune_queries": queries[:1]}, monkeypatch)
    rejected = info["index"]["rejected"]
    assert info["index"]["type"] == "exact" and rejected["type"] == "ivf", info["index"]
    assert rejected["recall_at_10"] >= 0.95 > rejected["recall_at_10_lower"], rejected
