"""Chunk hashing on a thread pool: each task reads one chunk (or decrypts one segment) and hashes it.

hashlib's SM3 ``update`` releases the GIL for buffers over 2 KiB, and ``os.preadv`` releases it while
reading, so chunks of one file hash in parallel on all cores. When the verified bytes are kept, the
file is read once into memory and the chunks hashed are slices of that very buffer: the bytes hashed
are the bytes later handed to the loader, and nothing is read twice.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from . import fsio
from .encrypt import EncryptedFile
from .manifest import MAX_SAFETENSORS_HEADER
from .sm3 import sm3

HEAD_BYTES = 16  # enough for the pickle / zip / safetensors content checks
Reader = Callable[[int], "bytes | memoryview"]


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a ``size``-byte file; an empty file has one (empty) chunk."""
    return max(1, -(-size // chunk_size))


def plain_reader(fd: int, path: str, size: int, chunk_size: int, data: bytes | None) -> Reader:
    """Chunk i of a plaintext file: a slice of ``data`` when the whole file is already in memory,
    else read into this thread's scratch buffer."""

    def read(i: int) -> memoryview:
        offset = i * chunk_size
        n = min(chunk_size, size - offset)
        if data is not None:
            return memoryview(data)[offset : offset + n]
        view = fsio.scratch(n)
        fsio.read_into(fd, offset, view, path)
        return view

    return read


def encrypted_reader(enc: EncryptedFile, chunk_size: int, buf: bytearray | None) -> Reader:
    def read(i: int) -> bytes:
        plain = enc.segment(i)
        if buf is not None:
            buf[i * chunk_size : i * chunk_size + len(plain)] = plain
        return plain

    return read


def _job(read: Reader, index: int, safetensors: bool) -> tuple[bytes, bytes]:
    data = read(index)
    if index:
        return sm3(data), b""
    keep = HEAD_BYTES
    if safetensors and len(data) >= 8:  # its whole header, as far as chunk 0 holds it
        keep = max(keep, 8 + min(int.from_bytes(data[:8], "little"), MAX_SAFETENSORS_HEADER))
    return sm3(data), bytes(data[:keep])


def submit(pool: ThreadPoolExecutor, read: Reader, count: int, safetensors: bool = False) -> list[Future]:
    """Queue the hashing of chunks 0..count-1; each future gives (SM3 digest, head bytes of chunk 0): the
    first ``HEAD_BYTES``, or for a safetensors file its whole header where chunk 0 holds it."""
    return [pool.submit(_job, read, i, safetensors) for i in range(count)]
