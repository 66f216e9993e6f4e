"""Precisions beside fp32 on the tiny export: BF16 through oneDNN, static (QDQ) INT8 next to dynamic INT8."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.inference import Predictor

TEXTS = ["左上角有一个红色的圆形", "图中有两个蓝色的三角形", "右下角有一个大的绿色正方形", "一只猫", "黄色"]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_bf16_is_the_fp32_graph_in_onednn_bf16_and_close_to_it(export_dir, tmp_path):
    from hardware.cpu import cpu_has_bf16

    if not cpu_has_bf16():
        with pytest.raises(ValueError, match="precision bf16 needs a CPU with one of"):
            Predictor(export_dir, precision="bf16", cache_dir=tmp_path)
        return
    fp32 = Predictor(export_dir, backend="paddle_inference", threads=1, cache_dir=tmp_path)
    bf16 = Predictor(export_dir, backend="auto", precision="bf16", threads=1, cache_dir=tmp_path)
    pixels = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    for a, b in (
        (fp32.encode_pixels(pixels), bf16.encode_pixels(pixels)),
        (fp32.encode_texts(TEXTS), bf16.encode_texts(TEXTS)),
    ):
        c = cosine(a, b)
        assert c.min() > 0.99 and np.abs(a - b).max() > 1e-6  # close, and not the fp32 kernels run again
    assert bf16.choices["image"].backend == "paddle_inference" and set(bf16.choices["image"].timings_ms) <= {
        "paddle_inference"
    }


def test_bf16_is_refused_where_it_cannot_run(export_dir, tmp_path):
    with pytest.raises(ValueError, match="precision 'bf16' runs on \\['paddle_inference'\\], not 'onnxruntime'"):
        Predictor(export_dir, backend="onnxruntime", precision="bf16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of"):
        Predictor(export_dir, precision="fp16", cache_dir=tmp_path)


@pytest.mark.parametrize("graph, name", [("image", "pixel_values"), ("text", "input_ids")])
def test_static_int8_is_calibrated_per_channel_qdq_and_close_to_fp32(export_dir, tmp_path, graph, name):
    import onnx
    from onnx import numpy_helper

    from hardware import DEFAULT_DEVICE, DeviceSpec
    from paddle_mm.export.quantize import quantize_static_int8
    from paddle_mm.inference import read_inference_yml
    from paddle_mm.inference.backends import OnnxRuntimeBackend

    predictor = Predictor(export_dir, backend="onnxruntime", threads=1, cache_dir=tmp_path)
    rng = np.random.default_rng(1)
    if graph == "image":
        calib = [rng.standard_normal((4, 3, 32, 32)).astype(np.float32) for _ in range(2)]
        test = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    else:
        calib = [predictor.tokenizer.encode_batch(TEXTS[:3]), predictor.tokenizer.encode_batch(TEXTS[3:])]
        test = predictor.tokenizer.encode_batch(TEXTS)
    fp32_file = read_inference_yml(export_dir).files(graph, "onnxruntime", "fp32")[0]
    out = tmp_path / f"{graph}.int8_static.onnx"
    done = quantize_static_int8(fp32_file, out, [{name: x} for x in calib])
    assert done["format"] == "QDQ" and done["per_channel"] and done["calibration"]["batches"] == 2

    model = onnx.load(str(out))
    inits = {i.name: i for i in model.graph.initializer}
    weight_scales = [
        numpy_helper.to_array(inits[n.input[1]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert weight_scales and any(s.ndim == 1 and s.size > 1 for s in weight_scales)  # one scale per channel
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # activations quantized with fixed ranges

    ref = OnnxRuntimeBackend([fp32_file], DeviceSpec(DEFAULT_DEVICE), 1).run({name: test})[0]
    q = OnnxRuntimeBackend([out], DeviceSpec(DEFAULT_DEVICE), 1).run({name: test})[0]
    assert cosine(ref, q).min() > 0.98 and np.abs(ref - q).max() > 1e-6


def test_static_int8_without_calibration_data_is_refused(export_dir, tmp_path):
    from paddle_mm.export.quantize import quantize_static_int8
    from paddle_mm.inference import read_inference_yml

    fp32_file = read_inference_yml(export_dir).files("text", "onnxruntime", "fp32")[0]
    with pytest.raises(ValueError, match="static INT8 needs calibration inputs"):
        quantize_static_int8(fp32_file, tmp_path / "x.onnx", [])
