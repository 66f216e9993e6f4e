"""Chinese-CLIP's model-side training flags: ``--use-flash-attention`` (``Arch.attention: sdpa``), ``--use-bn-sync``
(``Global.sync_bn``, :func:`sync_batch_norm`) and ``--clip-weight-path`` / ``--bert-weight-path``
(``Global.clip_weight_path`` / ``bert_weight_path``, :func:`init_towers`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import save_file

from paddle_mm.config import ConfigError
from paddle_mm.models import create_model
from paddle_mm.models.chinese_clip import BatchNorm
from paddle_mm.models.conversion.names import paddle_to_cn_clip
from paddle_mm.models.sync_bn import SyncedBatchNorm2D, sync_batch_norm
from paddle_mm.models.tower_init import init_towers
from tests.conftest import SMALL, SMALL_RESNET
from tests.models.test_conversion import _pickle_state, _torch_zip

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("sync_bn_worker.py")


def _inputs(n: int = 3, size: int = 32) -> tuple[paddle.Tensor, paddle.Tensor]:
    rng = np.random.default_rng(0)
    ids = rng.integers(200, 5000, (n, 12))
    ids[:, 0], ids[:, -1] = 101, 102
    ids[1:, 7:] = 0  # padded rows: the key mask matters
    return paddle.to_tensor(rng.standard_normal((n, 3, size, size)).astype("float32")), paddle.to_tensor(ids)


def _pair(**arch) -> tuple[paddle.nn.Layer, paddle.nn.Layer]:
    """The same weights built twice: eager attention and sdpa."""
    paddle.seed(11)
    eager = create_model("CN-CLIP-Tiny", **SMALL, **arch)
    sdpa = create_model("CN-CLIP-Tiny", **SMALL, **arch, attention="sdpa")
    sdpa.set_state_dict(eager.state_dict())
    return eager, sdpa


# ----------------------------------------------------------------------------- attention


def test_sdpa_attention_equals_eager_outputs_and_gradients():
    eager, sdpa = _pair(text_hidden_dropout_prob=0.0, text_attention_probs_dropout_prob=0.0)
    assert (
        all(block.attn.sdpa for block in sdpa.visual.transformer.resblocks)
        and sdpa.bert.encoder.layer[0].attention.self.sdpa
    )
    pixels, ids = _inputs()
    for model in (eager, sdpa):
        model.eval()
    with paddle.no_grad():
        a, b = eager(pixels, ids), sdpa(pixels, ids)
    for key in ("image_features", "text_features", "logits_per_image"):
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), atol=1e-5, rtol=0, err_msg=key)
    # training mode (dropout 0): the same gradients reach every parameter
    grads = []
    for model in (eager, sdpa):
        model.train()
        out = model(pixels, ids)
        (out["logits_per_image"].sum() + out["text_features"].sum()).backward()
        grads.append({n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, err_msg=name)


def test_sdpa_attention_masks_padding():
    """A padded key must not be attended: changing the ids behind the padding leaves the text feature alone."""
    _, sdpa = _pair()
    sdpa.eval()
    _, ids = _inputs()
    other = ids.numpy().copy()
    other[1, 7:] = 999  # the same tokens, but attended now
    with paddle.no_grad():
        base = sdpa.encode_text(ids, ids != 0).numpy()
        masked = sdpa.encode_text(paddle.to_tensor(other), ids != 0).numpy()  # the old mask hides the change
        open_ = sdpa.encode_text(paddle.to_tensor(other)).numpy()
    np.testing.assert_allclose(masked[1], base[1], atol=1e-5)
    assert np.abs(open_[1] - base[1]).max() > 1e-3


def test_sdpa_model_exports_and_matches_its_export(tmp_path):
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.vision.transforms import ImageTransform

    _, sdpa = _pair()
    opts = ExportOptions(graphs=("image", "text"), onnx=False, int8=False, verify_batches=(2,), threads=1)
    info = export_model(sdpa, tmp_path / "export", ImageTransform(32), "CN-CLIP-Tiny", opts, log=lambda _m: None)
    # export_model checks each graph against the sdpa model's own outputs (atol 1e-4) and raises when they differ
    assert info.directory == tmp_path / "export"
    for graph in ("image", "text"):
        assert (tmp_path / "export" / f"{graph}.json").is_file() and (
            tmp_path / "export" / f"{graph}.pdiparams"
        ).is_file()


def test_attention_is_validated():
    with pytest.raises(ValueError, match=r"attention 'flash' is not one of \['eager', 'sdpa'\]"):
        create_model("CN-CLIP-Tiny", **SMALL, attention="flash")
    from paddle_mm.config import load_config

    with pytest.raises(ConfigError, match=r"Arch.attention: 'flash' is not one of \['eager', 'sdpa'\]"):
        load_config(ROOT / "tests" / "configs" / "tiny.yml", ["Arch.attention=flash"])


# ----------------------------------------------------------------------------- synchronised batch norm


def test_sync_batch_norm_converts_ours_and_paddles():
    model = create_model("RN50", **SMALL_RESNET)
    ours = [layer for layer in model.sublayers() if isinstance(layer, BatchNorm)]
    assert ours and not any(layer.sync for layer in ours)
    model, n = sync_batch_norm(model)
    assert n == len(ours) and all(layer.sync for layer in ours)
    native = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    names = set(native.state_dict())
    native, n = sync_batch_norm(native)
    assert n == 1 and isinstance(native[1], SyncedBatchNorm2D) and set(native.state_dict()) == names
    with pytest.raises(ValueError, match=r"Global.sync_bn: layer '0' is a BatchNorm1D, which cannot be synced"):
        sync_batch_norm(paddle.nn.Sequential(paddle.nn.BatchNorm1D(4)))
    vit = create_model("CN-CLIP-Tiny", **SMALL)
    assert sync_batch_norm(vit) == (vit, 0)  # no batch norm: nothing to convert


def test_two_processes_with_sync_bn_equal_one_process_with_the_whole_batch(tmp_path):
    """Each of 2 gloo processes holds half the batch; with sync the outputs, gradients and running statistics
    equal one process holding all of it (and differ without sync)."""
    proc = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
         str(WORKER), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in sorted((tmp_path / "log").glob("*")) if p.is_file())
    assert proc.returncode == 0, proc.stderr[-2000:] + logs
    from tests.models.sync_bn_worker import reference

    ref = reference()
    for sync in (True, False):
        got = {k: np.concatenate([np.load(tmp_path / f"rank{r}_{sync}.npz")[k] for r in (0, 1)]) if k == "out"
               else np.load(tmp_path / f"rank0_{sync}.npz")[k] for k in ref}  # fmt: skip
        close = all(np.allclose(got[k], ref[k], atol=1e-5, rtol=1e-4) for k in ref)
        assert close == sync, {k: float(np.abs(got[k] - ref[k]).max()) for k in ref}


# ----------------------------------------------------------------------------- tower initialisation


def _source_and_target(resnet: bool = False):
    arch = SMALL_RESNET if resnet else SMALL
    paddle.seed(1)
    source = create_model("RN50" if resnet else "CN-CLIP-Tiny", **arch)
    with paddle.no_grad():
        source.logit_scale.set_value(paddle.to_tensor(4.6052))  # OpenAI's trained temperature
    paddle.seed(2)
    target = create_model("RN50" if resnet else "CN-CLIP-Tiny", **arch)
    return source, target


def _torch_layout(model, keep) -> dict[str, np.ndarray]:
    """``model``'s tensors named and laid out as cn_clip / OpenAI CLIP / Hugging Face BERT store them."""
    state = {k: v.numpy() for k, v in model.state_dict().items() if keep(k)}
    return paddle_to_cn_clip(state, prefix="")


