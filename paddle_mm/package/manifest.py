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
    BudgetExceededError,
    DuplicatePathError,
    FormatPolicyError,
    MalformedManifestError,
    PathTraversalError,
    PickleRefusedError,
    UnsafePathError,
    show,
)

MAGIC = b"paddle_mm model package manifest v1\n"
MANIFEST_NAME, SIGNATURE_NAME, KEYS_NAME = "PACKAGE.manifest", "PACKAGE.sig", "PACKAGE.keys"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME, KEYS_NAME})
FORMAT_VERSION = 1
HASH_ALGORITHM, SIGNATURE_ALGORITHM = "sm3", "sm2-sm3"
MODEL_FORMATS = ("safetensors", "paddle-inference", "gguf")  # gguf: the board runtime (hardware/runtime)
DEFAULT_CHUNK_SIZE = 4 << 20
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 64 << 10, 64 << 20  # bounds what one task may allocate
# The hard budget. Everything read before the signature verifies is bounded by it (manifest and signature
# sizes: they are refused on their size before a byte is read), and so is everything parsed after it (the
# directory walk, entries, paths, the unsigned PACKAGE.keys), so no input can make the verifier allocate
# without bound or recurse deeply. 16 MiB of manifest holds ~250 000 chunk digests: 1 TB at 4 MiB chunks.
MAX_MANIFEST_BYTES = 16 << 20
MAX_SIGNATURE_BYTES = 256  # a DER SM2 signature is at most 72 bytes
MAX_KEYS_BYTES = 256 << 10
MAX_RECIPIENTS = 256
MAX_FILES = 100_000  # payload files in one package
MAX_CHUNKS = 250_000  # chunk digests in one manifest, all files together
MAX_PATH_CHARS, MAX_PATH_DEPTH = 1024, 32  # one path; directory levels below the package root
MAX_FIELD_CHARS = 1024  # model, version, user ID, times
MAX_JSON_DEPTH = 4  # the manifest's own nesting: {files: [{chunks: [...]}]}
MAX_INT = (1 << 63) - 1  # sizes and sequences are non-negative 64-bit integers, at sign and at verify
MAX_SAFETENSORS_HEADER = 16 << 20  # JSON header of one safetensors file (the format allows 100 MB)
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
    ".gguf",
)
# bits per element of the safetensors dtypes (safetensors 0.8 spec)
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "I64": 64, "U64": 64, "F64": 64,
}  # fmt: skip
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
        raise MalformedManifestError(f"time {show(text)} is not UTC 'YYYY-MM-DDTHH:MM:SSZ'") from exc


def _refuse_float(text: str) -> Any:
    raise ValueError(f"number {text[:40]!r} is not an integer")


