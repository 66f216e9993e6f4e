"""Data parallelism with explicit collectives.

We average gradients ourselves (one fused all-reduce per optimizer step) instead of wrapping the model
in ``paddle.DataParallel``: it keeps the model's own ``forward`` and attributes, works the same on gloo
(CPU) and NCCL, and with gradient accumulation communicates once per step instead of once per
micro-batch. Negatives for the contrastive loss are gathered with :func:`all_gather_with_grad`.
"""

from __future__ import annotations

import paddle
import paddle.distributed as dist
from paddle.autograd import PyLayer


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_distributed() -> int:
    """Join the process group when started by ``paddle.distributed.launch``; return the world size."""
    if int(paddle.distributed.ParallelEnv().world_size) > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return world_size()


class _AllGatherWithGrad(PyLayer):
    @staticmethod
    def forward(ctx, x: paddle.Tensor) -> paddle.Tensor:
        parts: list[paddle.Tensor] = []
        dist.all_gather(parts, x)
        ctx.rank, ctx.n = rank(), len(parts)
        return paddle.concat(parts, axis=0)  # (world * B, ...)

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> paddle.Tensor:
        # Every rank's loss depends on every rank's features: sum the gradients w.r.t. our slice.
        grad = grad.clone()
        dist.all_reduce(grad)
        return paddle.split(grad, ctx.n, axis=0)[ctx.rank]


def all_gather_with_grad(x: paddle.Tensor) -> paddle.Tensor:
    """Concatenate ``x`` from all ranks along axis 0, keeping the gradient path to every rank."""
    return _AllGatherWithGrad.apply(x) if world_size() > 1 else x


class _AllReduceWithGrad(PyLayer):
    @staticmethod
    def forward(ctx, x: paddle.Tensor) -> paddle.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> paddle.Tensor:
        # every rank's output depends on our summand with weight 1: sum the gradients of all ranks
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(x: paddle.Tensor) -> paddle.Tensor:
    """The sum of ``x`` over all ranks, differentiable (synchronised batch-norm statistics)."""
    return _AllReduceWithGrad.apply(x) if world_size() > 1 else x


def all_gather_no_grad(x: paddle.Tensor) -> paddle.Tensor:
    if world_size() == 1:
        return x
    parts: list[paddle.Tensor] = []
    dist.all_gather(parts, x.detach())
    return paddle.concat(parts, axis=0)


def average_gradients(params: list[paddle.Tensor]) -> None:
    """Average the gradients of ``params`` over ranks with one fused all-reduce."""
    n = world_size()
    if n == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = paddle.concat([g.reshape([-1]) for g in grads])
    dist.all_reduce(flat)
    flat = flat / n
    offset = 0
    for g in grads:
        size = g.size
        g.set_value(flat[offset : offset + size].reshape(g.shape))
        offset += size


def broadcast_parameters(model: paddle.nn.Layer) -> None:
    """Make every rank start from rank 0's weights."""
    if world_size() == 1:
        return
    for p in model.parameters():
        dist.broadcast(p, src=0)


def mean_over_ranks(value: float) -> float:
    if world_size() == 1:
        return value
    t = paddle.to_tensor([value], dtype="float64")
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def min_over_ranks(value: int) -> int:
    if world_size() == 1:
        return value
    t = paddle.to_tensor([value], dtype="int64")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
