"""``training_curves.png`` of a run folder: loss, learning rate and logit scale per step, evaluation per epoch.

Reads what training writes: ``train_metrics.jsonl`` (one record per logged step; after a resume a step
may appear twice, the later record wins) and the per-epoch history of ``train_summary.json``, or of
``latest/state.json`` for a run that has not finished. Written at the end of training and by
``tools/plot.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

PNG_NAME = "training_curves.png"
RECALL_STYLE = {"t2i": "-", "i2t": "--"}  # text->image solid, image->text dashed
RECALL_COLOURS = {"r1": "tab:blue", "r5": "tab:orange", "r10": "tab:green"}


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    """Logged step records sorted by step, one per step (the last one logged)."""
    path = run_dir / "train_metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder (output/<run>/<Arch.name>)")
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch records (evaluation metrics) from the summary, or from ``latest`` while the run is unfinished."""
    summary = run_dir / "train_summary.json"
    if summary.is_file():
        return json.loads(summary.read_text(encoding="utf-8"))["history"]
    state = run_dir / "latest" / "state.json"
    if state.is_file():
        return json.loads(state.read_text(encoding="utf-8"))["train_state"]["history"]
    return []


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the four panels into ``out`` (default ``<run_dir>/training_curves.png``); return its path."""
    run_dir = Path(run_dir)
    steps, history = read_steps(run_dir), read_history(run_dir)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    x = [r["step"] for r in steps]
    _line(axes[0, 0], x, [r["loss"] for r in steps], "training loss", "loss")
    _line(axes[0, 1], x, [r["lr"] for r in steps], "learning rate", "lr")
    if any("logit_scale" in r for r in steps):
        xs = [r["step"] for r in steps if "logit_scale" in r]
        _line(axes[1, 0], xs, [r["logit_scale"] for r in steps if "logit_scale" in r], "logit scale (exp)", "scale")
    else:
        _empty(axes[1, 0], "logit scale", "not logged (a task model without CLIP temperature)")
    _eval_panel(axes[1, 1], history)
    epochs = len({h["epoch"] for h in history})  # step evaluations (Global.eval_interval_steps) add records
    fig.suptitle(f"{run_dir.name}: {len(steps)} logged steps, {epochs} epochs ({run_dir})", fontsize=10)
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / PNG_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _line(ax, x: list, y: list, title: str, ylabel: str) -> None:
    ax.plot(x, y, color="tab:blue", lw=1.2, marker="." if len(x) < 60 else None)
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _empty(ax, title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _eval_panel(ax, history: list[dict[str, Any]]) -> None:
    evaluated = [h for h in history if any(k not in ("epoch", "global_step") for k in h)]
    if not evaluated:
        _empty(ax, "evaluation", "no evaluation during training (Global.eval_during_train)")
        return
    # Global.eval_interval_steps records fall between epochs: epoch_progress (e.g. 1.5) places them
    evaluated.sort(key=lambda h: h.get("epoch_progress", h["epoch"]))
    epochs = [h.get("epoch_progress", h["epoch"]) for h in evaluated]
    if "t2i" in evaluated[0]:  # retrieval: R@1/5/10 both ways, and MR
        for direction, style in RECALL_STYLE.items():
            for key, colour in RECALL_COLOURS.items():
                values = [h[direction][key] for h in evaluated]
                ax.plot(epochs, values, style, color=colour, marker="o", ms=3, label=f"{direction} R@{key[1:]}")
        ax.plot(epochs, [h["MR"] for h in evaluated], "-", color="black", lw=2, marker="o", ms=3, label="MR")
        ax.set_title("retrieval on the eval split (x100)")
    else:  # tasks: every scalar metric they report
        skip = ("epoch", "global_step", "step_in_epoch", "epoch_progress")
        scalars = [k for k, v in evaluated[0].items() if isinstance(v, (int, float)) and k not in skip]
        for key in scalars:
            ax.plot(epochs, [h[key] for h in evaluated], marker="o", ms=3, label=key)
        ax.set_title("evaluation (x100)")
    ax.set_xlabel("epoch")
    ticks = sorted({h["epoch"] for h in evaluated})
    ax.set_xticks(ticks if len(ticks) <= 20 else ticks[:: max(1, len(ticks) // 10)])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, handlelength=3.5)  # long enough handles to show solid vs dashed
