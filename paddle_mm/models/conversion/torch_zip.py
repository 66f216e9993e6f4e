"""Reading a torch ``.pt`` zip archive (and a ``paddle.save`` ``.pdparams`` pickle) without torch and without
running pickled code: the unpickler's ``find_class`` knows only the globals a state dict needs and maps them to
local numpy code; any other global stops the load with :class:`UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...io import CheckpointError


class UnsafePickleError(CheckpointError):
    """The pickle asked for a global outside the allowlist; nothing it references was called."""


# ----------------------------------------------------------------------------- restricted unpickling


@dataclass(frozen=True)
class _StorageType:
    name: str  # torch's class name, e.g. "HalfStorage"
    dtype: str  # numpy dtype of the raw bytes (little-endian), "bfloat16" handled apart


_TORCH_STORAGES = {
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "<f8",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _Storage:
    key: str
    kind: _StorageType
    numel: int


class TorchTensor:
    """A tensor of a torch checkpoint, read from the archive only when converted (``np.asarray(t)``).

    Floating-point tensors come out as float32 (released checkpoints may be fp16), integers keep their type.
    """

    def __init__(self, archive: TorchCheckpoint, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self._archive, self.storage, self.offset = archive, storage, offset
        self.shape, self.stride = tuple(int(n) for n in shape), tuple(int(s) for s in stride)

    @property
    def dtype(self) -> np.dtype:
        raw = self.storage.kind.dtype
        if raw == "bfloat16" or np.dtype(raw).kind == "f":
            return np.dtype("float32")
        return np.dtype(raw).newbyteorder("=")

    def numpy(self) -> np.ndarray:
        return self._archive.read_tensor(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"TorchTensor({self.storage.kind.name}, shape={list(self.shape)})"


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` answers only from ``allowed``; everything else raises before it can be called."""

    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any], source: str, persistent_load: Any = None):
        super().__init__(file)
        self._allowed, self._source = allowed, source
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global {module}.{name}: a weights file needs only "
                f"{sorted(f'{m}.{n}' for m, n in self._allowed)}; this file may run code when unpickled. "
                "Do not load it with torch.load / pickle either; get the checkpoint from a trusted source"
            ) from None


def _rebuild_parameter(data: Any, *_unused: Any) -> Any:
    return data  # a torch.nn.Parameter is its tensor plus requires_grad, which weights do not need


def _numpy_dtype(spec: Any, *args: Any) -> np.dtype:
    dtype = np.dtype(spec, *args)
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing an array of Python objects (dtype {dtype}): weights are plain numbers")
    return dtype


_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
}


