"""Signing: hash a model directory into a manifest, sign it, write ``PACKAGE.manifest`` and ``PACKAGE.sig``."""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..io import atomic_write
from . import fsio, hashing
from .errors import PackageConfigError
from .keys import Signer, sign_message
from .manifest import (
    DEFAULT_CHUNK_SIZE,
    KEYS_NAME,
    MANIFEST_NAME,
    MAX_CHUNK_SIZE,
    MAX_FIELD_CHARS,
    MAX_INT,
    MIN_CHUNK_SIZE,
    RESERVED_NAMES,
    SIGNATURE_NAME,
    UTC,
    FileEntry,
    Manifest,
    check_file_content,
    check_file_type,
    check_model_name,
    check_paths,
    check_safetensors,
    detect_model_format,
    format_time,
    is_safetensors,
    safetensors_header_end,
)
from .sm2 import DEFAULT_USER_ID
from .sm3 import default_workers


def hash_tree(
    root: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK_SIZE, workers: int | None = None
) -> tuple[FileEntry, ...]:
    """Entries for every payload file under ``root`` (sorted by path), enforcing the file policy."""
    root_fd = fsio.open_root(root)
    try:
        listing, _ = fsio.list_files(root_fd)
        if KEYS_NAME in listing:
            raise PackageConfigError(f"{os.fspath(root)!r} is an encrypted package; sign the plaintext directory")
        paths = sorted(p for p in listing if p not in RESERVED_NAMES)
        entries = tuple(FileEntry(p, listing[p], ()) for p in paths)
        check_paths(entries)
        for p in paths:
            check_file_type(p)
        with ThreadPoolExecutor(workers or default_workers()) as pool:
            return tuple(_hash_file(pool, root_fd, e, chunk_size) for e in entries)
    finally:
        os.close(root_fd)


def _hash_file(pool: ThreadPoolExecutor, root_fd: int, entry: FileEntry, chunk_size: int) -> FileEntry:
    fd, size = fsio.open_file(root_fd, entry.path)
    try:
        read = hashing.plain_reader(fd, entry.path, size, chunk_size, None)
        safetensors = is_safetensors(entry.path)
        results = [f.result() for f in hashing.submit(pool, read, hashing.chunk_count(size, chunk_size), safetensors)]
        head = results[0][1]
        check_file_content(entry.path, head)
        if safetensors:  # the same full header check as the verifier's, before the file is signed
            end = safetensors_header_end(entry.path, head, size)
            check_safetensors(entry.path, head if len(head) >= end else fsio.read_exact(fd, 0, end, entry.path), size)
    finally:
        os.close(fd)
    return FileEntry(entry.path, size, tuple(digest.hex() for digest, _ in results))


def sign_package(
    root: str | os.PathLike,
    signer: Signer,
    *,
    model: str,
    version: str,
    sequence: int,
    expires: dt.datetime | None = None,
    user_id: bytes = DEFAULT_USER_ID,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    now: dt.datetime | None = None,
    workers: int | None = None,
) -> Manifest:
    """Sign the model directory ``root`` in place and return the manifest written.

    ``sequence`` must grow with every release of ``model``: verifiers refuse anything older than
    the highest they have accepted. ``user_id`` is the SM2 distinguishing ID (GB/T 35276 default).
    """
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise PackageConfigError(f"chunk size {chunk_size} must lie in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    if not 0 <= sequence <= MAX_INT:
        raise PackageConfigError(f"sequence {sequence} must be an integer in [0, 2**63-1] that grows every release")
    if not version or len(version) > MAX_FIELD_CHARS or not version.isprintable():
        raise PackageConfigError(f"version {version!r} must be 1 to {MAX_FIELD_CHARS} printable characters")
    now = now or dt.datetime.now(UTC)
    if expires is not None and expires <= now:
        raise PackageConfigError(f"expiry {format_time(expires)} is not in the future")
    files = hash_tree(root, chunk_size, workers)
    manifest = Manifest(
        model=check_model_name(model),
        version=version,
        sequence=sequence,
        created=format_time(now),
        expires=None if expires is None else format_time(expires),
        key_id=signer.public_key.key_id,
        user_id=user_id.decode(),
        model_format=detect_model_format([f.path for f in files]),
        chunk_size=chunk_size,
        files=files,
    )
    write_signed(root, manifest.encode(), sign_message(signer, manifest.encode(), user_id))
    return manifest


def write_signed(root: str | os.PathLike, manifest_bytes: bytes, signature: bytes) -> None:
    """Write manifest and signature, each through a temporary file and an atomic rename."""
    for name, data in ((MANIFEST_NAME, manifest_bytes), (SIGNATURE_NAME, signature)):
        atomic_write(Path(root) / name, data)
