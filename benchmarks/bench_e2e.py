"""End-to-end throughput from files and raw strings to normalized embeddings, next to the towers alone.

    python benchmarks/bench_e2e.py --export-dir output/benchmark/export [--batch 8] [--images 64] [--workers 1]
        [--backend auto] [--precision fp32] [--threads 2] [--rounds 3] [--single 30] [--out e2e.json]

Writes ``--images`` pictures of the built-in synthetic scenes (``paddle_mm.demo.shapes``) rendered at
``--image-size`` pixels, alternately JPEG and PNG, and as many of its Chinese captions. Then, in interleaved
rounds on one :class:`paddle_mm.inference.Predictor`:

- ``images e2e``: files -> decode, resize, normalize (Chinese-CLIP's transform) in a worker pool of
  ``--workers`` processes that prepares the next batches while the current one runs -> image tower ->
  L2-normalized features (:class:`paddle_mm.inference.pipeline.FeaturePipeline`); ``images tower``: the same
  batches already decoded, tower only;
- ``texts e2e``: raw strings -> tokenize in the pool -> text tower -> features; ``texts tower``: the same ids.

The table gives items/s of each and e2e as a fraction of tower-only (the cost of pre-processing that the
pool did not hide). Then batch-1 latency p50/p99 of ``--single`` requests of one file / one string each,
pre-processed in the caller (the serving case). Text rows drop all-padding columns as the Predictor does, so
the tower-only texts/s here is for real caption lengths, not the 52-token rows of tools/benchmark.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_inputs(out: Path, n: int, image_size: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` image files (JPEG and PNG alternately) of synthetic scenes and ``n`` captions of them."""
    import cv2

    from paddle_mm.demo.shapes import generate_scenes, make_texts, render_scene

    rng = np.random.default_rng(seed)
    scenes = generate_scenes(n, rng)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(scenes):
        path = out / f"{i}.{'jpg' if i % 2 == 0 else 'png'}"
        if not path.is_file():
            cv2.imwrite(str(path), cv2.cvtColor(render_scene(scene, image_size), cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    texts = [t.text for t in make_texts(scenes, rng)]
    return paths, (texts * (n // max(len(texts), 1) + 1))[:n]


def timed(fn: Callable[[], int]) -> float:
    """Items per second of one call of ``fn`` (which returns the number of items it processed)."""
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def latencies_ms(fn: Callable[[int], object], n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "n": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export-dir", required=True)
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=2, help="inference threads")
    p.add_argument("--workers", type=int, default=1, help="pre-processing processes")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--images", type=int, default=64, help="image files (and captions) per pass")
    p.add_argument("--image-size", type=int, default=480, help="side of the written images, pixels")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--single", type=int, default=30, help="batch-1 requests per tower for p50/p99")
    p.add_argument("--work-dir", default=None, help="where the input files go (default: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON of every figure")
    args = p.parse_args()

    import hardware

    hardware.tune_cpu_env()
    from paddle_mm.inference import Predictor
    from paddle_mm.inference.pipeline import FeaturePipeline

    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        paths, texts = write_inputs(Path(args.work_dir or tmp) / "inputs", args.images, args.image_size)
        predictor = Predictor(
            args.export_dir, backend=args.backend, precision=args.precision, threads=args.threads,
            batch_size=args.batch,
        )  # fmt: skip
        pixels = predictor.preprocess_images(paths)  # tower-only inputs, decoded once
        ids = predictor.tokenizer.encode_batch(texts)
        predictor.encode_pixels(pixels[: args.batch])  # build (auto: choose) and warm up both towers
        predictor.encode_ids(ids[: args.batch])
        rates: dict[str, list[float]] = {k: [] for k in ("images e2e", "images tower", "texts e2e", "texts tower")}
        load_start = os.getloadavg()[0]
        with FeaturePipeline(predictor, args.workers) as pipe:
            pipe.encode_texts(["warm"])  # the workers are started and imported before timing
            runs = {
                "images e2e": lambda: len(pipe.encode_image_files(paths)),
                "images tower": lambda: len(predictor.encode_pixels(pixels)),
                "texts e2e": lambda: len(pipe.encode_texts(texts)),
                "texts tower": lambda: len(predictor.encode_ids(ids)),
            }
            for r in range(args.rounds):  # interleaved, so a change in background load hits every row alike
                order = list(runs)[r % 4 :] + list(runs)[: r % 4]
                for name in order:
                    rates[name].append(timed(runs[name]))
        single = {
            "image": latencies_ms(lambda i: predictor.encode_images([paths[i % len(paths)]]), args.single),
            "text": latencies_ms(lambda i: predictor.encode_texts([texts[i % len(texts)]]), args.single),
        }
    med = {k: float(np.median(v)) for k, v in rates.items()}
    print(
        f"end to end, batch {args.batch}, {args.workers} pre-processing process(es), {args.threads} inference threads, "
        f"{args.images} items x {args.rounds} interleaved rounds; backend {args.backend} "
        f"({', '.join(f'{g}: {c.backend}' for g, c in predictor.choices.items()) or 'fixed'}), {args.precision}"
    )
    print("| tower | e2e items/s | tower-only items/s | e2e / tower | batch-1 p50 ms | batch-1 p99 ms |")
    print("|---|---|---|---|---|---|")
    for tower in ("image", "text"):
        e2e, alone = med[f"{tower}s e2e"], med[f"{tower}s tower"]
        s = single[tower]
        print(f"| {tower} | {e2e:.2f} | {alone:.2f} | {e2e / alone:.0%} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} |")
    print(f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end on {os.cpu_count()} CPUs")
    if args.out:
        report = {"args": vars(args), "rates": rates, "median_items_per_s": med, "batch1": single}
        report["choices"] = {g: c.backend for g, c in predictor.choices.items()}
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
