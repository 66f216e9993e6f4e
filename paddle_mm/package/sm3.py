"""SM3 (GB/T 32905) through OpenSSL, and chunked hashing on a thread pool.

``hashlib`` is used where the platform OpenSSL has SM3, otherwise ``cryptography``'s SM3 (OpenSSL
inside the wheel). Both release the GIL while hashing a large buffer (hashlib above 2 KiB; measured
for both by tests/package/test_hashing.py), so chunks hash in parallel on a thread pool. Never a
pure-Python SM3 for bulk data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

DIGEST_SIZE = 32


def _hashlib_sm3() -> Callable[[], Any] | None:
    try:
        hashlib.new("sm3")
    except ValueError:
        return None
    return lambda: hashlib.new("sm3")


class _CryptographySM3:
    """hashlib-shaped wrapper over ``cryptography``'s SM3 for OpenSSL builds without it in hashlib."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes

        self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.finalize()


new: Callable[[], Any] = _hashlib_sm3() or _CryptographySM3
BACKEND = "hashlib" if new is not _CryptographySM3 else "cryptography"


def sm3(*parts: bytes | memoryview) -> bytes:
    """SM3 of the concatenation of ``parts`` (32 bytes)."""
    h = new()
    for part in parts:
        h.update(part)
    return h.digest()


def kdf(z: bytes, length: int) -> bytes:
    """The SM2 key-derivation function (GB/T 32918.4 5.4.3) built on SM3."""
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += sm3(z, counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:length])


def default_workers() -> int:
    """Threads for chunk hashing: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
