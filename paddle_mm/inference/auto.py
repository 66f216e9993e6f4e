"""``backend="auto"``: pick the fastest backend for a graph by measuring it once on this machine.

Which runtime wins depends on the CPU (MKL and oneDNN kernels are slow on AMD and Hygon CPUs, ONNX
Runtime's are not; Intel may differ), so nothing is assumed: each candidate runs a few synthetic batches,
the one with the lowest median wins, and the choice is cached in a JSON file keyed by the export's id, the
graph, precision, device, threads, measurement batch and :func:`hardware.inference.machine_fingerprint`.
A later process with the same key builds only the winner.

The cache lives in ``$PADDLE_MM_CACHE_DIR`` (default ``~/.cache/paddle_mm``), file ``backend_choice.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import atomic_write
from .backends import Backend

CACHE_FILE = "backend_choice.json"


@dataclass
class Choice:
    """The backend auto picked, its per-candidate median milliseconds, whether it came from the cache, and
    the candidates that could not be built (name -> error)."""

    backend: str
    timings_ms: dict[str, float]
    cached: bool
    failed: dict[str, str] = field(default_factory=dict)


def cache_dir() -> Path:
    return Path(os.environ.get("PADDLE_MM_CACHE_DIR") or Path.home() / ".cache" / "paddle_mm")


def cache_key(fields: dict[str, str]) -> str:
    """A stable hash of the fields a measurement depends on."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def median_ms(backend: Backend, feeds: dict[str, np.ndarray], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``repeats`` runs after ``warmup`` runs (oneDNN builds kernels on the first two)."""
    for _ in range(warmup):
        backend.run(feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def choose(
    candidates: dict[str, Callable[[], Backend]],
    feeds: dict[str, np.ndarray],
    key_fields: dict[str, str],
    repeats: int = 3,
    directory: Path | None = None,
) -> tuple[Backend, Choice]:
    """Build the cached winner, or measure every candidate, cache the winner and return it built.

    ``candidates`` maps a backend name to a function building it. A candidate that fails to build is not a
    silent loss: its error is re-raised unless another candidate works, and then it is recorded as failed.
    """
    if not candidates:
        raise ValueError("no backend to choose from: the export has no variant for this graph and precision")
    path = (directory or cache_dir()) / CACHE_FILE
    key = cache_key(key_fields)
    entry = _read_cache(path).get(key)
    if entry and entry.get("backend") in candidates:
        return candidates[entry["backend"]](), Choice(
            entry["backend"], entry["timings_ms"], True, entry.get("failed", {})
        )
    best, best_ms, timings, errors = None, float("inf"), {}, {}
    for name, build in candidates.items():
        try:
            backend = build()
        except (RuntimeError, OSError, ValueError) as err:  # e.g. a runtime not installed for this device
            errors[name] = f"{type(err).__name__}: {err}"
            continue
        timings[name] = median_ms(backend, feeds, repeats)
        if timings[name] < best_ms:
            best, best_ms = (name, backend), timings[name]
    if best is None:
        raise RuntimeError(f"no backend could be built: {errors}")
    _write_cache(
        path,
        key,
        {
            "backend": best[0],
            "timings_ms": timings,
            "failed": errors,
            "key": key_fields,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    return best[1], Choice(best[0], timings, False, errors)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError):
        return {}  # a corrupt cache only costs a re-measurement; it is rewritten below
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read_cache(path)
    data[key] = entry
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False))
