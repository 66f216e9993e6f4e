"""Gradient helpers shared by the accumulation and distillation tests (a helper module, not a test module)."""

from __future__ import annotations

import numpy as np
import paddle

from paddle_mm.models import build_model

AMP_OFF = {"use_amp": False, "level": "O1", "dtype": None}


def batch(n: int, seed: int = 0) -> tuple[paddle.Tensor, paddle.Tensor]:
    rng = np.random.default_rng(seed)
    pixels = rng.standard_normal((n, 3, 32, 32)).astype("float32")
    ids = rng.integers(200, 5000, (n, 10))
    ids[:, 0], ids[:, -1] = 101, 102
    ids[n // 2 :, 6:] = 0  # some rows shorter (padding)
    return paddle.to_tensor(pixels), paddle.to_tensor(ids)


def grads(model) -> dict[str, np.ndarray]:
    out = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    model.clear_gradients()
    return out


def assert_same_grads(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=2e-4, atol=2e-6, err_msg=name)


def tiny_model(dropout: float = 0.0):
    paddle.seed(3)
    arch = {
        "name": "CN-CLIP-Tiny",
        "image_resolution": 32,
        "vision_layers": 1,
        "text_num_hidden_layers": 1,
        "embed_dim": 16,
        "text_hidden_dropout_prob": dropout,
    }
    return build_model(arch)
