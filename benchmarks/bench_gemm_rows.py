"""The fp32 GEMM rate a tower can reach at its batch: rows per weight, weights in cache or streamed from memory.

    python benchmarks/bench_gemm_rows.py [--threads 2] [--rounds 5]

A tower multiplies each weight matrix once per call by as many rows as it has tokens: 52 for one text, 197
for one image, 416 for eight texts, 1576 for eight images (ViT-B/16, 52-token texts). The GEMM ceiling
(:mod:`hardware.gemm`) is timed on two MLP blocks whose 38 MB of weights stay in this CPU's cache from one
call to the next; a tower reads 340 MB of weights per call (twelve blocks), from memory. With few rows per
weight the multiply cannot hide that read. This times, for each row count, ONNX Runtime fp32 ``MatMul`` on

- ``cached``: one MLP block ([768 x 3072], [3072 x 768]) called over and over;
- ``streamed``: twelve MLP blocks with their own weights in one call, as a tower reads them,

in interleaved rounds (each block of runs after a settling pause and an untimed run), and prints each rate and
its fraction of the ``cached`` rate at 1576 rows (the shape of the GEMM ceiling). ``streamed`` is what the
tower's matrix products can reach at that batch even with nothing else to do (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware.gemm import K as HIDDEN
from hardware.gemm import N as MLP
from hardware.gemm import fp32_chain, weights
from paddle_mm.inference.auto import SETTLE_S

ROWS = {52: "text b1", 197: "image b1", 416: "text b8", 1576: "image b8"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    import hardware

    hardware.tune_cpu_env()
    cases = {  # x @ W1 @ W2 ... over 1 or 12 MLP blocks, each with its own weights
        (rows, blocks): fp32_chain(weights(blocks, seed=blocks), args.threads, rows)
        for rows in ROWS
        for blocks in (1, 12)
    }
    inputs = {rows: np.random.default_rng(0).standard_normal((rows, HIDDEN), dtype=np.float32) for rows in ROWS}
    flop = {(rows, blocks): 2 * rows * HIDDEN * MLP * 2 * blocks for rows, blocks in cases}
    repeat = {case: max(1, round(2e10 / flop[case])) for case in cases}  # ~20 GFLOP per block of runs
    times: dict[tuple[int, int], list[float]] = {case: [] for case in cases}
    load_start = os.getloadavg()[0]
    for _ in range(args.rounds):
        for case, run in cases.items():
            x = inputs[case[0]]
            time.sleep(SETTLE_S)
            run(x)
            start = time.perf_counter()
            for _ in range(repeat[case]):
                run(x)
            times[case].append((time.perf_counter() - start) / repeat[case])
    rate = {case: flop[case] / float(np.median(ts)) / 1e9 for case, ts in times.items()}
    ceiling = rate[(1576, 1)]
    print(
        f"ONNX Runtime fp32 MatMul, {args.threads} threads, {args.rounds} interleaved rounds, load average "
        f"{load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; 100 % = cached at 1576 rows "
        f"({ceiling:.0f} GFLOP/s)"
    )
    print(
        "| rows per weight | tower, batch | cached GFLOP/s | streamed GFLOP/s | streamed / cached "
        "| streamed, of 100 % |"
    )
    print("|---|---|---|---|---|---|")
    for rows, where in ROWS.items():
        cached, streamed = rate[(rows, 1)], rate[(rows, 12)]
        print(
            f"| {rows} | {where} | {cached:.0f} | {streamed:.0f} | {streamed / cached:.2f} | {streamed / ceiling:.0%} |"
        )


if __name__ == "__main__":
    main()
