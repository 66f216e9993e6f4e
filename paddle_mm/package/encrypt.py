"""Optional SM4-GCM encryption of a signed package, with the data key SM2-wrapped per recipient.

Encryption is applied to an already signed package (sign, then encrypt): the manifest and its
signature are copied unchanged and keep naming the *plaintext* sizes and SM3 digests, so a recipient
proves both confidentiality and origin by decrypting into memory and checking those digests.

Each payload file becomes::

    header   = b"PMMSM4G\\x01" || nonce_prefix (8 random bytes) || plaintext_size (u64 BE)
    segment i = i (u32 BE) || SM4-GCM(file_key, nonce_prefix || i, aad) || tag (16 bytes)
    aad       = header || i (u32 BE) || final (1 byte: 1 for the last segment)

Segments are ``chunk_size`` bytes of plaintext (the last may be shorter, an empty file has one empty
segment), aligned with the manifest's chunks. The nonce and AAD bind each segment to its position
and the last one to the end, so dropping, cutting or moving segments fails; the clear index exists
only to name reordering precisely. ``file_key`` = SM3-KDF(data_key || label || path) binds a file's
ciphertext to its name. ``PACKAGE.keys`` lists, per recipient key id, the 16-byte data key encrypted
with SM2 (GM/T 0009 DER, so ``openssl pkeyutl -decrypt`` or an HSM can unwrap it).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import fsio, sm2
from .errors import (
    BudgetExceededError,
    MalformedKeysError,
    PackageConfigError,
    SegmentAuthError,
    SegmentOrderError,
    SizeMismatchError,
    TruncatedSegmentError,
    WrongDecryptionKeyError,
    show,
)
from .keys import Decryptor, PublicKey
from .manifest import (
    KEYS_NAME,
    MANIFEST_NAME,
    MAX_CHUNK_SIZE,
    MAX_KEYS_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_RECIPIENTS,
    MAX_SIGNATURE_BYTES,
    MIN_CHUNK_SIZE,
    SIGNATURE_NAME,
    Manifest,
    canonical_json,
    check_file_type,
    check_paths,
    decode_manifest,
    strict_json,
)
from .sm3 import kdf

MAGIC = b"PMMSM4G\x01"
HEADER_SIZE = len(MAGIC) + 8 + 8
TAG_SIZE = 16
SEGMENT_OVERHEAD = 4 + TAG_SIZE
CIPHER = "sm4-gcm"
MAX_WRAPPED_BYTES = 512  # GM/T 0009 DER of a 16-byte data key is about 120 bytes
_KEY_ID_RE, _HEX_RE = re.compile(r"[0-9a-f]{64}"), re.compile(r"(?:[0-9a-f]{2}){1,%d}" % MAX_WRAPPED_BYTES)
_KEY_LABEL = b"paddle_mm/sm4-gcm/file-key/v1\x00"


def segment_count(size: int, segment_size: int) -> int:
    return max(1, -(-size // segment_size))


def ciphertext_size(size: int, segment_size: int) -> int:
    """Exact size of the encrypted form of a ``size``-byte file."""
    return HEADER_SIZE + size + segment_count(size, segment_size) * SEGMENT_OVERHEAD


def _file_key(data_key: bytes, path: str) -> bytes:
    return kdf(data_key + _KEY_LABEL + path.encode(), 16)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def _gcm(key: bytes, nonce: bytes, tag: bytes | None = None) -> Any:  # a cryptography Cipher
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.SM4(key), modes.GCM(nonce, tag))


def encrypt_segment(key: bytes, header: bytes, index: int, final: bool, plain: bytes | memoryview) -> bytes:
    enc = _gcm(key, header[len(MAGIC) : len(MAGIC) + 8] + index.to_bytes(4, "big")).encryptor()
    enc.authenticate_additional_data(_aad(header, index, final))
    body = enc.update(plain) + enc.finalize()
    return index.to_bytes(4, "big") + body + enc.tag


@dataclass(frozen=True)
class EncryptedFile:
    """Decrypts one file's segments at their expected positions (``fd`` stays owned by the caller)."""

    fd: int
    path: str
    key: bytes
    header: bytes
    size: int
    segment_size: int

    def segment(self, index: int) -> bytes:
        """Plaintext of segment ``index``; raises Truncated/Order/Auth errors naming the segment."""
        count = segment_count(self.size, self.segment_size)
        plain_len = min(self.segment_size, self.size - index * self.segment_size)
        offset = HEADER_SIZE + index * (self.segment_size + SEGMENT_OVERHEAD)
        stored = fsio.pread(self.fd, plain_len + SEGMENT_OVERHEAD, offset, self.path)
        if len(stored) < plain_len + SEGMENT_OVERHEAD:
            raise TruncatedSegmentError(
                f"{show(self.path)}: encrypted segment {index} of {count} is cut short or missing; re-copy the package"
            )
        found = int.from_bytes(stored[:4], "big")
        if found != index:
            raise SegmentOrderError(
                f"{show(self.path)}: segment {found} found at position {index}; segments were reordered"
            )
        return self._open(index, index == count - 1, stored[4:-TAG_SIZE], stored[-TAG_SIZE:])

    def _open(self, index: int, final: bool, body: bytes, tag: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        dec = _gcm(self.key, self.header[len(MAGIC) : len(MAGIC) + 8] + index.to_bytes(4, "big"), tag).decryptor()
        dec.authenticate_additional_data(_aad(self.header, index, final))
        try:
            return dec.update(body) + dec.finalize()
        except InvalidTag as exc:
            raise SegmentAuthError(
                f"{show(self.path)}: segment {index} fails SM4-GCM authentication (modified ciphertext or header)"
            ) from exc


def open_encrypted(fd: int, path: str, data_key: bytes, expected_size: int, segment_size: int) -> EncryptedFile:
    """Check a file's header against the signed plaintext size and prepare segment decryption."""
    header = fsio.pread(fd, HEADER_SIZE, 0, path)
    if len(header) < HEADER_SIZE:
        raise TruncatedSegmentError(f"{show(path)}: encrypted file is shorter than its {HEADER_SIZE}-byte header")
    if not header.startswith(MAGIC):
        raise SegmentAuthError(f"{show(path)}: not an SM4-GCM package file (magic {header[:8]!r})")
    size = int.from_bytes(header[-8:], "big")
    if size != expected_size:
        raise SizeMismatchError(f"{show(path)}: encrypted header says {size} bytes, the manifest {expected_size}")
    return EncryptedFile(fd, path, _file_key(data_key, path), header, size, segment_size)


@dataclass(frozen=True)
class KeysFile:
    """Parsed ``PACKAGE.keys``: the segment size and wrapped data key per recipient key id."""

    segment_size: int
    wrapped: dict[str, bytes]

    def encode(self) -> bytes:
        recipients = [{"key_id": k, "wrapped_key": v.hex()} for k, v in sorted(self.wrapped.items())]
        doc = {"cipher": CIPHER, "format_version": 1, "recipients": recipients, "segment_size": self.segment_size}
        return canonical_json(doc) + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> KeysFile:
        """Parse ``PACKAGE.keys`` strictly (it is not signed): size budget, canonical JSON of exactly the
        fields :meth:`encode` writes, integers in range, hex of bounded length; else :class:`MalformedKeysError`."""
        if len(data) > MAX_KEYS_BYTES:
            raise BudgetExceededError(f"{KEYS_NAME} is {len(data)} bytes; at most {MAX_KEYS_BYTES} are read")
        doc = strict_json(data, KEYS_NAME, MalformedKeysError, 3)
        fields = {"cipher", "format_version", "recipients", "segment_size"}
        if not isinstance(doc, dict) or set(doc) != fields:
            raise MalformedKeysError(f"{KEYS_NAME} must be a JSON object with exactly the fields {sorted(fields)}")
        seg, recipients = doc["segment_size"], doc["recipients"]
        if (doc["cipher"], doc["format_version"]) != (CIPHER, 1) or type(doc["format_version"]) is not int:
            raise MalformedKeysError(f"{KEYS_NAME} cipher {show(doc['cipher'])} version {show(doc['format_version'])}")
        if type(seg) is not int or not MIN_CHUNK_SIZE <= seg <= MAX_CHUNK_SIZE:
            raise MalformedKeysError(
                f"{KEYS_NAME} segment size {show(seg, 40)} not in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]"
            )
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise MalformedKeysError(f"{KEYS_NAME} needs a list of 1 to {MAX_RECIPIENTS} recipients")
        wrapped = {}
        for r in recipients:
            ok = isinstance(r, dict) and set(r) == {"key_id", "wrapped_key"}
            ok = ok and all(isinstance(v, str) for v in r.values())
            if not ok or not _KEY_ID_RE.fullmatch(r["key_id"]) or not _HEX_RE.fullmatch(r["wrapped_key"]):
                raise MalformedKeysError(
                    f"{KEYS_NAME} recipient {show(r, 80)} needs a 64-hex key_id and a hex wrapped_key "
                    f"of at most {MAX_WRAPPED_BYTES} bytes"
                )
            wrapped[r["key_id"]] = bytes.fromhex(r["wrapped_key"])
        keys = cls(seg, wrapped)
        if keys.encode() != data:
            raise MalformedKeysError(f"{KEYS_NAME} is not in canonical form (order, spacing, duplicates)")
        return keys

    def unwrap(self, decryptor: Decryptor) -> bytes:
        """The data key, or :class:`WrongDecryptionKeyError` when ``decryptor`` is not a recipient."""
        wrapped = self.wrapped.get(decryptor.key_id)
        if wrapped is None:
            raise WrongDecryptionKeyError(
                f"key {decryptor.key_id[:16]}... is not a recipient of this package; "
                f"recipients: {[k[:16] + '...' for k in sorted(self.wrapped)][:8]}"
            )
        try:
            key = decryptor.decrypt(wrapped)
        except sm2.DecryptionError as exc:
            raise WrongDecryptionKeyError(
                f"the data key for {decryptor.key_id[:16]}... does not unwrap: {exc}"
            ) from exc
        if len(key) != 16:
            raise WrongDecryptionKeyError(f"unwrapped data key is {len(key)} bytes; SM4 needs 16")
        return key


def encrypt_package(src: str | os.PathLike, dst: str | os.PathLike, recipients: Sequence[PublicKey]) -> KeysFile:
    """Write an encrypted copy of the signed package ``src`` into the new directory ``dst``.

    ``src``'s manifest is not verified here (verify ``src`` first if it came from elsewhere), but it is
    held to the verifier's rules before anything is written: budget, canonical form, safe paths and file
    types, chunk size; each file is read through the same no-follow opening and its size must match. On
    any failure the partly written ``dst`` is removed.
    """
    import shutil  # here, not at module level: the verifier never needs it

    if not recipients:
        raise PackageConfigError("no recipients; pass at least one --recipient public key")
    src, dst = Path(src), Path(dst)
    root_fd = fsio.open_root(src)
    try:
        manifest_bytes, manifest = _source_manifest(root_fd)
        signature = fsio.read_small(root_fd, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)
        if signature is None:
            raise PackageConfigError(f"no {SIGNATURE_NAME} in the source: sign the package before encrypting it")
        data_key = secrets.token_bytes(16)
        keys = KeysFile(manifest.chunk_size, {pub.key_id: sm2.encrypt(pub.point, data_key) for pub in recipients})
        dst.mkdir(parents=True, exist_ok=False)
        try:  # the bytes read (and checked) above, not the paths again
            (dst / MANIFEST_NAME).write_bytes(manifest_bytes)
            (dst / SIGNATURE_NAME).write_bytes(signature)
            for entry in manifest.files:
                _encrypt_file(root_fd, entry.path, entry.size, dst, data_key, manifest)
            (dst / KEYS_NAME).write_bytes(keys.encode())
        except BaseException:
            shutil.rmtree(dst, ignore_errors=True)
            raise
    finally:
        os.close(root_fd)
    return keys


def _source_manifest(root_fd: int) -> tuple[bytes, Manifest]:
    data = fsio.read_small(root_fd, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    if data is None:
        raise PackageConfigError(f"no {MANIFEST_NAME} in the source: sign the package before encrypting it")
    manifest = decode_manifest(data)
    if not MIN_CHUNK_SIZE <= manifest.chunk_size <= MAX_CHUNK_SIZE:
        raise PackageConfigError(f"chunk size {manifest.chunk_size} outside [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    check_paths(manifest.files)  # the output paths below are joined from these: no '..', no absolute path
    for entry in manifest.files:
        check_file_type(entry.path)
    return data, manifest


def _encrypt_file(root_fd: int, path: str, size: int, dst: Path, data_key: bytes, manifest: Manifest) -> None:
    fd, actual = fsio.open_file(root_fd, path)
    try:
        if actual != size:
            raise SizeMismatchError(
                f"{show(path)} is {actual} bytes, the manifest says {size}; verify the package first"
            )
        header = MAGIC + secrets.token_bytes(8) + size.to_bytes(8, "big")
        key, seg, count = _file_key(data_key, path), manifest.chunk_size, segment_count(size, manifest.chunk_size)
        out_path = dst / path
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "xb") as out:
            out.write(header)
            for i in range(count):
                plain = fsio.read_exact(fd, i * seg, min(seg, size - i * seg), path)
                out.write(encrypt_segment(key, header, i, i == count - 1, plain))
    finally:
        os.close(fd)
