"""Convert a paddle_mm model directory to GGUF for the C++ board runtime (hardware/runtime, pmm-run).

    python tools/export_gguf.py --model_dir output/quickstart/CN-CLIP-Tiny/best_model --out cn-clip-tiny.gguf

The directory is what save_model or training writes (model_config.json, model.safetensors, vocab.txt),
or an export directory copy holding those files plus inference.yml (its PreProcess.image is used).
Exit codes: 0 written, 2 bad arguments or an unsupported model, 3 unreadable model files.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_mm.export.gguf_export import convert_model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paddle_mm model directory -> GGUF for the board runtime")
    parser.add_argument("--model_dir", required=True, help="model_config.json + model.safetensors (+ vocab.txt)")
    parser.add_argument("--out", required=True, help="output .gguf file")
    args = parser.parse_args(argv)
    try:
        out = convert_model_dir(args.model_dir, args.out)
    except (FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
