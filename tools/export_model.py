"""Export a trained model for deployment, verified against the eager model before success is reported:

    python tools/export_model.py -c configs/quickstart.yml -o Global.pretrained_model=output/<run>/best_model \
        -o Global.save_inference_dir=./inference [--graphs image text clip] [--no-int8] [--no-onnx] [--no-fuse]
    # a fusion checkpoint (Global.task vqa / classification / matching): its "fusion" graph (+ "image" "text")
    python tools/export_model.py -c configs/fusion/cross_attention_vqa.yml \
        -o Global.pretrained_model=output/fusion/cross_attention/CN-CLIP-Tiny/best_model \
        -o Global.save_inference_dir=./inference_vqa

Writes into save_inference_dir: <graph>.json + <graph>.pdiparams (Paddle inference), <graph>.onnx,
<graph>.int8.onnx for the towers and the fusion graph, vocab.txt and inference.yml with the SHA-256 of every
file (see docs/export.md). The graphs are a CLIP's image, text and clip by default, a fusion model's fusion.
Everything is written to a staged folder beside save_inference_dir that replaces it only once verified: exit
code 1 when the exported graphs disagree with the eager model, and the previous export (if any) is left as it was.
Other errors are one line with an exit code (docs/export.md, "Exit codes").
"""

import argparse

from _common import ConfigError, exit_on_config_error
from _errors import EXIT_CONFIG, EXIT_FAILED, EXIT_IO, exit_on_device_error, exit_on_model_error, fail

import hardware
from paddle_mm.config import add_config_args, flatten_overrides, load_config


def parse_args() -> tuple[dict, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument(
        "--graphs",
        nargs="+",
        choices=["image", "text", "clip", "fusion"],
        help="graphs to export (default: image text clip for a CLIP, fusion for a fusion model)",
    )
    parser.add_argument("--no-onnx", action="store_true", help="write Paddle inference graphs only (implies --no-int8)")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 towers and fusion graph")
    parser.add_argument(
        "--int8-min-cosine", type=float, default=0.99, help="lowest allowed feature cosine of an INT8 tower vs eager"
    )
    parser.add_argument(
        "--int8-max-prob-diff",
        type=float,
        default=0.05,
        help="largest allowed answer-probability difference of an INT8 fusion graph vs eager",
    )
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="keep attention as plain ONNX ops instead of ONNX Runtime's Attention (slower; for other runtimes)",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="allowed fp32 max abs diff vs eager (x output scale)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for verification (default: all)")
    args = parser.parse_args()
    with exit_on_config_error():
        cfg = load_config(args.config, flatten_overrides(args.override))
        if not cfg["Global"]["pretrained_model"]:
            raise ConfigError("Global.pretrained_model: missing; pass -o Global.pretrained_model=<run dir>/best_model")
    return cfg, args


def main() -> None:
    cfg, args = parse_args()
    g = cfg["Global"]
    if g["task"] == "inspection":  # issue 15: a CNN classifier + anomaly graph (paddle_mm/export/inspection.py)
        from paddle_mm.export.inspection import InspectionExportError, export_from_config

        try:
            info = export_from_config(cfg, int8=not (args.no_int8 or args.no_onnx))
        except InspectionExportError as err:
            fail(EXIT_FAILED, f"export failed verification (the previous export, if any, is unchanged): {err}")
        print(f"exported to {g['save_inference_dir']}: {info['Inspection']['verification']}")
        return
    dataset = (cfg["DataLoader"]["Eval"] or cfg["DataLoader"]["Train"])["dataset"]

    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.export import ExportOptions, ExportVerificationError, export_model
    from paddle_mm.inference import ExportDirError
    from paddle_mm.models import load_model
    from paddle_mm.vision.transforms import ImageTransform

    with exit_on_device_error("Global.device"):
        hardware.resolve_device(g["device"])  # the eager model is traced there; verification runs on the host
    with exit_on_model_error(f"Global.pretrained_model {g['pretrained_model']}"):
        model = load_model(resolve_checkpoint(g["pretrained_model"]))
    transform = ImageTransform(size=model.config.image_resolution, interpolation=dataset["interpolation"])
    options = ExportOptions(
        graphs=tuple(args.graphs) if args.graphs else None,
        onnx=not args.no_onnx,
        int8=not (args.no_int8 or args.no_onnx),
        atol=args.atol,
        int8_min_cosine=args.int8_min_cosine,
        int8_max_prob_diff=args.int8_max_prob_diff,
        threads=args.threads,
        fuse_attention=not args.no_fuse,
    )
    try:
        info = export_model(model, g["save_inference_dir"], transform, cfg["Arch"]["name"], options)
    except ExportVerificationError as err:
        fail(EXIT_FAILED, f"export failed verification (the previous export, if any, is unchanged): {err}")
    except (ExportDirError, OSError) as err:  # not a folder that may be replaced, or not writable
        fail(EXIT_IO, f"Global.save_inference_dir: {err}")
    except ValueError as err:  # --graphs names a graph this kind of model has not
        fail(EXIT_CONFIG, f"--graphs: {err}")
    int8_fusion = f"max {info.postprocess.get('fusion')} probability diff"
    for name, rows in info.export["verification"]["results"].items():
        for variant, by_batch in rows.items():
            what, fmt = ("max abs diff", ".3g")
            if variant.endswith("int8"):
                what, fmt = (int8_fusion, ".4f") if name == "fusion" else ("min cosine", ".5f")
            print(f"  {name:6s} {variant:22s} {what}: " + ", ".join(f"b{b} {v:{fmt}}" for b, v in by_batch.items()))
    for name, f in info.export.get("onnx_fusion", {}).items():
        print(
            f"  {name:6s} attention blocks fused into ONNX Runtime Attention: {f['attention_fused']}, "
            f"left unfused: {f['attention_skipped']}"
        )
    for name, q in info.export.get("int8", {}).items():
        mb = q["int8_bytes"] / 1e6, q["fp32_bytes"] / 1e6
        print(f"  {name:6s} INT8 size {mb[0]:.1f} MB = {q['size_ratio']:.2f} x fp32 {mb[1]:.1f} MB")
    print(f"exported and verified: {info.directory}/inference.yml")


if __name__ == "__main__":
    main()
