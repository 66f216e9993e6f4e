"""Training-step time with ``Arch.attention: eager`` against ``sdpa`` (Chinese-CLIP's ``--use-flash-attention``).

    python benchmarks/bench_attention.py --device gpu --amp --model ViT-B-16 --batch 64   # where flash attention runs
    python benchmarks/bench_attention.py --model CN-CLIP-Tiny --batch 8 --steps 2 --rounds 1   # smoke run on CPU

A step is forward, the symmetric contrastive loss, backward and an AdamW update on one fixed batch of random pixels
and token ids (``--length`` tokens, the last quarter padding). Both models hold the same weights; the rows
alternate over ``--rounds`` rounds in one process, and the table gives the median seconds per step, samples/s and
sdpa / eager, plus the largest difference of the two models' eval-mode image and text features. Which kernel
``sdpa`` uses is Paddle's choice (flash attention for fp16 / bf16 on GPUs of compute capability 8.0+,
memory-efficient attention on other GPUs, its math path on CPU, where no speed-up is expected).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import hardware  # noqa: E402
from paddle_mm.losses import build_loss  # noqa: E402
from paddle_mm.models import create_model  # noqa: E402


def _models(name: str) -> dict[str, paddle.nn.Layer]:
    paddle.seed(0)
    eager = create_model(name, attention="eager")
    sdpa = create_model(name, attention="sdpa")
    sdpa.set_state_dict(eager.state_dict())
    return {"eager": eager, "sdpa": sdpa}


def _step_fn(model, pixels, ids, amp: str | None):
    """One timed training step; ``amp``: the autocast dtype, or None for fp32."""
    opt = paddle.optimizer.AdamW(learning_rate=1e-5, parameters=model.parameters())
    loss_fn = build_loss([{"ClipLoss": {}}])

    def step() -> float:
        t = time.perf_counter()
        with paddle.amp.auto_cast(enable=amp is not None, dtype=amp or "float16"):
            loss = loss_fn(model(pixels, ids))["loss"]
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)  # waits for the device
        return time.perf_counter() - t

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--device", default=hardware.DEFAULT_DEVICE, help="a device string, as Global.device takes it")
    ap.add_argument("--amp", action="store_true", help="autocast in the device's AMP dtype (flash needs fp16/bf16)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=52)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    spec = hardware.resolve_device(args.device)  # also makes it Paddle's current device
    amp = hardware.amp_dtype(spec) if args.amp else None
    if args.amp and amp is None:
        print(f"--amp ignored: Paddle has no autocast on {args.device}")
    models = _models(args.model)
    res = models["eager"].config.image_resolution
    rng = np.random.default_rng(0)
    pixels = paddle.to_tensor(rng.standard_normal((args.batch, 3, res, res)).astype("float32"))
    ids = rng.integers(200, 20000, (args.batch, args.length))
    ids[:, 0], ids[:, 3 * args.length // 4 :] = 101, 0
    ids = paddle.to_tensor(ids)
    for m in models.values():
        m.eval()
    with paddle.no_grad():
        a, b = (models[k](pixels[:4], ids[:4]) for k in ("eager", "sdpa"))
        diff = max(float((a[k] - b[k]).abs().max()) for k in ("image_features", "text_features"))
    steps = {k: _step_fn(m.train(), pixels, ids, amp) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for step in steps.values():
        step()  # warm-up
    for _ in range(args.rounds):
        for k, step in steps.items():
            times[k] += [step() for _ in range(args.steps)]
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.model} on {spec}, batch {args.batch}, {args.length} tokens, autocast {amp or 'off'}")
    print("| attention | s/step | samples/s | vs eager |\n|---|---|---|---|")
    for k, s in median.items():
        print(f"| {k} | {s:.4f} | {args.batch / s:.1f} | {s / median['eager']:.2f} |")
    print(f"max |feature difference| eager vs sdpa (eval, fp32): {diff:.2e}")


if __name__ == "__main__":
    main()
