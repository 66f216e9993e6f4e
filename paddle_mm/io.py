"""Files on disk, safely: the one place that writes weights and other files atomically and reads weights back.

    with atomic_open(path, "w") as f:                    # a temporary sibling, renamed over path on success
        f.write(text)
    atomic_write(path, data)                             # the same for one str / bytes value
    save_safetensors(model.state_dict(), path)           # paddle tensors or numpy arrays, streamed, atomic
    arrays = load_safetensors(path)                      # {name: np.ndarray}; a corrupt file is a CheckpointError
    load_state_into(model, path)                         # every tensor present, none extra, shapes equal
    verify_digests(checkpoint_dir)                       # the SHA-256s its state.json recorded, against the disk

    digests = file_digests(directory, ["image.pdiparams", "image.onnx"])   # {"image.pdiparams": "sha256:ab..."}
    check_digests(directory, digests)                    # DigestMismatch naming the first changed file

    with staged_directory(out_dir) as tmp:               # write and verify everything into tmp ...
        ...                                              # ... it replaces out_dir only if this block succeeds

Nothing here imports paddle (a tensor is anything with ``.numpy()``, a model anything with ``state_dict()``), and
numpy only inside the functions that need it: the package verifier imports this module and stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np  # imported where used: the package verifier imports this module and must stay light

DIGEST_ALGORITHM = "sha256"
_CHUNK = 1 << 20
STATE_FILE = "state.json"  # a training checkpoint's JSON (epoch, metric, the SHA-256 of each weight file)


class CheckpointError(ValueError):
    """A weight file or checkpoint that cannot be read, trusted or fitted: the message names the file or tensor."""

    exit_code = 6  # as every tool's model error (tools/_errors.py)
    label = "checkpoint error"


# ----------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``, on error it is removed.

    ``mode`` is "w" (UTF-8 text, "\\n" line endings on every platform) or "wb". The bytes reach the disk
    (fsync) before the rename, so a reader, or a machine that lost power, sees the old file or the new one.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode {mode!r} is not supported; use 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    text_args = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
    try:
        with open(tmp, mode, **text_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (str as UTF-8 text, or bytes) to ``path`` through :func:`atomic_open`; returns ``path``."""
    with atomic_open(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    return Path(path)


# ----------------------------------------------------------------------------- safetensors

_SAFETENSORS_DTYPES = {
    "float32": "F32",
    "float16": "F16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def to_numpy(value: Any) -> np.ndarray:
    """A C-contiguous numpy array of a paddle tensor (anything with ``.numpy()``) or array-like, 0-d kept 0-d."""
    import numpy as np

    arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return np.require(arr, requirements="C")  # not ascontiguousarray: it turns 0-d (logit_scale) into [1]


def save_safetensors(
    tensors: Mapping[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write paddle tensors / numpy arrays as a safetensors file, atomically; read back with :func:`load_safetensors`.

    The tensors are streamed into the file one at a time (no serialized copy of the whole state in memory),
    in the mapping's order."""
    import numpy as np

    arrays = {name: to_numpy(value) for name, value in tensors.items()}
    header: dict[str, Any] = {}
    offset = 0
    for name, array in arrays.items():
        kind = _SAFETENSORS_DTYPES.get(array.dtype.name)
        if kind is None:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no safetensors equivalent here")
        header[name] = {"dtype": kind, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    with atomic_open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for array in arrays.values():
            little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1)
            f.write(little.data)
    return Path(path)


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file into numpy; a truncated or garbled one is a one-line :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); use another checkpoint or re-export") from None


def load_state_into(model: Any, path: str | os.PathLike) -> None:
    """Load a safetensors file into ``model``; any missing, unexpected or mis-shaped tensor is an error."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    arrays = load_safetensors(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(arrays))
    unexpected = sorted(set(arrays) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"{path}: weights do not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
            "check that Arch matches the architecture the weights were trained with"
        )
    for name, param in own.items():
        if list(arrays[name].shape) != list(param.shape):
            raise ValueError(
                f"{path}: tensor {name!r} has shape {list(arrays[name].shape)}, the model expects {list(param.shape)}"
            )
        param.set_value(arrays[name].astype(np.dtype(str(param.numpy().dtype)), copy=False))


# ----------------------------------------------------------------------------- checkpoint digests


def read_state(directory: str | os.PathLike) -> dict[str, Any]:
    """``state.json`` of a checkpoint directory ({} when it has none, as a bare model directory)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); use another checkpoint (epoch_N, best_model)") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is corrupt (not a JSON object); use another checkpoint (epoch_N, best_model)")
    return state


def verify_digests(directory: str | os.PathLike, names: tuple[str, ...] | None = None) -> None:
    """Check the SHA-256 recorded in ``state.json`` of each weight file (all, or ``names``) against the disk.

    A directory without recorded digests (a bare ``save_model`` directory, an older checkpoint) passes.
    """
    directory = Path(directory)
    recorded = read_state(directory).get("sha256", {})
    for name, digest in recorded.items():
        if names is not None and name not in names:
            continue
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing although state.json records its SHA-256; restore it")
        if file_sha256(path) != digest:
            raise CheckpointError(
                f"{path} does not match the SHA-256 recorded in state.json: the file changed or was corrupted "
                "after it was saved; use another checkpoint (epoch_N, best_model)"
            )


# ----------------------------------------------------------------------------- digests of exported files


class DigestMismatch(ValueError):
    """A file's bytes differ from the digest recorded when it was written; the message names the file."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes (the form inference.yml records)."""
    return f"{DIGEST_ALGORITHM}:{file_sha256(path)}"


def file_digests(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """``{name: "sha256:<hex>"}`` for files named relative to ``directory``, in the given order, once each."""
    return {name: file_digest(Path(directory) / name) for name in dict.fromkeys(names)}


def check_digests(directory: str | os.PathLike, digests: Mapping[str, str], names: Iterable[str] | None = None) -> None:
    """Raise :class:`DigestMismatch` naming the first file (of ``names``, default all) whose bytes changed.

    A name without a recorded digest is not checked (exports written before digests were recorded)."""
    for name in names if names is not None else digests:
        want = digests.get(name)
        if want is None:
            continue
        algorithm = want.split(":", 1)[0]
        if algorithm != DIGEST_ALGORITHM:
            raise DigestMismatch(f"{name}: unknown digest algorithm {algorithm!r}; expected {DIGEST_ALGORITHM}")
        path = Path(directory) / name
        got = file_digest(path)
        if got != want:
            raise DigestMismatch(
                f"{path}: SHA-256 {got[7:19]}... differs from the {want[7:19]}... recorded when it was written; "
                "the file is corrupt or was changed: copy it again or re-export"
            )


@contextmanager
def staged_directory(target: str | os.PathLike, *, single_writer: bool = False, fsync: bool = False) -> Iterator[Path]:
    """A fresh sibling directory of ``target`` that replaces ``target`` when the block ends without error.

    On an error the staged directory is removed and ``target`` is left exactly as it was. The swap is two
    renames on one file system (old aside, new in place), then the old copy is deleted; a crash between the
    renames leaves the previous directory beside it: ``.<name>.old-<id>``, or with ``single_writer``
    ``.<name>.old``, a fixed name a reader can fall back to (``engine.checkpoint.resolve_checkpoint``); with
    ``single_writer`` the staged directory is ``.<name>.tmp`` too, and a stale one from a crash is removed first
    (only one process may write ``target``). ``fsync``: flush every staged file to disk before the swap, so a
    machine that loses power sees the old directory or the complete new one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = "" if single_writer else f"-{uuid.uuid4().hex[:8]}"
    staged = target.with_name(f".{target.name}.tmp{tag}")
    old = target.with_name(f".{target.name}.old{tag}")
    if single_writer:
        shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        yield staged
        if fsync:
            for f in staged.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)  # single_writer: a copy left by an earlier crash
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
