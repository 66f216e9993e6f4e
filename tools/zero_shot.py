"""Zero-shot classification on a dataset in Chinese-CLIP's folder format (``<data>/test/000/*.jpg`` + ``label_cn.txt``).

    python tools/zero_shot.py --model output/quickstart/CN-CLIP-Tiny/best_model --data data/shapes_zs
    python tools/zero_shot.py --model converted/vit-b-16 --data datasets/imagenet --templates openai

Prints top-1 / top-5 accuracy (%) and writes them as JSON (``--out``, default
``<output_dir>/zero_shot/<data folder name>_<split>.json`` with ``--output_dir`` ./output, as Global.output_dir:
never into the dataset, which may be read-only). Errors are one line; exit codes as in docs/export.md.
Class embeddings are cached under ``--cache-dir`` (default ~/.cache/paddle_mm/zero_shot), keyed by the
weights and the prompts' token ids. Templates: a shipped set (openai, imagenet, flower, food, ...) or a
.txt / .json file. Make a demo dataset with ``python tools/make_zeroshot_data.py --out data/shapes_zs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import _common  # noqa: F401  (sys.path for a source checkout, CPU tuning before paddle loads)
from _errors import EXIT_CONFIG, EXIT_DATA, exit_on, exit_on_device_error, exit_on_model_error, writable_output

import hardware

DEFAULT_CACHE = Path(os.environ.get("PADDLE_MM_CACHE", Path.home() / ".cache" / "paddle_mm")) / "zero_shot"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory (model_config.json + model.safetensors)")
    p.add_argument("--data", required=True, type=Path, help="dataset root holding label_cn.txt and <split>/")
    p.add_argument("--split", default="test", help="image folder under --data (default test)")
    p.add_argument("--label-file", default=None, help="class names file (default <data>/label_cn.txt)")
    p.add_argument("--templates", default="openai", help="shipped template set or a .txt/.json file (default openai)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--text-batch-size", type=int, default=256, help="prompts per batch (default 256)")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding workers (default 0)")
    p.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"class-embedding cache (default {DEFAULT_CACHE})"
    )
    p.add_argument("--no-cache", action="store_true", help="always recompute the class embeddings")
    p.add_argument(
        "--device",
        default=hardware.DEFAULT_DEVICE,
        help=f"{hardware.device_choices()} (default {hardware.DEFAULT_DEVICE})",
    )
    p.add_argument("--output_dir", type=Path, default=Path("./output"), help="where --out goes (default ./output)")
    p.add_argument(
        "--out", type=Path, default=None, help="result JSON (default <output_dir>/zero_shot/<data name>_<split>.json)"
    )
    args = p.parse_args(argv)
    for name in ("batch_size", "text_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from paddle_mm.data.zeroshot import load_templates, load_zero_shot_folder
    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.models import WEIGHTS_FILE, load_model
    from paddle_mm.zero_shot import zero_shot_evaluate

    default_out = args.output_dir / "zero_shot" / f"{args.data.resolve().name}_{args.split}.json"
    out = writable_output(args.out or default_out, "--out")
    with exit_on(EXIT_CONFIG, FileNotFoundError, KeyError, ValueError):
        templates = load_templates(args.templates)
    with exit_on(EXIT_DATA, FileNotFoundError, KeyError, ValueError):
        data = load_zero_shot_folder(args.data, args.split, args.label_file)
    with exit_on_device_error("--device"):
        hardware.resolve_device(args.device)
    with exit_on_model_error(f"--model {args.model}"):
        path = resolve_checkpoint(args.model)
        model = load_model(path)
    result = zero_shot_evaluate(
        model,
        data,
        templates,
        batch_size=args.batch_size,
        text_batch_size=args.text_batch_size,
        num_workers=args.num_workers,
        cache_dir=None if args.no_cache else args.cache_dir,
        weights_file=path / WEIGHTS_FILE,
        progress=True,
    )
    print(
        f"zero-shot {args.data} ({args.split}): top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}% "
        f"[{result['n_images']} images, {result['n_classes']} classes, {result['n_templates']} templates]"
    )
    if not result["skipped"].startswith("skipped 0 "):
        print(result["skipped"])
    record = {"checkpoint": str(path), "data": str(args.data), "split": args.split, "templates": args.templates}
    out.write_text(json.dumps({**record, **result}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
