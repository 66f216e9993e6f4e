"""``backend="auto"``: pick the fastest backend for a graph by measuring it on this machine.

Which runtime wins depends on the CPU (MKL and oneDNN kernels are slow on AMD and Hygon CPUs, ONNX
Runtime's are not; Intel may differ), so nothing is assumed. Every candidate is built and warmed up, then
timed in interleaved rounds (one run of each per round, in a rotating order), as ``tools/benchmark.py``
times its rows: a change in background load then hits all candidates alike. Per round, each candidate's
time is divided by the round's time of the fastest one (by median over rounds); the decision is
*confident* when the runner-up's lower-quartile ratio exceeds ``1 + MIN_MARGIN``, i.e. the winner was at
least 2 % faster in three rounds out of four. Until then more rounds are measured (up to
``MAX_ROUNDS_FACTOR`` times the first batch); a decision still inside the noise is not cached, and the faster
by median over all those rounds is used (the best estimate there is: a fixed default, the export's first
variant, was the slower row in two quiet benchmark runs on a Zen 5, by 1.5x and 2x). A decision measured while
other processes kept more than ``BUSY_CORES`` cores busy is used but not cached either: under load oneDNN's
OpenMP threads lose far more than ONNX Runtime's, so a busy hour's winner need not be a quiet hour's
(:class:`hardware.cpu.OtherLoad` measures it from /proc). A confident choice is cached
with its margin (median ratio - 1) and noise (interquartile range of the ratios) in a JSON file keyed by
the export's id, the graph, precision, device, threads, measurement batch and
:func:`hardware.inference.machine_fingerprint`; a later process with the same key builds only the winner.

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

from hardware.cpu import BUSY_OTHER_CORES

from ..io import atomic_write
from .backends import Backend

CACHE_FILE = "backend_choice.json"
ROUNDS = 5  # first batch of interleaved rounds
MAX_ROUNDS_FACTOR = 3  # keep measuring up to 3x ROUNDS while the margin is inside the noise
MIN_MARGIN = 0.02  # a winner must be at least 2 % faster in 3 rounds out of 4 to be cached
WARMUP = 2  # oneDNN and ONNX Runtime build kernels and plans on the first calls
# Pause before each timed run while several backends are measured: Paddle Inference's OpenMP threads keep spinning
# for KMP_BLOCKTIME (Intel OpenMP's default, 200 ms) after a run, and the next candidate's run then shares the
# cores with them. Measured in one process on a 2-core Zen 5, ViT-B-16 image batch 1: ONNX Runtime 88 ms alone,
# 93-117 ms right after a Paddle Inference run; so without the pause auto's rounds favoured Paddle Inference.
SETTLE_S = 0.25
BUSY_CORES = BUSY_OTHER_CORES  # other processes using more cores than this while measuring: the decision is not cached


@dataclass
class Choice:
    """The backend auto picked and why.

    ``timings_ms``: each candidate's median milliseconds; ``margin``: how much slower the runner-up was
    (median of per-round ratios - 1; None with one candidate); ``noise``: the interquartile range of those
    ratios; ``confident``: whether the margin stood out of the noise (only then is the choice cached);
    ``rounds``: interleaved rounds measured; ``failed``: candidates that could not be built (name -> error);
    ``other_cores``: CPU cores other processes kept busy while it was measured (None: unknown or cached);
    ``cosines``: each accuracy-gated candidate's lowest feature cosine against the reference (see :func:`admit`).
    """

    backend: str
    timings_ms: dict[str, float]
    cached: bool
    failed: dict[str, str] = field(default_factory=dict)
    margin: float | None = None
    noise: float | None = None
    confident: bool = True
    rounds: int = 0
    other_cores: float | None = None
    cosines: dict[str, float] = field(default_factory=dict)


@dataclass
class Decision:
    """What a set of interleaved timings says: the fastest, its margin over the runner-up, the noise."""

    best: str
    medians_ms: dict[str, float]
    margin: float | None
    noise: float | None
    confident: bool


def cache_dir() -> Path:
    return Path(os.environ.get("PADDLE_MM_CACHE_DIR") or Path.home() / ".cache" / "paddle_mm")


def cache_key(fields: dict[str, str]) -> str:
    """A stable hash of the fields a measurement depends on."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def interleaved_ms(
    backends: dict[str, Backend],
    feeds: dict[str, np.ndarray],
    rounds: int,
    start_round: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """One timed run of every backend per round, the order rotating by round; milliseconds per backend. With
    several backends each run starts after a pause of ``SETTLE_S``, so that none is timed while the previous
    one's threads still spin."""
    names = list(backends)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(start_round, start_round + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if len(names) > 1 and SETTLE_S > 0:
                time.sleep(SETTLE_S)
            t0 = clock()
            backends[name].run(feeds)
            times[name].append((clock() - t0) * 1e3)
    return times


def decide(times: dict[str, list[float]], min_margin: float | None = None) -> Decision:
    """The fastest backend by median, and whether it beat the runner-up by more than the noise.

    The runner-up is compared round by round (the rounds are interleaved, so a ratio within one round is
    free of slow drifts in background load): confident when its lower-quartile ratio exceeds 1 + min_margin
    (default :data:`MIN_MARGIN`).
    """
    min_margin = MIN_MARGIN if min_margin is None else min_margin
    medians = {n: float(np.median(t)) for n, t in times.items()}
    best = min(medians, key=medians.get)
    others = [n for n in medians if n != best]
    if not others:
        return Decision(best, medians, None, None, True)
    ratios = {n: np.asarray(times[n]) / np.asarray(times[best]) for n in others}
    runner_up = min(others, key=lambda n: float(np.median(ratios[n])))
    r = ratios[runner_up]
    q25, q50, q75 = (float(np.percentile(r, q)) for q in (25, 50, 75))
    return Decision(best, medians, q50 - 1, q75 - q25, q25 > 1 + min_margin)


def choose(
    candidates: dict[str, Callable[[], Backend]],
    feeds: dict[str, np.ndarray],
    key_fields: dict[str, str],
    rounds: int = ROUNDS,
    directory: Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
    load_meter: Callable[[], Callable[[], float | None]] | None = None,
    min_cosine: dict[str, float] | None = None,
) -> tuple[Backend, Choice]:
    """Build the cached winner, or measure every candidate, cache a confident winner and return it built.

    ``candidates`` maps a backend name to a function building it, in the export's order. A candidate
    that fails to build is not a silent loss: its error is re-raised unless another candidate works, and then
    it is recorded as failed. ``min_cosine``: candidates that compete only if their outputs keep this feature
    cosine to the reference's (:func:`admit`; e.g. BF16 against fp32). ``clock`` and ``load_meter`` are for
    tests (a fake backend advancing a fake clock; a function starting a measurement of other processes' CPU
    use and returning the function that reads it).
    """
    if not candidates:
        raise ValueError("no backend to choose from: the export has no variant for this graph and precision")
    path = (directory or cache_dir()) / CACHE_FILE
    key = cache_key(key_fields)
    entry = _read_cache(path).get(key)
    if entry and entry.get("backend") in candidates:
        return candidates[entry["backend"]](), Choice(
            entry["backend"], entry["timings_ms"], True, entry.get("failed", {}), entry.get("margin"),
            entry.get("noise"), True, entry.get("rounds", 0), cosines=entry.get("cosines", {}),
        )  # fmt: skip
    built, errors = {}, {}
    for name, build in candidates.items():
        try:
            built[name] = build()
        except (RuntimeError, OSError, ValueError) as err:  # e.g. a runtime not installed for this device
            errors[name] = f"{type(err).__name__}: {err}"
    if not built:
        raise RuntimeError(f"no backend could be built: {errors}")
    cosines = admit(built, feeds, min_cosine or {}, errors)
    if not built:
        raise RuntimeError(f"no backend could be built and pass its accuracy check: {errors}")
    for backend in built.values():
        for _ in range(WARMUP if len(built) > 1 else 0):
            backend.run(feeds)
    other_cores = (load_meter or _other_load)()
    times = interleaved_ms(built, feeds, rounds if len(built) > 1 else 0, clock=clock)
    decision = decide(times) if len(built) > 1 else Decision(next(iter(built)), {}, None, None, True)
    while not decision.confident and len(times[decision.best]) < rounds * MAX_ROUNDS_FACTOR:
        more = interleaved_ms(built, feeds, rounds, start_round=len(times[decision.best]), clock=clock)
        times = {n: times[n] + more[n] for n in times}
        decision = decide(times)
    picked = decision.best  # inside the noise too (then not cached: the next process measures again)
    busy = other_cores()
    choice = Choice(
        picked, decision.medians_ms, False, errors, decision.margin, decision.noise, decision.confident,
        len(times[picked]), busy, cosines,
    )  # fmt: skip
    if decision.confident and len(built) > 1 and busy is not None and busy > BUSY_CORES:
        return built[picked], choice  # measured on a busy machine: used now, measured again next time
    if decision.confident:
        _write_cache(
            path,
            key,
            {
                "backend": picked,
                "timings_ms": decision.medians_ms,
                "margin": decision.margin,
                "noise": decision.noise,
                "rounds": choice.rounds,
                "other_cores": busy,
                "failed": errors,
                "cosines": cosines,
                "key": key_fields,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    return built[picked], choice


def admit(
    built: dict[str, Backend], feeds: dict[str, np.ndarray], min_cosine: dict[str, float], errors: dict[str, str]
) -> dict[str, float]:
    """Drop from ``built`` each candidate of ``min_cosine`` whose outputs on ``feeds`` fall under its bound.

    The reference is the first built candidate without a bound (an fp32 runtime). Each output is compared row
    by row (cosine of the flattened row); the lowest over all outputs and rows must reach the bound. A dropped
    candidate is recorded in ``errors`` with its cosine; returns the lowest cosine of every gated candidate.
    """
    gated = [name for name in built if name in min_cosine]
    if not gated:
        return {}
    reference = next((name for name in built if name not in min_cosine), None)
    want = built[reference].run(feeds) if reference else None
    found = {}
    for name in gated:
        if want is None:
            errors[name] = "no reference candidate was built to check its accuracy against"
        else:
            found[name] = min(_lowest_row_cosine(got, ref) for got, ref in zip(built[name].run(feeds), want))
            if found[name] >= min_cosine[name]:
                continue
            errors[name] = f"feature cosine {found[name]:.5f} to {reference} is under the bound {min_cosine[name]}"
        del built[name]
    return found


def _lowest_row_cosine(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, np.float64).reshape(len(got), -1)
    want = np.asarray(want, np.float64).reshape(len(want), -1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (got * want).sum(axis=1) / norms
    return float(np.where(np.isfinite(cosine), cosine, -1.0).min())  # a zero or non-finite row never passes


def _other_load() -> Callable[[], float | None]:
    from hardware.cpu import OtherLoad

    return OtherLoad().cores


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
