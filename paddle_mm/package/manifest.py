"""The signed manifest: its canonical bytes, strict parsing, and the path and file-type policy.

The signed message is exactly the manifest file: the domain-separation line ``MAGIC`` followed by
canonical JSON (sorted keys, no spaces, ASCII only, integers and strings only) and a newline. The
magic line keeps a signature over a manifest from ever being valid for another protocol's message,
and because the file *is* the signed message, ``openssl pkeyutl -verify -rawin`` checks it as is.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from .errors import (
    AbsolutePathError,
    DuplicatePathError,
    FormatPolicyError,
    MalformedManifestError,
    PathTraversalError,
    PickleRefusedError,
    UnsafePathError,
)

MAGIC = b"paddle_mm model package manifest v1\n"
MANIFEST_NAME, SIGNATURE_NAME, KEYS_NAME = "PACKAGE.manifest", "PACKAGE.sig", "PACKAGE.keys"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME, KEYS_NAME})
FORMAT_VERSION = 1
HASH_ALGORITHM, SIGNATURE_ALGORITHM = "sm3", "sm2-sm3"
MODEL_FORMATS = ("safetensors", "paddle-inference")
DEFAULT_CHUNK_SIZE = 4 << 20
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 64 << 10, 64 << 20  # bounds what one task may allocate
MAX_MANIFEST_BYTES = 64 << 20
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
UTC = dt.timezone(dt.timedelta(0))  # dt.UTC needs Python 3.11; setup.py allows 3.9

# Loading any of these runs code from the file (pickle), so they are refused even when signed.
PICKLE_SUFFIXES = (
    ".pdparams",
    ".pdopt",
    ".pdiparams.info",
    ".pdmodel.info",
    ".pkl",
    ".pickle",
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".joblib",
    ".npy",
    ".npz",
    ".dill",
    ".tar",
)
ALLOWED_SUFFIXES = (
    ".safetensors",
    ".pdmodel",
    ".pdiparams",
    ".json",
    ".yml",
    ".yaml",
    ".txt",
    ".md",
    ".model",
    ".onnx",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_FIELDS = {
    "format_version",
    "model",
    "version",
    "sequence",
    "created",
    "expires",
    "signer",
    "algorithms",
    "model_format",
    "chunk_size",
    "files",
}


@dataclass(frozen=True)
class FileEntry:
    """One payload file: relative POSIX path, byte size, SM3 of each ``chunk_size`` slice (hex)."""

    path: str
    size: int
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """What a package claims; trustworthy only once :func:`paddle_mm.package.verify_package` returns it."""

    model: str
    version: str
    sequence: int
    created: str
    expires: str | None
    key_id: str
    user_id: str
    model_format: str
    chunk_size: int
    files: tuple[FileEntry, ...]
    hash_algorithm: str = HASH_ALGORITHM
    signature_algorithm: str = SIGNATURE_ALGORITHM
    format_version: int = FORMAT_VERSION

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model": self.model,
            "version": self.version,
            "sequence": self.sequence,
            "created": self.created,
            "expires": self.expires,
            "signer": {"key_id": self.key_id, "user_id": self.user_id},
            "algorithms": {"hash": self.hash_algorithm, "signature": self.signature_algorithm},
            "model_format": self.model_format,
            "chunk_size": self.chunk_size,
            "files": [{**asdict(f), "chunks": list(f.chunks)} for f in self.files],
        }

    def encode(self) -> bytes:
        """The exact bytes that are signed and stored as ``PACKAGE.manifest``."""
        return MAGIC + canonical_json(self.to_json_dict()) + b"\n"

    def expiry(self) -> dt.datetime | None:
        return None if self.expires is None else parse_time(self.expires)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def format_time(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise MalformedManifestError(f"time {text!r} is not UTC 'YYYY-MM-DDTHH:MM:SSZ'") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise MalformedManifestError(f"duplicate JSON keys in manifest: {sorted(keys)}")
    return dict(pairs)


def _need(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedManifestError(f"manifest field {key!r} is {value!r}; expected {kind}")
    return value


def _entry(obj: Any) -> FileEntry:
    if not isinstance(obj, dict) or set(obj) != {"path", "size", "chunks"}:
        raise MalformedManifestError(f"file entry {obj!r} must have exactly path, size and chunks")
    chunks = _need(obj, "chunks", list)
    if not all(isinstance(c, str) and re.fullmatch(r"[0-9a-f]{64}", c) for c in chunks):
        raise MalformedManifestError(f"file {obj.get('path')!r}: chunk digests must be 64 lowercase hex digits")
    return FileEntry(_need(obj, "path", str), _need(obj, "size", int), tuple(chunks))


def decode_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes strictly: magic line, known fields only, types, canonical form.

    Raises :class:`MalformedManifestError`; paths are checked later by :func:`check_paths`.
    """
    if len(data) > MAX_MANIFEST_BYTES or not data.startswith(MAGIC) or not data.endswith(b"\n"):
        raise MalformedManifestError(
            f"not a paddle_mm manifest: it must start with {MAGIC!r}, end with a newline "
            f"and be under {MAX_MANIFEST_BYTES} bytes"
        )
    try:
        obj = json.loads(data[len(MAGIC) : -1], object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise MalformedManifestError(f"manifest JSON does not parse: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise MalformedManifestError(f"manifest fields {got} differ from the expected {sorted(_FIELDS)}")
    signer, algorithms = _need(obj, "signer", dict), _need(obj, "algorithms", dict)
    expires = obj["expires"]
    if expires is not None and not isinstance(expires, str):
        raise MalformedManifestError(f"manifest field 'expires' is {expires!r}; expected a time string or null")
    manifest = Manifest(
        model=_need(obj, "model", str),
        version=_need(obj, "version", str),
        sequence=_need(obj, "sequence", int),
        created=_need(obj, "created", str),
        expires=expires,
        key_id=_need(signer, "key_id", str),
        user_id=_need(signer, "user_id", str),
        model_format=_need(obj, "model_format", str),
        chunk_size=_need(obj, "chunk_size", int),
        files=tuple(_entry(f) for f in _need(obj, "files", list)),
        hash_algorithm=_need(algorithms, "hash", str),
        signature_algorithm=_need(algorithms, "signature", str),
        format_version=_need(obj, "format_version", int),
    )
    if manifest.encode() != data:
        raise MalformedManifestError("manifest is not in canonical form (key order, spacing, escapes or extra keys)")
    return manifest


def check_model_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise MalformedManifestError(f"model name {name!r} must match {_NAME_RE.pattern}")
    return name


def check_path(path: str) -> str:
    """Refuse any manifest path that is not a plain relative POSIX path inside the package."""
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise AbsolutePathError(f"absolute path {path!r} in manifest; paths must be relative to the package")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PathTraversalError(f"path {path!r} has an empty, '.' or '..' component; use plain relative paths")
    if "\\" in path or any(ord(c) < 32 or c == "\x7f" for c in path) or unicodedata.normalize("NFC", path) != path:
        raise UnsafePathError(f"path {path!r} has a backslash, a control character or is not NFC-normalised")
    if path in RESERVED_NAMES:
        raise UnsafePathError(f"path {path!r} is reserved for the package's own metadata")
    return path


def check_paths(files: tuple[FileEntry, ...]) -> None:
    """Every path safe, and no two equal after case folding (they would collide on some filesystems)."""
    seen: dict[str, str] = {}
    for entry in files:
        key = unicodedata.normalize("NFC", check_path(entry.path).casefold())
        if key in seen:
            raise DuplicatePathError(f"paths {seen[key]!r} and {entry.path!r} collide after case folding")
        seen[key] = entry.path


def check_file_type(path: str) -> None:
    """File-type policy by name: pickle formats refused, everything else must be allow-listed."""
    lower = path.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise PickleRefusedError(
            f"{path!r} is a pickle format and loading it can run code; convert the weights "
            "to safetensors (safetensors.paddle.save_file) or export a Paddle inference model"
        )
    if not lower.endswith(ALLOWED_SUFFIXES):
        raise FormatPolicyError(f"{path!r} is not an allowed file type; allowed suffixes: {list(ALLOWED_SUFFIXES)}")


def check_file_content(path: str, head: bytes, size: int) -> None:
    """Content policy on the first bytes of a (verified) file: no pickle or zip, real safetensors."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise PickleRefusedError(
            f"{path!r} starts with a pickle header (protocol {head[1]}); it is refused "
            "whatever its name; store weights as safetensors"
        )
    if head.startswith(b"PK\x03\x04"):
        raise PickleRefusedError(f"{path!r} is a zip archive (torch.save / np.savez style, which holds pickles)")
    if path.lower().endswith(".safetensors"):
        header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
        if header_len < 2 or 8 + header_len > size or head[8:9] != b"{":
            raise FormatPolicyError(f"{path!r} does not have a safetensors header; re-save it with safetensors")


def detect_model_format(paths: list[str]) -> str:
    """'safetensors' or 'paddle-inference', from the file names; raises when neither or both."""
    lower = [p.lower() for p in paths]
    has_st = any(p.endswith(".safetensors") for p in lower)
    has_inf = any(p.endswith(".pdiparams") for p in lower)
    if has_st == has_inf:
        raise FormatPolicyError(
            f"cannot tell the model format of {sorted(paths)}: a package holds either "
            "*.safetensors weights or a Paddle inference model (*.pdiparams with *.pdmodel "
            "or *.json), not both or neither"
        )
    return "safetensors" if has_st else "paddle-inference"
