"""Accuracy of every precision against fp32 on a trained model: feature cosine and retrieval MR on real data.

    python benchmarks/bench_precision.py --model-dir output/quickstart/run-*/CN-CLIP-Tiny/best_model \
        --data data/shapes [--split valid] [--calib 64] [--work-dir output/precision] [--out precision.json]

Exports the checkpoint (fp32 + dynamic INT8, as tools/export_model.py does) into ``--work-dir``, writes each
tower's static (QDQ, per-channel) INT8 graph calibrated on ``--calib`` training images and captions
(:func:`paddle_mm.export.quantize.quantize_static_int8`), then encodes the ``--split`` split with

- ``fp32``: the ONNX Runtime fp32 graphs (the reference),
- ``bf16``: the fp32 graphs in Paddle Inference with oneDNN's BF16 kernels (``precision='bf16'``; skipped on a
  CPU without AVX512_BF16 or AMX),
- ``int8 dynamic``: the exported ``<tower>.int8.onnx`` (``precision='int8'``),
- ``int8 static``: the calibrated QDQ graphs,

and prints per precision the lowest and mean feature cosine to fp32 per tower and the split's MR (mean of
text-to-image and image-to-text R@1/5/10, x100) with its change from fp32. The bounds of issue 14:
BF16 cosine >= 0.999 and |MR change| <= 0.5, INT8 |MR change| <= 1. Speed is tools/benchmark.py's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BATCH = 8
BOUNDS = {"bf16": (0.999, 0.5), "int8 dynamic": (None, 1.0), "int8 static": (None, 1.0)}  # (cosine, |MR change|)


def encode(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """L2-normalized features of ``x`` through ``run``, in batches of BATCH."""
    out = np.concatenate([run(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def split_inputs(corpus, transform, tokenizer, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Pixels of every readable image, ids of every text, and each text's correct image columns (the first
    ``limit`` images and texts only, when given: a calibration set)."""
    from paddle_mm.data.datasets import load_pixels

    ids, pixels = [], []
    for image_id in list(corpus.images)[:limit]:
        value, _ = load_pixels(corpus, transform, image_id)
        if value is not None:
            ids.append(image_id)
            pixels.append(value)
    column = {image_id: c for c, image_id in enumerate(ids)}
    positives = [{column[i] for i in t.image_ids if i in column} for t in corpus.texts[:limit]]
    texts = corpus.texts[:limit]
    return np.stack(pixels), tokenizer.encode_batch([t.text for t in texts]), positives


def export(model_dir: Path, work: Path) -> Path:
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.models import load_model
    from paddle_mm.vision.transforms import ImageTransform

    out = work / "export"
    if not (out / "inference.yml").is_file():
        model = load_model(model_dir)
        model.eval()
        size = model.config.image_resolution
        options = ExportOptions(graphs=("image", "text"), verify_batches=(1, 2))
        export_model(model, out, ImageTransform(size), model_dir.name, options, log=lambda _m: None)
    return out


def static_int8(export_dir: Path, work: Path, calib_pixels: np.ndarray, calib_ids: np.ndarray) -> dict[str, Path]:
    from paddle_mm.export.quantize import quantize_static_int8
    from paddle_mm.inference import read_inference_yml

    info, files = read_inference_yml(export_dir), {}
    for tower, name, x in (("image", "pixel_values", calib_pixels), ("text", "input_ids", calib_ids)):
        files[tower] = work / "static_int8" / f"{tower}.int8_static.onnx"
        if not files[tower].is_file():
            files[tower].parent.mkdir(parents=True, exist_ok=True)
            feeds = [{name: x[i : i + BATCH]} for i in range(0, len(x), BATCH)]
            quantize_static_int8(info.files(tower, "onnxruntime", "fp32")[0], files[tower], feeds)
    return files


