"""Chunked SM3: digests equal SM3 of each slice, and hashing runs outside the GIL (so chunks hash in parallel)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from paddle_mm.package import hash_tree
from paddle_mm.package.sm3 import BACKEND, new, sm3

CHUNK = 64 << 10


def test_chunk_digests_are_sm3_of_each_slice(tmp_path) -> None:
    data = bytes(range(256)) * 1000  # 256000 bytes: 3 full chunks + a 59392-byte tail
    (tmp_path / "a.safetensors").write_bytes((8).to_bytes(8, "little") + b'{"a":1} ' + data)
    (tmp_path / "empty.txt").write_bytes(b"")
    entries = {e.path: e for e in hash_tree(tmp_path, CHUNK, workers=2)}
    blob = (tmp_path / "a.safetensors").read_bytes()
    assert entries["a.safetensors"].chunks == tuple(sm3(blob[i:i + CHUNK]).hex() for i in range(0, len(blob), CHUNK))
    assert len(entries["a.safetensors"].chunks) == 4
    empty_sm3 = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
    assert entries["empty.txt"].chunks == (sm3(b"").hex(),) == (empty_sm3,)


def test_workers_do_not_change_digests(tmp_path) -> None:
    (tmp_path / "w.safetensors").write_bytes((8).to_bytes(8, "little") + b'{"a":1} ' + bytes(300_000))
    assert hash_tree(tmp_path, CHUNK, workers=1) == hash_tree(tmp_path, CHUNK, workers=4)


def _spin_rate(block: Callable[[], object]) -> float:
    """Increments per second a second Python thread makes while this thread runs ``block``."""
    started, stop = threading.Event(), threading.Event()
    count = 0

    def spin() -> None:
        nonlocal count
        started.set()
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=spin)
    thread.start()
    started.wait()
    before, t0 = count, time.perf_counter()
    block()
    rate = (count - before) / (time.perf_counter() - t0)
    stop.set()
    thread.join()
    return rate


def test_sm3_update_releases_the_gil() -> None:
    """While this thread is inside one large ``update``, another Python thread keeps running.

    Measured on a busy 2-core machine against the other thread's free pace: SM3 ``update`` left it
    0.34-1.08 of it, a call holding the GIL (``sorted`` of 6M ints) 0.01-0.08. Best of three tries,
    so a busy moment does not fail the test, while a GIL-holding hash could never pass it."""
    data = bytes(64 << 20)
    ratios = []
    for _ in range(3):
        free = _spin_rate(lambda: time.sleep(0.2))
        ratios.append(_spin_rate(lambda: new().update(data)) / free)
        if ratios[-1] > 0.25:
            return
    pytest.fail(f"{BACKEND} SM3 update let another thread run at only {max(ratios):.2f} of its free pace: "
                "it holds the GIL, so chunks cannot hash in parallel")
