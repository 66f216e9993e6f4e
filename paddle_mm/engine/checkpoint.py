"""Checkpoints without pickle: weights and optimizer tensors as safetensors, everything else as JSON.

A checkpoint is a directory (``best_model``, ``latest``, ``epoch_N``)::

    model.safetensors       weights (structured names, as in the state dict)
    model_config.json       the architecture, so paddle_mm.load_model(dir) works on any checkpoint
    optimizer.safetensors   optimizer accumulators, keyed by structured parameter names
    state.json              epoch, step, best metric, optimizer scalars, the run's config

It is written into a temporary sibling and swapped in with renames, so a crash (even ``kill -9``) at any
moment leaves either the old or the new checkpoint complete; :func:`resolve_checkpoint` finds the old
one if the crash fell between the two renames.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

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
    from safetensors.numpy import load_file

    return load_file(str(path))


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
    """Atomically write a checkpoint directory (see the module docstring)."""
    from ..models import save_model

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    state = dict(state or {})
    if optimizer is not None:
        tensors, scalars = optimizer_state(optimizer, model)
        save_safetensors(tensors, tmp / OPTIMIZER_FILE)
        state["optimizer_scalars"] = scalars
    (tmp / STATE_FILE).write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
    _fsync_dir(tmp)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


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
    """Restore weights (and optimizer state if given); return the saved training state."""
    path = resolve_checkpoint(path)
    load_state_into(model, path / "model.safetensors")
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if optimizer is not None:
        if not (path / OPTIMIZER_FILE).is_file():
            raise FileNotFoundError(f"{path} has no {OPTIMIZER_FILE}: it is a model, not a resumable checkpoint")
        load_optimizer_state(
            optimizer, model, load_safetensors(path / OPTIMIZER_FILE), state.get("optimizer_scalars", {})
        )
    return state
