"""Exit codes of the inference tools (infer, predict, zero_shot, export_model, folder_to_tsv) and the one line
each error becomes. The table is in docs/export.md ("Exit codes"); scripts may branch on it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn

EXIT_FAILED = 1  # the work ran and failed its own check (an export that disagrees with the eager model)
EXIT_CONFIG = 2  # the command line or the config (as every tool since the first)
EXIT_DATA = 3  # the data: a dataset, split or label file missing or empty, no readable query image
EXIT_IO = 4  # an output that cannot be written (a file where a folder is needed, no permission)
EXIT_DEVICE = 2  # a device that is malformed or not on this machine: a config error, as in tools/train.py
EXIT_MODEL = 6  # a checkpoint or export missing, corrupt, or changed since it was written (digest mismatch)
# 10-14: a signed package refused (paddle_mm.package.PackageRefused.exit_code), as tools/package.py


def fail(code: int, message: object) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with ``code``."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(code)


@contextmanager
def exit_on(code: int, *errors: type[BaseException]) -> Iterator[None]:
    """Turn the given exception types raised inside the block into one line and exit ``code``."""
    try:
        yield
    except errors as err:
        fail(code, err.args[0] if isinstance(err, KeyError) and err.args else err)


@contextmanager
def exit_on_device_error(key: str) -> Iterator[None]:
    """A DeviceError as one line, exit 2 (EXIT_DEVICE); ``key`` is how this tool takes the device (``--device``)."""
    from hardware import DeviceError

    try:
        yield
    except DeviceError as err:
        # hardware words its fix for the config-driven tools; name the option this tool has instead
        message = " ".join(str(err).replace("Global.device", key).split())
        print(f"device error: {message if key in message else f'{key}: {message}'}", file=sys.stderr)
        raise SystemExit(EXIT_DEVICE) from None


@contextmanager
def exit_on_model_error(what: str) -> Iterator[None]:
    """A checkpoint or export that is missing, malformed or corrupt, as one line naming ``what``, exit 6."""
    from safetensors import SafetensorError  # a truncated or garbled model.safetensors (its message names no file)

    from paddle_mm.engine.errors import CheckpointError  # a file whose SHA-256 differs from state.json's

    try:
        yield
    except CheckpointError as err:
        fail(EXIT_MODEL, f"{what}: {err}")
    except SafetensorError as err:
        fail(EXIT_MODEL, f"{what}: model.safetensors is truncated or corrupt ({err}); copy it again or re-save it")
    except (FileNotFoundError, KeyError, ValueError, OSError) as err:
        fail(EXIT_MODEL, f"{what}: {err.args[0] if isinstance(err, KeyError) and err.args else err}")


@contextmanager
def exit_on_predictor_error(what: str, device_key: str) -> Iterator[None]:
    """Opening a model for inference (``paddle_mm.inference.open_predictor`` or a checkpoint): a refused package
    is a ``REFUSED`` line and the package tool's exit code (10-14), a package option error 2, a device error 2
    (named by ``device_key``), a missing, malformed or corrupt model 6 (named by ``what``)."""
    from paddle_mm.package import PackageConfigError, PackageRefused

    with exit_on_device_error(device_key), exit_on_model_error(what):
        try:
            yield
        except PackageRefused as err:  # first: a verified package that is no export is also a ValueError
            print(f"REFUSED {type(err).__name__}: {err}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None
        except PackageConfigError as err:  # a ValueError, but the caller's option: not the model
            fail(EXIT_CONFIG, err)


def writable_output(path: Path, what: str) -> Path:
    """Create the folder of output file ``path`` now, before any work, or exit 4 naming it."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(EXIT_IO, f"{what} {path}: cannot create {folder} ({err.strerror or err}); choose another location")
    if path.is_dir():
        fail(EXIT_IO, f"{what} {path} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        fail(EXIT_IO, f"{what} {path}: {folder} is not writable; choose another location")
    return path
