"""Inference speed of the image and text towers, side by side in one run: cn_clip PyTorch eager, paddle_mm eager,
Paddle Inference fp32 / BF16, ONNX Runtime fp32 and INT8 (dynamic and static) at several batches.

    python tools/benchmark.py [--model ViT-B-16] [--batches 1 8] [--threads 2] [--out benchmark.json]

The harness is benchmarks/bench_inference.py (``--help`` lists every option); see docs/performance.md.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    harness = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_inference.py"
    sys.argv[0] = str(harness)
    runpy.run_path(str(harness), run_name="__main__")
