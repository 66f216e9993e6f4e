"""Export: files, inference.yml, parity of every graph on every backend at batch 1, 3 and 8, self-verification."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hardware import DeviceSpec
from paddle_mm.export import ExportVerificationError, graph_specs
from paddle_mm.export.verify import check_against_eager, eager_outputs, verification_feeds
from paddle_mm.inference.backends import build_backend
from paddle_mm.inference.model_dir import ExportDirError, read_inference_yml, write_inference_yml

BATCHES = (1, 3, 8)


def test_export_writes_every_graph_and_variant(export_dir):
    info = read_inference_yml(export_dir)
    assert sorted(info.graphs) == ["clip", "image", "text"]
    for name in ("image", "text"):
        assert sorted(info.graph(name).variants()) == [
            ("onnxruntime", "fp32"),
            ("onnxruntime", "int8"),
            ("paddle_inference", "fp32"),
        ]
    assert info.graph("clip").variants() == [("paddle_inference", "fp32"), ("onnxruntime", "fp32")]
    assert (export_dir / "image.json").is_file() and (export_dir / "image.pdiparams").is_file()
    assert info.graph("clip").output_names() == ["image_features", "text_features", "logits_per_image"]


@pytest.mark.parametrize("graph", ["image", "text", "clip"])
@pytest.mark.parametrize("backend", ["paddle_inference", "onnxruntime"])
def test_fp32_parity_with_eager_at_batch_1_3_8(export_dir, tiny_model, graph, backend):
    info = read_inference_yml(export_dir)
    spec = graph_specs(32, 32)[graph]
    runner = build_backend(backend, info.files(graph, backend, "fp32"), DeviceSpec("cpu"), threads=1)
    layer = spec.layer(tiny_model)
    for batch in BATCHES:
        feeds = verification_feeds(spec, batch, 32, 21128, 52, 0, seed=123)  # not the export's own seed
        outs, eager = runner.run(feeds), eager_outputs(layer, spec, feeds)
        assert [o.shape for o in outs] == [e.shape for e in eager]
        assert outs[0].shape[0] == batch
        for out, ref in zip(outs, eager):
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


def test_export_records_its_own_verification(export_dir):
    results = read_inference_yml(export_dir).export["verification"]["results"]
    for graph, variants in results.items():
        for variant, by_batch in variants.items():
            assert sorted(by_batch) == list(BATCHES), (graph, variant)
            ok = (lambda v: v >= 0.99) if variant.endswith("int8") else (lambda v: v <= 1e-4)
            assert all(ok(v) for v in by_batch.values()), (graph, variant, by_batch)


def test_verification_catches_a_graph_that_differs_from_the_model(export_dir, tiny_model):
    import paddle

    info = read_inference_yml(export_dir)
    specs = graph_specs(32, 32)
    proj = tiny_model.visual.proj
    original = proj.numpy().copy()
    try:
        proj.set_value(original * 1.01)  # the exported image graph no longer matches the model
        with pytest.raises(ExportVerificationError, match="image paddle_inference/fp32 batch 1"):
            check_against_eager(tiny_model, info, specs, (1,), 1e-4, 0.99, DeviceSpec("cpu"), threads=1)
    finally:
        proj.set_value(paddle.to_tensor(original))


def test_onnx_weights_are_initializers_so_int8_quantizes(export_dir):
    import onnx

    fp32 = onnx.load(str(export_dir / "image.onnx"))
    assert not [n for n in fp32.graph.node if n.op_type in ("Constant", "Identity")]
    assert [i.name for i in fp32.graph.input] == ["pixel_values"]
    assert fp32.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "image_batch"
    ops = {n.op_type for n in onnx.load(str(export_dir / "text.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops


def test_int8_towers_are_at_most_a_third_of_fp32_apart_from_the_fp32_conv(export_dir):
    import onnx
    from onnx import numpy_helper

    int8 = read_inference_yml(export_dir).export["int8"]
    for tower in ("image", "text"):
        fp32_size = (export_dir / f"{tower}.onnx").stat().st_size
        int8_size = (export_dir / f"{tower}.int8.onnx").stat().st_size
        graph = onnx.load(str(export_dir / f"{tower}.int8.onnx")).graph
        weights = {t.name: t for t in graph.initializer}
        conv = sum(numpy_helper.to_array(weights[n.input[1]]).nbytes for n in graph.node if n.op_type == "Conv")
        assert int8_size <= (fp32_size - conv) / 3 + conv, (tower, int8_size, fp32_size, conv)
        assert int8[tower]["int8_bytes"] == int8_size


def test_inference_yml_round_trip(export_dir, tmp_path):
    info = read_inference_yml(export_dir)
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    info.directory = copy
    write_inference_yml(info)
    again = read_inference_yml(copy)
    assert again.to_dict() == info.to_dict()
    assert again.preprocess["image"]["size"] == 32 and again.preprocess["text"]["context_length"] == 52


def test_inference_yml_errors_name_the_problem(export_dir, tmp_path):
    with pytest.raises(ExportDirError, match="inference.yml not found"):
        read_inference_yml(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    (copy / "text.int8.onnx").unlink()
    with pytest.raises(ExportDirError, match=r"missing: \['text.int8.onnx'\]"):
        read_inference_yml(copy)
    text = (export_dir / "inference.yml").read_text(encoding="utf-8").replace("PreProcess:", "Preprocess:")
    (copy / "inference.yml").write_text(text, encoding="utf-8")
    with pytest.raises(ExportDirError, match="did you mean 'PreProcess'"):
        read_inference_yml(copy)
