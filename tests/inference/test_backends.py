"""Backends built from verified bytes: an ONNX graph with external weights still finds them by name."""

from __future__ import annotations

import numpy as np
import pytest

from hardware import parse_device
from paddle_mm.inference.backends import build_backend_from_memory


def test_onnx_with_external_weights_runs_from_sealed_memory(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.arange(12, dtype=np.float32).reshape(4, 3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    files = {name: (tmp_path / name).read_bytes() for name in ("m.onnx", "m.onnx.data")}
    (tmp_path / "m.onnx.data").unlink()  # only the bytes in memory can be used

    backend = build_backend_from_memory("onnxruntime", files, parse_device("cpu"), threads=1)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(backend.run({"x": x})[0], x @ weight)
