"""Fail-closed verification of a package directory, in the order the checks must run.

1. origin: manifest and signature present and within the read budget (refused on their sizes before a
   byte is read), signer key among the local trust anchors (and inside its certificate's validity), SM2
   user ID as configured, signature valid: all on the raw bytes, before the manifest is parsed;
2. claims: model name, sequence (rollback), expiry, algorithm allow-list, paths, file types;
3. layout: exactly the listed files and their directories, regular files only, sizes as signed
   (``PACKAGE.keys`` parsed strictly first: the sizes of an encrypted file depend on it);
4. the data key unwrapped (encrypted packages; only now, after the signature and the layout held);
5. content: SM3 of every chunk (decrypting SM4-GCM segments first for encrypted packages), then
   content policy (no pickle, real safetensors headers);
6. only then the sequence is recorded. Nothing is parsed or loaded before all of this passed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from . import fsio, hashing
from .encrypt import KeysFile, ciphertext_size, open_encrypted
from .errors import (
    AlgorithmError,
    BadSignatureError,
    DigestMismatchError,
    EncryptedPackageError,
    ExpiredError,
    ExtraFileError,
    MalformedManifestError,
    MissingFileError,
    ModelMismatchError,
    RenamedFileError,
    SizeMismatchError,
    TruncatedSegmentError,
    UnsignedPackageError,
    UntrustedKeyError,
    WrongUserIdError,
    show,
)
from .keys import Decryptor
from .manifest import (
    FORMAT_VERSION,
    HASH_ALGORITHM,
    KEYS_NAME,
    MANIFEST_NAME,
    MAX_CHUNK_SIZE,
    MAX_KEYS_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    MIN_CHUNK_SIZE,
    MODEL_FORMATS,
    SIGNATURE_ALGORITHM,
    SIGNATURE_NAME,
    UTC,
    FileEntry,
    Manifest,
    check_envelope,
    check_file_content,
    check_file_type,
    check_paths,
    check_safetensors,
    decode_manifest,
    is_safetensors,
    parse_time,
    peek_signer,
    safetensors_header_end,
)
from .sm3 import default_workers, sm3
from .trust import RollbackStore, TrustAnchor, TrustStore

_FILES_PER_BATCH = 64  # open at most this many payload files at once
# Below this, hash on one thread: splitting 10 MB over 2 threads was slower on a busy 2-core machine
# (53 -> 81 ms; the job waits for the slower half), while 1 GiB gains 10-20% busy and ~45% idle.
PARALLEL_MIN_BYTES = 64 << 20


@dataclass(frozen=True)
class VerifiedPackage:
    """A package that passed every check. ``files`` holds the verified bytes when asked to keep them."""

    path: str
    manifest: Manifest
    manifest_sm3: str
    anchor: TrustAnchor
    files: dict[str, bytes] | None


def verify_package(
    path: str | os.PathLike,
    trust: TrustStore,
    *,
    model: str,
    state: RollbackStore | None,
    decryptor: Decryptor | None = None,
    now: dt.datetime | None = None,
    keep: bool = False,
    workers: int | None = None,
) -> VerifiedPackage:
    """Verify the package directory ``path`` as ``model``; raise a :class:`PackageRefused` subclass if not.

    ``state`` is the rollback store (pass None only where rollback protection is handled elsewhere).
    ``decryptor`` unwraps the data key of an encrypted package; plaintext stays in memory. With
    ``keep`` the verified bytes are returned in ``files`` (what :func:`load_verified` parses).
    ``workers``: hashing threads (default: one per usable CPU for packages of 64 MiB or more, else one).
    """
    now = now or dt.datetime.now(UTC)
    root_fd = fsio.open_root(path)
    try:
        manifest_bytes, manifest, anchor = _check_origin(root_fd, trust, now)
        digest = sm3(manifest_bytes).hex()
        _check_claims(manifest, model, state, digest, now)
        keys_file = _read_keys(root_fd, manifest, decryptor)
        _check_layout(root_fd, manifest, keys_file is not None)
        keys = None if keys_file is None else (keys_file, keys_file.unwrap(decryptor))
        files = _check_contents(root_fd, manifest, keys, keep, workers or _auto_workers(manifest))
    finally:
        os.close(root_fd)
    if state is not None:
        state.record(manifest, digest)
    return VerifiedPackage(os.fspath(path), manifest, digest, anchor, files)


def _check_origin(root_fd: int, trust: TrustStore, now: dt.datetime) -> tuple[bytes, Manifest, TrustAnchor]:
    """Bounded reads, anchor, user ID and signature on the raw bytes; only then is the manifest parsed."""
    data = fsio.read_small(root_fd, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    signature = fsio.read_small(root_fd, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)
    if data is None or signature is None:
        missing = [n for n, v in ((MANIFEST_NAME, data), (SIGNATURE_NAME, signature)) if v is None]
        raise UnsignedPackageError(
            f"{missing} missing: the package is unsigned or was stripped; sign it with `tools/package.py sign`"
        )
    check_envelope(data)
    key_id, user_id = peek_signer(data)
    anchor = trust.find(key_id)
    if anchor is None:
        raise UntrustedKeyError(
            f"signer key {key_id} is not a configured trust anchor; add its public key "
            "or certificate with --trust if (and only if) you trust it"
        )
    if not anchor.valid_at(now):
        raise UntrustedKeyError(
            f"trust anchor {show(anchor.source)} is valid {anchor.not_before} .. {anchor.not_after}, "
            f"not at {now:%Y-%m-%dT%H:%M:%SZ}; renew the certificate"
        )
    if not hmac.compare_digest(user_id.encode(), anchor.user_id):
        raise WrongUserIdError(
            f"manifest signed with SM2 user ID {show(user_id)}, but the anchor is configured "
            f"for {show(anchor.user_id.decode(errors='replace'))}; pass --user-id to match the signer"
        )
    if not anchor.public_key.verify(data, signature, anchor.user_id):
        raise BadSignatureError(
            f"SM2 signature in {SIGNATURE_NAME} does not verify over {MANIFEST_NAME} with key "
            f"{key_id[:16]}... and user ID {show(user_id)}: the manifest or "
            "signature was changed, or signed with another user ID"
        )
    manifest = decode_manifest(data)  # signed bytes from here on: parsed in full, still within the budget
    if (manifest.key_id, manifest.user_id) != (key_id, user_id):
        raise MalformedManifestError("manifest signer fields differ from the ones the signature was checked with")
    return data, manifest, anchor


def _check_claims(manifest: Manifest, model: str, state: RollbackStore | None, digest: str, now: dt.datetime) -> None:
    if manifest.model != model:
        raise ModelMismatchError(
            f"package is for model {show(manifest.model)}, not {show(model)}: another model's "
            "package (replay); deploy the right package or fix --model"
        )
    if state is not None:
        state.check(manifest, digest)
    expiry = manifest.expiry()
    if expiry is not None and now > expiry:
        raise ExpiredError(
            f"package {show(manifest.model)} {show(manifest.version)} expired at {show(manifest.expires)}; "
            "ask the publisher for a newly signed package"
        )
    parse_time(manifest.created)
    claimed = (manifest.format_version, manifest.hash_algorithm, manifest.signature_algorithm)
    allowed = (FORMAT_VERSION, HASH_ALGORITHM, SIGNATURE_ALGORITHM)
    if claimed != allowed or manifest.model_format not in MODEL_FORMATS:
        raise AlgorithmError(
            f"format version, hash, signature {show(claimed)} and model format {show(manifest.model_format)} "
            f"must be {allowed} and one of {MODEL_FORMATS}"
        )
    if not MIN_CHUNK_SIZE <= manifest.chunk_size <= MAX_CHUNK_SIZE:
        raise AlgorithmError(f"chunk size {manifest.chunk_size} outside [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    _check_entries(manifest)


def _check_entries(manifest: Manifest) -> None:
    paths = [f.path for f in manifest.files]
    if paths != sorted(paths):
        raise MalformedManifestError("manifest file entries are not sorted by path")
    check_paths(manifest.files)
    for entry in manifest.files:
        check_file_type(entry.path)
        if entry.size < 0 or len(entry.chunks) != hashing.chunk_count(entry.size, manifest.chunk_size):
            raise MalformedManifestError(
                f"{show(entry.path)}: {len(entry.chunks)} chunk digests do not fit size "
                f"{entry.size} with chunk size {manifest.chunk_size}"
            )


def _read_keys(root_fd: int, manifest: Manifest, decryptor: Decryptor | None) -> KeysFile | None:
    """The unsigned ``PACKAGE.keys``, parsed strictly within the budget; nothing is decrypted here."""
    data = fsio.read_small(root_fd, KEYS_NAME, MAX_KEYS_BYTES)
    if data is None:
        return None
    keys = KeysFile.decode(data)
    if keys.segment_size != manifest.chunk_size:
        raise MalformedManifestError(
            f"{KEYS_NAME} segment size {keys.segment_size} differs from the manifest's chunk size {manifest.chunk_size}"
        )
    if decryptor is None:
        raise EncryptedPackageError(
            "the package is encrypted; pass a recipient private key (--key) to decrypt "
            "it in memory and check its digests"
        )
    return keys


def _check_layout(root_fd: int, manifest: Manifest, encrypted: bool) -> None:
    present, dirs = fsio.list_files(root_fd)
    for name in (MANIFEST_NAME, SIGNATURE_NAME, KEYS_NAME):
        present.pop(name, None)
    expected = {f.path: f for f in manifest.files}
    missing, extra = sorted(set(expected) - set(present)), sorted(set(present) - set(expected))
    if missing and extra:
        raise RenamedFileError(
            f"listed files {show(missing)} are missing and unlisted files {show(extra)} are present: "
            "renamed or swapped files; re-copy the package as signed"
        )
    if missing:
        raise MissingFileError(f"files {show(missing)} are listed in the manifest but missing; re-copy the package")
    if extra:
        raise ExtraFileError(f"files {show(extra)} are not in the signed manifest; remove them or sign them in")
    parents = {p.rsplit("/", 1)[0] for p in expected if "/" in p}
    needed = {"/".join(d.split("/")[: i + 1]) for d in parents for i in range(d.count("/") + 1)}
    empty = sorted(set(dirs) - needed)
    if empty:
        raise ExtraFileError(f"directories {show(empty)} hold no signed file; the file set must be exactly as signed")
    for path, size in present.items():
        _check_size(expected[path], size, manifest.chunk_size, encrypted)


def _check_size(entry: FileEntry, size: int, chunk_size: int, encrypted: bool) -> None:
    want = ciphertext_size(entry.size, chunk_size) if encrypted else entry.size
    if size == want:
        return
    if encrypted and size < want:
        raise TruncatedSegmentError(
            f"{show(entry.path)}: encrypted file is {size} bytes, {want} expected: segments are missing or cut"
        )
    raise SizeMismatchError(f"{show(entry.path)} is {size} bytes; the manifest says {want} (truncated or changed)")


def _auto_workers(manifest: Manifest) -> int:
    return default_workers() if sum(f.size for f in manifest.files) >= PARALLEL_MIN_BYTES else 1


def _check_contents(
    root_fd: int, manifest: Manifest, keys: tuple[KeysFile, bytes] | None, keep: bool, workers: int
) -> dict[str, bytes] | None:
    kept: dict[str, bytes | bytearray] = {}
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(manifest.files), _FILES_PER_BATCH):
            batch = manifest.files[start : start + _FILES_PER_BATCH]
            _check_batch(pool, root_fd, batch, manifest.chunk_size, keys, kept if keep else None)
    return kept if keep else None


def _check_batch(
    pool: ThreadPoolExecutor,
    root_fd: int,
    batch: tuple[FileEntry, ...],
    chunk_size: int,
    keys: tuple[KeysFile, bytes] | None,
    kept: dict[str, bytes | bytearray] | None,
) -> None:
    fds: list[int] = []
    jobs: list[tuple[FileEntry, hashing.Reader, list[Future]]] = []
    try:
        for entry in batch:
            fd, size = fsio.open_file(root_fd, entry.path)
            fds.append(fd)
            _check_size(entry, size, chunk_size, keys is not None)  # again: it may have changed since the listing
            if keys is None:
                data = fsio.read_exact(fd, 0, entry.size, entry.path) if kept is not None else None
                read = hashing.plain_reader(fd, entry.path, entry.size, chunk_size, data)
            else:
                data = bytearray(entry.size) if kept is not None else None
                enc = open_encrypted(fd, entry.path, keys[1], entry.size, chunk_size)
                read = hashing.encrypted_reader(enc, chunk_size, data)
            futures = hashing.submit(pool, read, len(entry.chunks), safetensors=is_safetensors(entry.path))
            jobs.append((entry, read, futures))
            if kept is not None:
                kept[entry.path] = data
        for entry, read, futures in jobs:
            head = _compare(entry, futures, chunk_size)
            _check_content(entry, head, read, chunk_size)
            if kept is not None and isinstance(kept[entry.path], bytearray):
                kept[entry.path] = bytes(kept[entry.path])  # decrypted: parsers such as safetensors want bytes
    finally:
        for _, _, futures in jobs:
            for f in futures:
                f.cancel()
        for _, _, futures in jobs:  # let running tasks finish before their file descriptors close
            for f in futures:
                if not f.cancelled():
                    f.exception()
        for fd in fds:
            os.close(fd)


def _compare(entry: FileEntry, futures: list[Future], chunk_size: int) -> bytes:
    """Check every chunk's SM3 against the manifest; returns the head bytes chunk 0's job kept."""
    head = b""
    for index, future in enumerate(futures):
        digest, first = future.result()
        if not hmac.compare_digest(digest.hex(), entry.chunks[index]):
            raise DigestMismatchError(
                f"{show(entry.path)} chunk {index} (from byte {index * chunk_size}) has SM3 "
                f"{digest.hex()[:16]}..., the manifest {entry.chunks[index][:16]}...: the "
                "file was modified; re-copy the package as signed"
            )
        head = first if index == 0 else head
    return head


def _check_content(entry: FileEntry, head: bytes, read: hashing.Reader, chunk_size: int) -> None:
    """Content policy on verified bytes: pickle and zip headers, and the full safetensors header."""
    check_file_content(entry.path, head)
    if not is_safetensors(entry.path):
        return
    end = safetensors_header_end(entry.path, head, entry.size)
    if len(head) < end:  # a header longer than chunk 0: read its chunks again and check them again
        head = _verified_prefix(entry, read, chunk_size, end)
    check_safetensors(entry.path, head, entry.size)


def _verified_prefix(entry: FileEntry, read: hashing.Reader, chunk_size: int, length: int) -> bytes:
    parts = []
    for index in range(-(-length // chunk_size)):
        data = read(index)
        if not hmac.compare_digest(sm3(data).hex(), entry.chunks[index]):
            raise DigestMismatchError(f"{show(entry.path)} chunk {index} changed while it was verified")
        parts.append(bytes(data))
    return b"".join(parts)[:length]
