"""INT8 towers: ONNX Runtime dynamic quantization of the cleaned ONNX export.

Why this path (measured on Paddle 3.3.1 / onnxruntime 1.32, see docs/export.md):

- ``paddle.quantization.PTQ`` wraps Embedding layers and fails unless restricted to Linear; its converted
  model then fails ``jit.save`` with a dynamic batch and, with a fixed batch, fails to run in Paddle
  Inference with ``enable_mkldnn_int8()``. PaddleSlim does not support Paddle 3.3.
- ONNX Runtime *dynamic* quantization needs no calibration data (activation ranges are computed per batch
  at run time, so there is no calibration set to choose or to drift from), keeps a dynamic batch, and runs
  MatMulInteger kernels that are the fastest option measured on this CPU.

Weights of MatMul (all transformer projections), Attention (the packed q/k/v projection of the fused graph,
see :mod:`.ort_fusion`; it becomes ``QAttention``, whose weights ONNX Runtime quantizes to 7 bits) and Gather
(the token embedding table: most of a small text tower's bytes) become signed 8-bit with one scale per tensor;
per-channel scales were measured less accurate on these graphs (lower feature cosine to fp32), so they are off.
The patch-embedding Conv stays fp32: ``ConvInteger`` was measured slower than the fp32 Conv on AVX2 CPUs
(58 vs 23 ms per batch of 8 at 224 px) for 1.8 MB of weights (docs/performance.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

INT8_OPS = ("MatMul", "Attention", "Gather")


def quantize_int8(fp32_file: str | Path, int8_file: str | Path, external_data: bool = False) -> dict[str, Any]:
    """Write the dynamic-INT8 version of ``fp32_file`` to ``int8_file``; return what was done, with sizes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns to run its shape pre-processing, which it does not need here
    try:
        quantize_dynamic(
            str(fp32_file),
            str(int8_file),
            op_types_to_quantize=list(INT8_OPS),
            per_channel=False,
            weight_type=QuantType.QInt8,
            use_external_data_format=external_data,
        )
    finally:
        root.setLevel(level)
    fp32_bytes, int8_bytes = Path(fp32_file).stat().st_size, Path(int8_file).stat().st_size
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "ops": list(INT8_OPS),
        "weight_type": "QInt8",
        "per_channel": False,
        "fp32_bytes": fp32_bytes,
        "int8_bytes": int8_bytes,
        "size_ratio": round(int8_bytes / fp32_bytes, 4),
    }
