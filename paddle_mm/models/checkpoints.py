"""Checkpoint conversion into and out of paddle_mm, without torch and without running pickled code.

Formats (``convert_checkpoint`` detects the source):

* **Chinese-CLIP / QA-CLIP ``.pt``**: a torch zip archive, ``<name>/data.pkl`` (the pickled object) plus one
  raw little-endian storage per tensor in ``<name>/data/<key>``. :class:`TorchCheckpoint` reads it with an
  unpickler whose ``find_class`` knows only the handful of globals a state dict needs (``OrderedDict``,
  ``torch._utils._rebuild_tensor_v2``, the ``torch.*Storage`` dtypes) and maps them to local numpy code;
  any other global (``os.system``, ``builtins.eval``, ...) stops the load with :class:`UnsafePickleError`
  naming it, before anything is called. Half / bfloat16 storages are cast to float32. The legacy (torch
  < 1.6) non-zip format is refused with the command that re-saves it.
* **PaddleNLP ``ChineseCLIPModel``** directory: ``config.json`` + ``model.safetensors`` (or
  ``model_state.safetensors``, or ``model_state.pdparams``, a pickle of numpy arrays read with the same kind
  of restricted unpickler: only numpy's array reconstruction is allowed, object arrays are refused).
* **paddle_mm** directory: ``model_config.json`` + ``model.safetensors`` (what ``paddle_mm.load_model`` reads).
  :func:`export_paddlenlp` writes PaddleNLP's layout from it (ViT models; PaddleNLP has no RN50).

The architecture is inferred from tensor shapes (any depth and width, ViT or ModifiedResNet), except what
weights cannot tell: attention head counts. Those come from the named model with the same width (ViT-H-14's
1280-wide tower uses 80-wide heads), else 64-wide heads as in every released model; pass ``overrides`` (CLI
``--set vision_head_width=32``) for anything else. Given ``arch``, the checkpoint must match that named model
shape for shape; a mismatch names the first differing tensor and both shapes.

Memory: the converter holds one float32 copy of the weights (tensors are read one at a time from the zip)
and streams the safetensors file out, so peak memory stays near one copy.
"""

from __future__ import annotations

import collections
import json
import math
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import MODEL_CONFIG_FILE, WEIGHTS_FILE, get_model_config, list_models
from .convert import cn_clip_to_paddle, paddle_to_paddlenlp, paddlenlp_to_paddle

__all__ = [
    "CheckpointError",
    "TorchCheckpoint",
    "UnsafePickleError",
    "convert_checkpoint",
    "expected_shapes",
    "export_paddlenlp",
    "infer_config",
    "load_torch_state",
    "resolve_config",
    "write_safetensors",
]

NLP_CONFIG_FILE = "config.json"
NLP_WEIGHT_FILES = ("model.safetensors", "model_state.safetensors", "model_state.pdparams")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit: the message names the file, the tensor or the field."""


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


# ----------------------------------------------------------------------------- safetensors out, streamed

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


def write_safetensors(path: str | Path, arrays: Mapping[str, np.ndarray], metadata: dict[str, str] | None = None):
    """Write ``arrays`` as a safetensors file one tensor at a time (no second in-memory copy), atomically."""
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
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for array in arrays.values():
            little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1)
            f.write(little.data)
    os.replace(tmp, path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError (not importable by name)
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


# ----------------------------------------------------------------------------- architecture from shapes

_BERT_HEAD_WIDTH = 64  # every Chinese-CLIP text tower (RBT3, RoBERTa-wwm-ext base / large)
_ARCH_DEFAULTS: dict[str, Any] = {
    "vision_head_width": 64,
    "text_attention_probs_dropout_prob": 0.1,
    "text_hidden_act": "gelu",
    "text_hidden_dropout_prob": 0.1,
    "text_initializer_range": 0.02,
    "context_length": 52,
    "pad_id": 0,
}


def expected_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor name of ``CLIP(cfg)``'s state dict and its shape, in model order, without building it."""
    shapes: dict[str, tuple[int, ...]] = {
        "text_projection": (cfg["text_hidden_size"], cfg["embed_dim"]),
        "logit_scale": (),
    }
    if isinstance(cfg["vision_layers"], (list, tuple)):
        shapes.update(_resnet_shapes(cfg))
    else:
        shapes.update(_vit_shapes(cfg))
    shapes.update(_bert_shapes(cfg))
    return shapes


