"""Run an exported model (tools/export_model.py) on Paddle Inference or ONNX Runtime, no training code needed:

    python tools/predict.py --model_dir ./inference --image a.jpg b.png --text 一只猫 一只狗 [--backend auto]
    python tools/predict.py --model_dir ./inference --precision int8 --eval_root data/shapes --eval_split valid
    # a signed package of an export, verified before anything is loaded (docs/model_package.md):
    python tools/predict.py --package /opt/models/cn-clip --trust signer.pub --package_model cn-clip-vit-b-16 \
        --image a.jpg --text 一只猫

With images and texts: cosine similarity of every image to every text, best text first. With --eval_root:
R@1/5/10 and mean recall (MR) on that split, the numbers tools/eval.py gives for the eager model.
--json writes everything printed, plus the backend auto chose and its measurements. An image that cannot be
read is skipped and counted (as training skips bad images); other errors are one line with an exit code
(docs/export.md, "Exit codes").
"""

import argparse
import json
import sys
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path; tunes the CPU before paddle can load)
from _errors import EXIT_CONFIG, EXIT_DATA, EXIT_MODEL, exit_on, exit_on_device_error, fail, writable_output

import hardware
from paddle_mm.inference import BACKEND_CHOICES, ExportDirError, Predictor
from paddle_mm.vision.transforms import split_readable


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="export directory holding inference.yml")
    source.add_argument("--package", help="SM-signed package of an export directory (tools/package.py)")
    p.add_argument("--trust", nargs="+", default=[], help="--package: the signers' public keys / certificates")
    p.add_argument("--package_model", help="--package: the model name it must be signed for")
    p.add_argument("--package_state", help="--package: rollback state file (default: the package tool's)")
    p.add_argument("--decrypt_key", help="--package: recipient private key PEM of an encrypted package")
    p.add_argument("--decrypt_passphrase_env", help="environment variable holding --decrypt_key's passphrase")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8", "bf16"))
    p.add_argument(
        "--device",
        default=hardware.DEFAULT_DEVICE,
        help=f"{hardware.device_choices()} (default {hardware.DEFAULT_DEVICE})",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--image", nargs="*", default=[], help="image files")
    p.add_argument("--text", nargs="*", default=[], help="texts")
    p.add_argument("--eval_root", help="data directory to evaluate retrieval on (Chinese-CLIP TSV/JSONL or folder)")
    p.add_argument("--eval_split", default="valid")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def rank(predictor: Predictor, images: list[str], texts: list[str]) -> list[dict]:
    sim = predictor.encode_images(images) @ predictor.encode_texts(texts).T  # (n_images, n_texts) cosine
    rows = []
    for path, scores in zip(images, sim):
        order = scores.argsort()[::-1]
        rows.append({"image": path, "texts": [{"text": texts[j], "cosine": float(scores[j])} for j in order]})
        print(f"\n{path}")
        for j in order:
            print(f"  {scores[j]:.4f}  {texts[j]}")
    return rows


def build_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor for --model_dir, or for --package once verified; a refused package exits with the
    package tool's code (10-14), any other error with 1."""
    from paddle_mm.package import PackageConfigError, PackageRefused

    options = {"backend": args.backend, "precision": args.precision, "device": args.device}
    options.update(threads=args.threads, batch_size=args.batch_size)
    try:
        with exit_on_device_error("--device"):
            if args.model_dir:
                return Predictor(args.model_dir, **options)
            if not (args.trust and args.package_model):
                fail(EXIT_CONFIG, "--package needs --trust <signer.pub ...> and --package_model <name>")
            return Predictor.from_package_files(
                args.package,
                args.trust,
                model=args.package_model,
                state_file=args.package_state,
                decrypt_key_file=args.decrypt_key,
                passphrase_env=args.decrypt_passphrase_env,
                **options,
            )
    except PackageRefused as err:
        print(f"REFUSED {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except PackageConfigError as err:
        fail(EXIT_CONFIG, err)
    except (ExportDirError, ValueError) as err:
        fail(EXIT_MODEL, err)


def main() -> None:
    args = parse_args()
    if not (args.image and args.text) and not args.eval_root:
        fail(EXIT_CONFIG, "nothing to do: pass --image ... and --text ..., or --eval_root DIR")
    if args.json:
        writable_output(Path(args.json), "--json")
    predictor = build_predictor(args)
    with exit_on(EXIT_MODEL, ExportDirError):  # a model file is checked (digest) when first used
        run(args, predictor)


def run(args: argparse.Namespace, predictor: Predictor) -> None:
    result: dict = {"backend": args.backend, "precision": args.precision}
    if args.package:
        m = predictor.manifest
        result["package"] = {"path": args.package, "model": m.model, "version": m.version, "sequence": m.sequence}
        print(f"verified package {m.model} {m.version} (sequence {m.sequence}, signer {m.key_id[:16]}...)")
    else:
        result["model_dir"] = args.model_dir
    if args.image and args.text:
        images, skipped = split_readable(args.image)
        for line in skipped:
            print(f"skipped: {line}", file=sys.stderr)
        result["skipped_images"] = skipped
        result["ranking"] = rank(predictor, images, args.text)
        if skipped:
            print(f"skipped {len(skipped)} of {len(args.image)} images (unreadable; listed above)")
    if args.eval_root:
        from paddle_mm.data.datasets import load_corpus
        from paddle_mm.inference.evaluate import evaluate_split

        with exit_on(EXIT_DATA, FileNotFoundError, ValueError):
            corpus = load_corpus(args.eval_root, args.eval_split)
        m = evaluate_split(predictor, corpus)
        result["eval"] = {"root": args.eval_root, "split": args.eval_split, **m}
        for name, key in (("text -> image", "t2i"), ("image -> text", "i2t")):
            print(
                f"{name}: "
                + ", ".join(f"R@{k}: {m[key][f'r{k}']:.2f}" for k in (1, 5, 10))
                + f", MR: {m[key]['mean_recall']:.2f}"
            )
        print(f"MR (both directions): {m['MR']:.2f}")
    result["auto"] = {g: vars(c) for g, c in predictor.choices.items()}
    for graph, choice in predictor.choices.items():
        timings = ", ".join(f"{k} {v:.1f} ms" for k, v in choice.timings_ms.items())
        print(f"[auto] {graph}: {choice.backend} ({'cached' if choice.cached else 'measured'}: {timings})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
