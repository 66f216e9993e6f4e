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
from pathlib import Path
from typing import Any

import numpy as np

from ..io import (  # load_state_into, read_state, verify_digests: the trainer imports them from here
    STATE_FILE,
    file_sha256,
    load_safetensors,
    load_state_into,
    read_state,
    save_safetensors,
    staged_directory,
    to_numpy,
    verify_digests,
)
from .errors import Diverged

OPTIMIZER_FILE = "optimizer.safetensors"


# ----------------------------------------------------------------------------- optimizer state


def optimizer_state(optimizer, model) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split the optimizer's state into tensors (renamed to structured names) and JSON scalars."""
    rename = _param_renames(model)
    tensors, scalars = {}, {}
    for key, value in optimizer.state_dict().items():
        if hasattr(value, "numpy"):
            tensors[_rename_key(key, rename)] = to_numpy(value)
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
    with staged_directory(directory, single_writer=True, fsync=True) as tmp:  # .<name>.old: resolve_checkpoint
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
    return directory


def _check_finite(tensors: dict[str, Any], what: str) -> None:
    for name, value in tensors.items():
        arr = to_numpy(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise Diverged(f"{what} hold non-finite values ({name}); nothing was written")


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
