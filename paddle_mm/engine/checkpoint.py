"""Checkpoints without pickle: weights and optimizer tensors as safetensors, everything else as JSON.

A checkpoint is a directory (``best_model``, ``latest``, ``epoch_N``)::

    model.safetensors       weights (structured names, as in the state dict)
    model_config.json       the architecture, so paddle_mm.load_model(dir) works on any checkpoint
    optimizer.safetensors   optimizer accumulators, keyed by structured parameter names
    state.json              epoch, step, best metric, optimizer scalars, the run's config, and the
                            SHA-256 of every weight file ("sha256"), checked whenever the checkpoint is read

It is written into a temporary sibling and swapped in with renames, so a crash (even ``kill -9``) at any
moment leaves either the old or the new checkpoint complete; :func:`resolve_checkpoint` finds the old
one if the crash fell between the two renames. Nothing non-finite is ever written: a NaN or Inf in the
weights or the optimizer state stops the save (:class:`~paddle_mm.engine.errors.Diverged`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..io import file_sha256
from .errors import CheckpointError, Diverged

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


def save_safetensors(tensors: dict[str, Any], path: str | Path) -> None:
    """Write paddle tensors / numpy arrays to ``path`` atomically; read back with :func:`load_safetensors`."""
    from safetensors.numpy import save_file

    arrays = {k: _to_numpy(v) for k, v in tensors.items()}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(arrays, str(tmp))
    os.replace(tmp, path)


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a safetensors file; a truncated or garbled one is a one-line :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); use another checkpoint or re-export") from None


def read_state(directory: str | Path) -> dict[str, Any]:
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


def verify_digests(directory: str | Path, names: tuple[str, ...] | None = None) -> None:
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


def _to_numpy(value: Any) -> np.ndarray:
    arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return np.require(arr, requirements="C")  # not ascontiguousarray: it turns 0-d (logit_scale) into [1]


def load_state_into(model, path: str | Path) -> None:
    """Load a safetensors file into ``model``; any missing, unexpected or mis-shaped tensor is an error."""
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


# ----------------------------------------------------------------------------- optimizer state


def optimizer_state(optimizer, model) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split the optimizer's state into tensors (renamed to structured names) and JSON scalars."""
    rename = _param_renames(model)
    tensors, scalars = {}, {}
    for key, value in optimizer.state_dict().items():
        if hasattr(value, "numpy"):
            tensors[_rename_key(key, rename)] = _to_numpy(value)
        elif isinstance(value, dict):
            scalars[key] = {k: v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
    return tensors, scalars


def load_optimizer_state(optimizer, model, tensors: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
    import paddle

    back = {v: k for k, v in _param_renames(model).items()}
    state = {_rename_key(k, back): paddle.to_tensor(v) for k, v in tensors.items()}
    state.update(scalars)
    optimizer.set_state_dict(state)


def _param_renames(model) -> dict[str, str]:
    # Paddle keys optimizer state by the parameter's generated unique name (linear_3.w_0), which depends
    # on construction order in the process; structured names survive a restart and a code refactor.
    return {p.name: n for n, p in model.named_parameters()}


def _rename_key(key: str, rename: dict[str, str]) -> str:
    for old in sorted(rename, key=len, reverse=True):
        if key.startswith(old + "_") or key == old:
            return rename[old] + key[len(old) :]
    return key


# ----------------------------------------------------------------------------- checkpoint directories


def save_checkpoint(directory: str | Path, model, optimizer=None, state: dict[str, Any] | None = None) -> Path:
    """Atomically write a checkpoint directory (see the module docstring); refuses non-finite tensors."""
    from ..models import WEIGHTS_FILE, save_model

    directory = Path(directory)
    _check_finite(model.state_dict(), f"the weights to be saved as {directory.name}")
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    state = dict(state or {})
    weight_files = [WEIGHTS_FILE]
    if optimizer is not None:
        tensors, scalars = optimizer_state(optimizer, model)
        _check_finite(tensors, f"the optimizer state to be saved in {directory.name}")
        save_safetensors(tensors, tmp / OPTIMIZER_FILE)
        state["optimizer_scalars"] = scalars
        weight_files.append(OPTIMIZER_FILE)
    state["sha256"] = {name: file_sha256(tmp / name) for name in weight_files}
    (tmp / STATE_FILE).write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
    _fsync_dir(tmp)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _check_finite(tensors: dict[str, Any], what: str) -> None:
    for name, value in tensors.items():
        arr = _to_numpy(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise Diverged(f"{what} hold non-finite values ({name}); nothing was written")


def _fsync_dir(directory: Path) -> None:
    for f in directory.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def resolve_checkpoint(path: str | Path) -> Path:
    """The directory to read for ``path``, falling back to the copy a crash mid-swap left behind."""
    path = Path(path)
    if (path / STATE_FILE).is_file() or (path / "model.safetensors").is_file():
        return path
    old = path.with_name(f".{path.name}.old")
    if (old / STATE_FILE).is_file():
        return old
    raise FileNotFoundError(
        f"checkpoint {str(path)!r} not found (expected a directory with model.safetensors and state.json, "
        "e.g. output/<run>/latest)"
    )


def load_checkpoint(path: str | Path, model, optimizer=None) -> dict[str, Any]:
    """Restore weights (and optimizer state if given) after checking their digests; return the saved state."""
    path = resolve_checkpoint(path)
    verify_digests(path)
    load_state_into(model, path / "model.safetensors")
    state = read_state(path)
    if optimizer is not None:
        if not (path / OPTIMIZER_FILE).is_file():
            raise FileNotFoundError(f"{path} has no {OPTIMIZER_FILE}: it is a model, not a resumable checkpoint")
        load_optimizer_state(
            optimizer, model, load_safetensors(path / OPTIMIZER_FILE), state.get("optimizer_scalars", {})
        )
    return state
