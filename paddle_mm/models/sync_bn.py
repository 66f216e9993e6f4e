"""Batch norm over the batches of all processes: Chinese-CLIP's ``--use-bn-sync`` (``Global.sync_bn``).

In training, each process normally normalises with its own batch's mean and variance. Synchronised, the
per-channel sums and sums of squares are all-reduced (with their gradient: :func:`all_reduce_with_grad`), so every
process normalises with the statistics of the global batch and backward equals one process holding all of it. It
runs through the process group's collective (gloo on CPU, NCCL on GPUs), so it needs no device-specific kernel:
Paddle's own ``paddle.nn.SyncBatchNorm`` has none on CPU.

:func:`sync_batch_norm` switches a model's layers over: paddle_mm's :class:`~paddle_mm.models.chinese_clip.BatchNorm`
(the RN50 tower, torch's buffer names) through its ``sync`` switch, Paddle's 2-D batch norm layers by becoming a
:class:`SyncedBatchNorm2D` (same parameters, buffers and names, so checkpoints are unchanged). One process: nothing
is exchanged and the layers behave as before.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn as nn

from ..distributed import all_reduce_with_grad, world_size


def global_batch_stats(x: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor, float]:
    """Per-channel mean and biased variance of ``x`` [B, C, H, W] over the batches of all processes, and the
    number of values per channel they cover. Differentiable: the sums are all-reduced with their gradient."""
    C = x.shape[1]
    x32 = x.astype("float32")
    count = paddle.full([1], math.prod(x.shape) // C, dtype="float32")
    sums = paddle.concat([x32.sum(axis=[0, 2, 3]), (x32 * x32).sum(axis=[0, 2, 3]), count])  # (2C + 1,)
    sums = all_reduce_with_grad(sums)
    n = float(sums[2 * C])
    mean = sums[:C] / n  # (C,)
    return mean, sums[C : 2 * C] / n - mean * mean, n


def normalize(x: paddle.Tensor, mean, var, weight, bias, eps: float) -> paddle.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias, per channel of [B, C, H, W], in x's dtype."""
    shape = [1, x.shape[1], 1, 1]
    out = (x.astype("float32") - mean.reshape(shape)) * paddle.rsqrt(var.reshape(shape) + eps)
    return (out * weight.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


class SyncedBatchNorm2D(nn.BatchNorm2D):
    """A Paddle 2-D batch norm whose training statistics are those of all processes (Paddle's running-statistics
    rule: ``running = momentum * running + (1 - momentum) * batch``, with the biased batch variance)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        if self._data_format != "NCHW" or x.ndim != 4:
            raise ValueError(
                f"Global.sync_bn syncs NCHW batch norm inputs; this layer gets {x.shape} in {self._data_format}"
            )
        mean, var, _ = global_batch_stats(x)
        with paddle.no_grad():
            m = self._momentum
            paddle.assign(m * self._mean + (1.0 - m) * mean, self._mean)
            paddle.assign(m * self._variance + (1.0 - m) * var, self._variance)
        return normalize(x, mean, var, self.weight, self.bias, self._epsilon)


def sync_batch_norm(model: nn.Layer) -> tuple[nn.Layer, int]:
    """Make every batch norm of ``model`` use the statistics of all processes; returns ``model`` and how many
    layers now sync. Raises ValueError for a batch norm it cannot sync (not 2-D), naming it."""
    n = 0
    for name, layer in model.named_sublayers(include_self=True):
        if isinstance(getattr(layer, "sync", None), bool):  # paddle_mm's BatchNorm syncs itself
            layer.sync = True
        elif type(layer) is nn.BatchNorm2D:
            layer.__class__ = SyncedBatchNorm2D  # same parameters and buffers: state dict names unchanged
        elif isinstance(layer, nn.layer.norm._BatchNormBase) and not isinstance(layer, SyncedBatchNorm2D):
            raise ValueError(
                f"Global.sync_bn: layer {name or type(layer).__name__!r} is a {type(layer).__name__}, which "
                "cannot be synced (2-D batch norm only); set Global.sync_bn=false"
            )
        else:
            continue
        n += 1
    return model, n
