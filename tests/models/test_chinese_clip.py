"""paddle_mm's Chinese-CLIP against cn_clip (golden file), the weight converter, and a sweep over every named model.

The golden file comes from the reference implementation (``tools/dev/make_model_golden.py``, run with torch +
cn_clip); these tests import neither.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

import paddle_mm
from paddle_mm.models import get_model_config
from paddle_mm.models.chinese_clip import CLIP, BatchNorm, CLIPConfig, ModifiedResNet, VisualTransformer
from paddle_mm.models.conversion.names import DROPPED_KEYS, cn_clip_to_paddle, paddle_to_cn_clip
from tests.conftest import SMALL, SMALL_RESNET

GOLDEN = Path(__file__).parent / "golden" / "cn_clip_tiny.npz"
STATE_PREFIX = "state_dict/"
ATOL = 1e-4  # fp32, max abs difference; measured ~1e-6 on features and ~1e-5 on logits (scale 100)


# ----------------------------------------------------------------------------- golden file and model


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def cn_state(golden) -> dict[str, np.ndarray]:
    """cn_clip's state dict as in a released checkpoint's "state_dict" ("module." prefix, torch layout)."""
    return {k[len(STATE_PREFIX) :]: v for k, v in golden.items() if k.startswith(STATE_PREFIX)}


@pytest.fixture(scope="module")
def config(golden) -> CLIPConfig:
    return CLIPConfig.from_dict(json.loads(str(golden["config"])))


def _load(config: CLIPConfig, state: dict[str, np.ndarray]) -> CLIP:
    model = CLIP(config)
    missing, unexpected = model.set_state_dict(state)  # a shape mismatch is reported as missing
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    return model.eval()


@pytest.fixture(scope="module")
def model(config, cn_state) -> CLIP:
    return _load(config, cn_clip_to_paddle(cn_state))


def _outputs(model: CLIP, golden: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    pixel_values, input_ids = paddle.to_tensor(golden["pixel_values"]), paddle.to_tensor(golden["input_ids"])
    with paddle.no_grad():
        out = {k: v.numpy() for k, v in model(pixel_values, input_ids).items()}
        out["encode_image"] = model.encode_image(pixel_values).numpy()
        out["encode_text"] = model.encode_text(input_ids).numpy()
    return out


@pytest.fixture(scope="module")
def outputs(model, golden) -> dict[str, np.ndarray]:
    return _outputs(model, golden)


def test_golden_file_exercises_every_parameter(golden, cn_state, config):
    for key, value in cn_state.items():
        assert key.startswith("module."), key
        if key.endswith("bias"):
            assert np.abs(value).min() > 0, f"{key} has zeros: a loader that skips biases would pass"
        if ("ln_" in key or "LayerNorm" in key) and key.endswith("weight"):
            assert not np.allclose(value, 1.0), f"{key} is all ones: a loader that skips it would pass"
    ids = golden["input_ids"]
    assert ids.shape == (3, config.context_length) and ids.dtype == np.int64
    assert ids.max() < config.vocab_size and (ids[:, 0] == 101).all()
    lengths = (ids != config.pad_id).sum(axis=1)
    assert len(set(lengths.tolist())) == 3 and lengths.min() < config.context_length  # padding is tested
    assert golden["pixel_values"].shape == (3, 3, config.image_resolution, config.image_resolution)


@pytest.mark.parametrize("name", ["encode_image", "encode_text", "logits_per_image"])
def test_outputs_match_cn_clip(outputs, golden, name):
    diff = np.abs(outputs[name] - golden[name]).max()
    assert outputs[name].shape == golden[name].shape
    assert diff <= ATOL, f"{name}: max abs diff to cn_clip {diff:.3g} > {ATOL}"


def test_forward_dict_matches_cn_clip(outputs, golden):
    """forward's features are cn_clip's, normalized; logit_scale is exp(logit_scale) as in cn_clip's forward."""
    for ours, theirs in (("image_features", "encode_image"), ("text_features", "encode_text")):
        expected = golden[theirs] / np.linalg.norm(golden[theirs], axis=-1, keepdims=True)
        np.testing.assert_allclose(outputs[ours], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(outputs["logit_scale"], golden["logit_scale_exp"], rtol=1e-6)
    np.testing.assert_array_equal(outputs["logits_per_text"], outputs["logits_per_image"].T)


def test_golden_catches_an_untransposed_square_weight(config, cn_state, golden):
    """Square Linear weights load with either layout, so only the outputs can catch a missing transpose."""
    state = cn_clip_to_paddle(cn_state)
    key = "bert.encoder.layer.0.attention.self.value.weight"
    assert state[key].shape[0] == state[key].shape[1]
    state[key] = np.ascontiguousarray(state[key].T)
    diff = np.abs(_outputs(_load(config, state), golden)["encode_text"] - golden["encode_text"]).max()
    assert diff > 100 * ATOL


# ----------------------------------------------------------------------------- converter


def test_round_trip_is_identity(model, cn_state):
    ours = {k: v.numpy() for k, v in model.state_dict().items()}
    back = cn_clip_to_paddle(paddle_to_cn_clip(ours))
    assert back.keys() == ours.keys()
    for key, value in ours.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    # and the other way: paddle_to_cn_clip restores the checkpoint exactly (names, torch layout, values)
    theirs = paddle_to_cn_clip(cn_clip_to_paddle(cn_state))
    assert theirs.keys() == cn_state.keys()
    for key, value in cn_state.items():
        np.testing.assert_array_equal(theirs[key], value, err_msg=key)


def test_only_linear_weights_are_transposed(cn_state):
    ours = cn_clip_to_paddle(cn_state)
    transposed = {k for k, v in ours.items() if v.ndim == 2 and not np.array_equal(v, cn_state["module." + k])}
    linear_suffixes = ("in_proj_weight", "proj.weight", "c_fc.weight", "query.weight", "key.weight", "value.weight")
    linear = {k for k in ours if k.endswith((*linear_suffixes, "dense.weight"))}
    assert transposed == linear
    assert ours["visual.transformer.resblocks.0.attn.in_proj_weight"].shape == (64, 192)  # [d, 3d]
    assert ours["logit_scale"].shape == ()  # stays 0-d


def test_prefix_is_optional_and_configurable(cn_state):
    bare = {k[len("module.") :]: v for k, v in cn_state.items()}
    assert cn_clip_to_paddle(bare).keys() == cn_clip_to_paddle(cn_state).keys()
    assert set(paddle_to_cn_clip(cn_clip_to_paddle(bare), prefix="")) == set(bare)


def test_documented_keys_are_dropped(cn_state):
    extra = dict(cn_state)
    extra["module.bert.pooler.dense.weight"] = np.zeros((64, 64), np.float32)
    extra["module.bert.pooler.dense.bias"] = np.zeros(64, np.float32)
    extra["bert.embeddings.position_ids"] = np.arange(64)[None]
    assert cn_clip_to_paddle(extra).keys() == cn_clip_to_paddle(cn_state).keys()
    assert len(DROPPED_KEYS) == 2  # documenting a new dropped key means adding a case here


@pytest.mark.parametrize(
    "key, message",
    [
        ("module.visual.transformer.resblocks.0.attn.Wqkv.weight", "not a parameter of paddle_mm"),
        ("module.bert.encoder.layer.0.attention.self.Wqkv.weight", "not a parameter of paddle_mm"),
        ("module.visual.attnpool.Wqkv.weight", "not a parameter of paddle_mm"),
        ("module.visual.layer5.0.conv1.weight", "not a parameter of paddle_mm"),
        ("module.text_projection.weight", "not a parameter of paddle_mm"),
        ("optimizer", "not a parameter of paddle_mm"),
    ],
)
def test_unknown_key_raises_naming_it(cn_state, key, message):
    bad = {**cn_state, key: np.zeros((4, 4), np.float32)}
    with pytest.raises(KeyError, match=message) as err:
        cn_clip_to_paddle(bad)
    assert repr(key) in str(err.value)


def test_paddle_to_cn_clip_rejects_unknown_key(model):
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["bert.pooler.dense.weight"] = np.zeros((64, 64), np.float32)  # dropped on the way in, never made up
    with pytest.raises(KeyError, match="'bert.pooler.dense.weight'"):
        paddle_to_cn_clip(state)


def test_bad_linear_weight_rank_and_mixed_prefixes_raise(cn_state):
    key = "module.bert.encoder.layer.0.intermediate.dense.weight"
    with pytest.raises(ValueError, match=rf"{key}.*must be 2-D, got shape \[8192\]"):
        cn_clip_to_paddle({**cn_state, key: cn_state[key].reshape(-1)})
    with pytest.raises(KeyError, match="'module.logit_scale' and 'logit_scale' both map to 'logit_scale'"):
        cn_clip_to_paddle({**cn_state, "logit_scale": cn_state["module.logit_scale"]})


def test_convert_imports_neither_paddle_nor_torch():
    code = (
        "import sys, paddle_mm.models.conversion.names; bad = {'paddle', 'torch'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- sweep over every named model

OUTPUT_KEYS = {"image_features", "text_features", "logit_scale", "logits_per_image", "logits_per_text"}


class _ImageTower(paddle.nn.Layer):
    # paddle.jit.to_static needs forward's first argument to be named `self`
    def __init__(self, clip: CLIP):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        return self.clip.encode_image(pixel_values)


class _TextTower(paddle.nn.Layer):
    def __init__(self, clip: CLIP):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return self.clip.encode_text(input_ids)


def _random_inputs(cfg: CLIPConfig, batch: int, seed: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    rng = np.random.default_rng(seed)
    pixels = rng.standard_normal((batch, 3, cfg.image_resolution, cfg.image_resolution)).astype(np.float32)
    ids = np.full((batch, cfg.context_length), cfg.pad_id, dtype=np.int64)
    for row in range(batch):
        n = int(rng.integers(3, cfg.context_length + 1))  # tokens before padding, a different count per row
        words = rng.integers(0, cfg.vocab_size, n)
        ids[row, :n] = np.where(words == cfg.pad_id, (cfg.pad_id + 1) % cfg.vocab_size, words)
    return paddle.to_tensor(pixels), paddle.to_tensor(ids)


def _small(name: str, **extra) -> CLIP:
    paddle.seed(0)
    resnet = isinstance(get_model_config(name)["vision_layers"], list)
    model = paddle_mm.create_model(name, **{**(SMALL_RESNET if resnet else SMALL), **extra})
    for layer in model.sublayers():
        if isinstance(layer, BatchNorm):
            # cn_clip zero-inits each block's last BatchNorm scale, which zeroes every gradient before it at step 0;
            # a scale of 1 lets the sweep see each parameter's gradient.
            paddle.nn.initializer.Constant(1.0)(layer.weight)
    return model


@pytest.fixture(params=paddle_mm.list_models())
def small_model(request) -> CLIP:
    return _small(request.param)


def test_every_architecture_is_named():
    assert {"RN50", "ViT-B-16", "ViT-B-32", "ViT-L-14", "ViT-L-14-336", "ViT-H-14"} <= set(paddle_mm.list_models())
    assert isinstance(_small("RN50").visual, ModifiedResNet)
    assert isinstance(_small("ViT-H-14").visual, VisualTransformer)


def test_sweep_forward_backward(small_model):
    model = small_model
    model.train()
    pixels, ids = _random_inputs(model.config, batch=3, seed=0)
    out = model(pixels, ids)
    assert set(out) == OUTPUT_KEYS
    assert out["image_features"].shape == out["text_features"].shape == [3, model.config.embed_dim]
    assert out["logits_per_image"].shape == [3, 3] and out["logit_scale"].shape == []
    labels = paddle.arange(3)
    loss = paddle.nn.functional.cross_entropy(out["logits_per_image"], labels)
    loss = loss + paddle.nn.functional.cross_entropy(out["logits_per_text"], labels)
    loss.backward()
    bad = []
    for name, param in model.named_parameters():
        if param.stop_gradient:
            continue
        grad = None if param.grad is None else param.grad.numpy()
        if grad is None or not np.isfinite(grad).all() or not grad.any():
            bad.append(name)
    assert not bad, f"parameters without a finite non-zero gradient: {bad}"


def test_sweep_jit_save_load_dynamic_batch(small_model, tmp_path):
    from paddle.static import InputSpec

    model = small_model
    model.eval()
    cfg = model.config
    towers = {
        "image": (_ImageTower(model), InputSpec([None, 3, cfg.image_resolution, cfg.image_resolution], "float32")),
        "text": (_TextTower(model), InputSpec([None, cfg.context_length], "int64")),
    }
    for name, (tower, spec) in towers.items():
        paddle.jit.save(tower, str(tmp_path / name), input_spec=[spec])
        assert (tmp_path / f"{name}.pdiparams").is_file()
        loaded = paddle.jit.load(str(tmp_path / name))
        for batch in (1, 4):  # a batch size other than any traced one
            pixels, ids = _random_inputs(cfg, batch=batch, seed=batch)
            x = pixels if name == "image" else ids
            with paddle.no_grad():
                eager, static = tower(x).numpy(), loaded(x).numpy()
            assert static.shape == (batch, cfg.embed_dim)
            np.testing.assert_allclose(static, eager, rtol=0, atol=1e-5, err_msg=f"{name} tower, batch {batch}")


# ----------------------------------------------------------------------------- training switches


def _grads(model: CLIP, seed: int = 0) -> dict[str, np.ndarray]:
    pixels, ids = _random_inputs(model.config, batch=2, seed=seed)
    model.train()
    paddle.seed(seed)  # the same dropout masks in both runs
    out = model(pixels, ids)
    (out["logits_per_image"].sum() + out["text_features"].sum()).backward()
    return {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_checkpointing_gives_the_same_gradients():
    plain, checkpointed = _small("ViT-B-16"), _small("ViT-B-16", grad_checkpointing=True)
    checkpointed.set_state_dict(plain.state_dict())
    assert checkpointed.visual.transformer.grad_checkpointing and checkpointed.bert.encoder.grad_checkpointing
    expected, got = _grads(plain), _grads(checkpointed)
    assert expected.keys() == got.keys() and len(got) == len(list(plain.parameters()))
    for name, grad in expected.items():
        np.testing.assert_allclose(got[name], grad, rtol=1e-5, atol=1e-6, err_msg=name)


def test_mask_ratio_drops_patches_in_training_only():
    model = _small("ViT-B-16", mask_ratio=0.75, image_resolution=64)  # 16 patches: 4 kept
    reference = _small("ViT-B-16", image_resolution=64)
    reference.set_state_dict(model.state_dict())
    pixels, _ = _random_inputs(model.config, batch=2, seed=1)
    seen: list[list[int]] = []
    hook = model.visual.ln_pre.register_forward_post_hook(lambda layer, inp, out: seen.append(out.shape))
    model.eval(), reference.eval()
    with paddle.no_grad():
        np.testing.assert_array_equal(model.encode_image(pixels).numpy(), reference.encode_image(pixels).numpy())
        model.train()
        paddle.seed(1)
        first = model.encode_image(pixels).numpy()
        second = model.encode_image(pixels).numpy()
    hook.remove()
    assert seen == [[2, 17, 64], [2, 5, 64], [2, 5, 64]]  # class token + 16 patches, then + int(16 * 0.25)
    assert not np.allclose(first, second)  # a new random subset of patches each step


def test_masking_keeps_the_class_token_and_distinct_patches():
    from paddle_mm.models.chinese_clip import random_masking

    x = paddle.arange(2 * 11 * 3, dtype="float32").reshape([2, 11, 3])  # (B, 1 + 10 patches, D)
    out = random_masking(x, 0.5).numpy()
    assert out.shape == (2, 6, 3)
    np.testing.assert_array_equal(out[:, 0], x.numpy()[:, 0])
    for b in range(2):
        rows = {tuple(r) for r in out[b, 1:]}
        assert len(rows) == 5 and rows <= {tuple(r) for r in x.numpy()[b, 1:]}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"mask_ratio": 0.5}, "ViT image towers only"),
        ({"mask_ratio": 1.0, "vision_layers": 2, "vision_patch_size": 16}, r"mask_ratio 1.0 must be in \[0, 1\)"),
        ({"vision_layers": [3, 4, 6]}, "four positive block counts"),
        ({"image_resolution": 48}, "multiple of 32"),
        ({"vision_layers": 12}, "vision_patch_size is null"),
    ],
)
def test_bad_architecture_fields_raise(override, message):
    cfg = {**get_model_config("RN50"), **override}
    with pytest.raises(ValueError, match=message):
        CLIPConfig.from_dict(cfg)


def test_resnet_batchnorm_running_statistics_follow_torch():
    """Running variance uses the unbiased batch variance (torch), not Paddle's biased one."""
    bn = BatchNorm(2)
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    bn.train()
    for _ in range(2):
        bn(paddle.to_tensor(x))
    per_channel = x.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.19 * per_channel.mean(1), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.81 + 0.19 * per_channel.var(1, ddof=1), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 2
    bn.eval()
    before = bn.running_var.numpy().copy()
    bn(paddle.to_tensor(x))
    np.testing.assert_array_equal(bn.running_var.numpy(), before)
