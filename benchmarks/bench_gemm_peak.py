"""What this CPU's matrix multiply reaches: the ceiling for every inference backend on a transformer tower.

    python benchmarks/bench_gemm_peak.py [--threads 2] [--rounds 7]

One ViT-B/16 MLP projection at batch 8 ([1576 x 768] x [768 x 3072], 2 FLOP per multiply-add) through
ONNX Runtime's fp32 ``MatMul`` and its dynamic INT8 ``DynamicQuantizeMatMul`` (u8 activations x s8 weights,
the kernel ``quantize_dynamic`` exports use), timed in interleaved blocks of runs; prints the
median GFLOP/s of each and what that means for a 35.1-GFLOP ViT-B/16 image. A tower's throughput cannot beat
its matmul ceiling, so this bounds the speed-up any backend can show over a reference that already reaches
some fraction of it (docs/performance.md). Each block starts with an untimed run: a thread pool that just
finished keeps spinning for a while, and timing single runs alternately slowed both kernels by a third or more
here (numpy's OpenBLAS pool too, which is why numpy is not a row).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hardware.gemm import K, M, N, gemm_session  # the shape and session the machine report measures

VIT_B16_GFLOP = 35.1
BLOCK = 4  # timed runs of one kernel in a row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    scale = np.float32(np.abs(w).max() / 127)
    w8 = np.round(w / scale).astype(np.int8)
    runners = {
        "onnxruntime MatMul fp32": gemm_session(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")], args.threads
        ),
        "onnxruntime DynamicQuantizeMatMul int8": gemm_session(
            [helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "z"], ["y"], domain="com.microsoft")],
            [
                numpy_helper.from_array(w8, "w"),
                numpy_helper.from_array(np.array(scale), "s"),
                numpy_helper.from_array(np.array(0, np.int8), "z"),
            ],
            args.threads,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm-up
        run(x)
    for _ in range(args.rounds):  # interleaved blocks: a change in background load hits every row alike
        for name, run in runners.items():
            run(x)  # not timed: the other session's thread pool may still be spinning
            for _ in range(BLOCK):
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    flop = 2 * M * K * N
    rate = {name: flop / float(np.median(ts)) / 1e9 for name, ts in times.items()}
    print(
        f"GEMM [{M} x {K}] x [{K} x {N}], {args.threads} threads, {args.rounds} interleaved rounds of {BLOCK} runs, "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )
    print("| kernel | median ms | GFLOP/s (GOP/s for int8) | ViT-B/16 img/s at this rate |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {np.median(ts) * 1e3:.1f} | {rate[name]:.1f} | {rate[name] / VIT_B16_GFLOP:.2f} |")
    int8, fp32 = rate["onnxruntime DynamicQuantizeMatMul int8"], rate["onnxruntime MatMul fp32"]
    print(f"int8 / fp32 in onnxruntime: {int8 / fp32:.2f}x")


if __name__ == "__main__":
    main()
