"""INT8 towers: ONNX Runtime dynamic quantization of the cleaned ONNX export, and static (QDQ) quantization
calibrated on real inputs (:func:`quantize_static_int8`) to set beside it.

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
from typing import Any, Iterable

import numpy as np

INT8_OPS = ("MatMul", "Attention", "Gather")
STATIC_INT8_OPS = ("MatMul", "Gather")  # QDQ has no quantized Attention: a fused graph keeps its QKV projection fp32


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


def quantize_static_int8(
    fp32_file: str | Path,
    int8_file: str | Path,
    calibration: Iterable[dict[str, np.ndarray]],
    per_channel: bool = True,
    method: str = "MinMax",
    external_data: bool = False,
) -> dict[str, Any]:
    """Write the static (QDQ) INT8 version of ``fp32_file``, its activation ranges calibrated on ``calibration``
    (feeds by input name: pre-processed training images or tokenized captions); return what was done.

    Weights are signed 8-bit with one scale per output channel (``per_channel``), activations unsigned 8-bit
    with fixed scales, so no range is computed at run time (what dynamic INT8 pays on every call). Only
    MatMuls with a constant weight are quantized (``MatMulConstBOnly``): attention scores and mixing stay fp32.
    ``method``: ONNX Runtime's ``CalibrationMethod`` name (``MinMax``, ``Entropy``, ``Percentile``).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    feeds = list(calibration)
    if not feeds:
        raise ValueError("static INT8 needs calibration inputs: pass a few batches of training images or captions")
    if method not in CalibrationMethod.__members__:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {list(CalibrationMethod.__members__)}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            str(fp32_file),
            str(int8_file),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_INT8_OPS),
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[method],
            use_external_data_format=external_data,
            extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True, "ActivationSymmetric": False},
        )
    finally:
        root.setLevel(level)
    fp32_bytes, int8_bytes = Path(fp32_file).stat().st_size, Path(int8_file).stat().st_size
    return {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "ops": list(STATIC_INT8_OPS),
        "weight_type": "QInt8",
        "activation_type": "QUInt8",
        "per_channel": per_channel,
        "calibration": {"method": method, "batches": len(feeds)},
        "fp32_bytes": fp32_bytes,
        "int8_bytes": int8_bytes,
        "size_ratio": round(int8_bytes / fp32_bytes, 4),
    }