def _vit_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    w, p, res = cfg["vision_width"], cfg["vision_patch_size"], cfg["image_resolution"]
    shapes = {
        "visual.class_embedding": (w,),
        "visual.positional_embedding": ((res // p) ** 2 + 1, w),
        "visual.proj": (w, cfg["embed_dim"]),
        "visual.conv1.weight": (w, 3, p, p),
        "visual.ln_pre.weight": (w,),
        "visual.ln_pre.bias": (w,),
    }
    for i in range(cfg["vision_layers"]):
        block = f"visual.transformer.resblocks.{i}."
        shapes.update({
            block + "attn.in_proj_weight": (w, 3 * w),
            block + "attn.in_proj_bias": (3 * w,),
            block + "attn.out_proj.weight": (w, w),
            block + "attn.out_proj.bias": (w,),
            block + "ln_1.weight": (w,),
            block + "ln_1.bias": (w,),
            block + "mlp.c_fc.weight": (w, 4 * w),
            block + "mlp.c_fc.bias": (4 * w,),
            block + "mlp.c_proj.weight": (4 * w, w),
            block + "mlp.c_proj.bias": (w,),
            block + "ln_2.weight": (w,),
            block + "ln_2.bias": (w,),
        })  # fmt: skip
    shapes.update({"visual.ln_post.weight": (w,), "visual.ln_post.bias": (w,)})
    return shapes


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    names = ("weight", "bias", "running_mean", "running_var")
    return {**{f"{prefix}.{n}": (channels,) for n in names}, f"{prefix}.num_batches_tracked": ()}


def _resnet_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    w, res, embed = cfg["vision_width"], cfg["image_resolution"], cfg["embed_dim"]
    shapes = {"visual.conv1.weight": (w // 2, 3, 3, 3), **_bn("visual.bn1", w // 2)}
    shapes.update({"visual.conv2.weight": (w // 2, w // 2, 3, 3), **_bn("visual.bn2", w // 2)})
    shapes.update({"visual.conv3.weight": (w, w // 2, 3, 3), **_bn("visual.bn3", w)})
    inplanes = w
    for stage, blocks in enumerate(cfg["vision_layers"]):
        planes = w * 2**stage
        for b in range(blocks):
            pre = f"visual.layer{stage + 1}.{b}."
            shapes.update({pre + "conv1.weight": (planes, inplanes, 1, 1), **_bn(pre + "bn1", planes)})
            shapes.update({pre + "conv2.weight": (planes, planes, 3, 3), **_bn(pre + "bn2", planes)})
            shapes.update({pre + "conv3.weight": (4 * planes, planes, 1, 1), **_bn(pre + "bn3", 4 * planes)})
            if b == 0 and (stage > 0 or inplanes != 4 * planes):
                shapes.update({pre + "downsample.0.weight": (4 * planes, inplanes, 1, 1)})
                shapes.update(_bn(pre + "downsample.1", 4 * planes))
            inplanes = 4 * planes
    c = 32 * w
    shapes["visual.attnpool.positional_embedding"] = ((res // 32) ** 2 + 1, c)
    for proj in ("k_proj", "q_proj", "v_proj"):
        shapes.update({f"visual.attnpool.{proj}.weight": (c, c), f"visual.attnpool.{proj}.bias": (c,)})
    shapes.update({"visual.attnpool.c_proj.weight": (c, embed), "visual.attnpool.c_proj.bias": (embed,)})
    return shapes


def _bert_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    h, inter = cfg["text_hidden_size"], cfg["text_intermediate_size"]
    shapes = {
        "bert.embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": (cfg["text_max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (cfg["text_type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
    }
    for i in range(cfg["text_num_hidden_layers"]):
        pre = f"bert.encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes.update({f"{pre}attention.self.{name}.weight": (h, h), f"{pre}attention.self.{name}.bias": (h,)})
        shapes.update({
            pre + "attention.output.dense.weight": (h, h),
            pre + "attention.output.dense.bias": (h,),
            pre + "attention.output.LayerNorm.weight": (h,),
            pre + "attention.output.LayerNorm.bias": (h,),
            pre + "intermediate.dense.weight": (h, inter),
            pre + "intermediate.dense.bias": (inter,),
            pre + "output.dense.weight": (inter, h),
            pre + "output.dense.bias": (h,),
            pre + "output.LayerNorm.weight": (h,),
            pre + "output.LayerNorm.bias": (h,),
        })  # fmt: skip
    return shapes


def _count(shapes: Iterable[str], pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for name in shapes if (m := regex.match(name))}
    if found != set(range(len(found))):
        raise CheckpointError(f"layer indices {sorted(found)} of {pattern!r} are not 0..N-1: layers are missing")
    return len(found)


def _need(shapes: Mapping[str, tuple[int, ...]], name: str) -> tuple[int, ...]:
    if name not in shapes:
        raise CheckpointError(f"tensor {name!r} is missing: this is not a complete Chinese-CLIP checkpoint")
    return tuple(shapes[name])


def _grid(tokens: int, name: str) -> int:
    side = math.isqrt(tokens - 1)
    if side * side != tokens - 1:
        raise CheckpointError(f"{name} has {tokens} rows, not 1 + a square grid: cannot infer the image size")
    return side


def infer_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """A model config (cn_clip field names) from the shapes of a paddle_mm-named state dict.

    Head counts are not in the weights: see the module docstring for how they are chosen.
    """
    word = _need(shapes, "bert.embeddings.word_embeddings.weight")
    cfg: dict[str, Any] = dict(_ARCH_DEFAULTS)
    cfg.update(
        embed_dim=_need(shapes, "text_projection")[1],
        vocab_size=word[0],
        text_hidden_size=word[1],
        text_max_position_embeddings=_need(shapes, "bert.embeddings.position_embeddings.weight")[0],
        text_type_vocab_size=_need(shapes, "bert.embeddings.token_type_embeddings.weight")[0],
        text_num_hidden_layers=_count(shapes, r"bert\.encoder\.layer\.(\d+)\."),
        text_intermediate_size=_need(shapes, "bert.encoder.layer.0.intermediate.dense.weight")[1],
        text_num_attention_heads=max(1, word[1] // _BERT_HEAD_WIDTH),
    )
    cfg["context_length"] = min(cfg["context_length"], cfg["text_max_position_embeddings"])
    if "visual.attnpool.positional_embedding" in shapes:
        tokens = _need(shapes, "visual.attnpool.positional_embedding")[0]
        cfg.update(
            vision_layers=[_count(shapes, rf"visual\.layer{s}\.(\d+)\.") for s in range(1, 5)],
            vision_width=_need(shapes, "visual.conv3.weight")[0],
            vision_patch_size=None,
            image_resolution=32 * _grid(tokens, "visual.attnpool.positional_embedding"),
        )
    else:
        conv = _need(shapes, "visual.conv1.weight")
        tokens = _need(shapes, "visual.positional_embedding")[0]
        cfg.update(
            vision_layers=_count(shapes, r"visual\.transformer\.resblocks\.(\d+)\."),
            vision_width=conv[0],
            vision_patch_size=conv[2],
            image_resolution=conv[2] * _grid(tokens, "visual.positional_embedding"),
        )
        for name in list_models():  # head width is not in the weights: take it from a named model of this width
            named = get_model_config(name)
            if not isinstance(named["vision_layers"], list) and named["vision_width"] == cfg["vision_width"]:
                cfg["vision_head_width"] = named["vision_head_width"]
                break
    return cfg


def check_shapes(cfg: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], label: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensor whose shape differs from what ``cfg`` builds."""
    expected = expected_shapes(cfg)
    for name, shape in expected.items():
        if name not in shapes:
            raise CheckpointError(f"tensor {name!r} of {label} (shape {list(shape)}) is missing from the checkpoint")
        if tuple(shapes[name]) != shape:
            raise CheckpointError(
                f"tensor {name!r}: the checkpoint has shape {list(shapes[name])}, {label} expects {list(shape)}"
            )
    extra = [name for name in shapes if name not in expected]
    if extra:
        raise CheckpointError(f"tensor {extra[0]!r} (shape {list(shapes[extra[0]])}) is not part of {label}")


def resolve_config(
    shapes: Mapping[str, tuple[int, ...]], arch: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The config for a state dict: ``arch``'s (checked), else a named model that fits exactly, else inferred.

    ``overrides`` replace fields before the shape check (e.g. head widths for a custom model).
    """
    if arch is not None:
        cfg, label = get_model_config(arch), f"--arch {arch}"
    else:
        cfg, label = infer_config(shapes), "the inferred architecture"
        for name in list_models():
            named = get_model_config(name)
            if _same_shapes(named, shapes):
                cfg, label = named, name
                break
    for key in overrides or {}:
        if key not in cfg:
            raise CheckpointError(f"override {key!r} is not a model config field; fields: {sorted(cfg)}")
    cfg.update(overrides or {})
    if overrides:
        label += f" with {dict(overrides)}"
    check_shapes(cfg, shapes, label)
    return cfg


def _same_shapes(cfg: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    expected = expected_shapes(cfg)
    return expected.keys() == shapes.keys() and all(tuple(shapes[k]) == v for k, v in expected.items())


# ----------------------------------------------------------------------------- conversions


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    arch: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert a Chinese-CLIP ``.pt`` or a PaddleNLP ChineseCLIP directory into a paddle_mm model directory.

    ``dst`` receives ``model_config.json`` + ``model.safetensors`` for ``paddle_mm.load_model(dst)``.
    Returns a small report: source format, architecture name (or "inferred"), tensor count, config.
    """
    src = Path(src)
    fmt = detect_format(src)
    if fmt == "cn_clip":
        with TorchCheckpoint(src) as ckpt:
            state = cn_clip_to_paddle(ckpt.state_dict())  # reads and casts one tensor at a time
    elif fmt == "paddlenlp":
        state, nlp_config = read_paddlenlp(src)
        overrides = {**paddlenlp_heads(nlp_config), **(overrides or {})}
    else:
        raise CheckpointError(f"{src} is already a paddle_mm model directory: load it with paddle_mm.load_model")
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    cfg = resolve_config(shapes, arch, overrides)
    write_model_dir(dst, cfg, state)
    named = next((n for n in list_models() if get_model_config(n) == cfg), "inferred")
    return {"format": fmt, "architecture": named, "tensors": len(state), "config": cfg}


def detect_format(src: Path) -> str:
    """The source format: "cn_clip" (a torch file), "paddlenlp" (config.json + weights), "paddle_mm"."""
    if src.is_file():
        return "cn_clip"
    if (src / MODEL_CONFIG_FILE).is_file():
        return "paddle_mm"
    if (src / NLP_CONFIG_FILE).is_file():
        return "paddlenlp"
    if src.is_dir():
        raise CheckpointError(
            f"{src}: a directory without {MODEL_CONFIG_FILE} (paddle_mm) or {NLP_CONFIG_FILE} (PaddleNLP); "
            "pass a Chinese-CLIP .pt file or one of those directories"
        )
    raise FileNotFoundError(f"checkpoint {str(src)!r} not found")


def write_model_dir(dst: str | Path, cfg: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> Path:
    """Write a paddle_mm model directory (what ``paddle_mm.load_model`` reads) with tensors in model order."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    order = [k for k in expected_shapes(cfg) if k in state]
    write_safetensors(dst / WEIGHTS_FILE, {k: state[k] for k in order}, {"format": "np"})
    (dst / MODEL_CONFIG_FILE).write_text(json.dumps(dict(cfg), indent=2), encoding="utf-8")
    return dst


def read_paddlenlp(src: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """paddle_mm-named weights and PaddleNLP's config from a ChineseCLIPModel directory."""
    config = json.loads((src / NLP_CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model_type") != "chinese_clip":
        raise CheckpointError(
            f"{src / NLP_CONFIG_FILE}: model_type {config.get('model_type')!r}, expected 'chinese_clip' "
            "(a PaddleNLP ChineseCLIPModel directory)"
        )
    weights = next((src / n for n in NLP_WEIGHT_FILES if (src / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{src}: none of {list(NLP_WEIGHT_FILES)} found (sharded checkpoints are not supported)")
    state = load_pdparams(weights) if weights.suffix == ".pdparams" else _read_safetensors(weights)
    if any(k.startswith("text_model.encoder.layer.") for k in state):
        raise CheckpointError(
            f"{weights}: Hugging Face transformers naming (torch layout); convert it with PaddleNLP first or use "
            "the Chinese-CLIP .pt release"
        )
    return paddlenlp_to_paddle(state), config


def paddlenlp_heads(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a PaddleNLP config states that weights cannot: head widths, dropouts, and checks on the rest."""
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    checks = {
        "vision hidden_act": (vision.get("hidden_act", "quick_gelu"), "quick_gelu"),
        "text hidden_act": (text.get("hidden_act", "gelu"), "gelu"),
        "vision layer_norm_eps": (vision.get("layer_norm_eps", 1e-5), 1e-5),
        "text layer_norm_eps": (text.get("layer_norm_eps", 1e-12), 1e-12),
    }
    for what, (value, supported) in checks.items():
        if value != supported:
            raise CheckpointError(f"PaddleNLP config: {what} {value!r} is not Chinese-CLIP's {supported!r}")
    width = vision.get("hidden_size", 768)
    if vision.get("intermediate_size", 4 * width) != 4 * width:
        raise CheckpointError(f"PaddleNLP config: vision intermediate_size must be 4 x hidden_size ({4 * width})")
    return {
        "vision_head_width": width // vision.get("num_attention_heads", 12),
        "text_num_attention_heads": text.get("num_attention_heads", 12),
        "text_hidden_dropout_prob": text.get("hidden_dropout_prob", 0.1),
        "text_attention_probs_dropout_prob": text.get("attention_probs_dropout_prob", 0.1),
        "text_initializer_range": text.get("initializer_range", 0.02),
    }


def paddlenlp_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """PaddleNLP ``ChineseCLIPConfig`` fields (``config.json``) for a ViT paddle_mm config."""
    if isinstance(cfg["vision_layers"], (list, tuple)):
        raise CheckpointError(
            f"vision_layers {cfg['vision_layers']!r} is a ResNet (RN50): PaddleNLP's ChineseCLIPModel has ViT image "
            "towers only; keep RN50 in the paddle_mm or cn_clip format"
        )
    width = cfg["vision_width"]
    return {
        "architectures": ["ChineseCLIPModel"],
        "model_type": "chinese_clip",
        "projection_dim": cfg["embed_dim"],
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "model_type": "chinese_clip_text_model",
            "vocab_size": cfg["vocab_size"],
            "hidden_size": cfg["text_hidden_size"],
            "num_hidden_layers": cfg["text_num_hidden_layers"],
            "num_attention_heads": cfg["text_num_attention_heads"],
            "intermediate_size": cfg["text_intermediate_size"],
            "hidden_act": cfg["text_hidden_act"],
            "hidden_dropout_prob": cfg["text_hidden_dropout_prob"],
            "attention_probs_dropout_prob": cfg["text_attention_probs_dropout_prob"],
            "max_position_embeddings": cfg["text_max_position_embeddings"],
            "type_vocab_size": cfg["text_type_vocab_size"],
            "initializer_range": cfg["text_initializer_range"],
            "layer_norm_eps": 1e-12,
            "pad_token_id": cfg["pad_id"],
        },
        "vision_config": {
            "model_type": "chinese_clip_vision_model",
            "hidden_size": width,
            "intermediate_size": 4 * width,
            "num_hidden_layers": cfg["vision_layers"],
            "num_attention_heads": width // cfg["vision_head_width"],
            "image_size": cfg["image_resolution"],
            "patch_size": cfg["vision_patch_size"],
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
    }


def export_paddlenlp(src: str | Path, dst: str | Path) -> Path:
    """Write a paddle_mm model directory as a PaddleNLP ``ChineseCLIPModel`` directory.

    ``dst`` gets ``config.json`` + ``model.safetensors``, which
    ``paddlenlp.transformers.ChineseCLIPModel.from_pretrained(dst)`` loads.
    """
    src, dst = Path(src), Path(dst)
    if detect_format(src) != "paddle_mm":
        raise CheckpointError(f"{src}: --to paddlenlp needs a paddle_mm model directory (with {MODEL_CONFIG_FILE})")
    cfg = json.loads((src / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    nlp_config = paddlenlp_config(cfg)
    state = _read_safetensors(src / WEIGHTS_FILE)
    check_shapes(cfg, {k: v.shape for k, v in state.items()}, f"{src / MODEL_CONFIG_FILE}")
    floats = {k: v.astype(np.float32, copy=False) if v.dtype.kind == "f" else v for k, v in state.items()}
    dst.mkdir(parents=True, exist_ok=True)
    write_safetensors(dst / "model.safetensors", paddle_to_paddlenlp(floats), {"format": "np"})
    (dst / NLP_CONFIG_FILE).write_text(json.dumps(nlp_config, indent=2), encoding="utf-8")
    return dst
