"""paddle_mm.models.linear: the same values and gradients as paddle.nn.Linear, its bias gradient as a GEMM."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F

from paddle_mm.models.linear import Linear, bias_add, linear


def grads(fn, *tensors):
    for t in tensors:
        t.clear_gradient()
    out = fn()
    (out * out).sum().backward()  # a non-uniform output gradient
    return out.numpy(), [t.grad.numpy().copy() for t in tensors]


def leaf(*shape, seed):
    paddle.seed(seed)
    t = paddle.randn(list(shape))
    t.stop_gradient = False
    return t


def test_linear_matches_paddle_forward_and_gradients():
    x, w, b = leaf(3, 7, 16, seed=0), leaf(16, 24, seed=1), leaf(24, seed=2)
    want_y, want = grads(lambda: F.linear(x, w, b), x, w, b)
    got_y, got = grads(lambda: linear(x, w, b), x, w, b)
    np.testing.assert_array_equal(got_y, want_y)  # the forward is the same ops
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    assert np.abs(got[2]).min() > 0  # the bias gradient is really computed (a sum over 21 rows)


def test_bias_add_gradient_is_the_row_sum():
    x, b = leaf(5, 4, 6, seed=3), leaf(6, seed=4)
    _, (gx, gb) = grads(lambda: bias_add(x, b), x, b)
    y = x.numpy() + b.numpy()
    np.testing.assert_allclose(gx, 2 * y, rtol=1e-6)
    np.testing.assert_allclose(gb, (2 * y).reshape(-1, 6).sum(0), rtol=1e-5)


def test_layer_is_paddle_linear_with_the_same_state_dict():
    paddle.seed(0)
    layer = Linear(8, 4)
    ref = paddle.nn.Linear(8, 4)
    ref.set_state_dict(layer.state_dict())
    assert isinstance(layer, paddle.nn.Linear) and list(layer.state_dict()) == list(ref.state_dict())
    x = leaf(2, 8, seed=5)
    np.testing.assert_array_equal(layer(x).numpy(), ref(x).numpy())
    with paddle.no_grad():  # inference: plain F.linear
        np.testing.assert_array_equal(layer(x).numpy(), ref(x).numpy())


def test_a_frozen_layer_can_train_its_bias_alone():
    """Weight frozen and an input without gradient (a first layer, bias-only fine-tuning): the bias gradient is
    the row sum, and nothing is asked of the input."""
    paddle.seed(0)
    layer, ref = Linear(8, 4), paddle.nn.Linear(8, 4)
    ref.set_state_dict(layer.state_dict())
    for m in (layer, ref):
        m.weight.stop_gradient = True
    x = paddle.randn([3, 5, 8])  # stop_gradient: data
    for m in (layer, ref):
        (m(x) ** 2).sum().backward()
    np.testing.assert_allclose(layer.bias.grad.numpy(), ref.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert layer.weight.grad is None and np.abs(layer.bias.grad.numpy()).min() > 0
    xb, b = paddle.randn([4, 6]), leaf(6, seed=6)  # bias_add on an input without gradient
    (bias_add(xb, b) ** 2).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), (2 * (xb.numpy() + b.numpy())).sum(0), rtol=1e-5)