class TorchCheckpoint:
    """A torch ``.pt`` zip archive opened for reading; use as a context manager.

    ``obj`` is the unpickled top-level object with tensors as lazy :class:`TorchTensor` values;
    :meth:`state_dict` picks the weights (cn_clip's ``{"state_dict": ...}`` or a bare state dict).
    Raises :class:`CheckpointError` for a truncated, corrupt or legacy file, :class:`UnsafePickleError` for a
    pickle that names any other global.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip = _open_torch_zip(self.path)
        try:
            self._prefix = _archive_prefix(self._zip, self.path)
            self._big_endian = self._read_text("byteorder", default="little") == "big"
            self.obj = self._unpickle()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> TorchCheckpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def state_dict(self) -> dict[str, TorchTensor]:
        obj = self.obj
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping) or not obj:
            raise CheckpointError(f"{self.path}: holds no state dict (top-level object: {type(self.obj).__name__})")
        tensors = {k: v for k, v in obj.items() if isinstance(v, TorchTensor)}
        others = sorted(str(k) for k in obj if k not in tensors)
        if others:
            raise CheckpointError(f"{self.path}: state dict entries {others[:5]} are not tensors")
        return tensors

    def read_tensor(self, tensor: TorchTensor) -> np.ndarray:
        storage = tensor.storage
        raw = self._read_member(f"data/{storage.key}")
        kind = storage.kind.dtype
        base = np.dtype("<u2" if kind == "bfloat16" else kind)
        if self._big_endian:
            base = base.newbyteorder(">")
        if len(raw) < storage.numel * base.itemsize:
            raise CheckpointError(
                f"{self.path}: storage data/{storage.key} holds {len(raw)} bytes, "
                f"{storage.numel} x {base.itemsize} expected: the file is truncated or corrupt"
            )
        flat = np.frombuffer(raw, dtype=base, count=storage.numel)
        extent = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride)) + 1
        if any(n == 0 for n in tensor.shape):
            extent = 0
        if tensor.offset < 0 or extent > storage.numel:
            raise CheckpointError(f"{self.path}: a tensor of shape {list(tensor.shape)} overruns storage {storage.key}")
        view = np.lib.stride_tricks.as_strided(
            flat[tensor.offset :], shape=tensor.shape, strides=[s * base.itemsize for s in tensor.stride]
        )
        if kind == "bfloat16":  # bfloat16 is the top half of a float32
            return (view.astype("<u4") << 16).view("<f4").astype(np.float32)
        return np.array(view, dtype=tensor.dtype)  # copies: fp16 -> fp32, big -> native byte order

    # -- internals

    def _unpickle(self) -> Any:
        def persistent_load(pid: Any) -> _Storage:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r} in data.pkl")
            _, kind, key, _location, numel = pid
            if not isinstance(kind, _StorageType):
                raise CheckpointError(f"{self.path}: storage {key!r} has no known dtype ({kind!r})")
            return _Storage(str(key), kind, int(numel))

        def rebuild(storage: _Storage, offset: int, shape: tuple, stride: tuple, *_unused: Any) -> TorchTensor:
            return TorchTensor(self, storage, offset, shape, stride)

        allowed: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild,
            ("torch._utils", "_rebuild_tensor"): rebuild,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        }
        allowed.update({("torch", name): _StorageType(name, dtype) for name, dtype in _TORCH_STORAGES.items()})
        with self._open_member("data.pkl") as f:
            try:
                return _RestrictedUnpickler(f, allowed, str(self.path), persistent_load).load()
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, zipfile.BadZipFile) as err:
                if isinstance(err, CheckpointError):
                    raise
                raise CheckpointError(f"{self.path}: data.pkl is corrupt or truncated ({err})") from err

    def _open_member(self, name: str) -> Any:
        try:
            return self._zip.open(f"{self._prefix}/{name}")
        except KeyError:
            raise CheckpointError(
                f"{self.path}: archive has no {self._prefix}/{name}: not a complete torch checkpoint"
            ) from None

    def _read_member(self, name: str) -> bytes:
        with self._open_member(name) as f:
            try:
                return f.read()
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise CheckpointError(f"{self.path}: {name} is corrupt or truncated ({err})") from err

    def _read_text(self, name: str, default: str) -> str:
        if f"{self._prefix}/{name}" not in self._zip.NameToInfo:
            return default
        return self._read_member(name).decode("ascii", "replace").strip()


def _open_torch_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
    with open(path, "rb") as f:
        head = f.read(8)
    if not zipfile.is_zipfile(path):
        if head[:1] == b"\x80" or head[:2] == b"\x8a\x0a":
            raise CheckpointError(
                f"{path}: legacy (torch < 1.6) checkpoint format, which this reader does not parse; re-save it once "
                "where torch is installed: torch.save(torch.load(src, weights_only=True), dst)"
            )
        raise CheckpointError(
            f"{path}: not a zip archive ({path.stat().st_size} bytes, starts {head!r}): the file is truncated "
            "or not a torch checkpoint; download it again"
        )
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path}: corrupt zip archive ({err}); download it again") from err


def _archive_prefix(zf: zipfile.ZipFile, path: Path) -> str:
    pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: expected one <name>/data.pkl in the archive, found {pickles or 'none'}")
    return pickles[0].split("/")[0]


def load_torch_state(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict of a torch ``.pt`` as numpy arrays (floats as float32); see :class:`TorchCheckpoint`."""
    with TorchCheckpoint(path) as ckpt:
        return {k: v.numpy() for k, v in ckpt.state_dict().items()}


def load_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """A ``paddle.save`` state dict (a pickle of numpy arrays) through the restricted unpickler."""
    with open(path, "rb") as f:
        try:
            obj = _RestrictedUnpickler(f, _NUMPY_GLOBALS, str(path)).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{path}: corrupt or truncated pickle ({err})") from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    obj = {k: v for k, v in obj.items() if k != "StructuredToParameterName@@"}  # paddle.save's name table
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, np.ndarray))
    if bad:
        raise CheckpointError(f"{path}: entries {bad[:5]} are not arrays")
    return obj
