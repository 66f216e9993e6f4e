"""model_config.json names its model's kind: save_model / load_model round-trip CLIP and fusion models, and a
file written before the field existed still loads as a CLIP."""

from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from paddle_mm.models import create_model, load_model, read_model_config, save_model
from paddle_mm.models.fusion import FusionModel, build_fusion_model
from paddle_mm.tokenizer import UnifiedTokenizer

TOWERS = {
    "image_resolution": 32,
    "vision_patch_size": 16,
    "vision_layers": 1,
    "vision_width": 32,
    "vision_head_width": 16,
    "text_hidden_size": 32,
    "text_num_hidden_layers": 1,
    "text_intermediate_size": 64,
    "text_num_attention_heads": 2,
    "embed_dim": 32,
    "context_length": 16,
}
LABELS = ["是", "否", "红色"]


def inputs() -> tuple[paddle.Tensor, paddle.Tensor]:
    pixels = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32"))
    return pixels, paddle.to_tensor(np.array([[101, 700, 800, 102, 0], [101, 900, 102, 0, 0]], dtype="int64"))


def test_clip_round_trip_and_a_file_without_model_type(tmp_path):
    paddle.seed(1)
    model = create_model("CN-CLIP-Tiny", **TOWERS)
    model.eval()
    save_model(model, tmp_path)
    raw = json.loads((tmp_path / "model_config.json").read_text(encoding="utf-8"))
    assert raw["model_type"] == "clip" and raw["embed_dim"] == 32  # CLIP fields stay at the top level
    pixels, _ = inputs()
    expected = model.encode_image(pixels).numpy()
    del raw["model_type"]  # as every checkpoint written before the field existed
    (tmp_path / "model_config.json").write_text(json.dumps(raw), encoding="utf-8")
    assert read_model_config(tmp_path)["model_type"] == "clip"
    loaded = load_model(tmp_path)
    assert type(loaded).__name__ == "CLIP"
    np.testing.assert_array_equal(loaded.encode_image(pixels).numpy(), expected)


@pytest.mark.parametrize("matching", [False, True])
def test_fusion_round_trip(matching, tmp_path):
    paddle.seed(2)
    arch = {"name": "CN-CLIP-Tiny", **TOWERS, "fusion": {"name": "mfb", "hidden": 16, "factor": 3}}
    labels = None if matching else LABELS
    model = build_fusion_model(arch, 1 if matching else 3, matching=matching, labels=labels)
    model.eval()
    save_model(model, tmp_path)
    raw = json.loads((tmp_path / "model_config.json").read_text(encoding="utf-8"))
    assert raw["model_type"] == "fusion" and raw["clip"]["embed_dim"] == 32
    assert raw["fusion"] == {
        "name": "mfb",
        "hidden": 16,
        "dropout": 0.1,
        "layers": 2,
        "heads": 4,
        "image_positions": False,
        "factor": 3,
        "attend": True,
        "n_outputs": 1 if matching else 3,
        "matching": matching,
        "labels": labels,
    }
    loaded = load_model(tmp_path)
    assert isinstance(loaded, FusionModel) and loaded.labels == labels and loaded.matching == matching
    (tmp_path / "tokenizer_config.json").unlink()  # as a checkpoint older than it: the sizes come from the towers
    tokenizer = UnifiedTokenizer.from_pretrained(tmp_path)
    assert (tokenizer.image.size, tokenizer.text.context_length) == (32, 16)
    f = model.features(*inputs())
    np.testing.assert_array_equal(
        loaded.fusion(loaded.features(*inputs()))["logits"].numpy(), model.fusion(f)["logits"].numpy()
    )


def test_bad_model_configs_are_one_line_errors(tmp_path):
    model = build_fusion_model({"name": "CN-CLIP-Tiny", **TOWERS, "fusion": {"name": "concat"}}, 3, labels=LABELS)
    save_model(model, tmp_path)
    path = tmp_path / "model_config.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    for change, message in (
        ({"model_type": "gpt"}, "model_type 'gpt' is not one of"),
        ({"fusion": {**raw["fusion"], "name": "sum"}}, "unknown fusion 'sum'"),
        ({"fusion": {**raw["fusion"], "widht": 3}}, r"fusion keys \['widht'\]"),
        ({"fusion": {**raw["fusion"], "labels": ["a"]}}, "1 labels for a head of 3 outputs"),
    ):
        path.write_text(json.dumps({**raw, **change}), encoding="utf-8")
        with pytest.raises((KeyError, ValueError), match=message):
            load_model(tmp_path)
