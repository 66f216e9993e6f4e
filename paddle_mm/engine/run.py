"""A run's hold on its output folder: refuse to mix runs, one lock per folder, drift checks on resume, clean stops.

* :func:`claim_output_dir` refuses a folder that already holds results unless the run resumes
  (``Global.checkpoints``) or ``Global.overwrite`` asks to empty it first.
* :class:`RunLock` holds ``<run>/.lock`` (``flock``) for the run's life: a second training into the same
  folder refuses; a lock left by a dead process is free again (the kernel drops it) and is taken over.
* :func:`check_resume_drift` refuses a resume whose config would change the data order or the step count.
* :class:`StopSignals` turns SIGINT / SIGTERM into a stop at the next step boundary (data-loader workers die
  with the trainer: :mod:`paddle_mm.data.workers`).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .errors import ConfigDrift, OutputDirNotEmpty, OutputDirUnusable, RunLocked

logger = logging.getLogger("paddle_mm")
LOCK_FILE = ".lock"


# ----------------------------------------------------------------------------- output folder


def claim_output_dir(out_dir: Path, *, resume: bool, overwrite: bool, keep: tuple[Path, ...] = ()) -> RunLock:
    """Create ``out_dir``, lock it for this run, and check that a new run may write into it.

    ``keep``: checkpoints this run reads (``Global.checkpoints`` / ``pretrained_model``); ``overwrite``
    refuses to delete a folder that holds one of them. Returns the held lock.
    """
    _make_writable_dir(out_dir)
    lock = RunLock(out_dir).acquire()  # before the emptiness check: a live run's folder says "in use"
    try:
        _check_fresh(out_dir, resume, overwrite, keep)
    except BaseException:
        lock.release()
        raise
    return lock


# What a start that failed before its first step leaves behind: not a run worth protecting.
NOT_RESULTS = (LOCK_FILE, "train.log", "config.yml")


def _check_fresh(out_dir: Path, resume: bool, overwrite: bool, keep: tuple[Path, ...]) -> None:
    held = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_FILE)
    if resume or not set(held) - set(NOT_RESULTS):
        return
    if not overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise OutputDirNotEmpty(
            f"output folder {str(out_dir)!r} already holds a run ({shown}); resume it with "
            f"-o Global.checkpoints={out_dir / 'latest'}, start over with -o Global.overwrite=true (deletes it), "
            "or pick another Global.output_dir"
        )
    for path in keep:
        if out_dir.resolve() in Path(path).resolve().parents:
            raise OutputDirNotEmpty(
                f"Global.overwrite=true would delete {str(path)!r}, which this run loads; copy it elsewhere first"
            )
    for name in held:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    logger.info(f"Global.overwrite: emptied {out_dir} ({len(held)} entries)")


def _make_writable_dir(out_dir: Path) -> None:
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputDirUnusable(
            f"output folder {str(out_dir)!r} cannot be created: {str(existing)!r} is a file; "
            "set Global.output_dir to a folder path"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputDirUnusable(
            f"output folder {str(out_dir)!r} is not writable ({err.strerror or err}); "
            "set Global.output_dir to a folder you can write to"
        ) from None


# ----------------------------------------------------------------------------- lock


class RunLock:
    """``flock`` on ``<out_dir>/.lock`` holding "pid host"; the file stays, emptied, after a clean release."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise RunLocked(
                f"output folder {str(self.path.parent)!r} is in use by another training ({self._holder()}); "
                "wait for it, stop it, or pick another Global.output_dir"
            ) from None
        previous = os.read(fd, 200).decode("utf-8", "replace").strip()
        if previous:
            logger.warning(f"took over the lock {self.path} left by a run that died ({previous}, no longer running)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n".encode(), 0)
        self._fd = fd
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "pid unknown"
        except OSError:
            return "pid unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- resume drift

# Keys whose change alters which samples make up each step, or how many steps there are: a resumed run
# would silently re-train or skip data. Everything else that differs is only warned about.
ORDER_KEYS = (
    "Global.seed",
    "Global.epochs",
    "Global.max_steps",
    "Global.accum_steps",
    "Global.task",
    "DataLoader.Train.dataset.name",
    "DataLoader.Train.dataset.root",
    "DataLoader.Train.dataset.split",
    "DataLoader.Train.dataset.format",
    "DataLoader.Train.sampler.shuffle",
    "DataLoader.Train.sampler.drop_last",
)
# Keys that may differ without a word: where and how the run is watched, not what it computes.
QUIET_KEYS = (
    "Global.checkpoints",
    "Global.overwrite",
    "Global.output_dir",
    "Global.progress_bar",
    "Global.print_batch_step",
    "Global.use_visualdl",
    "Global.log_level",
    "Global.report_batch_acc",
    "DataLoader.Train.loader.num_workers",
    "DataLoader.Eval.loader.num_workers",
)


def run_facts(cfg: dict[str, Any], world: int, n_train: int) -> dict[str, Any]:
    """What :func:`check_resume_drift` compares besides the config (saved in ``state.json``)."""
    batch = cfg["DataLoader"]["Train"]["sampler"]["batch_size"]
    return {"world_size": world, "global_batch": batch * world, "train_samples": n_train}


def check_resume_drift(saved: dict[str, Any], cfg: dict[str, Any], facts: dict[str, Any], source: Path) -> None:
    """Raise :class:`ConfigDrift` if the resumed run would see other data per step; warn on other changes."""
    old_cfg, old_facts = saved.get("config"), saved.get("run_facts", {})
    if not isinstance(old_cfg, dict):
        logger.warning(f"{source}/state.json holds no config: resuming without a drift check")
        return
    before, now = _flatten(old_cfg), _flatten(cfg)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    hard = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed if k in ORDER_KEYS]
    for key in ("global_batch", "train_samples"):  # batch size x world size; the data's size
        if key in old_facts and old_facts[key] != facts[key]:
            hard.append(f"{key.replace('_', ' ')}: {old_facts[key]} -> {facts[key]}")
    if hard:
        raise ConfigDrift(
            f"resuming {source} with a config that changes the data order or the step count ({'; '.join(hard)}); "
            "put those back, or start a new run from these weights with -o Global.pretrained_model=" + str(source)
        )
    soft = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed if k not in QUIET_KEYS]
    if old_facts.get("world_size", facts["world_size"]) != facts["world_size"]:
        soft.append(f"world size: {old_facts['world_size']} -> {facts['world_size']} (same global batch)")
    if soft:
        logger.warning(f"resuming {source} with config changes: {'; '.join(soft)}")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


# ----------------------------------------------------------------------------- signals


class StopSignals:
    """SIGINT / SIGTERM set ``signum``; the training loop stops at the next step boundary. A second signal
    stops at once (KeyboardInterrupt). Only installs in the main thread; restores the old handlers on exit."""

    def __init__(self):
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning(f"{signal.Signals(signum).name} received: stopping after this step (send it again to stop now)")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
