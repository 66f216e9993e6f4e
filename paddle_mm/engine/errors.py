"""What ends a training run early, each with its own exit code (docs/training.md, "Exit codes").

``str(err)`` is a complete one-line message naming the bad value and the fix; ``tools/train.py`` prints it
to stderr and exits with ``err.exit_code`` (config errors keep code 2, see :mod:`paddle_mm.config`).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from ..data.datasets import DatasetError
from ..io import CheckpointError  # a checkpoint that cannot be trusted (unreadable, truncated, SHA-256 differs)


class TrainingError(RuntimeError):
    """Base class: a run that cannot start or must stop."""

    exit_code = 1
    label = "error"


class OutputDirNotEmpty(TrainingError):
    exit_code = 20
    label = "refused"


class RunLocked(TrainingError):
    exit_code = 21
    label = "refused"


class ConfigDrift(TrainingError):
    exit_code = 22
    label = "refused"


class Diverged(TrainingError):
    exit_code = 23
    label = "diverged"


class OutputDirUnusable(TrainingError):
    exit_code = 4  # as every tool's output error (tools/_errors.py)
    label = "output error"


class Interrupted(TrainingError):
    """SIGINT / SIGTERM: the run stopped cleanly (exit 128 + signal number, as a shell reports it)."""

    label = "interrupted"

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


DATA_EXIT_CODE = 3  # DatasetError: a missing or empty dataset root or split (as every tool's data error)


@contextmanager
def exit_on_training_error() -> Iterator[None]:
    """A TrainingError, CheckpointError or DatasetError as one line on stderr and its exit code (no traceback)."""
    try:
        yield
    except (TrainingError, CheckpointError) as err:
        print(f"{err.label}: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except DatasetError as err:
        print(f"data error: {err}", file=sys.stderr)
        raise SystemExit(DATA_EXIT_CODE) from None