def strict_json(data: bytes, what: str, error: type[Exception], max_depth: int) -> Any:
    """Parse JSON with no float, NaN or Infinity, no duplicate key, at most ``max_depth`` levels of nesting
    (counted before parsing, so deep nesting never reaches the parser); any failure raises ``error``."""
    depth = json_depth(data)
    if depth > max_depth:
        raise BudgetExceededError(f"{what} nests {depth} levels deep; at most {max_depth} are allowed")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise error(f"{what} repeats a JSON key ({show(sorted(k for k, _ in pairs)[:8])})")
        return out

    try:
        return json.loads(
            data, object_pairs_hook=no_duplicates, parse_float=_refuse_float, parse_constant=_refuse_float
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise error(f"{what} is not valid JSON: {show(str(exc))}") from exc


# a string, or an unterminated one up to the end: always matches at a quote, so the scan stays linear
_JSON_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """Deepest nesting of ``[``/``{`` outside strings, found without parsing (C-speed passes; only the
    brackets themselves are walked in Python, a handful for a well-formed manifest)."""
    brackets = _JSON_STRING_RE.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _text(value: Any, what: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A string that is valid Unicode (no lone surrogate) and at most ``limit`` characters."""
    if not isinstance(value, str):
        raise MalformedManifestError(f"manifest field {what} is {show(value, 60)}; expected a string")
    if len(value) > limit:
        raise BudgetExceededError(f"manifest field {what} is {len(value)} characters; at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedManifestError(
            f"manifest field {what} {show(value)} is not valid Unicode (lone surrogate)"
        ) from exc
    return value


def _integer(value: Any, what: str, low: int = 0, high: int = MAX_INT) -> int:
    """An integer (not a bool) in ``[low, high]``: the same ranges as when signing."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedManifestError(f"manifest field {what} is {show(value, 60)}; expected an integer")
    if not low <= value <= high:
        raise MalformedManifestError(f"manifest field {what} is {value}; it must lie in [{low}, {high}]")
    return value


def _object(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        got = sorted(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
        raise MalformedManifestError(f"{what} has fields {show(got)}; expected exactly {sorted(keys)}")
    return obj


def _entry(obj: Any) -> FileEntry:
    obj = _object(obj, {"path", "size", "chunks"}, "file entry")
    path = _text(obj["path"], "files[].path", MAX_PATH_CHARS)
    chunks = obj["chunks"]
    if not isinstance(chunks, list) or not all(isinstance(c, str) and _DIGEST_RE.fullmatch(c) for c in chunks):
        raise MalformedManifestError(f"file {show(path)}: chunk digests must be a list of 64 lowercase hex digits")
    return FileEntry(path, _integer(obj["size"], f"size of {show(path)}"), tuple(chunks))


_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_SIGNER_RE = re.compile(
    rb'"signer":\{"key_id":"([0-9a-f]{64})","user_id":"((?:[^"\\\x00-\x1f]|\\.){0,%d})"\},"version":"' % MAX_FIELD_CHARS
)


def check_envelope(data: bytes) -> None:
    """Cheap checks on raw manifest bytes before anything else: size budget, magic line, final newline."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BudgetExceededError(f"manifest is {len(data)} bytes; at most {MAX_MANIFEST_BYTES} are read")
    if not data.startswith(MAGIC) or not data.endswith(b"\n"):
        raise MalformedManifestError(f"not a paddle_mm manifest: it must start with {MAGIC!r} and end with a newline")


def peek_signer(data: bytes) -> tuple[str, str]:
    """(key id, SM2 user ID) of the signer, found in the raw manifest bytes without parsing them.

    Only what picks the trust anchor and the user ID for the signature check; once the signature holds,
    :func:`decode_manifest` parses everything and the verifier checks that the two agree. In canonical JSON
    (sorted keys) ``signer`` is the last object before ``version``, and an unescaped ``"`` cannot occur
    inside a string, so the last match is the real field.
    """
    at = data.rfind(b'"signer":{"key_id":"')
    match = _SIGNER_RE.match(data, at) if at >= 0 else None
    if match is None:
        raise MalformedManifestError("manifest has no canonical signer field (key_id, user_id); re-sign it")
    try:
        user_id = json.loads(b'"' + match.group(2) + b'"')
    except ValueError as exc:
        raise MalformedManifestError(f"manifest signer user ID does not parse: {show(str(exc))}") from exc
    return match.group(1).decode(), _text(user_id, "signer.user_id")


def decode_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes strictly: budget, magic line, known fields only, types, ranges, canonical form.

    Raises :class:`MalformedManifestError` or :class:`BudgetExceededError`; paths are checked later by
    :func:`check_paths`. The verifier calls it only after the signature over ``data`` verified.
    """
    check_envelope(data)
    obj = _object(
        strict_json(data[len(MAGIC) : -1], "manifest", MalformedManifestError, MAX_JSON_DEPTH), _FIELDS, "manifest"
    )
    signer = _object(obj["signer"], {"key_id", "user_id"}, "manifest field 'signer'")
    algorithms = _object(obj["algorithms"], {"hash", "signature"}, "manifest field 'algorithms'")
    if not isinstance(obj["files"], list):
        raise MalformedManifestError("manifest field 'files' must be a list")
    if len(obj["files"]) > MAX_FILES:
        raise BudgetExceededError(f"manifest lists {len(obj['files'])} files; at most {MAX_FILES}")
    files = tuple(_entry(f) for f in obj["files"])
    chunks = sum(len(f.chunks) for f in files)
    if chunks > MAX_CHUNKS:
        raise BudgetExceededError(f"manifest lists {chunks} chunk digests; at most {MAX_CHUNKS}")
    manifest = Manifest(
        model=_text(obj["model"], "model"),
        version=_text(obj["version"], "version"),
        sequence=_integer(obj["sequence"], "sequence"),
        created=_text(obj["created"], "created"),
        expires=None if obj["expires"] is None else _text(obj["expires"], "expires"),
        key_id=_text(signer["key_id"], "signer.key_id"),
        user_id=_text(signer["user_id"], "signer.user_id"),
        model_format=_text(obj["model_format"], "model_format"),
        chunk_size=_integer(obj["chunk_size"], "chunk_size", 1),
        files=files,
        hash_algorithm=_text(algorithms["hash"], "algorithms.hash"),
        signature_algorithm=_text(algorithms["signature"], "algorithms.signature"),
        format_version=_integer(obj["format_version"], "format_version", 1, 1 << 16),
    )
    if manifest.encode() != data:
        raise MalformedManifestError("manifest is not in canonical form (key order, spacing, escapes or extra keys)")
    return manifest


def check_model_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise MalformedManifestError(f"model name {show(name)} must match {_NAME_RE.pattern}")
    return name


def check_path(path: str) -> str:
    """Refuse any manifest path that is not a plain relative POSIX path inside the package."""
    if len(path) > MAX_PATH_CHARS or path.count("/") >= MAX_PATH_DEPTH:
        raise BudgetExceededError(
            f"path {show(path)} is over the budget of {MAX_PATH_CHARS} characters and {MAX_PATH_DEPTH} levels"
        )
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise AbsolutePathError(f"absolute path {show(path)} in manifest; paths must be relative to the package")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PathTraversalError(f"path {show(path)} has an empty, '.' or '..' component; use plain relative paths")
    if "\\" in path or not path.isprintable() or unicodedata.normalize("NFC", path) != path:
        raise UnsafePathError(f"path {show(path)} has a backslash, a control character or is not NFC-normalised")
    if path in RESERVED_NAMES:
        raise UnsafePathError(f"path {show(path)} is reserved for the package's own metadata")
    return path


def check_paths(files: tuple[FileEntry, ...]) -> None:
    """Every path safe, and no two equal after case folding (they would collide on some filesystems)."""
    seen: dict[str, str] = {}
    for entry in files:
        key = unicodedata.normalize("NFC", check_path(entry.path).casefold())
        if key in seen:
            raise DuplicatePathError(f"paths {show(seen[key])} and {show(entry.path)} collide after case folding")
        seen[key] = entry.path


def check_file_type(path: str) -> None:
    """File-type policy by name: pickle formats refused, everything else must be allow-listed."""
    lower = path.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise PickleRefusedError(
            f"{show(path)} is a pickle format and loading it can run code; convert the weights "
            "to safetensors (safetensors.paddle.save_file) or export a Paddle inference model"
        )
    if not lower.endswith(ALLOWED_SUFFIXES):
        raise FormatPolicyError(f"{show(path)} is not an allowed file type; allowed suffixes: {list(ALLOWED_SUFFIXES)}")


def is_safetensors(path: str) -> bool:
    return path.lower().endswith(".safetensors")


def check_file_content(path: str, head: bytes | memoryview) -> None:
    """Content policy on the first bytes of a (verified) file: no pickle header, no zip archive."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise PickleRefusedError(
            f"{show(path)} starts with a pickle header (protocol {head[1]}); it is refused "
            "whatever its name; store weights as safetensors"
        )
    if bytes(head[:4]) == b"PK\x03\x04":
        raise PickleRefusedError(f"{show(path)} is a zip archive (torch.save / np.savez style, which holds pickles)")


def safetensors_header_end(path: str, head: bytes | memoryview, size: int) -> int:
    """Where the safetensors header of a ``size``-byte file ends (8 + its JSON length), from its first 8 bytes."""
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if not 2 <= n <= MAX_SAFETENSORS_HEADER or 8 + n > size:
        raise FormatPolicyError(
            f"{show(path)} does not start with a safetensors header (length {n}, file {size} bytes, at most "
            f"{MAX_SAFETENSORS_HEADER} of header); re-save it with safetensors"
        )
    return 8 + n


def check_safetensors(path: str, prefix: bytes | memoryview, size: int) -> None:
    """The whole safetensors header, parsed before a file counts as safetensors: JSON object, known dtypes,
    shapes, and data offsets that tile the data section exactly (what safetensors itself validates).
    ``prefix`` holds at least the first :func:`safetensors_header_end` bytes of the file."""
    end = safetensors_header_end(path, prefix, size)
    header = bytes(prefix[8:end])
    if not header.startswith(b"{"):
        raise FormatPolicyError(f"{show(path)}: safetensors header is not a JSON object; re-save it with safetensors")
    try:
        doc = strict_json(header, f"{show(path)} safetensors header", FormatPolicyError, 3)
    except BudgetExceededError as exc:
        raise FormatPolicyError(str(exc)) from exc
    spans = []
    for name, info in doc.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise FormatPolicyError(f"{show(path)}: safetensors __metadata__ must map strings to strings")
            continue
        spans.append((*_tensor_span(path, name, info, size - end), name))
    position = 0
    for begin, stop, name in sorted(spans):
        if begin != position:
            raise FormatPolicyError(
                f"{show(path)}: tensor {show(name)} starts at {begin}, not {position}: safetensors data must be "
                "contiguous without gaps or overlaps"
            )
        position = stop
    if position != size - end:
        raise FormatPolicyError(f"{show(path)}: tensors cover {position} of {size - end} data bytes")


def _tensor_span(path: str, name: str, info: Any, data_len: int) -> tuple[int, int]:
    def bad(why: str) -> FormatPolicyError:
        return FormatPolicyError(f"{show(path)}: safetensors tensor {show(name)} {why}")

    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise bad("must have exactly dtype, shape and data_offsets")
    bits = SAFETENSORS_DTYPE_BITS.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    shape, offsets = info["shape"], info["data_offsets"]
    if bits is None:
        raise bad(f"has dtype {show(info['dtype'])}; known: {sorted(SAFETENSORS_DTYPE_BITS)}")
    lists = isinstance(shape, list) and len(shape) <= 64 and isinstance(offsets, list) and len(offsets) == 2
    ints = lists and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT for v in shape + offsets)
    if not ints:
        raise bad("needs a shape of at most 64 non-negative integers and two non-negative data offsets")
    begin, stop = offsets
    elements = 1
    for dim in shape:
        elements *= dim
    if not begin <= stop <= data_len or elements * bits != (stop - begin) * 8:
        raise bad(f"offsets {offsets} do not hold {elements} x {info['dtype']} inside {data_len} data bytes")
    return begin, stop


def detect_model_format(paths: list[str]) -> str:
    """'safetensors', 'paddle-inference' or 'gguf' (board runtime), from the file names; raises when neither or both."""
    lower = [p.lower() for p in paths]
    has_st = any(p.endswith(".safetensors") for p in lower)
    has_inf = any(p.endswith(".pdiparams") for p in lower)
    if not has_st and not has_inf and any(p.endswith(".gguf") for p in lower):
        return "gguf"
    if has_st == has_inf:
        raise FormatPolicyError(
            f"cannot tell the model format of {sorted(paths)}: a package holds either "
            "*.safetensors weights or a Paddle inference model (*.pdiparams with *.pdmodel "
            "or *.json), not both or neither"
        )
    return "safetensors" if has_st else "paddle-inference"
