"""Convert Chinese-CLIP weights into paddle_mm (or paddle_mm into PaddleNLP's layout). No torch needed.

    python tools/convert_weights.py clip_cn_vit-b-16.pt models/vit-b-16            # Chinese-CLIP / QA-CLIP .pt
    python tools/convert_weights.py paddlenlp_dir/ models/vit-b-16                  # PaddleNLP ChineseCLIPModel dir
    python tools/convert_weights.py ckpt.pt out/ --arch ViT-B-16                     # also check against a config
    python tools/convert_weights.py ckpt.pt out/ --set vision_head_width=32          # fields weights cannot tell
    python tools/convert_weights.py models/vit-b-16 nlp_dir/ --to paddlenlp          # for PaddleNLP users

The source format is detected. The ``.pt`` pickle is parsed with an allowlist of globals, never executed.
Then ``model = paddle_mm.load_model(DST)``. Errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from paddle_mm.models import list_models
from paddle_mm.models.conversion import CheckpointError, convert_checkpoint, export_paddlenlp


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. vision_head_width=80")
    try:
        return key, json.loads(value)  # numbers, null, [3, 4, 6, 3]
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help=".pt file, PaddleNLP directory, or (with --to paddlenlp) a model dir")
    parser.add_argument("dst", type=Path, help="output directory")
    parser.add_argument("--to", choices=("paddle_mm", "paddlenlp"), default="paddle_mm", help="output format")
    parser.add_argument("--arch", choices=list_models(), help="named architecture the weights must match")
    parser.add_argument("--set", type=_override, action="append", default=[], metavar="KEY=VALUE",
                        help="model config field to set (head widths, dropout); repeatable")  # fmt: skip
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.to == "paddlenlp":
            export_paddlenlp(args.src, args.dst)
            print(f"wrote PaddleNLP ChineseCLIPModel directory {args.dst} in {time.perf_counter() - start:.1f} s")
            return 0
        report = convert_checkpoint(args.src, args.dst, arch=args.arch, overrides=dict(args.set) or None)
    except (CheckpointError, FileNotFoundError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    print(
        f"converted {report['format']} checkpoint {args.src} ({report['architecture']}, {report['tensors']} tensors) "
        f"to {args.dst} in {time.perf_counter() - start:.1f} s; load it with paddle_mm.load_model({str(args.dst)!r})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
