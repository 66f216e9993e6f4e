"""Optimizers and learning-rate schedules from the ``Optimizer`` config section.

The schedule is a pure function of the optimizer step (``lr_at(step)``), so resuming needs no scheduler
state beyond the step counter and a resumed run follows exactly the same curve.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import paddle


def warmup_cosine(base_lr: float, warmup_steps: int, total_steps: int, eta_min: float = 0.0) -> Callable[[int], float]:
    """Chinese-CLIP's schedule:
    1. steps [0, warmup): linear from base_lr / warmup to base_lr;
    2. then cosine from base_lr down to eta_min at ``total_steps``.
    """

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return eta_min + 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * min(1.0, progress)))

    return lr_at


def constant(base_lr: float, warmup_steps: int) -> Callable[[int], float]:
    return lambda step: base_lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else base_lr


def build_lr_schedule(
    lr_cfg: dict[str, Any], steps_per_epoch: int, epochs: int, total_steps: int | None = None
) -> Callable[[int], float]:
    """``lr_at(step)`` of ``Optimizer.lr``; the cosine reaches eta_min at ``total_steps`` (default: every step of
    ``epochs`` epochs; ``Global.max_steps`` passes its own)."""
    warmup = lr_cfg["warmup_steps"] + int(round(lr_cfg["warmup_epoch"] * steps_per_epoch))
    total = steps_per_epoch * epochs if total_steps is None else total_steps
    if lr_cfg["name"] == "Cosine":
        return warmup_cosine(lr_cfg["learning_rate"], warmup, total, lr_cfg["eta_min"])
    return constant(lr_cfg["learning_rate"], warmup)


def _decays(name: str, param: paddle.Tensor) -> bool:
    # Like cn_clip: no decay on 1-D tensors (biases, norms, class embedding) or the logit scale.
    return param.ndim >= 2 and "logit_scale" not in name


def build_optimizer(
    cfg: dict[str, Any], model: paddle.nn.Layer, lr_at: Callable[[int], float]
) -> paddle.optimizer.Optimizer:
    """The optimizer over the model's trainable parameters, starting at ``lr_at(0)``."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    no_decay = {p.name for n, p in model.named_parameters() if not _decays(n, p)}
    clip = paddle.nn.ClipGradByGlobalNorm(cfg["grad_clip"]) if cfg["grad_clip"] else None
    lr = lr_at(0)
    name = cfg["name"]
    if name in ("AdamW", "Adam"):
        kwargs = dict(
            learning_rate=lr,
            beta1=cfg["beta1"],
            beta2=cfg["beta2"],
            epsilon=cfg["epsilon"],
            parameters=params,
            grad_clip=clip,
        )
        if name == "Adam":
            return paddle.optimizer.Adam(**kwargs)
        return paddle.optimizer.AdamW(
            weight_decay=cfg["weight_decay"], apply_decay_param_fun=lambda n: n not in no_decay, **kwargs
        )
    if name == "Momentum":
        return paddle.optimizer.Momentum(
            learning_rate=lr,
            momentum=cfg["momentum"],
            parameters=params,
            weight_decay=cfg["weight_decay"] or None,
            grad_clip=clip,
        )
    raise KeyError(f"unknown optimizer {name!r}; available: AdamW, Adam, Momentum")
