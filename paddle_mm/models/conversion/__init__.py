"""Checkpoint conversion into and out of paddle_mm, without torch and without running pickled code.

Modules: :mod:`.torch_zip` (reading a torch ``.pt`` zip and ``.pdparams`` pickles through a restricted unpickler),
:mod:`.shapes` (the architecture a state dict's shapes imply), :mod:`.names` (tensor-name mappings between
cn_clip, paddle_mm and PaddleNLP) and :mod:`.formats` (whole conversions between directories).

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

from ...io import CheckpointError
from .formats import (
    convert_checkpoint,
    detect_format,
    export_paddlenlp,
    paddlenlp_config,
    paddlenlp_heads,
    read_paddlenlp,
    write_model_dir,
)
from .shapes import check_shapes, expected_shapes, infer_config, resolve_config
from .torch_zip import TorchCheckpoint, TorchTensor, UnsafePickleError, load_pdparams, load_torch_state

__all__ = [
    "CheckpointError",
    "TorchCheckpoint",
    "TorchTensor",
    "UnsafePickleError",
    "check_shapes",
    "convert_checkpoint",
    "detect_format",
    "expected_shapes",
    "export_paddlenlp",
    "infer_config",
    "load_pdparams",
    "load_torch_state",
    "paddlenlp_config",
    "paddlenlp_heads",
    "read_paddlenlp",
    "resolve_config",
    "write_model_dir",
]
