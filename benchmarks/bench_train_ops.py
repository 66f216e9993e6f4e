"""Where a training step's time goes, Paddle eager against PyTorch eager, op by op at one transformer block's shapes.

    python benchmarks/bench_train_ops.py [--batch 4] [--width 768] [--tokens 197] [--rounds 5] [--threads 2]
        [--torch-python .venv-ref/bin/python]

``bench_train_step.py`` gives the whole step; this gives the reason for its ratio. Each row is forward + backward
of one piece of a ViT block (ViT-B-16 at 224 px by default: [batch, 197, 768]), written the same way in both
frameworks: the GEMM pieces (a Linear as paddle_mm's models build it, the attention's batched products), the
row-wise pieces (LayerNorm, softmax), the element-wise ones (QuickGELU, a bias add as Paddle computes it and as
paddle_mm's ``bias_add`` does, a residual add), one op on a 2x2 tensor (the fixed cost of an op, forward +
backward, which dominates small models), then the whole block (paddle_mm's ``ResidualAttentionBlock`` against
cn_clip's own). Rows run in one process per framework, the two processes alternate over ``--rounds`` rounds, and
the table gives the median milliseconds and paddle / torch. Paddle runs with ``hardware.tune_cpu_env``, as
``tools/train.py`` runs it; PyTorch in the environment the benchmark was started with.
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

# One body for both frameworks: `fw` supplies randn, the ops and the block; the rows are the same expressions.
CHILD = r"""
import json, sys, time, statistics
which, batch, width, tokens, threads = sys.argv[1], *map(int, sys.argv[2:6])
heads = width // 64
if which == "paddle":
    import paddle
    import paddle.nn.functional as F
    import hardware
    from paddle_mm.models.chinese_clip import ResidualAttentionBlock
    hardware.resolve_device(hardware.DEFAULT_DEVICE)  # the device row's flags, as tools/train.py sets them
    paddle.seed(0)
    def randn(*shape, grad=True):
        t = paddle.randn(list(shape)); t.stop_gradient = not grad; return t
    T = lambda t: t.transpose([0, 1, 3, 2])
    layer_norm = lambda x: F.layer_norm(x, width)
    block = ResidualAttentionBlock(width, heads)
    block_x = randn(batch, tokens, width)
    from paddle_mm.models.linear import Linear, bias_add
    linear = Linear(width, 4 * width)  # as the models build it: the bias gradient as one GEMM on the CPU
    unpack = lambda qkv: qkv.unbind(0)
else:
    import torch
    import torch.nn.functional as F
    from cn_clip.clip.model import ResidualAttentionBlock
    torch.manual_seed(0); torch.set_num_threads(threads)
    def randn(*shape, grad=True):
        return torch.randn(*shape, requires_grad=grad)
    T = lambda t: t.transpose(-1, -2)
    layer_norm = lambda x: F.layer_norm(x, (width,))
    block = ResidualAttentionBlock(width, heads)
    block_x = randn(tokens, batch, width)  # cn_clip's blocks are sequence-first
    linear = torch.nn.Linear(width, 4 * width)
    bias_add = lambda h, b: h + b
    unpack = lambda qkv: qkv.unbind(0)
x = randn(batch, tokens, width)
h = randn(batch, tokens, 4 * width)
q, k = randn(batch, heads, tokens, 64), randn(batch, heads, tokens, 64)
scores = randn(batch, heads, tokens, tokens)
packed = randn(3, batch, heads, tokens, 64)
bias = randn(4 * width)
tiny = randn(2, 2)
rows = {
    "Linear 768->3072": lambda: linear(x),
    "q @ k^T (batched)": lambda: q @ T(k),
    "softmax": lambda: F.softmax(scores, -1),
    "unpack q/k/v": lambda: sum(t.sum() for t in unpack(packed)),
    "LayerNorm": lambda: layer_norm(x),
    "QuickGELU": lambda: h * F.sigmoid(1.702 * h),
    "bias add": lambda: h + bias,
    "bias add (paddle_mm bias_add)": lambda: bias_add(h, bias),
    "residual add": lambda: x + x,
    "one tiny op (dispatch)": lambda: tiny * 2.0,
    "whole block": lambda: block(block_x),
}
def step(fn):
    fn().sum().backward()
out = {}
for name, fn in rows.items():
    step(fn)
    times = []
    for _ in range(5):
        t = time.perf_counter(); step(fn); times.append(time.perf_counter() - t)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def run(cmd: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{cmd[0]} failed: {tail[:300]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torch-python", default=str(ROOT / ".venv-ref/bin/python"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import hardware

    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    env.update(OMP_NUM_THREADS=str(args.threads), GLOG_minloglevel="2", PYTHONPATH=str(ROOT))
    tuned = hardware.tune_cpu_env()  # Paddle runs as tools/train.py runs it; PyTorch in the environment it was given
    envs = {"paddle": {**env, **tuned}, "torch": env}
    shape = [str(v) for v in (args.batch, args.width, args.tokens, args.threads)]
    load = os.getloadavg()[0]
    samples: dict[str, dict[str, list[float]]] = {"paddle": {}, "torch": {}}
    for _ in range(args.rounds):  # alternate, so a change in background load hits both alike
        for which, python in (("paddle", sys.executable), ("torch", args.torch_python)):
            for name, seconds in run([python, "-c", CHILD, which, *shape], envs[which]).items():
                samples[which].setdefault(name, []).append(seconds)
    print(f"forward + backward at [{args.batch}, {args.tokens}, {args.width}], {args.threads} threads, "
          f"median of {args.rounds} rounds x 5 runs; load average {load:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end; Paddle with {tuned or 'no CPU tuning'}")  # fmt: skip
    print("| piece | paddle ms | torch ms | paddle / torch |\n|---|---|---|---|")
    for name, times in samples["paddle"].items():
        p, t = statistics.median(times) * 1e3, statistics.median(samples["torch"][name]) * 1e3
        print(f"| {name} | {p:.2f} | {t:.2f} | {p / t:.2f}x |")


if __name__ == "__main__":
    main()
