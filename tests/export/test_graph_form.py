"""The exported Paddle graphs hold what oneDNN runs fast: no dropout, no shape arithmetic inside the blocks, and
the ViT's QuickGELU as one swish that oneDNN fuses into the projection before it.

Each `dropout` op (the identity in eval, still a copy out of oneDNN's layout when traced) and each reshape built
from the run-time batch and length (shape64 -> slice -> stack) kept the projection after it out of Paddle
Inference's fc / BF16 passes: the BERT output projections ran as fp32 matmuls inside a BF16 predictor
(docs/performance.md). Counted per block, as the difference between a one-block and a two-block model.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from tests.conftest import TINY_ARCH, TINY_NAME

NOT_IN_A_BLOCK = ("dropout", "shape64", "slice", "stack", "unbind")


def paddle_ops(path) -> Counter:
    """Count the operations (``pd_op`` names) of a PIR ``.json`` program."""
    counts: Counter = Counter()

    def walk(node):
        if isinstance(node, dict):
            name = node.get("#")
            if isinstance(name, str) and name.startswith("1."):  # "1.<op>": an operation; "0.*": types, attrs
                counts[name[2:]] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text(encoding="utf-8")))
    return counts


@pytest.fixture(scope="module")
def exported_ops(tmp_path_factory):
    """{(graph, layers): op counts} for models with 1 and 2 blocks per tower, dropout 0.1 as in training."""
    import paddle

    from paddle_mm.export.exporter import save_paddle
    from paddle_mm.export.graphs import graph_specs
    from paddle_mm.models import create_model

    found, dropouts, weights = {}, {}, {}
    for layers in (1, 2):
        paddle.seed(0)
        arch = {**TINY_ARCH, "vision_layers": layers, "text_num_hidden_layers": layers}
        arch.update(text_hidden_dropout_prob=0.1, text_attention_probs_dropout_prob=0.1)
        model = create_model(TINY_NAME, **arch)
        model.eval()
        out = tmp_path_factory.mktemp(f"form{layers}")
        before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        for name, spec in graph_specs(32, 32).items():
            save_paddle(model, spec, out)
            found[name, layers] = paddle_ops(out / f"{name}.json")
        dropouts[layers] = [d.p for d in model.sublayers() if isinstance(d, paddle.nn.Dropout)]
        weights[layers] = before, {k: v.numpy() for k, v in model.state_dict().items()}, model, out
    return found, dropouts, weights


@pytest.mark.parametrize("graph", ["image", "text", "clip"])
def test_a_block_exports_without_dropout_or_shape_arithmetic(exported_ops, graph):
    found, *_ = exported_ops
    one, two = found[graph, 1], found[graph, 2]
    block = two - one  # what one more block adds
    assert block["matmul"] >= 4 and block["softmax"] >= 1  # it is a transformer block
    assert {op: block[op] for op in NOT_IN_A_BLOCK if block[op]} == {}
    assert block["split_with_num"] == (0 if graph == "text" else 1)  # the image's packed q | k | v, split once
    assert two["dropout"] == 0


@pytest.mark.parametrize("graph", ["image", "clip"])
def test_quick_gelu_exports_as_one_swish_per_block(exported_ops, graph):
    found, *_ = exported_ops
    block = found[graph, 2] - found[graph, 1]
    assert block["swish"] == 1 and block["sigmoid"] == 0 and block["multiply"] == 0


def test_tracing_leaves_the_model_as_it_was(exported_ops):
    from paddle_mm.models.chinese_clip import QuickGELU, ResidualAttentionBlock

    _, dropouts, weights = exported_ops
    assert dropouts[1] and all(p == 0.1 for p in dropouts[1] + dropouts[2])
    before, after, model, _ = weights[2]
    assert before.keys() == after.keys()
    for name in before:  # bit for bit: the folded 1.702 is undone by restoring, not by dividing back
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    blocks = [b for b in model.sublayers() if isinstance(b, ResidualAttentionBlock)]
    assert blocks and all(isinstance(b.mlp.gelu, QuickGELU) for b in blocks)


def test_the_folded_graph_computes_what_the_model_does(exported_ops):
    """The swish form with folded weights, run by Paddle Inference, against the eager model (QuickGELU)."""
    from hardware import DEFAULT_DEVICE, DeviceSpec
    from paddle_mm.export.graphs import graph_specs
    from paddle_mm.export.verify import eager_outputs, verification_feeds
    from paddle_mm.inference.backends import build_backend

    *_, weights = exported_ops
    _, _, model, out = weights[2]
    spec = graph_specs(32, 32)["image"]
    feeds = verification_feeds(spec, 3, 32, 21128, 52, 0, seed=7)
    runtime = build_backend(
        "paddle_inference", [out / "image.json", out / "image.pdiparams"], DeviceSpec(DEFAULT_DEVICE)
    )
    got = runtime.run(feeds)[0]
    want = eager_outputs(spec.layer(model), spec, feeds)[0]
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_a_dropout_that_scales_in_eval_is_traced_as_it_is(tmp_path):
    """Only identity-in-eval dropouts are dropped: ``downscale_in_infer`` multiplies by 1 - p in eval."""
    import paddle

    from hardware import DEFAULT_DEVICE, DeviceSpec
    from paddle_mm.export.exporter import trace
    from paddle_mm.inference.backends import build_backend

    layer = paddle.nn.Sequential(paddle.nn.Dropout(0.25, mode="downscale_in_infer"), paddle.nn.Dropout(0.5))
    layer.eval()
    trace(layer, [paddle.static.InputSpec([None, 4], "float32", "x")], tmp_path / "g")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    got = build_backend("paddle_inference", [tmp_path / "g.json", tmp_path / "g.pdiparams"], DeviceSpec(DEFAULT_DEVICE))
    np.testing.assert_allclose(got.run({"x": x})[0], 0.75 * x, rtol=1e-6)
    assert paddle_ops(tmp_path / "g.json")["dropout"] == 1  # the scaling one stays; the identity one is gone
    assert [d.p for d in layer] == [0.25, 0.5]
