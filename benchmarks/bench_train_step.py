"""Training-step speed of the quickstart model with and without hardware.tune_cpu_env(), side by side.

    python benchmarks/bench_train_step.py [--steps 8] [--batch 64] [--model CN-CLIP-Tiny]

Each variant runs in a fresh process (MKL reads MKL_DEBUG_CPU_TYPE when it loads, so the flag cannot be
toggled inside one process); the variants alternate over several rounds and the table reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import paddle
import paddle_mm
from paddle_mm.losses import build_loss
model_name, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
paddle.seed(0)
model = paddle_mm.create_model(model_name)
res = model.config.image_resolution
opt = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters())
loss_fn = build_loss([{"ClipLoss": {}}])
x = paddle.randn([batch, 3, res, res])
ids = paddle.randint(1, 21128, [batch, 24])  # a typical caption length after trimming padding
def step():
    loss_fn(model(x, ids))["loss"].backward()
    opt.step()
    opt.clear_grad()
step()  # warm-up
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def run(env_extra: dict[str, str | None], args) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    env.update({k: v for k, v in env_extra.items() if v is not None})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, args.model, str(args.batch), str(args.steps)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="CN-CLIP-Tiny")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import hardware

    tuned = hardware.tune_cpu_env()
    variants = {"paddle default": {}, "hardware.tune_cpu_env()": tuned}
    if not tuned:
        print(
            f"tune_cpu_env() changes nothing on this CPU ({hardware.cpu_vendor() or 'unknown vendor'}): "
            "both rows run the same settings"
        )
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, env in variants.items():
            samples[name].extend(run(env, args))
    base = statistics.median(samples["paddle default"])
    print(f"\n{args.model}, batch {args.batch}, forward + backward + AdamW step, {args.rounds} x {args.steps} steps")
    print("| settings | env | median s/step | samples/s | speed-up |\n|---|---|---|---|---|")
    for name, env in variants.items():
        med = statistics.median(samples[name])
        env_text = " ".join(f"{k}={v}" for k, v in env.items()) or "-"
        print(f"| {name} | {env_text} | {med:.3f} | {args.batch / med:.1f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
