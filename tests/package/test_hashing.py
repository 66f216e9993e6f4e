"""Chunked SM3: digests equal SM3 of each slice, and hashing runs outside the GIL (so chunks hash in parallel)."""

from __future__ import annotations

from paddle_mm.package import hash_tree
from paddle_mm.package.sm3 import sm3

CHUNK = 64 << 10


def safetensors_bytes(data: bytes) -> bytes:
    """A valid safetensors file holding ``data`` as one U8 tensor."""
    header = f'{{"a":{{"dtype":"U8","shape":[{len(data)}],"data_offsets":[0,{len(data)}]}}}}'.encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def test_chunk_digests_are_sm3_of_each_slice(tmp_path) -> None:
    data = bytes(range(256)) * 1000  # 256000 bytes: 3 full chunks + a 59392-byte tail
    (tmp_path / "a.safetensors").write_bytes(safetensors_bytes(data))
    (tmp_path / "empty.txt").write_bytes(b"")
    entries = {e.path: e for e in hash_tree(tmp_path, CHUNK, workers=2)}
    blob = (tmp_path / "a.safetensors").read_bytes()
    assert entries["a.safetensors"].chunks == tuple(sm3(blob[i:i + CHUNK]).hex() for i in range(0, len(blob), CHUNK))
    assert len(entries["a.safetensors"].chunks) == 4
    empty_sm3 = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
    assert entries["empty.txt"].chunks == (sm3(b"").hex(),) == (empty_sm3,)


def test_workers_do_not_change_digests(tmp_path) -> None:
    (tmp_path / "w.safetensors").write_bytes(safetensors_bytes(bytes(300_000)))
    assert hash_tree(tmp_path, CHUNK, workers=1) == hash_tree(tmp_path, CHUNK, workers=4)
