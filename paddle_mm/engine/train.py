"""Training: ``train(cfg)`` wires the pieces; ``train_one_epoch`` runs any task (:mod:`paddle_mm.tasks`) and takes
what it uses.

Repeatability: weights come from ``Global.seed``; the data order of epoch e from (seed, e); dropout is
reseeded from (seed, step, rank) before every step. A run resumed from ``latest`` therefore continues the
same curve as an uninterrupted one, losing at most the steps since the last ``latest``.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import paddle
from tqdm import tqdm

import hardware

from .. import distributed as dist
from ..config import ConfigError, dump_config
from ..losses import BATCH_METRICS
from ..models.sync_bn import sync_batch_norm
from ..models.tower_init import init_towers
from ..optim import build_lr_schedule, build_optimizer
from ..tasks import Batch, Task, build_task
from .accumulate import build_accumulation
from .checkpoint import (
    load_checkpoint,
    load_state_into,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
    verify_digests,
)
from .errors import Diverged, Interrupted
from .run import StopSignals, _flatten, check_resume_drift, claim_output_dir, run_facts

logger = logging.getLogger("paddle_mm")


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved in ``state.json``)."""

    epoch: int = 1  # the epoch in progress (1-based, PaddleClas style)
    step_in_epoch: int = 0  # optimizer steps finished in this epoch
    global_step: int = 0
    best_metric: float = -1.0
    best_epoch: int = 0
    best_step: int = 0  # global step of the best evaluation (Global.eval_interval_steps evaluates inside epochs)
    history: list[dict[str, Any]] = field(default_factory=list)


def setup_logging(log_file: Path | None, level: str = "info") -> None:
    """Console (through tqdm) and ``log_file``; ``level`` is ``Global.log_level`` (debug: cn_clip's --debug)."""
    logger.setLevel(getattr(logging, level.upper()))
    logger.handlers.clear()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(_TqdmStream())
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False


class _TqdmStream:
    """Log lines go through tqdm.write so they do not tear the progress bar."""

    def write(self, msg: str) -> None:
        if msg.strip():
            tqdm.write(msg.rstrip("\n"), file=sys.stdout)

    def flush(self) -> None:
        sys.stdout.flush()


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _loss_is_finite(loss: paddle.Tensor) -> bool:
    return bool(np.isfinite(float(loss)))


_FLOAT_DTYPES = (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)


def _first_non_finite(model) -> str | None:
    """Name of the first parameter holding a NaN or Inf (None when all are finite), checked after every step: one
    sum per tensor and one sync (a NaN or Inf anywhere makes the total non-finite; 0.9 ms a step against 2.8 for an
    isfinite per tensor, on the quickstart model); the per-tensor search runs only when the total is not finite."""
    named = [(n, p) for n, p in model.named_parameters() if p.dtype in _FLOAT_DTYPES]
    if not named or np.isfinite(float(paddle.add_n([p.sum(dtype="float32") for _, p in named]))):
        return None
    ok = paddle.stack([paddle.isfinite(p).all() for _, p in named]).numpy()
    return None if ok.all() else named[int(np.argmin(ok))][0]  # None: finite values whose sum overflowed


class _StopRequested(Exception):
    """Raised inside train_one_epoch at a step boundary after SIGINT / SIGTERM; train() saves and reports."""


def _check_step(state: TrainState, steps_total: int, model, loss_ok: bool, stop: StopSignals | None, lr: float) -> bool:
    """After an optimizer step: raise on a non-finite loss or parameter; True if a signal asks to stop.
    Every rank reaches the same verdict (one all-reduce)."""
    bad_param = None if not loss_ok else _first_non_finite(model)
    code = 2 if not loss_ok or bad_param else (1 if stop is not None and stop.signum else 0)
    code = -dist.min_over_ranks(-code)  # the worst over ranks
    if code == 2:
        what = "the loss" if not loss_ok else f"parameter {bad_param!r}"
        where = f"step {state.global_step} (epoch {state.epoch}, iter {state.step_in_epoch}/{steps_total})"
        raise Diverged(
            f"training diverged at {where}: {what} became NaN/Inf, nothing from this step on was saved; "
            f"lower Optimizer.lr.learning_rate (lr was {lr:.3g}) or set Optimizer.grad_clip"
        )
    return code == 1


