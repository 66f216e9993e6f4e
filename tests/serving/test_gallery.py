"""One gallery interface, the same tests on every backend: faiss exact / HNSW / IVF and Milvus (Lite)."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from paddle_mm.serving.gallery import GalleryError, exclusive_lock, open_gallery, recall_at_k, write_gallery

MODEL = {"name": "m", "version": "1", "sequence": 1}
SPECS = {
    "faiss-exact": {"backend": "faiss", "index": "exact"},
    "faiss-hnsw": {"backend": "faiss", "index": "hnsw"},
    "faiss-ivf": {"backend": "faiss", "index": "ivf"},
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


def test_auto_is_exact_when_small_and_hnsw_above(data, tmp_path, monkeypatch):
    from paddle_mm.serving import gallery as gallery_module

    vectors, _ = data
    common = {"kind": "image", "model": MODEL, "spec": {}, "log": lambda _m: None}
    small = write_gallery(tmp_path / "a", vectors, range(3000), [{}] * 3000, **common)
    monkeypatch.setattr(gallery_module, "AUTO_EXACT_BELOW", 1000)
    large = write_gallery(tmp_path / "b", vectors, range(3000), [{}] * 3000, **common)
    assert small["index"]["type"] == "exact" and large["index"]["type"] == "hnsw", (small, large)
    assert large["index"]["ef_construction"] == 40 and large["index"]["recall_at_10"] >= 0.95


def test_auto_falls_back_to_exact_when_hnsw_misses_the_target(data, tmp_path, monkeypatch):
    from paddle_mm.serving import gallery as gallery_module

    vectors, queries = data
    monkeypatch.setattr(gallery_module, "AUTO_EXACT_BELOW", 1000)
    info = write_gallery(
        tmp_path / "g",
        vectors,
        range(3000),
        [{}] * 3000,
        kind="image",
        model=MODEL,
        spec={"target_recall": 1.01},  # no approximate index reaches it
        log=lambda _m: None,
    )
    assert info["index"]["type"] == "exact" and info["index"]["rejected"]["type"] == "hnsw", info["index"]
    gallery = open_gallery(tmp_path / "g")
    found = np.array([[h.id for h in row] for row in gallery.search(queries, 10)])
    gallery.close()
    assert recall_at_k(found, np.argsort(-(queries @ vectors.T), axis=1)[:, :10]) == 1.0
