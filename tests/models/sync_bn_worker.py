"""Run by tests/models/test_cn_clip_switches.py under paddle.distributed.launch (2 gloo processes): a conv +
batch-norm stack (both kinds of batch norm), rank r holding half r of one batch, with and without sync; each rank
writes its outputs, rank 0 the averaged gradients and the running statistics. :func:`reference` is the same step in
one process on the whole batch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import paddle

from paddle_mm import distributed as dist
from paddle_mm.models.chinese_clip import BatchNorm
from paddle_mm.models.sync_bn import sync_batch_norm

N = 8  # the whole batch; 4 rows per process


def _model() -> paddle.nn.Sequential:
    paddle.seed(0)
    # paddle_mm's BatchNorm (the RN50 tower's) and Paddle's own BatchNorm2D
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1), BatchNorm(4), paddle.nn.ReLU(),
                                 paddle.nn.Conv2D(4, 4, 1), paddle.nn.BatchNorm2D(4))  # fmt: skip
    model.train()
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, 3, 6, 6)) * np.array([1.0, 3.0, 0.5])[None, :, None, None] + 2.0).astype("float32")
    return x, rng.standard_normal((N, 4, 6, 6)).astype("float32")  # inputs; loss weights per output value


def _step(model, x: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    out = model(paddle.to_tensor(x))
    (out * paddle.to_tensor(w)).mean().backward()
    dist.average_gradients([p for p in model.parameters() if not p.stop_gradient])
    state = {"out": out.numpy()}
    params = dict(model.named_parameters())  # Paddle's BatchNorm2D keeps its running statistics as fixed parameters
    state.update({f"grad.{n}": p.grad.numpy() for n, p in params.items() if not p.stop_gradient})
    state.update({f"stat.{n}": p.numpy() for n, p in params.items() if p.stop_gradient})
    state.update({f"stat.{n}": b.numpy() for n, b in model.named_buffers() if "num_batches" not in n})
    return state


def reference() -> dict[str, np.ndarray]:
    x, w = _data()
    return _step(_model(), x, w)


def main(out_dir: str) -> None:
    dist.init_distributed()
    r = dist.rank()
    x, w = _data()
    rows = slice(r * N // 2, (r + 1) * N // 2)
    for sync in (True, False):
        model = _model()
        if sync:
            model, n = sync_batch_norm(model)
            assert n == 2
        np.savez(Path(out_dir) / f"rank{r}_{sync}.npz", **_step(model, x[rows], w[rows]))


if __name__ == "__main__":
    main(sys.argv[1])
