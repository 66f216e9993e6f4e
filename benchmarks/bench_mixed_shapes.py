"""The serving case for the runtimes: calls of varying batch size and text length, as dynamic batches come.

    python benchmarks/bench_mixed_shapes.py --export-dir output/benchmark/export [--calls 48] [--max-batch 8]
        [--threads 2] [--repeats 2] [--out mixed.json]

A server's batcher hands the towers whatever has queued: 1 to ``--max-batch`` rows, texts of any length. Paddle
Inference on the CPU compiles oneDNN kernels for each input shape it has not run before and keeps a copy of the
weights per cached shape; ONNX Runtime does neither (:func:`hardware.inference.shape_compiled`). The steady-state
tables of tools/benchmark.py time one fixed shape and so cannot show it. This runs one fixed trace of ``--calls``
calls per tower (seeded: batch sizes drawn from 1..max-batch, texts of 4..52 tokens) through
:class:`paddle_mm.inference.Predictor` with each configuration below, each in a fresh process (its memory is
its own), after one warm-up call at ``--max-batch`` rows as the server makes at start:

- ``paddle_inference`` and ``onnxruntime`` fp32; ``paddle_inference`` BF16 (on a CPU with BF16);
- ``auto`` as a fixed-shape caller gets it (``varying_shapes=False``), and as the server does
  (``varying_shapes=True``: Paddle Inference left out where the shapes outnumber its shape cache), both with
  ``precision="auto"``.

It prints, per tower and configuration: the whole trace's seconds and rows/s, call latency p50 / p99 and the
slowest call, the memory the process grew by over the trace (VmRSS after it minus before it) and the backend
``auto`` chose; what the first run at a new shape took more than the second run at it (three shapes the trace
never has, ``--max-batch`` + 1..3 rows, run after the warm-up and before the trace; the median); and how many
distinct shapes the trace holds (texts counted by length in steps of 8, the lengths Paddle Inference is fed).
With ``--repeats`` the configurations run again in reverse order and each figure is the median over repeats.
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

CONFIGS = {  # name -> Predictor options
    "paddle_inference fp32": {"backend": "paddle_inference", "precision": "fp32"},
    "onnxruntime fp32": {"backend": "onnxruntime", "precision": "fp32"},
    "paddle_inference bf16": {"backend": "paddle_inference", "precision": "bf16"},
    "auto, fixed shapes": {"backend": "auto", "precision": "auto", "varying_shapes": False},
    "auto, varying_shapes": {"backend": "auto", "precision": "auto", "varying_shapes": True},
}
CONTEXT = 52  # Chinese-CLIP's text length


def trace(calls: int, max_batch: int, seed: int = 0) -> list[tuple[int, int]]:
    """(rows, text length) per call; the same for every configuration."""
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(1, max_batch + 1)), int(rng.integers(4, CONTEXT + 1))) for _ in range(calls)]


def vm_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def worker(args: argparse.Namespace) -> dict:
    """One configuration, one tower, in this process: warm up, run the trace, report."""
    import tempfile

    import hardware
    from hardware.inference import PADDLE_TEXT_LENGTH_MULTIPLE
    from paddle_mm.inference import Predictor

    hardware.tune_cpu_env()
    options = json.loads(args.worker)
    predictor = Predictor(
        args.export_dir, threads=args.threads, batch_size=args.max_batch, cache_dir=tempfile.mkdtemp(), **options
    )
    rng = np.random.default_rng(1)
    pad = predictor.pad_id
    if args.tower == "image":
        pixels = predictor.sample_feeds("image", batch=args.max_batch + 3)["pixel_values"]

        def call(rows: int, length: int) -> None:
            predictor.encode_pixels(pixels[:rows])
    else:
        vocab = predictor.tokenizer.vocab_size

        def call(rows: int, length: int) -> None:
            ids = np.full((rows, CONTEXT), pad, dtype=np.int64)
            ids[:, :length] = rng.integers(pad + 1000, vocab, (rows, length))  # past the special tokens
            predictor.encode_ids(ids)

    call(args.max_batch, CONTEXT)  # the server's warm-up: builds (and for auto chooses) the runtime
    extra = []  # a first run at a new shape (never in the trace: more rows than max-batch) vs the next
    for rows in range(args.max_batch + 1, args.max_batch + 4):
        first = time.perf_counter()
        call(rows, 12)
        again = time.perf_counter()
        call(rows, 12)
        extra.append((again - first) - (time.perf_counter() - again))
    shapes = trace(args.calls, args.max_batch)
    base_kb = vm_kb("VmRSS")
    times = []
    t_all = time.perf_counter()
    for rows, length in shapes:
        t0 = time.perf_counter()
        call(rows, length)
        times.append((time.perf_counter() - t0) * 1e3)
    total_s = time.perf_counter() - t_all
    rss_after_kb, step = vm_kb("VmRSS"), PADDLE_TEXT_LENGTH_MULTIPLE
    choice = predictor.choices.get(args.tower)
    return {
        "total_s": total_s,
        "rows_per_s": sum(r for r, _ in shapes) / total_s,
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": max(times),
        "new_shapes": len({(r, -(-n // step)) if args.tower == "text" else r for r, n in shapes}),
        "grew_mb": (rss_after_kb - base_kb) / 1024,
        "first_run_extra_ms": float(np.median(extra)) * 1e3,
        "peak_mb": vm_kb("VmHWM") / 1024,
        "backend": choice.backend if choice else options["backend"],
    }


def run_config(args: argparse.Namespace, tower: str, options: dict) -> dict | str:
    cmd = [
        sys.executable, __file__, "--export-dir", args.export_dir, "--tower", tower, "--calls", str(args.calls),
        "--max-batch", str(args.max_batch), "--threads", str(args.threads), "--worker", json.dumps(options),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [x for x in done.stdout.splitlines() if x.startswith("@@")]
    if done.returncode or not lines:
        return (done.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads(lines[-1][2:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export-dir", required=True)
    p.add_argument("--towers", nargs="+", choices=["image", "text"], default=["image", "text"])
    p.add_argument("--tower", choices=["image", "text"], help=argparse.SUPPRESS)
    p.add_argument("--calls", type=int, default=48)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.worker:
        print("@@" + json.dumps(worker(args)), flush=True)
        return

    from hardware.cpu import cpu_has_bf16, cpuinfo_field

    configs = {k: v for k, v in CONFIGS.items() if v["precision"] != "bf16" or cpu_has_bf16()}
    print(
        f"CPU {cpuinfo_field('model name')}, {args.threads} threads; {args.calls} calls per tower of "
        f"1..{args.max_batch} rows (texts of 4..{CONTEXT} tokens); {args.repeats} repeats, the order reversed each time"
    )
    results: dict = {}
    for tower in args.towers:
        for r in range(args.repeats):
            for name in list(configs)[:: -1 if r % 2 else 1]:
                got = run_config(args, tower, configs[name])
                results.setdefault(tower, {}).setdefault(name, []).append(got)
                said = got if isinstance(got, str) else f"{got['total_s']:.2f} s"
                print(f"[mixed] {tower} {name}: {said}", flush=True)
    table = {}
    print(
        "| tower | configuration | backend | trace s | rows/s | p50 ms | p99 ms | max ms | grew MB "
        "| new shape, extra ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tower, rows in results.items():
        for name, runs in rows.items():
            ok = [x for x in runs if isinstance(x, dict)]
            if not ok:
                print(f"| {tower} | {name} | failed: {runs[0]} |")
                continue
            med = {k: float(np.median([x[k] for x in ok])) for k in ok[0] if k != "backend"}
            backends = sorted({x["backend"] for x in ok})
            table.setdefault(tower, {})[name] = {**med, "backends": backends, "runs": ok}
            print(
                f"| {tower} | {name} | {'/'.join(backends)} | {med['total_s']:.2f} | {med['rows_per_s']:.1f} | "
                f"{med['p50_ms']:.1f} | {med['p99_ms']:.1f} | {med['max_ms']:.1f} | "
                f"{med['grew_mb']:.0f} | {med['first_run_extra_ms']:.0f} |"
            )
    for tower, rows in table.items():
        print(f"{tower}: {next(iter(rows.values()))['new_shapes']:.0f} distinct shapes in the trace")
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