def _reseed(seed: int, step: int) -> None:
    paddle.seed(int(np.random.SeedSequence([seed, step, dist.rank()]).generate_state(1)[0]) & 0x7FFFFFFF)


@dataclass(frozen=True)
class LoopSettings:
    """What the training loop reads from ``Global`` and ``AMP`` (once, at start-up)."""

    epochs: int
    accum_steps: int = 1
    seed: int = 0
    print_every: int = 10  # log a line (and a metrics record) every this many optimizer steps
    amp: dict[str, Any] = field(default_factory=lambda: {"use_amp": False, "level": "O1", "dtype": None})
    progress: bool = False
    metrics_file: Path | None = None  # JSON lines {epoch, step, loss, lr, the task's step scalars}
    accum_mode: str = "gradients"  # how micro-batches add up (paddle_mm.engine.accumulate)
    max_steps: int | None = None  # stop after this many optimizer steps in all (Global.max_steps)


def train_one_epoch(
    model,
    loader,
    task: Task,
    loss_fn,
    optimizer,
    lr_at: Callable[[int], float],
    state: TrainState,
    loop: LoopSettings,
    on_step: Callable[[TrainState], None] | None = None,
    vdl=None,
    stop: StopSignals | None = None,
) -> None:
    """One pass over ``loader``: ``task.prepare`` makes each batch (every rank trains on the smallest sample count
    of any rank), the loss gets the model's outputs plus the batch's targets, ``task.after_step`` and
    ``on_step(state)`` run after every optimizer step. A NaN or Inf loss or parameter raises
    :class:`~paddle_mm.engine.errors.Diverged` before anything is saved from that step; a SIGINT / SIGTERM seen by
    ``stop`` ends the epoch at the step boundary (``_StopRequested``)."""
    model.train()
    params = [p for p in model.parameters() if not p.stop_gradient]
    steps_total = _steps_this_epoch(len(loader), loop, state)
    log = _StepLog(state, loop, steps_total, vdl)
    loss_ok, accumulate = True, build_accumulation(loop.accum_mode, model, loss_fn, loop.amp, loop.accum_steps)
    for batch in loader:
        b = _same_size_on_every_rank(task.prepare(batch, model.config.pad_id))
        if b.n == 0:
            continue
        step_losses = accumulate(b.inputs, {**b.targets, **loss_fn.extra_targets(*b.inputs)})  # backward done
        if step_losses is not None:
            losses = step_losses
            loss_ok = loss_ok and _loss_is_finite(losses["loss"])
        if not log.micro_step(b.n * dist.world_size()):
            continue  # accumulating
        _optimizer_step(model, task, optimizer, params, lr_at(state.global_step), state)
        stop_now = _check_step(state, steps_total, model, loss_ok, stop, optimizer.get_lr())
        _reseed(loop.seed, state.global_step)
        log.step(losses, optimizer.get_lr(), lambda: task.step_scalars(model))
        if on_step is not None:
            on_step(state)
        if stop_now and state.step_in_epoch < steps_total:  # at an epoch's end, train() stops after its eval
            log.bar.close()
            raise _StopRequested
        if loop.max_steps is not None and state.global_step >= loop.max_steps:
            break  # Global.max_steps reached: the run's last step can fall inside an epoch
    log.bar.close()


def _steps_this_epoch(batches_left: int, loop: LoopSettings, state: TrainState) -> int:
    """Optimizer steps of the epoch in progress, those already done included, cut at ``Global.max_steps``."""
    total = batches_left // loop.accum_steps + state.step_in_epoch
    if loop.max_steps is not None:
        total = min(total, state.step_in_epoch + loop.max_steps - state.global_step)
    return total


def _optimizer_step(model, task: Task, optimizer, params: list, lr: float, state: TrainState) -> None:
    dist.average_gradients(params)
    optimizer.set_lr(lr)
    optimizer.step()
    optimizer.clear_grad()
    task.after_step(model)
    state.global_step += 1
    state.step_in_epoch += 1


