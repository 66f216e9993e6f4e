"""Training: ``train(cfg)`` wires the pieces; ``train_one_epoch`` and ``evaluate`` take what they use.

Repeatability: weights come from ``Global.seed``; the data order of epoch e from (seed, e); dropout is
reseeded from (seed, step, rank) before every step. A run resumed from ``latest`` therefore continues the
same curve as an uninterrupted one, losing at most the steps since the last ``latest``.
"""

from __future__ import annotations

import json
import logging
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

from ..config import ConfigError, dump_config
from ..data.collate import BadSampleCounter
from ..data.duplicates import DuplicateCaptionGuard
from ..losses import build_loss
from ..models import build_model
from ..optim import build_lr_schedule, build_optimizer
from . import distributed as dist
from .accumulate import features_step
from .checkpoint import (
    load_checkpoint,
    load_state_into,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
    verify_digests,
)
from .data import build_tokenizer, build_train_loader, build_transform, load_split, trim_padding
from .errors import Diverged, Interrupted
from .evaluate import evaluate
from .run import StopSignals, check_resume_drift, claim_output_dir, run_facts
from .tasks import build_task

logger = logging.getLogger("paddle_mm")


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved in ``state.json``)."""

    epoch: int = 1  # the epoch in progress (1-based, PaddleClas style)
    step_in_epoch: int = 0  # optimizer steps finished in this epoch
    global_step: int = 0
    best_metric: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def setup_logging(log_file: Path | None) -> None:
    logger.setLevel(logging.INFO)
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
    """Name of the first parameter holding a NaN or Inf (None when all are finite): one sync, not one per tensor."""
    named = [(n, p) for n, p in model.named_parameters() if p.dtype in _FLOAT_DTYPES]
    ok = paddle.stack([paddle.isfinite(p).all() for _, p in named]).numpy()
    return None if ok.all() else named[int(np.argmin(ok))][0]


class _StopRequested(Exception):
    """Raised inside train_one_epoch at a step boundary after SIGINT / SIGTERM; train() saves and reports."""


def _check_step(
    state: TrainState, steps_total: int, model, loss_ok: bool, stop: StopSignals | None, lr: float
) -> bool:
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


def train_one_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    lr_at: Callable[[int], float],
    state: TrainState,
    *,
    epochs: int,
    accum_steps: int,
    seed: int,
    print_every: int,
    amp: dict[str, Any],
    on_step: Callable[[TrainState], None],
    dup_guard: DuplicateCaptionGuard,
    vdl=None,
    metrics_file: Path | None = None,
    progress: bool = True,
    prepare: Callable | None = None,
    stop: StopSignals | None = None,
    accum_mode: str = "gradients",
) -> BadSampleCounter:
    """One pass over ``loader``; calls ``on_step(state)`` after every optimizer step.

    ``prepare(batch) -> (model inputs, loss targets, samples)`` serves the non-retrieval tasks
    (:mod:`paddle_mm.engine.tasks`): the loss then gets the model's outputs plus the targets. Without it the batch
    is a CLIP image-text batch (duplicate-caption guard, padding trimmed, logit scale clamped).

    Every ``print_every`` steps it logs a PaddleClas-style line and appends {epoch, step, loss, lr, logit_scale}
    to ``metrics_file`` (JSON lines), which is how a resumed run can be compared with an uninterrupted one.

    After every optimizer step it checks the loss and the parameters: a NaN or Inf raises
    :class:`~paddle_mm.engine.errors.Diverged` naming the step, before anything is saved from it. A
    SIGINT / SIGTERM seen by ``stop`` ends the epoch at that step boundary (``_StopRequested``).

    ``accum_mode``: "gradients" sums the micro-batch losses; "features" (retrieval only) computes one
    contrastive loss over all ``accum_steps`` micro-batches (:func:`~paddle_mm.engine.accumulate.features_step`).
    """
    model.train()
    params = [p for p in model.parameters() if not p.stop_gradient]
    steps_total = len(loader) // accum_steps + state.step_in_epoch
    bad = BadSampleCounter()
    bar = tqdm(
        total=steps_total,
        initial=state.step_in_epoch,
        desc=f"epoch {state.epoch}/{epochs}",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    t_start, samples, micro, loss_ok = time.time(), 0, 0, True
    pending, pending_targets = [], []  # accum_mode features: the micro-batches of the step in progress
    for batch in loader:
        if prepare is None:
            bad.update(batch)
            n = dist.min_over_ranks(int(batch["n_good"]))  # every rank must contribute the same batch size
            if n == 0:
                continue
            keep = dup_guard(np.asarray(batch["input_ids"][:n]))  # all rows, or the first of each repeated caption
            keep = keep[: dist.min_over_ranks(len(keep))]
            pixels = paddle.gather(batch["pixel_values"][:n], paddle.to_tensor(keep))
            ids = paddle.to_tensor(trim_padding(np.asarray(batch["input_ids"][:n])[keep], model.config.pad_id))
            inputs, targets, n_used = (pixels, ids), loss_fn.extra_targets(pixels, ids), len(keep)  # issue 19
        else:
            inputs, targets, n_used = prepare(batch)
        # --- issue 19 hook: feature-cached accumulation (paddle_mm/engine/accumulate.py) ---
        if accum_mode == "features":
            pending.append(inputs)
            pending_targets.append(targets)
            micro += 1
            samples += n_used * dist.world_size()
            if micro % accum_steps:
                continue
            losses, _ = features_step(model, pending, loss_fn, amp, pending_targets)
            pending, pending_targets = [], []
            loss_ok = loss_ok and _loss_is_finite(losses["loss"])
        else:
            # --- end issue 19 hook (the branch below is the unchanged gradients mode) ---
            with paddle.amp.auto_cast(enable=amp["use_amp"], level=amp["level"], dtype=amp["dtype"] or "float16"):
                losses = loss_fn({**model(*inputs), **targets})
            loss_ok = loss_ok and _loss_is_finite(losses["loss"])
            (losses["loss"] / accum_steps).backward()
            micro += 1
            samples += n_used * dist.world_size()
            if micro % accum_steps:
                continue
        dist.average_gradients(params)
        optimizer.set_lr(lr_at(state.global_step))
        optimizer.step()
        optimizer.clear_grad()
        if prepare is None:
            with paddle.no_grad():  # CLIP clamps the temperature at 100
                model.logit_scale.set_value(paddle.clip(model.logit_scale, 0, 4.6052))
        state.global_step += 1
        state.step_in_epoch += 1
        stop_now = _check_step(state, steps_total, model, loss_ok, stop, optimizer.get_lr())
        _reseed(seed, state.global_step)
        bar.update(1)
        if state.step_in_epoch % print_every == 0 or state.step_in_epoch == steps_total:
            elapsed = time.time() - t_start
            left = (steps_total - state.step_in_epoch) + (epochs - state.epoch) * steps_total
            _log_step(
                state,
                epochs,
                steps_total,
                dist.mean_over_ranks(float(losses["loss"])),
                optimizer.get_lr(),
                float(model.logit_scale.exp()) if prepare is None else None,
                samples / max(elapsed, 1e-9),
                left * accum_steps * elapsed / max(micro, 1),
                metrics_file,
                vdl,
            )
        on_step(state)
        if stop_now and state.step_in_epoch < steps_total:  # at an epoch's end, train() stops after its eval
            bar.close()
            raise _StopRequested
    bar.close()
    return bad


def _log_step(
    state: TrainState,
    epochs: int,
    steps_total: int,
    loss: float,
    lr: float,
    scale: float | None,
    ips: float,
    eta_s: float,
    metrics_file: Path | None,
    vdl,
) -> None:
    logger.info(
        f"[Train][Epoch {state.epoch}/{epochs}][Iter {state.step_in_epoch}/{steps_total}] loss: {loss:.5f}, "
        f"lr: {lr:.6f}, {'' if scale is None else f'logit_scale: {scale:.2f}, '}ips: {ips:.2f} samples/s, "
        f"eta: {_eta(eta_s)}"
    )
    if metrics_file is not None:
        record = {"epoch": state.epoch, "step": state.global_step, "loss": loss, "lr": lr}
        if scale is not None:
            record["logit_scale"] = scale
        with open(metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    if vdl is not None:
        vdl.add_scalar("train/loss", loss, state.global_step)
        vdl.add_scalar("train/lr", lr, state.global_step)
        if scale is not None:
            vdl.add_scalar("train/logit_scale", scale, state.global_step)


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


def _train(
    cfg: dict[str, Any], device: str, world: int, main: bool, out_dir: Path, stop: StopSignals
) -> dict[str, Any]:
    g = cfg["Global"]
    setup_logging(out_dir / "train.log" if main else None)
    if not main:
        logger.setLevel(logging.WARNING)
    paddle.seed(g["seed"])
    np.random.seed(g["seed"])

    task = build_task(cfg)  # None: retrieval, the CLIP path below
    if task is None:
        model = build_model({k: v for k, v in cfg["Arch"].items() if v is not None and k != "fusion"})
        mcfg = model.config
        loader, sampler, dataset = build_train_loader(
            cfg["DataLoader"]["Train"], mcfg.image_resolution, mcfg.context_length, world, dist.rank(), g["seed"]
        )
    else:
        model = task.build_model(cfg["Arch"])
        mcfg = model.config
        loader, sampler, dataset = task.build_train_loader(
            cfg["DataLoader"]["Train"], mcfg, world, dist.rank(), g["seed"]
        )
    metric_name = "MR" if task is None else task.main_metric
    if g["accum_mode"] == "features" and task is not None:  # issue 19 hook
        raise ConfigError(
            f"Global.accum_mode=features is for the contrastive (retrieval) loss; Global.task={g['task']!r} "
            "needs Global.accum_mode=gradients"
        )
    steps_per_epoch = len(sampler) // g["accum_steps"]
    if steps_per_epoch == 0:
        raise ValueError(
            f"an epoch has {len(sampler)} batches, fewer than Global.accum_steps={g['accum_steps']}; "
            "lower accum_steps or the batch size"
        )
    lr_at = build_lr_schedule(cfg["Optimizer"]["lr"], steps_per_epoch, g["epochs"])
    optimizer = build_optimizer(cfg["Optimizer"], model, lr_at)
    try:
        loss_fn = build_loss(cfg["Loss"]["Train"])
    except FileNotFoundError as err:  # issue 19: a DistillLoss teacher that is not there
        raise ConfigError(f"Loss.Train: {err}") from None
    dup_guard = DuplicateCaptionGuard(drop=g["drop_duplicate_captions"], log=logger.warning)

    facts = run_facts(cfg, world, len(dataset))
    state = _restore(cfg, model, optimizer, facts, steps_per_epoch)
    dist.broadcast_parameters(model)
    _reseed(g["seed"], state.global_step)

    eval_section = cfg["DataLoader"]["Eval"]
    eval_data = None
    if main and eval_section is not None and g["eval_during_train"] and task is not None:
        eval_data = (task.load(eval_section["dataset"], mcfg), eval_section["sampler"]["batch_size"])
    elif main and eval_section is not None and g["eval_during_train"]:
        eval_data = (
            load_split(eval_section["dataset"]),
            build_transform(eval_section["dataset"], mcfg.image_resolution),
            build_tokenizer(mcfg.context_length),
            eval_section,
        )
    vdl = _visualdl(out_dir) if main and g["use_visualdl"] else None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yml").write_text(dump_config(cfg), encoding="utf-8")
        logger.info(
            f"training {cfg['Arch']['name']} on {device} x {world} process(es): {len(dataset)} pairs, "
            f"{steps_per_epoch} steps/epoch, global batch "
            f"{cfg['DataLoader']['Train']['sampler']['batch_size'] * world * g['accum_steps']}"
        )

    def save(name: str) -> None:
        if main:
            save_checkpoint(
                out_dir / name, model, optimizer, {"train_state": state.__dict__, "config": cfg, "run_facts": facts}
            )

    def on_step(s: TrainState) -> None:
        if g["save_steps"] and s.step_in_epoch % g["save_steps"] == 0 and s.step_in_epoch < steps_per_epoch:
            save("latest")

    amp = dict(cfg["AMP"], dtype=hardware.amp_dtype(device))
    if amp["use_amp"] and amp["dtype"] is None:
        logger.warning(f"AMP.use_amp ignored: Paddle has no mixed-precision autocast on {device}; training in fp32")
        amp["use_amp"] = False
    for epoch in range(state.epoch, g["epochs"] + 1):
        state.epoch = epoch
        sampler.set_epoch(epoch, skip=state.step_in_epoch * g["accum_steps"])
        try:
            bad = train_one_epoch(
                model,
                loader,
                loss_fn,
                optimizer,
                lr_at,
                state,
                epochs=g["epochs"],
                accum_steps=g["accum_steps"],
                seed=g["seed"],
                print_every=g["print_batch_step"],
                amp=amp,
                on_step=on_step,
                dup_guard=dup_guard,
                vdl=vdl,
                progress=main and g["progress_bar"],
                metrics_file=out_dir / "train_metrics.jsonl" if main else None,
                prepare=None if task is None else lambda batch: task.prepare(batch, mcfg.pad_id),
                stop=stop,
                accum_mode=g["accum_mode"],  # issue 19 hook
            )
        except _StopRequested:
            save("latest")
            raise _interrupted(stop.signum, state, out_dir) from None
        if main and bad.n_bad:
            logger.warning(f"[Train][Epoch {epoch}] {bad.summary()}")
        if main and dup_guard.n_batches_with_repeats:
            logger.info(f"[Train][Epoch {epoch}] {dup_guard.summary()}")
        record: dict[str, Any] = {"epoch": epoch, "global_step": state.global_step}
        if eval_data is not None and epoch % g["eval_interval"] == 0:
            if task is None:
                record.update(_evaluate_and_log(model, eval_data, cfg, epoch, vdl, state))
            else:
                record.update(_evaluate_task_and_log(task, model, eval_data, epoch, vdl, state))
        state.history.append(record)
        state.step_in_epoch = steps_per_epoch
        if main and record.get(metric_name, -1.0) > state.best_metric:
            state.best_metric, state.best_epoch = record[metric_name], epoch
            save("best_model")
        if epoch % g["save_interval"] == 0:
            save(f"epoch_{epoch}")
        save("latest")
        state.step_in_epoch = 0
        dist.barrier()
        if stop.signum and epoch < g["epochs"]:  # latest already holds the finished epoch
            raise _interrupted(stop.signum, state, out_dir)
    if main:
        (out_dir / "train_summary.json").write_text(json.dumps(state.__dict__, indent=1), encoding="utf-8")
        if eval_data is not None:
            logger.info(
                f"best {metric_name} {state.best_metric:.2f} at epoch {state.best_epoch}; checkpoints in {out_dir}"
            )
        _plot(out_dir)
    return state.__dict__


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


def _evaluate_and_log(model, eval_data, cfg, epoch: int, vdl, state: TrainState) -> dict[str, Any]:
    corpus, transform, tokenizer, section = eval_data
    topk = tuple(sorted({k for item in cfg["Metric"]["Eval"] for k in item["Recall"]["topk"]} | {1, 5, 10}))
    m = evaluate(
        model,
        corpus,
        transform,
        tokenizer,
        section["sampler"]["batch_size"],
        section["loader"]["num_workers"],
        topk,
        progress=cfg["Global"]["progress_bar"],
    )
    line = " ".join(f"{d} R@{k}: {m[d][f'r{k}']:.2f}" for d in ("t2i", "i2t") for k in topk)
    logger.info(
        f"[Eval][Epoch {epoch}] {line}, MR(t2i): {m['t2i']['mean_recall']:.2f}, "
        f"MR(i2t): {m['i2t']['mean_recall']:.2f}, MR: {m['MR']:.2f}"
    )
    if m["skipped"].startswith("skipped 0 ") is False:
        logger.warning(f"[Eval][Epoch {epoch}] {m['skipped']}")
    if vdl is not None:
        vdl.add_scalar("eval/MR", m["MR"], state.global_step)
        for d in ("t2i", "i2t"):
            for k in topk:
                vdl.add_scalar(f"eval/{d}_R@{k}", m[d][f"r{k}"], state.global_step)
    model.train()
    return {"MR": m["MR"], "t2i": m["t2i"], "i2t": m["i2t"]}


def _evaluate_task_and_log(task, model, eval_data, epoch: int, vdl, state: TrainState) -> dict[str, Any]:
    dataset, batch_size = eval_data
    m = task.evaluate(model, dataset, batch_size)
    if vdl is not None:
        vdl.add_scalar(f"eval/{task.main_metric}", m[task.main_metric], state.global_step)
    model.train()
    if "per_type" not in m:  # matching
        c = m["contrastive"]
        logger.info(
            f"[Eval][Epoch {epoch}] re-ranked t2i R@1: {m['r1']:.2f} R@5: {m['r5']:.2f} R@10: {m['r10']:.2f}, "
            f"mean_recall: {m['mean_recall']:.2f}, MRR: {m['mrr']:.2f}, NDCG@10: {m['ndcg@10']:.2f} "
            f"(contrastive only: R@1 {c['r1']:.2f}, mean_recall {c['mean_recall']:.2f})"
        )
        return m
    per_type = ", ".join(f"{t}: {v:.1f}" for t, v in m["per_type"].items())
    logger.info(
        f"[Eval][Epoch {epoch}] vqa_acc: {m['vqa_acc']:.2f}, accuracy: {m['accuracy']:.2f}, "
        f"macro_f1: {m['macro_f1']:.2f}; accuracy per type: {per_type}"
    )
    return m


def _visualdl(out_dir: Path):
    try:
        from visualdl import LogWriter
    except ImportError as err:
        raise ImportError("Global.use_visualdl=True needs visualdl: pip install 'paddle_mm[train]'") from err
    return LogWriter(logdir=str(out_dir / "vdl"))