def _write_torch_zip(path: Path, state: dict[str, np.ndarray]) -> Path:
    """A ``torch.save`` zip of float32 tensors, written without torch."""
    tensors, storages = {}, {}
    for i, (name, value) in enumerate(state.items()):
        value = np.ascontiguousarray(value, dtype="<f4")
        strides = tuple(int(s // 4) for s in value.strides) if value.ndim else ()
        tensors[name] = (("storage", "FloatStorage", str(i), "cpu", max(value.size, 1)), 0, value.shape, strides)
        storages[str(i)] = value.tobytes()
    return _torch_zip(path, _pickle_state(tensors), storages)


@pytest.mark.parametrize("resnet", [False, True], ids=["vit", "rn50"])
def test_towers_start_from_openai_clip_and_bert_files(resnet, tmp_path):
    source, target = _source_and_target(resnet)
    untouched = target.text_projection.numpy().copy()
    clip = _torch_layout(source, lambda k: k.startswith("visual.") or k == "logit_scale")
    # OpenAI CLIP's own text tower rides along in its state dict and must be skipped, as cn_clip skips it
    clip.update({"token_embedding.weight": np.ones((10, 4), "f4"), "ln_final.weight": np.ones(4, "f4")})
    save_file({f"module.{k}": v.copy(order="C") for k, v in clip.items()}, tmp_path / "clip.safetensors")
    bert = _torch_layout(source, lambda k: k.startswith("bert."))
    bert.update({"bert.pooler.dense.weight": np.ones((4, 4), "f4"), "cls.predictions.bias": np.ones(7, "f4")})
    _write_torch_zip(tmp_path / "pytorch_model.bin", bert)

    lines = init_towers(target, str(tmp_path / "clip.safetensors"), str(tmp_path / "pytorch_model.bin"))
    assert len(lines) == 2 and "Global.clip_weight_path" in lines[0]
    src, got = source.state_dict(), target.state_dict()
    loaded = [k for k in src if k.startswith(("visual.", "bert.")) or k == "logit_scale"]
    for key in loaded:
        np.testing.assert_array_equal(got[key].numpy(), src[key].numpy(), err_msg=key)
    np.testing.assert_array_equal(target.text_projection.numpy(), untouched)  # neither file holds it
    pixels, ids = _inputs()
    source.eval(), target.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(target.encode_image(pixels).numpy(), source.encode_image(pixels).numpy(), atol=1e-6)


def test_hugging_face_bert_names_without_prefix_and_gamma_beta(tmp_path):
    source, target = _source_and_target()
    bert = _torch_layout(source, lambda k: k.startswith("bert."))
    old_names = {"LayerNorm.weight": "LayerNorm.gamma", "LayerNorm.bias": "LayerNorm.beta"}
    hf = {}
    for key, value in bert.items():  # Hugging Face BertModel names (no "bert."), TF-era gamma / beta
        key = key.removeprefix("bert.")
        for new, old in old_names.items():
            key = key.replace(new, old)
        hf[key] = value
    save_file({k: v.copy(order="C") for k, v in hf.items()}, tmp_path / "model.safetensors")
    init_towers(target, None, str(tmp_path / "model.safetensors"))
    for key, value in source.state_dict().items():
        if key.startswith("bert."):
            np.testing.assert_array_equal(target.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_tower_files_that_do_not_fit_are_one_line_errors(tmp_path):
    source, target = _source_and_target()
    clip = _torch_layout(source, lambda k: k.startswith("visual."))
    wide = dict(clip, **{"visual.proj": np.ones((64, 48), "f4")})
    save_file(wide, tmp_path / "wide.safetensors")
    with pytest.raises(
        ConfigError, match=r"^Global.clip_weight_path: 'visual.proj' is \[64, 48\] in .* but \[64, 32\]"
    ):
        init_towers(target, str(tmp_path / "wide.safetensors"), None)
    short = {k: v for k, v in clip.items() if k != "visual.ln_post.bias"}
    save_file(short, tmp_path / "short.safetensors")
    with pytest.raises(ConfigError, match=r"lacks 1 tensor\(s\) of the tower, first 'visual.ln_post.bias'"):
        init_towers(target, str(tmp_path / "short.safetensors"), None)
    save_file({"visual.transformer.resblocks.5.ln_1.weight": np.ones(64, "f4"), **clip}, tmp_path / "deep.safetensors")
    with pytest.raises(
        ConfigError, match=r"'visual.transformer.resblocks.5.ln_1.weight' in .* is not a tensor of this"
    ):
        init_towers(target, str(tmp_path / "deep.safetensors"), None)
    save_file({"token_embedding.weight": np.ones((3, 4), "f4")}, tmp_path / "text_only.safetensors")
    with pytest.raises(ConfigError, match=r"holds no tensor of the expected names; it must be an OpenAI-CLIP"):
        init_towers(target, str(tmp_path / "text_only.safetensors"), None)
    flash = {"visual.transformer.resblocks.0.attn.Wqkv.weight": np.ones((4, 4), "f4")}  # cn_clip's flash layout
    save_file(flash, tmp_path / "flash.safetensors")
    with pytest.raises(ConfigError, match=r"clip_weight_path=.*: cannot convert weight 'visual.*Wqkv.weight'"):
        init_towers(target, str(tmp_path / "flash.safetensors"), None)
    with pytest.raises(ConfigError, match=r"^Global.bert_weight_path='nope.bin': no such file"):
        init_towers(target, None, "nope.bin")
