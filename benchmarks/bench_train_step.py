"""Training-step speed of paddle_mm (Paddle eager) against cn_clip (PyTorch eager) on the same model and batch.

    python benchmarks/bench_train_step.py [--models CN-CLIP-Tiny ViT-B-16] [--batch 32] [--steps 5] [--rounds 3]
        [--threads 2] [--torch-python .venv-ref/bin/python]

A step is forward, the symmetric contrastive loss, backward and an AdamW update (learning rate 1e-4), on one
fixed batch of random pixels and token ids (24 real tokens per caption, a typical length after paddle_mm trims
padding; the same ids for both, so neither gains from padding). The cn_clip model is cn_clip's own ``CLIP``
class built with paddle_mm's architecture numbers (so CN-CLIP-Tiny, which cn_clip does not ship, is compared
too). Each row runs in its own process, rows alternate over ``--rounds`` rounds, and the table gives the
median seconds per step, samples/s and paddle_mm / cn_clip. paddle_mm also runs with ``hardware.tune_cpu_env()``
when that changes anything on this CPU (MKL_DEBUG_CPU_TYPE on AMD/Hygon). cn_clip needs ``--torch-python``
(scripts/setup_reference.sh); without it its rows say skipped.
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

PADDLE_CHILD = r"""
import json, sys, time
import paddle
import hardware
import paddle_mm
from paddle_mm.losses import build_loss
model_name, batch, steps, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hardware.resolve_device(hardware.DEFAULT_DEVICE)  # the device row's flags, as tools/train.py sets them
paddle.seed(0)
model = paddle_mm.create_model(model_name)
model.train()
res = model.config.image_resolution
opt = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters())
loss_fn = build_loss([{"ClipLoss": {}}])
x = paddle.randn([batch, 3, res, res])
ids = paddle.randint(1, 21128, [batch, length])
def step():
    loss_fn(model(x, ids))["loss"].backward()
    opt.step()
    opt.clear_grad()
step()  # warm-up
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "config": vars(model.config)}))
"""

TORCH_CHILD = r"""
import inspect, json, sys, time
import torch
import torch.nn.functional as F
from cn_clip.clip.model import CLIP
cfg = json.loads(sys.argv[1])
batch, steps, length, threads = (int(v) for v in sys.argv[2:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
names = inspect.signature(CLIP.__init__).parameters
model = CLIP(**{k: v for k, v in cfg.items() if k in names}).float()
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.randn(batch, 3, cfg["image_resolution"], cfg["image_resolution"])
ids = torch.randint(1, 21128, (batch, length))
labels = torch.arange(batch)
def step():
    image, text, scale = model(x, ids)[:3]
    logits = scale * image @ text.t()
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    loss.backward()
    opt.step()
    opt.zero_grad()
step()  # warm-up
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"times": times}))
"""


def child(cmd: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{cmd[0]} failed: {tail[:300]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_available(python: str) -> bool:
    try:
        probe = subprocess.run([python, "-c", "import torch, cn_clip.clip.model"], capture_output=True, timeout=120)
        return probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["CN-CLIP-Tiny", "ViT-B-16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--length", type=int, default=24, help="tokens per caption")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torch-python", default=str(ROOT / ".venv-ref/bin/python"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import hardware

    base_env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    base_env.update(OMP_NUM_THREADS=str(args.threads), GLOG_minloglevel="2", PYTHONPATH=str(ROOT))
    tuned = hardware.tune_cpu_env()
    has_torch = torch_available(args.torch_python)
    report = {}
    for model in args.models:
        common = [str(args.batch), str(args.steps), str(args.length)]
        rows = {"paddle_mm": [sys.executable, "-c", PADDLE_CHILD, model, *common]}
        envs = {"paddle_mm": base_env}
        if tuned:
            rows["paddle_mm + tune_cpu_env"], envs["paddle_mm + tune_cpu_env"] = (
                rows["paddle_mm"],
                {**base_env, **tuned},
            )
        samples: dict[str, list[float]] = {name: [] for name in rows}
        config = None
        if has_torch:
            samples["cn_clip"] = []
        for _ in range(args.rounds):  # alternate, so a change in background load hits every row alike
            for name, cmd in rows.items():
                result = child(cmd, envs[name])
                samples[name] += result["times"]
                config = config or result["config"]
            if has_torch:
                torch_cmd = [args.torch_python, "-c", TORCH_CHILD, json.dumps(config), *common, str(args.threads)]
                samples["cn_clip"] += child(torch_cmd, base_env)["times"]
        report[model] = samples
        ref = statistics.median(samples["cn_clip"]) if has_torch else None
        print(f"\n{model}, batch {args.batch}, {args.length} tokens, forward + loss + backward + AdamW, "
              f"{args.rounds} rounds x {args.steps} steps, {args.threads} threads")  # fmt: skip
        print("| row | median s/step | steps/s | samples/s | vs cn_clip |\n|---|---|---|---|---|")
        for name, times in samples.items():
            med = statistics.median(times)
            ratio = f"{ref / med:.2f}x" if ref else "-"
            print(f"| {name} | {med:.3f} | {1 / med:.2f} | {args.batch / med:.1f} | {ratio} |")
        if not has_torch:
            print(f"cn_clip: skipped ({args.torch_python} cannot import torch and cn_clip; scripts/setup_reference.sh)")
    print(f"load average at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