def runners(export_dir: Path, static: dict[str, Path], threads: int) -> dict[str, dict[str, Callable]]:
    """precision -> tower -> a function from a batch to raw features."""
    from hardware import DEFAULT_DEVICE, DeviceSpec
    from hardware.cpu import cpu_has_bf16
    from paddle_mm.inference import Predictor
    from paddle_mm.inference.backends import OnnxRuntimeBackend

    def of(predictor) -> dict[str, Callable]:
        image, text = predictor.runner("image"), predictor.runner("text")
        return {"image": lambda x: image.run({"pixel_values": x})[0], "text": lambda x: text.run({"input_ids": x})[0]}

    out = {"fp32": of(Predictor(export_dir, backend="onnxruntime", threads=threads))}
    if cpu_has_bf16():
        out["bf16"] = of(Predictor(export_dir, backend="paddle_inference", precision="bf16", threads=threads))
    out["int8 dynamic"] = of(Predictor(export_dir, backend="onnxruntime", precision="int8", threads=threads))
    device = DeviceSpec(DEFAULT_DEVICE)
    s_image = OnnxRuntimeBackend([static["image"]], device, threads)
    s_text = OnnxRuntimeBackend([static["text"]], device, threads)
    out["int8 static"] = {
        "image": lambda x: s_image.run({"pixel_values": x})[0],
        "text": lambda x: s_text.run({"input_ids": x})[0],
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True, help="a trained checkpoint (or save_model) directory")
    p.add_argument("--data", required=True, help="dataset root with train and --split (e.g. data/shapes)")
    p.add_argument("--split", default="valid")
    p.add_argument("--calib", type=int, default=64, help="training images and captions to calibrate static INT8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default="output/precision")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import hardware

    hardware.tune_cpu_env()
    from paddle_mm.data.datasets import load_corpus
    from paddle_mm.inference import Predictor
    from paddle_mm.metrics import retrieval_metrics

    work = Path(args.work_dir)
    export_dir = export(Path(args.model_dir), work)
    ref = Predictor(export_dir, backend="onnxruntime", threads=args.threads)  # pre-processing from inference.yml
    calib_pixels, calib_ids, _ = split_inputs(load_corpus(args.data, "train"), ref.transform, ref.tokenizer, args.calib)
    static = static_int8(export_dir, work, calib_pixels, calib_ids)
    pixels, ids, positives = split_inputs(load_corpus(args.data, args.split), ref.transform, ref.tokenizer)
    results, feats = {}, {}
    for precision, run in runners(export_dir, static, args.threads).items():
        img, txt = encode(run["image"], pixels), encode(run["text"], ids)
        feats[precision] = (img, txt)
        mr = retrieval_metrics(txt @ img.T, positives)["MR"]
        results[precision] = {"MR": mr}
        if precision != "fp32":
            for tower, a, b in (("image", img, feats["fp32"][0]), ("text", txt, feats["fp32"][1])):
                c = (a * b).sum(-1)
                results[precision][f"{tower}_cosine_min"] = float(c.min())
                results[precision][f"{tower}_cosine_mean"] = float(c.mean())
            results[precision]["MR_change"] = mr - results["fp32"]["MR"]
    print(f"{args.split} split of {args.data}: {len(pixels)} images, {len(ids)} texts; static INT8 calibrated on "
          f"{min(args.calib, len(calib_pixels))} training images and captions")  # fmt: skip
    print("| precision | image cosine min / mean | text cosine min / mean | MR | MR change | within bound |")
    print("|---|---|---|---|---|---|")
    for precision, r in results.items():
        if precision == "fp32":
            print(f"| fp32 (reference) | 1 | 1 | {r['MR']:.2f} | - | - |")
            continue
        cos_bound, mr_bound = BOUNDS[precision]
        ok = abs(r["MR_change"]) <= mr_bound and (
            cos_bound is None or min(r["image_cosine_min"], r["text_cosine_min"]) >= cos_bound
        )
        image = f"{r['image_cosine_min']:.5f} / {r['image_cosine_mean']:.5f}"
        text = f"{r['text_cosine_min']:.5f} / {r['text_cosine_mean']:.5f}"
        print(f"| {precision} | {image} | {text} | {r['MR']:.2f} | {r['MR_change']:+.2f} | {'yes' if ok else 'NO'} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
