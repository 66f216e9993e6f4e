"""What this CPU's matrix multiply reaches: the ceiling for every inference backend on a transformer tower.

    python benchmarks/bench_gemm_peak.py [--threads 2] [--rounds 5]

The matrix products of two ViT-B/16 MLP blocks at batch 8 (2 FLOP per multiply-add) through every kernel the
machine report measures (:mod:`hardware.gemm`): ONNX Runtime fp32 ``MatMul``, oneDNN fp32 and
BF16 inner products in Paddle Inference (BF16 only on a CPU with AVX512_BF16 or AMX), ONNX Runtime dynamic
INT8 (``DynamicQuantizeMatMul``) and static QDQ INT8 (per-channel weights); timed in interleaved blocks of
runs, each block after an untimed run (a thread pool that just finished may still be spinning). Prints the
median GFLOP/s of each, its ratio to the fastest fp32 kernel and what it means for a 35.1-GFLOP ViT-B/16
image. A tower's throughput cannot beat its precision's ceiling, so this bounds the speed-up any backend can
show (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from hardware.gemm import FLOP, SHAPE, all_kernels, inputs, time_kernels

VIT_B16_GFLOP = 35.1
BLOCK = 4  # timed runs of one kernel in a row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    x = inputs()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_gemm_") as tmp:
        times = time_kernels(all_kernels(args.threads, Path(tmp)), x, args.rounds, BLOCK)
    rate = {name: FLOP / float(np.median(ts)) / 1e9 for name, ts in times.items()}
    fp32 = max(v for k, v in rate.items() if k.startswith("fp32 "))
    print(
        f"GEMM {SHAPE}, {args.threads} threads, {args.rounds} interleaved rounds of {BLOCK} runs, "
        f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    print("| kernel | median ms | spread (p90/p10) | GFLOP/s (GOP/s for int8) | vs best fp32 | ViT-B/16 img/s |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        spread = np.percentile(ts, 90) / np.percentile(ts, 10)
        print(
            f"| {name} | {np.median(ts) * 1e3:.1f} | {spread:.2f} | {rate[name]:.1f} | {rate[name] / fp32:.2f}x "
            f"| {rate[name] / VIT_B16_GFLOP:.2f} |"
        )


if __name__ == "__main__":
    main()
