"""Run an exported model (tools/export_model.py) on Paddle Inference or ONNX Runtime, no training code needed:

    python tools/predict.py --model_dir ./inference --image a.jpg b.png --text 一只猫 一只狗 [--backend auto]
    python tools/predict.py --model_dir ./inference --precision int8 --eval_root data/shapes --eval_split valid
    # a signed package of an export, verified before anything is loaded (docs/model_package.md):
    python tools/predict.py --package /opt/models/cn-clip --trust signer.pub --package_model cn-clip-vit-b-16 \
        --image a.jpg --text 一只猫
    # the export of a fusion model (docs/fusion.md): VQA answers, class labels or match probabilities
    python tools/predict.py --model ./inference_vqa --image x.png --question "图中有几个图形？"

With images and texts: cosine similarity of every image to every text, best text first; for a fusion export,
every question (--question or --text) asked of every image: a VQA model's answer and its probability, a
classifier's class, or a matching model's probability that the text describes the image. With --eval_root:
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
from _errors import EXIT_CONFIG, EXIT_DATA, EXIT_MODEL, exit_on, exit_on_predictor_error, fail, writable_output

import hardware
from paddle_mm.inference import BACKEND_CHOICES, ExportDirError, ModelSource, Predictor, open_predictor
from paddle_mm.inference.pairs import auto_lines, pair_lines, score_pairs
from paddle_mm.inference.source import verified_line
from paddle_mm.vision.transforms import split_readable


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", "--model", dest="model_dir", help="export directory holding inference.yml")
    source.add_argument("--package", help="SM-signed package of an export directory (tools/package.py)")
    p.add_argument("--trust", nargs="+", default=[], help="--package: the signers' public keys / certificates")
    p.add_argument("--package_model", help="--package: the model name it must be signed for")
    p.add_argument("--package_state", help="--package: rollback state file (default: the package tool's)")
    p.add_argument("--decrypt_key", help="--package: recipient private key PEM of an encrypted package")
    p.add_argument("--decrypt_passphrase_env", help="environment variable holding --decrypt_key's passphrase")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8", "bf16", "auto"))
    p.add_argument(
        "--device",
        default=hardware.DEFAULT_DEVICE,
        help=f"{hardware.device_choices()} (default {hardware.DEFAULT_DEVICE})",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--image", nargs="*", default=[], help="image files")
    p.add_argument("--text", nargs="*", default=[], help="texts")
    p.add_argument("--question", nargs="*", default=[], help="questions for a VQA export (as --text)")
    p.add_argument("--eval_root", help="data directory to evaluate retrieval on (Chinese-CLIP TSV/JSONL or folder)")
    p.add_argument("--eval_split", default="valid")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def build_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor for --model_dir, or for --package once verified (exit codes: tools/_errors)."""
    if args.package and not (args.trust and args.package_model):
        fail(EXIT_CONFIG, "--package needs --trust <signer.pub ...> and --package_model <name>")
    source = ModelSource(
        args.model_dir,
        args.package,
        args.trust,
        args.package_model,
        args.package_state,
        args.decrypt_key,
        args.decrypt_passphrase_env,
    )
    options = {"backend": args.backend, "precision": args.precision, "device": args.device}
    options.update(threads=args.threads, batch_size=args.batch_size)
    with exit_on_predictor_error(
        f"--model_dir {args.model_dir}" if args.model_dir else f"--package {args.package}", "--device"
    ):
        return open_predictor(source, **options)


def main() -> None:
    args = parse_args()
    if not (args.image and (args.text or args.question)) and not args.eval_root:
        fail(EXIT_CONFIG, "nothing to do: pass --image ... and --text ... (or --question ...), or --eval_root DIR")
    if args.text and args.question:
        fail(EXIT_CONFIG, "--text and --question: pass one of them (a fusion export reads either as its texts)")
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
        print(verified_line(predictor))
    else:
        result["model_dir"] = args.model_dir
    if predictor.is_fusion and args.eval_root:
        fail(EXIT_CONFIG, "--eval_root evaluates retrieval exports; evaluate a fusion checkpoint with tools/eval.py")
    if args.question and not predictor.is_fusion:
        fail(
            EXIT_CONFIG, f"--question: {args.model_dir or args.package} is a CLIP export, which ranks texts: use --text"
        )
    if args.image and (args.text or args.question):
        images, skipped = split_readable(args.image)
        for line in skipped:
            print(f"skipped: {line}", file=sys.stderr)
        result["skipped_images"] = skipped
        rows = score_pairs(predictor, images, args.question or args.text)
        result["fusion" if predictor.is_fusion else "ranking"] = rows
        print("\n".join(pair_lines(rows)))
        if skipped:
            print(f"skipped {len(skipped)} of {len(args.image)} images (unreadable; listed above)")
    if args.eval_root:
        from paddle_mm.data.datasets import load_corpus
        from paddle_mm.inference.evaluate import evaluate_split
        from paddle_mm.metrics import retrieval_report

        with exit_on(EXIT_DATA, FileNotFoundError, ValueError):
            corpus = load_corpus(args.eval_root, args.eval_split)
        m = evaluate_split(predictor, corpus)
        result["eval"] = {"root": args.eval_root, "split": args.eval_split, **m}
        print("\n".join(retrieval_report(m)))
    result["auto"] = {g: vars(c) for g, c in predictor.choices.items()}
    for line in auto_lines(predictor):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
