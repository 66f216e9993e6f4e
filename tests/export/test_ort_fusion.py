"""The attention fusion pass: one Attention per layer, same outputs as the unfused graph, INT8 still quantizes."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.export import graph_specs
from paddle_mm.export.exporter import save_paddle
from paddle_mm.export.onnx_export import paddle_to_onnx
from paddle_mm.export.ort_fusion import fuse_attention
from paddle_mm.export.quantize import quantize_int8
from paddle_mm.export.verify import eager_outputs, verification_feeds
from tests.conftest import TINY_ARCH, TINY_NAME

LAYERS = 2  # two blocks per tower, so "one Attention per layer" is not "one Attention"


@pytest.fixture(scope="module")
def two_layer_graphs(tmp_path_factory):
    """{graph: (eager layer, spec, unfused ModelProto, fused ModelProto, fusion report)} for image, text, clip."""
    import paddle

    from paddle_mm.models import create_model

    paddle.seed(5)
    model = create_model(TINY_NAME, **{**TINY_ARCH, "vision_layers": LAYERS, "text_num_hidden_layers": LAYERS})
    model.eval()
    out = tmp_path_factory.mktemp("fusion")
    graphs = {}
    for name, spec in graph_specs(32, 32).items():
        save_paddle(model, spec, out)
        files = out / f"{name}.json", out / f"{name}.pdiparams"
        plain, _ = paddle_to_onnx(*files, spec, fuse=False)
        fused, report = paddle_to_onnx(*files, spec)
        graphs[name] = (spec.layer(model), spec, plain, fused, report)
    return graphs


def session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("graph, blocks", [("image", LAYERS), ("text", LAYERS), ("clip", 2 * LAYERS)])
def test_every_attention_block_is_fused(two_layer_graphs, graph, blocks):
    *_, plain, fused, report = two_layer_graphs[graph]
    assert report.fused == blocks and report.skipped == []
    assert op_counts(fused).get("Attention") == blocks
    assert "Softmax" not in op_counts(fused) and op_counts(plain)["Softmax"] == blocks
    # the point: far fewer nodes to run (each block's projections, splits, head reshapes, products, softmax -> one)
    assert len(plain.graph.node) - len(fused.graph.node) >= 12 * blocks


@pytest.mark.parametrize("graph", ["image", "text", "clip"])
def test_fused_graph_matches_unfused_and_eager_at_batch_1_3_8(two_layer_graphs, graph):
    layer, spec, plain, fused, _ = two_layer_graphs[graph]
    plain_run, fused_run = session(plain), session(fused)
    for batch in (1, 3, 8):
        feeds = verification_feeds(spec, batch, 32, 21128, 52, 0, seed=7)  # texts of different lengths, padded
        if "input_ids" in feeds and batch > 1:  # batch 1 is trimmed to its own length
            assert (feeds["input_ids"] == 0).any(), "the text check must include padding"
        eager = eager_outputs(layer, spec, feeds)
        for got, want, ref in zip(fused_run.run(None, feeds), plain_run.run(None, feeds), eager):
            scale = max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("tower", ["image", "text"])
def test_int8_of_the_fused_graph_uses_qattention(two_layer_graphs, tower, tmp_path):
    import onnx
    import onnxruntime as ort

    layer, spec, _, fused, _ = two_layer_graphs[tower]
    onnx.save(fused, str(tmp_path / "fp32.onnx"))
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    int8 = onnx.load(str(tmp_path / "int8.onnx"))
    assert op_counts(int8).get("QAttention") == LAYERS
    assert "ConvInteger" not in op_counts(int8)  # the patch embedding stays fp32 (faster on AVX2)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "int8.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = op_counts(onnx.load(str(tmp_path / "optimized.onnx")))
    assert optimized.get("QAttention") == LAYERS and optimized.get("DynamicQuantizeMatMul", 0) >= 3 * LAYERS
    feeds = verification_feeds(spec, 3, 32, 21128, 52, 0, seed=7)
    got, want = session(int8).run(None, feeds)[0], eager_outputs(layer, spec, feeds)[0]
    cosine = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    assert cosine.min() >= 0.99


def test_a_block_that_does_not_match_stays_unfused_and_the_graph_still_agrees(two_layer_graphs):
    import copy

    _, spec, plain, _, _ = two_layer_graphs["text"]
    odd = copy.deepcopy(plain)
    first = next(n for n in odd.graph.node if n.op_type == "Softmax")
    first.attribute[0].i = 2  # softmax over queries: not an attention this pass knows
    partly = copy.deepcopy(odd)
    report = fuse_attention(partly)
    assert report.fused == LAYERS - 1 and len(report.skipped) == 1 and "last axis" in report.skipped[0]
    feeds = verification_feeds(spec, 3, 32, 21128, 52, 0, seed=7)
    np.testing.assert_allclose(session(partly).run(None, feeds)[0], session(odd).run(None, feeds)[0], atol=1e-5)


def test_a_softmax_outside_attention_is_left_alone_and_counted():
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "g", [x], [y]))
    before = model.SerializeToString()
    report = fuse_attention(model)
    assert report.fused == 0 and len(report.skipped) == 1 and "y" in report.skipped[0]
    assert model.SerializeToString() == before
    onnx.checker.check_model(model)