def _same_size_on_every_rank(b: Batch) -> Batch:
    """The batch cut to the smallest sample count of any rank (an all-reduce of one int when distributed)."""
    n = dist.min_over_ranks(b.n)
    return b if n == b.n else b.head(n)


class _StepLog:
    """Throughput, the progress bar and the training log line of one epoch."""

    def __init__(self, state: TrainState, loop: LoopSettings, steps_total: int, vdl):
        self.state, self.epochs, self.steps_total, self.accum_steps = state, loop.epochs, steps_total, loop.accum_steps
        self.metrics_file, self.vdl, self.print_every = loop.metrics_file, vdl, loop.print_every
        self.t_start, self.samples, self.micro = time.time(), 0, 0
        self.t_step, self.micro_at_step = self.t_start, 0  # for the log_level debug line of each step
        self.bar = tqdm(
            total=steps_total,
            initial=state.step_in_epoch,
            desc=f"epoch {state.epoch}/{loop.epochs}",
            disable=not loop.progress,
            leave=False,
            dynamic_ncols=True,
        )

    def micro_step(self, samples: int) -> bool:
        """Count one forward/backward; True when it completes an optimizer step."""
        self.micro += 1
        self.samples += samples
        return self.micro % self.accum_steps == 0

    def step(self, losses: dict[str, paddle.Tensor], lr: float, scalars: Callable[[], dict[str, float]]) -> None:
        """After an optimizer step: the progress bar, a debug line (``Global.log_level: debug``) and, every
        ``print_every`` steps and at the epoch's last, the log line with the task's ``scalars()`` and the batch
        metrics the loss reported (``Global.report_batch_acc``), averaged over ranks."""
        s = self.state
        self.bar.update(1)
        if logger.isEnabledFor(logging.DEBUG):
            now = time.time()
            logger.debug(
                f"[Debug][Step {s.global_step}] {self.micro - self.micro_at_step} micro-batch(es) in "
                f"{now - self.t_step:.3f} s, lr {lr:.6g}, loss {float(losses['loss']):.5f}"
            )
            self.t_step, self.micro_at_step = now, self.micro
        if s.step_in_epoch % self.print_every == 0 or s.step_in_epoch == self.steps_total:
            batch = {k: dist.mean_over_ranks(float(losses[k])) for k in BATCH_METRICS if k in losses}
            self.line(dist.mean_over_ranks(float(losses["loss"])), lr, {**_terms(losses), **scalars(), **batch})

    def line(self, loss: float, lr: float, scalars: dict[str, float]) -> None:
        """Log ``[Train][Epoch e/E][Iter i/n] loss, lr, <scalars>, ips, eta``; append the record to the metrics
        file and VisualDL."""
        s = self.state
        elapsed = time.time() - self.t_start
        left = (self.steps_total - s.step_in_epoch) + (self.epochs - s.epoch) * self.steps_total
        eta = left * self.accum_steps * elapsed / max(self.micro, 1)
        extra = "".join(f"{k}: {v:.2f}, " for k, v in scalars.items())
        logger.info(
            f"[Train][Epoch {s.epoch}/{self.epochs}][Iter {s.step_in_epoch}/{self.steps_total}] loss: {loss:.5f}, "
            f"lr: {lr:.6f}, {extra}ips: {self.samples / max(elapsed, 1e-9):.2f} samples/s, eta: {_eta(eta)}"
        )
        record = {"epoch": s.epoch, "step": s.global_step, "loss": loss, "lr": lr, **scalars}
        if self.metrics_file is not None:
            with open(self.metrics_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.vdl is not None:
            for key in ("loss", "lr", *scalars):
                self.vdl.add_scalar(f"train/{key}", record[key], s.global_step)


def _terms(losses: dict[str, paddle.Tensor]) -> dict[str, float]:
    """Each weighted term of a loss of several (``VQALoss`` and ``CellLoss``, say) averaged over ranks, for the log
    line; nothing for a single term, which ``loss`` already is."""
    terms = [k for k in losses if k != "loss" and k not in BATCH_METRICS]
    return {} if len(terms) < 2 else {k: dist.mean_over_ranks(float(losses[k])) for k in terms}


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run the training described by a validated config; return the final state as a dict."""
    g = cfg["Global"]
    hardware.tune_cpu_env()
    device = hardware.resolve_device(g["device"])
    world = dist.init_distributed()
    main = dist.is_main()
    out_dir = Path(g["output_dir"]) / cfg["Arch"]["name"]
    lock = _claim(g, out_dir) if main else None  # before anything is written there
    try:
        with StopSignals() as stop:
            return _train(cfg, device, world, main, out_dir, stop)
    finally:
        if lock is not None:
            lock.release()


def _claim(g: dict[str, Any], out_dir: Path):
    setup_logging(None)  # console only until the folder is ours
    keep = tuple(Path(p) for p in (g["checkpoints"], g["pretrained_model"]) if p)
    return claim_output_dir(out_dir, resume=bool(g["checkpoints"]), overwrite=g["overwrite"], keep=keep)


@dataclass
class _Parts:
    """What a run builds from its config, before any state is restored."""

    task: Task
    model: paddle.nn.Layer
    loader: Any
    sampler: Any  # set_epoch(epoch, skip)
    n_train: int
    steps_per_epoch: int
    epochs: int  # Global.epochs, or the epochs Global.max_steps reaches into
    lr_at: Callable[[int], float]
    optimizer: Any
    loss_fn: Callable


def _build(cfg: dict[str, Any], world: int) -> _Parts:
    g = cfg["Global"]
    task = build_task(cfg)
    model = task.build_model(cfg["Arch"])
    if g["sync_bn"]:
        model = _sync_bn(model, world)
    loader, sampler, dataset = task.build_train_loader(
        cfg["DataLoader"]["Train"], model.config, world, dist.rank(), g["seed"]
    )
    steps_per_epoch = len(sampler) // g["accum_steps"]
    if steps_per_epoch == 0:
        raise ValueError(
            f"an epoch has {len(sampler)} batches, fewer than Global.accum_steps={g['accum_steps']}; "
            "lower accum_steps or the batch size"
        )
    epochs, total_steps = _run_length(g, steps_per_epoch)
    lr_at = build_lr_schedule(cfg["Optimizer"]["lr"], steps_per_epoch, epochs, total_steps)
    optimizer = build_optimizer(cfg["Optimizer"], model, lr_at)
    if g["accum_mode"] == "features" and not task.contrastive:
        raise ConfigError(
            f"Global.accum_mode=features caches features for a contrastive loss; Global.task={task.name} "
            "trains per-sample losses: set Global.accum_mode=gradients"
        )
    try:
        loss_fn = task.build_loss(cfg["Loss"]["Train"])
    except FileNotFoundError as err:  # a DistillLoss teacher that is not there
        raise ConfigError(f"Loss.Train: {err}") from None
    if g["report_batch_acc"] and not loss_fn.report_batch_accuracy():
        raise ConfigError(
            f"Global.report_batch_acc reports ClipLoss's in-batch image<->text accuracy; Loss.Train {loss_fn.names()} "
            "has no ClipLoss: add one or set Global.report_batch_acc=false"
        )
    return _Parts(task, model, loader, sampler, len(dataset), steps_per_epoch, epochs, lr_at, optimizer, loss_fn)


def _run_length(g: dict[str, Any], steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, optimizer steps) of the run. ``Global.max_steps`` decides both when set, as cn_clip's --max-steps:
    epochs = ceil(max_steps / steps per epoch), and the learning-rate schedule spans max_steps."""
    if g["max_steps"] is None:
        return g["epochs"], g["epochs"] * steps_per_epoch
    return math.ceil(g["max_steps"] / steps_per_epoch), g["max_steps"]


def _sync_bn(model: paddle.nn.Layer, world: int) -> paddle.nn.Layer:
    """``Global.sync_bn`` (cn_clip --use-bn-sync): batch norm over the global batch of all processes."""
    if world == 1:
        logger.info("Global.sync_bn: one process, nothing to synchronise (batch norm sees this process's batch)")
        return model
    model, n = sync_batch_norm(model)
    logger.info(f"Global.sync_bn: {n} batch-norm layer(s) take their statistics over all {world} processes")
    return model


def _train(
    cfg: dict[str, Any], device: str, world: int, main: bool, out_dir: Path, stop: StopSignals
) -> dict[str, Any]:
    g = cfg["Global"]
    setup_logging(out_dir / "train.log" if main else None, g["log_level"])
    if not main:
        logger.setLevel(logging.WARNING)
    paddle.seed(g["seed"])
    np.random.seed(g["seed"])
    p = _build(cfg, world)
    facts = run_facts(cfg, world, p.n_train)
    state = _restore(cfg, p.model, p.optimizer, facts, p.steps_per_epoch)
    dist.broadcast_parameters(p.model)
    _reseed(g["seed"], state.global_step)
    eval_data = _eval_data(cfg, p.task, p.model.config) if main else None
    vdl = _visualdl(out_dir) if main and g["use_visualdl"] else None
    if main:
        _announce(cfg, out_dir, device, world, p)

    save = _Checkpoints(out_dir, p, state, {"config": cfg, "run_facts": facts}, g["save_steps"], main)
    on_step = _StepHooks(save, eval_data, vdl, g["eval_interval_steps"], g["max_steps"])
    loop = _loop_settings(cfg, p.epochs, device, out_dir if main else None)
    for epoch in range(state.epoch, p.epochs + 1):
        state.epoch = epoch
        p.sampler.set_epoch(epoch, skip=state.step_in_epoch * g["accum_steps"])
        try:
            train_one_epoch(p.model, p.loader, p.task, p.loss_fn, p.optimizer, p.lr_at, state, loop, on_step, vdl, stop)
        except _StopRequested:
            save("latest")
            raise _interrupted(stop.signum, state, out_dir) from None
        p.task.log_epoch(epoch)
        _end_epoch(p, state, eval_data, g, vdl, save)
        if stop.signum and epoch < p.epochs:  # latest already holds the finished epoch
            raise _interrupted(stop.signum, state, out_dir)
    if main:
        _finish(out_dir, state, p.task, eval_data is not None)
    return state.__dict__


@dataclass
class _Checkpoints:
    """``save(name)`` writes ``out_dir/name`` (main process only); ``on_step`` saves ``latest`` every
    ``save_steps`` optimizer steps inside an epoch (its end saves anyway)."""

    out_dir: Path
    p: _Parts
    state: TrainState
    meta: dict[str, Any]  # saved next to the train state: config and run facts
    save_steps: int
    main: bool

    def __call__(self, name: str) -> None:
        if self.main:
            info = {"train_state": self.state.__dict__, **self.meta}
            save_checkpoint(self.out_dir / name, self.p.model, self.p.optimizer, info)

    def on_step(self, s: TrainState) -> None:
        if self.save_steps and s.step_in_epoch % self.save_steps == 0 and s.step_in_epoch < self.p.steps_per_epoch:
            self("latest")


def _loop_settings(cfg: dict[str, Any], epochs: int, device: str, out_dir: Path | None) -> LoopSettings:
    """The loop's settings; ``out_dir`` (the main process's) receives ``train_metrics.jsonl``."""
    g = cfg["Global"]
    return LoopSettings(
        epochs=epochs,
        accum_steps=g["accum_steps"],
        seed=g["seed"],
        print_every=g["print_batch_step"],
        amp=_amp(cfg["AMP"], device),
        progress=out_dir is not None and g["progress_bar"],
        metrics_file=None if out_dir is None else out_dir / "train_metrics.jsonl",
        accum_mode=g["accum_mode"],
        max_steps=g["max_steps"],
    )


def _eval_data(cfg: dict[str, Any], task: Task, model_config) -> tuple[Any, int] | None:
    """(evaluation data, batch size) when the run evaluates after its epochs, else None."""
    section = cfg["DataLoader"]["Eval"]
    if section is None or not cfg["Global"]["eval_during_train"]:
        return None
    return task.load_eval(section["dataset"], model_config), section["sampler"]["batch_size"]


def _announce(cfg: dict[str, Any], out_dir: Path, device: str, world: int, p: _Parts) -> None:
    g = cfg["Global"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yml").write_text(dump_config(cfg), encoding="utf-8")
    logger.info(
        f"training {cfg['Arch']['name']} on {device} x {world} process(es): {p.n_train} pairs, "
        f"{p.steps_per_epoch} steps/epoch, global batch "
        f"{cfg['DataLoader']['Train']['sampler']['batch_size'] * world * g['accum_steps']}"
    )
    if g["max_steps"] is not None:
        logger.info(f"Global.max_steps={g['max_steps']}: {p.epochs} epoch(s), the last cut at step {g['max_steps']}")
    if g["eval_interval_steps"] and (cfg["DataLoader"]["Eval"] is None or not g["eval_during_train"]):
        logger.warning(
            f"Global.eval_interval_steps={g['eval_interval_steps']} evaluates nothing: the run has no evaluation "
            "(set Global.eval_during_train=true and a DataLoader.Eval section)"
        )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(f"[Debug] model: {sum(int(t.size) for t in p.model.parameters())} parameters")
        for key, value in _flatten(cfg).items():
            logger.debug(f"[Debug] config {key} = {value!r}")


def _amp(section: dict[str, Any], device: str) -> dict[str, Any]:
    amp = dict(section, dtype=hardware.amp_dtype(device))
    if amp["use_amp"] and amp["dtype"] is None:
        logger.warning(f"AMP.use_amp ignored: Paddle has no mixed-precision autocast on {device}; training in fp32")
        amp["use_amp"] = False
    return amp


def _end_epoch(p: _Parts, state: TrainState, eval_data, g: dict[str, Any], vdl, save: Callable[[str], None]) -> None:
    """Evaluate (every ``eval_interval`` epochs), record the epoch, save best / epoch / latest checkpoints."""
    epoch = state.epoch
    record: dict[str, Any] = {"epoch": epoch, "global_step": state.global_step}
    if eval_data is not None and epoch % g["eval_interval"] == 0:
        record.update(_evaluate(p, state, eval_data, vdl))
    state.history.append(record)
    state.step_in_epoch = p.steps_per_epoch
    _keep_best(p.task, record, state, save)
    if epoch % g["save_interval"] == 0:
        save(f"epoch_{epoch}")
    save("latest")
    state.step_in_epoch = 0
    dist.barrier()


def _evaluate(p: _Parts, state: TrainState, eval_data, vdl) -> dict[str, Any]:
    """The task's metrics on the evaluation data, logged (and written to VisualDL at the global step)."""
    t0 = time.time()
    metrics = p.task.evaluate(p.model, *eval_data)
    logger.debug(f"[Debug] evaluation at global step {state.global_step} took {time.time() - t0:.2f} s")
    for name, value in p.task.log_eval(metrics, state.epoch).items():
        if vdl is not None:
            vdl.add_scalar(f"eval/{name}", value, state.global_step)
    return metrics


def _keep_best(task: Task, record: dict[str, Any], state: TrainState, save: Callable[[str], None]) -> None:
    """Save ``best_model`` when ``record`` (an epoch's or a step's evaluation) beats every earlier one."""
    if _improved(task, record, state):
        state.best_metric, state.best_epoch, state.best_step = record[task.main_metric], state.epoch, state.global_step
        save("best_model")


@dataclass
class _StepHooks:
    """Run after every optimizer step: an evaluation every ``every`` global steps (``Global.eval_interval_steps``,
    cn_clip's --valid-step-interval), except at a step that ends the epoch, where ``_end_epoch`` evaluates; then
    ``latest`` every ``Global.save_steps`` (after the evaluation, so a resume keeps its record).

    A step's evaluation is recorded in the history as the epoch's are (plus ``step_in_epoch`` and
    ``epoch_progress``), may become ``best_model``, and leaves the random state as it found it: the run trains
    exactly as it would without it."""

    save: _Checkpoints
    eval_data: Any  # None on ranks other than 0 and when the run does not evaluate
    vdl: Any
    every: int
    max_steps: int | None

    def __call__(self, s: TrainState) -> None:
        p = self.save.p
        last = s.step_in_epoch >= p.steps_per_epoch or (self.max_steps is not None and s.global_step >= self.max_steps)
        if self.every and s.global_step % self.every == 0 and not last:
            if self.eval_data is not None:
                logger.info(f"[Eval] global step {s.global_step} (epoch {s.epoch}, iter {s.step_in_epoch})")
                rng = paddle.get_rng_state()
                record = {"epoch": s.epoch, "global_step": s.global_step, "step_in_epoch": s.step_in_epoch}
                record["epoch_progress"] = round(s.epoch - 1 + s.step_in_epoch / p.steps_per_epoch, 4)
                record.update(_evaluate(p, s, self.eval_data, self.vdl))
                paddle.set_rng_state(rng)
                s.history.append(record)
                _keep_best(p.task, record, s, self.save)
            dist.barrier()
        self.save.on_step(s)


def _improved(task: Task, record: dict[str, Any], state: TrainState) -> bool:
    """Whether this epoch's evaluation beats the best so far (the first evaluation always does)."""
    if task.main_metric not in record:
        return False
    value = record[task.main_metric]
    if state.best_epoch == 0:
        return True
    return value > state.best_metric if task.higher_is_better else value < state.best_metric


def _finish(out_dir: Path, state: TrainState, task: Task, evaluated: bool) -> None:
    (out_dir / "train_summary.json").write_text(json.dumps(state.__dict__, indent=1), encoding="utf-8")
    if evaluated:
        logger.info(
            f"best {task.main_metric} {state.best_metric:.2f} at epoch {state.best_epoch}; checkpoints in {out_dir}"
        )
    _plot(out_dir)


def _restore(cfg: dict[str, Any], model, optimizer, facts: dict[str, Any], steps_per_epoch: int) -> TrainState:
    """The state to start from: a resumed checkpoint (after the drift check), pretrained weights, or fresh."""
    g = cfg["Global"]
    if g["checkpoints"]:
        source = resolve_checkpoint(g["checkpoints"])
        check_resume_drift(read_state(source), cfg, facts, source)
        state = TrainState(**load_checkpoint(source, model, optimizer)["train_state"])
        logger.info(
            f"resumed from {source}: epoch {state.epoch}, "
            f"step {state.step_in_epoch}/{steps_per_epoch}, global step {state.global_step}"
        )
        if state.step_in_epoch >= steps_per_epoch:  # saved exactly at an epoch's end
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
        return state
    if g["clip_weight_path"] or g["bert_weight_path"]:  # cn_clip's order: towers first, then a checkpoint over them
        for line in init_towers(model, g["clip_weight_path"], g["bert_weight_path"]):
            logger.info(line)
    if g["pretrained_model"]:
        path = resolve_checkpoint(g["pretrained_model"])
        verify_digests(path, ("model.safetensors",))
        load_state_into(model, path / "model.safetensors")
        logger.info(f"loaded pretrained weights from {path}")
    return TrainState()


def _interrupted(signum: int, state: TrainState, out_dir: Path) -> Interrupted:
    return Interrupted(
        f"{signal.Signals(signum).name} at global step {state.global_step} (epoch {state.epoch}); "
        f"{out_dir / 'latest'} holds it",
        signum,
    )


def _plot(out_dir: Path) -> None:
    """training_curves.png next to the logs (skipped with a warning when matplotlib is not installed)."""
    if not (out_dir / "train_metrics.jsonl").is_file():  # a resume with no step left to train
        return
    try:
        from .plot import plot_run
    except ImportError as err:
        logger.warning(f"no training_curves.png: {err}; pip install matplotlib, then python tools/plot.py {out_dir}")
        return
    try:
        logger.info(f"training curves: {plot_run(out_dir)}")
    except (OSError, ValueError, KeyError) as err:  # a torn log line or a full disk must not fail a finished run
        logger.warning(f"no training_curves.png: {err}; the checkpoints are saved (python tools/plot.py {out_dir})")


def _visualdl(out_dir: Path):
    try:
        from visualdl import LogWriter
    except ImportError as err:
        raise ImportError("Global.use_visualdl=True needs visualdl: pip install 'paddle_mm[train]'") from err
    return LogWriter(logdir=str(out_dir / "vdl"))
