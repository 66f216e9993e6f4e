"""A Linear layer whose bias gradient is a matrix product on the CPU.

Paddle's eager CPU kernels compute the gradient of a broadcast bias add (``x @ w + b``: the sum of the output
gradient over every row) with a generic reduction that is 25-40x slower than the same sum as a product with a row
of ones (measured on a 2-core Zen 5: [4, 197, 3072] forward + backward 39.7 ms against PyTorch's 0.9 ms;
docs/performance.md). In a CN-CLIP-Tiny text tower these bias gradients were a quarter of the backward pass.
:class:`Linear` is ``paddle.nn.Linear`` (same parameters, same state dict, the same forward values) whose bias
gradient, when one is needed on the CPU in eager mode, is that product; elsewhere (eval, export, GPUs) it is
``F.linear`` unchanged.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer


class _BiasAdd(PyLayer):
    """y = x + b over x [..., N], b [N]; db = ones[1, rows] @ dy[rows, N] (one GEMM), dx = dy (None where x takes
    no gradient: a frozen layer whose bias alone is trained)."""

    @staticmethod
    def forward(ctx, x: paddle.Tensor, b: paddle.Tensor) -> paddle.Tensor:
        ctx.x_grad = not x.stop_gradient
        return x + b

    @staticmethod
    def backward(ctx, dy: paddle.Tensor) -> tuple[paddle.Tensor | None, paddle.Tensor]:
        rows = dy.reshape([-1, dy.shape[-1]])
        ones = paddle.ones([1, rows.shape[0]], dtype=dy.dtype)
        return (dy if ctx.x_grad else None), paddle.matmul(ones, rows).reshape([dy.shape[-1]])


def _slow_bias_grad(x: paddle.Tensor, b: paddle.Tensor) -> bool:
    """Whether Paddle would compute b's gradient with its slow CPU reduction (eager, CPU, one dtype, b trained)."""
    return paddle.in_dynamic_mode() and not b.stop_gradient and x.dtype == b.dtype and x.place.is_cpu_place()


def bias_add(x: paddle.Tensor, b: paddle.Tensor | None) -> paddle.Tensor:
    """``x + b`` (b broadcast over the rows of x), with the bias gradient as one GEMM where Paddle's is slow."""
    if b is None:
        return x
    if _slow_bias_grad(x, b):
        return _BiasAdd.apply(x, b)
    return x + b


def linear(x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor | None) -> paddle.Tensor:
    """``F.linear`` (weight [in, out]), with :func:`bias_add`'s bias gradient when training on the CPU."""
    if bias is not None and _slow_bias_grad(x, bias) and x.dtype == weight.dtype:
        return _BiasAdd.apply(paddle.matmul(x, weight), bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``paddle.nn.Linear`` with :func:`linear`'s forward: the same parameters, names and values."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return linear(x, self.weight, self.bias)
