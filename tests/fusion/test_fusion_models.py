"""Every fusion: built from a validated config, forward, backward, jit.save + reload with identical outputs."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_mm.config import validate
from paddle_mm.config_schema import FUSION
from paddle_mm.losses import build_loss
from paddle_mm.models.fusion import FUSIONS, build_fusion_model, export_fusion_model, vit_tokens

TOWERS = {
    "name": "CN-CLIP-Tiny",
    "image_resolution": 32,
    "vision_patch_size": 8,
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
N_OUT = 7


def arch_from_config(fusion: dict) -> dict:
    """The Arch section after schema validation, as the trainer sees it."""
    raw = {
        "Global": {"epochs": 1, "task": "vqa"},
        "Arch": {**TOWERS, "fusion": fusion},
        "Loss": {"Train": [{"VQALoss": {}}]},
        "Optimizer": {"lr": {"learning_rate": 0.001}},
        "DataLoader": {"Train": {"dataset": {"name": "VQADataset", "root": "x"}, "sampler": {"batch_size": 2}}},
    }
    return validate(raw)["Arch"]


def inputs(batch: int = 3) -> tuple[paddle.Tensor, paddle.Tensor]:
    rng = np.random.default_rng(0)
    pixels = paddle.to_tensor(rng.standard_normal((batch, 3, 32, 32)).astype("float32"))
    ids = np.zeros((batch, max(9, 2 + 2 * batch)), dtype="int64")
    for b in range(batch):  # [CLS] question [SEP] then padding, lengths differ per row
        n = 4 + 2 * b
        ids[b, :n] = [101, *rng.integers(670, 7000, n - 2), 102]
    return pixels, paddle.to_tensor(ids)


def test_schema_lists_every_fusion():
    assert set(FUSION.fields["name"].choices) == set(FUSIONS)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_sweep(name, tmp_path):
    paddle.seed(0)
    model = build_fusion_model(arch_from_config({"name": name, "hidden": 32, "heads": 2, "layers": 2}), N_OUT)
    pixels, ids = inputs()
    out = model(pixels, ids)
    assert out["logits"].shape == [3, N_OUT]
    out["logits"].square().mean().backward()
    head_grads = [p.grad for p in model.fusion.parameters() if p.grad is not None]
    assert head_grads and any(float(g.abs().max()) > 0 for g in head_grads)
    tower_grads = {
        "image": [p.grad for p in model.clip.visual.parameters() if p.grad is not None],
        "text": [p.grad for p in model.clip.bert.parameters() if p.grad is not None],
    }
    assert bool(tower_grads["image"]) == (name != "text_only")  # a baseline's other tower gets no gradient
    assert bool(tower_grads["text"]) == (name != "image_only")

    model.eval()
    expected = model(pixels, ids)["logits"].numpy()
    names = export_fusion_model(model, str(tmp_path / name))
    loaded = paddle.jit.load(str(tmp_path / name))
    feed = {"pixel_values": pixels, "input_ids": ids}
    got = loaded(*[feed[n] for n in names])
    got = got[0] if isinstance(got, (list, tuple)) else got
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    # a different batch size and text length through the same graph
    p2, i2 = inputs(batch=2)
    feed2 = {"pixel_values": p2, "input_ids": i2[:, :7]}
    got2 = loaded(*[feed2[n] for n in names])
    got2 = got2[0] if isinstance(got2, (list, tuple)) else got2
    np.testing.assert_allclose(got2.numpy(), model(p2, i2[:, :7])["logits"].numpy(), rtol=1e-5, atol=1e-5)


def test_attention_weights_are_per_sample_distributions():
    model = build_fusion_model(arch_from_config({"name": "attention", "hidden": 32}), N_OUT)
    model.eval()
    w = model(*inputs())["modality_weights"].numpy()
    np.testing.assert_array_equal(w, np.full((3, 2), 0.5, np.float32))  # the gate starts at equal weights
    last = model.fusion.gate[-1]
    last.weight.set_value(paddle.normal(0.0, 1.0, last.weight.shape))  # as after some training
    w = model(*inputs())["modality_weights"].numpy()
    assert w.shape == (3, 2)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    assert np.abs(w[0] - w[1]).max() > 1e-3  # weights depend on the sample


def test_filip_similarity_is_mean_of_token_maxima():
    model = build_fusion_model(arch_from_config({"name": "filip", "hidden": 32}), N_OUT)
    model.eval()
    pixels, ids = inputs()
    f = model.features(pixels, ids)
    t = paddle.nn.functional.normalize(model.fusion.text_in(f["text_tokens"]), axis=-1).numpy()
    p = paddle.nn.functional.normalize(model.fusion.image_in(f["image_tokens"][:, 1:]), axis=-1).numpy()
    mask = f["text_mask"].numpy()
    for b in range(3):
        sim = t[b][mask[b]] @ p[b].T  # (real tokens, patches)
        assert float(model(pixels, ids)["token_similarity"][b]) == pytest.approx(sim.max(axis=1).mean(), abs=1e-5)


def test_vit_tokens_cls_matches_encode_image():
    model = build_fusion_model(arch_from_config({"name": "cross_attention", "hidden": 32, "heads": 2}), N_OUT)
    model.eval()
    pixels, _ = inputs()
    tokens = vit_tokens(model.clip.visual, pixels)
    assert tokens.shape == [3, 1 + 16, 32]
    np.testing.assert_allclose(
        paddle.matmul(tokens[:, 0], model.clip.visual.proj).numpy(),
        model.clip.encode_image(pixels).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("mode", ["frozen", "partial", "full"])
def test_tower_modes(mode):
    model = build_fusion_model(
        arch_from_config({"name": "concat", "towers": mode, "train_layers": 1} | {"hidden": 32}), N_OUT
    )
    trainable = {n for n, p in model.named_parameters() if not p.stop_gradient}
    tower = {n for n in trainable if n.startswith("clip.")}
    assert any(n.startswith("fusion.") for n in trainable)
    assert "clip.logit_scale" not in trainable
    if mode == "frozen":
        assert not tower
    elif mode == "partial":
        assert "clip.bert.encoder.layer.0.attention.self.query.weight" in tower
        assert "clip.visual.transformer.resblocks.0.attn.in_proj_weight" in tower
        assert "clip.visual.conv1.weight" not in tower and "clip.bert.embeddings.word_embeddings.weight" not in tower
    else:
        assert "clip.visual.conv1.weight" in tower and "clip.bert.embeddings.word_embeddings.weight" in tower


def test_bad_fusion_config_names_the_problem():
    with pytest.raises(KeyError, match="unknown fusion 'concatt'"):
        build_fusion_model({**TOWERS, "fusion": {"name": "concatt"}}, N_OUT)
    with pytest.raises(ValueError, match="ViT"):
        small_resnet = {"vision_layers": [1, 1, 1, 1], "vision_width": 8, "vision_head_width": 8, "embed_dim": 32}
        tiny_text = {
            "text_hidden_size": 32,
            "text_num_hidden_layers": 1,
            "text_intermediate_size": 64,
            "text_num_attention_heads": 2,
        }
        rn = {"name": "RN50", "image_resolution": 64, **small_resnet, **tiny_text}
        build_fusion_model({**rn, "fusion": {"name": "cross_attention"}}, N_OUT)


def test_matching_pairs_positives_with_in_batch_hard_negatives():
    model = build_fusion_model(arch_from_config({"name": "cross_attention", "hidden": 32, "heads": 2}), 1, True)
    model.eval()  # no dropout: the pair is scored again below
    pixels, ids = inputs(batch=4)
    ids = paddle.concat([ids[:3], ids[:1]])  # text 3 repeats text 0: never a negative for image 0 (or 3)
    out = model(pixels, ids)
    assert out["match_logits"].shape == [12] and out["logits"].shape == [4, 1]
    np.testing.assert_array_equal(out["match_labels"].numpy(), [1] * 4 + [0] * 8)
    sim = out["image_features"].numpy() @ out["text_features"].numpy().T
    same = (ids.numpy()[:, None, :] == ids.numpy()[None, :, :]).all(-1)
    sim[same] = -1e4
    pair = model.fusion(model.features(pixels[:1], ids[int(sim[0].argmax()) : int(sim[0].argmax()) + 1]))
    assert int(sim[0].argmax()) in (1, 2)
    # the first negative pair is image 0 with its hardest allowed text, scored by the same fusion
    assert float(out["match_logits"][4]) == pytest.approx(float(pair["logits"][0, 0]), abs=1e-5)
    losses = build_loss([{"ClipLoss": {}}, {"MatchingLoss": {}}])(out)
    losses["loss"].backward()
    assert model.clip.logit_scale.grad is not None
    with pytest.raises(ValueError, match="one modality"):
        build_fusion_model(arch_from_config({"name": "text_only"}), 1, True)


def test_cross_attention_image_positions(tmp_path):
    """image_positions adds one learned vector per image token to what the fusion reads: the logits change with it,
    it is saved and loaded, and a model_config.json written before the option loads without it."""
    from paddle_mm.models import load_model, save_model

    paddle.seed(0)
    fusion = {"name": "cross_attention", "hidden": 32, "heads": 2, "layers": 1, "image_positions": True}
    model = build_fusion_model(arch_from_config(fusion), N_OUT)
    model.eval()
    assert model.fusion.image_pos.shape == [1, 1 + (32 // 8) ** 2, 32]
    pixels, ids = inputs()
    before = model(pixels, ids)["logits"].numpy()
    model.fusion.image_pos.set_value(paddle.full_like(model.fusion.image_pos, 0.5))
    assert np.abs(model(pixels, ids)["logits"].numpy() - before).max() > 1e-4
    save_model(model, tmp_path / "pos")
    np.testing.assert_array_equal(load_model(tmp_path / "pos").fusion.image_pos.numpy(), model.fusion.image_pos.numpy())
    plain = build_fusion_model(arch_from_config({**fusion, "image_positions": False}), N_OUT)
    save_model(plain, tmp_path / "plain")
    path = tmp_path / "plain" / "model_config.json"
    raw = path.read_text(encoding="utf-8")
    path.write_text(raw.replace('"image_positions": false,', ""), encoding="utf-8")
    assert "image_positions" not in path.read_text(encoding="utf-8")
    assert load_model(tmp_path / "plain").fusion.image_pos is None
