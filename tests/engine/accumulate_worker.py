"""Run by tests/engine/test_accumulate.py under paddle.distributed.launch (2 processes): one feature-cached step
of K micro-batches of B rows per rank over the test's global batch; rank 0 writes the averaged gradients."""

from __future__ import annotations

import sys

import numpy as np

from paddle_mm import distributed as dist
from paddle_mm.engine.accumulate import features_step
from paddle_mm.losses import build_loss
from tests.engine.grads import AMP_OFF, batch, tiny_model


def main(out: str, k: int, b: int) -> None:
    dist.init_distributed()
    model = tiny_model()  # the same seed on both ranks: the same weights
    pixels, ids = batch(2 * k * b)
    r = dist.rank()
    # rank r holds rows [r*k*b, (r+1)*k*b): a permutation of the global batch, which the loss does not see
    mine = [
        (pixels[(r * k + j) * b : (r * k + j + 1) * b], ids[(r * k + j) * b : (r * k + j + 1) * b]) for j in range(k)
    ]
    features_step(model, mine, build_loss([{"ClipLoss": {}}]), AMP_OFF)
    params = [p for p in model.parameters() if not p.stop_gradient]
    dist.average_gradients(params)
    if dist.is_main():
        np.savez(out, **{n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
    model.clear_gradients()  # --skip-aggregate (ClipLoss aggregate: false): each rank's rows are its own batch
    rows = slice(r * k * b, (r + 1) * k * b)
    build_loss([{"ClipLoss": {"aggregate": False}}])(model(pixels[rows], ids[rows]))["loss"].backward()
    dist.average_gradients(params)
    if dist.is_main():
        np.savez(
            out.replace(".npz", "_local.npz"),
            **{n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None},
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
