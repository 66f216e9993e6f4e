"""Page faults per run of a Paddle Inference tower, with glibc's own malloc thresholds and with paddle_mm's.

    python benchmarks/bench_malloc_faults.py --export-dir output/benchmark/export [--tower image] [--batch 8]
        [--processes 6] [--runs 6] [--threads 2]

glibc adapts its malloc thresholds to the blocks a process frees; by the order of a run's allocations, a
process can settle where every run hands memory back to the OS and faults it in again, or not. Which one a
process gets is not known in advance, so this starts ``--processes`` fresh processes per setting, alternating:

- ``glibc default``: the thresholds glibc adapts (``hardware.cpu.keep_freed_memory`` not called);
- ``kept``: what :func:`hardware.inference.paddle_inference_config` sets (``keep_freed_memory``: fixed mmap and
  trim thresholds).

Each builds the Paddle Inference fp32 predictor of ``--tower``, runs it twice untimed, then ``--runs`` times
(0.25 s apart), and reports the median ms and minor page faults per run. The table gives, per setting, how
many processes faulted (over 1,000 faults per run), and the range of medians of the faulting and the other
processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FAULTING = 1000  # minor page faults per run


def worker(args: argparse.Namespace) -> dict:
    import resource

    import hardware
    import hardware.inference
    from hardware import DEFAULT_DEVICE, DeviceSpec

    hardware.tune_cpu_env()
    if args.worker == "glibc default":
        hardware.inference.keep_freed_memory = lambda: {}
    from paddle_mm.inference.backends import PaddleInferenceBackend
    from paddle_mm.inference.model_dir import read_inference_yml

    info = read_inference_yml(args.export_dir)
    files = info.files(args.tower, "paddle_inference", "fp32")
    backend = PaddleInferenceBackend(files, DeviceSpec(DEFAULT_DEVICE), args.threads)
    graph = info.graph(args.tower)
    name = graph.input_names()[0]
    rng = np.random.default_rng(0)
    if args.tower == "image":
        size = int(info.preprocess["image"]["size"])
        x = rng.standard_normal((args.batch, 3, size, size)).astype(np.float32)
    else:
        length = int(info.preprocess["text"]["context_length"])
        x = rng.integers(1000, 20000, (args.batch, length)).astype(np.int64)
    for _ in range(2):
        backend.run({name: x})
    ms, faults = [], []
    for _ in range(args.runs):
        time.sleep(0.25)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        backend.run({name: x})
        ms.append((time.perf_counter() - t0) * 1e3)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return {"ms": float(np.median(ms)), "faults": int(np.median(faults))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export-dir", required=True)
    p.add_argument("--tower", choices=["image", "text"], default="image")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--processes", type=int, default=6, help="fresh processes per setting")
    p.add_argument("--runs", type=int, default=6, help="timed runs per process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("@@" + json.dumps(worker(args)), flush=True)
        return

    from hardware.cpu import cpuinfo_field

    settings = ("glibc default", "kept")
    got: dict[str, list[dict]] = {s: [] for s in settings}
    for i in range(args.processes):
        for setting in settings if i % 2 == 0 else settings[::-1]:
            cmd = [sys.executable, __file__, "--export-dir", args.export_dir, "--tower", args.tower, "--batch",
                   str(args.batch), "--runs", str(args.runs), "--threads", str(args.threads),
                   "--worker", setting]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [x for x in done.stdout.splitlines() if x.startswith("@@")]
            if done.returncode or not lines:
                sys.exit(f"{setting}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
            got[setting].append(json.loads(lines[-1][2:]))
            print(f"[malloc] {setting}: {got[setting][-1]}", flush=True)
    print(
        f"CPU {cpuinfo_field('model name')}, {args.threads} threads; Paddle Inference fp32 {args.tower} tower, "
        f"batch {args.batch}; {args.processes} fresh processes per setting, median of {args.runs} runs each"
    )
    print("| setting | processes faulting | faults per run (faulting) | ms, faulting | ms, the others |")
    print("|---|---|---|---|---|")
    for setting, rows in got.items():
        bad = [r for r in rows if r["faults"] > FAULTING]
        good = [r for r in rows if r["faults"] <= FAULTING]

        def span(rs: list[dict], key: str) -> str:
            return f"{min(r[key] for r in rs):.0f}-{max(r[key] for r in rs):.0f}" if rs else "-"

        faulting = f"{len(bad)} of {len(rows)} | {span(bad, 'faults')} | {span(bad, 'ms')}"
        print(f"| {setting} | {faulting} | {span(good, 'ms')} |")


if __name__ == "__main__":
    main()
