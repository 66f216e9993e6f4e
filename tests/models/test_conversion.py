"""Checkpoint conversion: real cn_clip ``.pt`` files (torch.save, tools/dev/make_parity_golden.py) converted without
torch, checked against cn_clip's and PaddleNLP's outputs on the same weights (golden files); the restricted unpickler
against malicious and broken files; architecture inference; PaddleNLP layout round trips. No torch, no paddlenlp.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import paddle
import pytest

import paddle_mm
from paddle_mm.models import get_model_config, list_models
from paddle_mm.models.conversion import (
    CheckpointError,
    TorchCheckpoint,
    UnsafePickleError,
    convert_checkpoint,
    expected_shapes,
    export_paddlenlp,
    infer_config,
    load_pdparams,
    load_torch_state,
    read_paddlenlp,
    resolve_config,
)

ROOT = Path(__file__).resolve().parents[2]
PARITY = Path(__file__).parent / "golden" / "parity"
ARCHS = ["RN50", "ViT-B-16", "ViT-B-32", "ViT-L-14", "ViT-L-14-336", "ViT-H-14"]
VIT_ARCHS = [a for a in ARCHS if a != "RN50"]
ATOL = {"encode_image": 1e-4, "encode_text": 1e-4, "logits_per_image": 1e-3}  # logits are x100; see docs/models.md


def _golden(name: str) -> dict[str, np.ndarray]:
    with np.load(PARITY / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _overrides(golden: dict[str, np.ndarray]) -> dict:
    return json.loads(str(golden["overrides"]))


def _outputs(model, golden: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    pixels, ids = paddle.to_tensor(golden["pixel_values"]), paddle.to_tensor(golden["input_ids"])
    with paddle.no_grad():
        return {
            "encode_image": model.encode_image(pixels).numpy(),
            "encode_text": model.encode_text(ids).numpy(),
            "logits_per_image": model(pixel_values=pixels, input_ids=ids)["logits_per_image"].numpy(),
        }


@pytest.fixture(scope="module", params=ARCHS)
def converted(request, tmp_path_factory) -> tuple[str, Path, dict]:
    name = request.param
    golden = _golden(name)
    dst = tmp_path_factory.mktemp(name)
    report = convert_checkpoint(PARITY / f"{name}.pt", dst, overrides=_overrides(golden))
    return name, dst, report


# ----------------------------------------------------------------------------- parity through the real .pt path


def test_converted_checkpoint_matches_cn_clip(converted):
    name, dst, report = converted
    golden = _golden(name)
    assert report["format"] == "cn_clip"
    assert report["config"] == {**json.loads(str(golden["config"])), "context_length": 52, "pad_id": 0}
    outputs = _outputs(paddle_mm.load_model(dst), golden)
    for key, value in outputs.items():
        assert value.shape == golden[f"cn_clip/{key}"].shape
        diff = np.abs(value - golden[f"cn_clip/{key}"]).max()
        assert diff <= ATOL[key], f"{name} {key}: max abs diff to cn_clip {diff:.3g}"


@pytest.mark.parametrize("name", VIT_ARCHS)
def test_paddlenlp_export_matches_paddlenlp_golden(name, tmp_path):
    """PaddleNLP's ChineseCLIPModel ran on our export of these weights (golden from tools/dev/parity_table.py)."""
    golden = {**_golden(name), **dict(np.load(PARITY / f"{name}.paddlenlp.npz"))}
    model_dir = tmp_path / "model"
    convert_checkpoint(PARITY / f"{name}.pt", model_dir, overrides=_overrides(golden))
    export_paddlenlp(model_dir, tmp_path / "nlp")
    # the golden came from exactly this export: same tensors, bit for bit
    from safetensors.numpy import load_file

    exported = load_file(str(tmp_path / "nlp" / "model.safetensors"))
    assert sorted(exported) == json.loads(str(golden["paddlenlp/keys"]))
    outputs = _outputs(paddle_mm.load_model(model_dir), golden)
    for key, value in outputs.items():
        diff = np.abs(value - golden[f"paddlenlp/{key}"]).max()
        assert diff <= ATOL[key], f"{name} {key}: max abs diff to PaddleNLP {diff:.3g}"


def test_fp16_checkpoint_is_cast_to_fp32(tmp_path):
    golden = _golden("ViT-B-16")
    with TorchCheckpoint(PARITY / "ViT-B-16-fp16.pt") as ckpt:
        kinds = {t.storage.kind.name for t in ckpt.state_dict().values()}
    assert kinds == {"HalfStorage", "LongStorage"} or kinds == {"HalfStorage"}
    convert_checkpoint(PARITY / "ViT-B-16-fp16.pt", tmp_path, overrides=_overrides(golden))
    model = paddle_mm.load_model(tmp_path)
    assert {str(p.dtype) for p in model.parameters()} == {"paddle.float32"}
    for key, value in _outputs(model, golden).items():
        assert np.abs(value - golden[f"fp16/{key}"]).max() <= ATOL[key], key


def test_tool_converts_and_checks_arch(tmp_path):
    golden = _golden("ViT-L-14")
    sets = [arg for k, v in _overrides(golden).items() for arg in ("--set", f"{k}={v}")]
    tool = [sys.executable, str(ROOT / "tools" / "convert_weights.py")]
    ok = subprocess.run(
        [*tool, str(PARITY / "ViT-L-14.pt"), str(tmp_path / "a"), *sets], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "a" / "model.safetensors").is_file() and "paddle_mm.load_model" in ok.stdout
    bad = subprocess.run(
        [*tool, str(PARITY / "ViT-L-14.pt"), str(tmp_path / "b"), "--arch", "ViT-L-14"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "error: tensor 'text_projection': the checkpoint has shape [32, 32], --arch ViT-L-14 expects [768, 768]" in (
        bad.stderr
    )
    assert not (tmp_path / "b").exists()


def test_arch_mismatch_names_first_differing_tensor():
    shapes = expected_shapes(get_model_config("ViT-L-14"))
    with pytest.raises(
        CheckpointError, match=r"'visual.positional_embedding'.*\[257, 1024\].*ViT-L-14-336 expects \[577"
    ):
        resolve_config(shapes, arch="ViT-L-14-336")
    shapes.pop("bert.encoder.layer.11.output.LayerNorm.bias")
    with pytest.raises(CheckpointError, match="'bert.encoder.layer.11.output.LayerNorm.bias'.*missing"):
        resolve_config(shapes, arch="ViT-L-14")


# ----------------------------------------------------------------------------- architecture from shapes


@pytest.mark.parametrize("name", list_models())
def test_expected_shapes_are_the_models(name):
    small = {"vision_layers": [1, 2, 1, 1], "vision_width": 8} if name == "RN50" else {"vision_layers": 2}
    small.update(text_num_hidden_layers=2, text_hidden_size=64, text_num_attention_heads=1, vocab_size=50)
    model = paddle_mm.create_model(name, **small)
    cfg = {**get_model_config(name), **small}
    assert expected_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ARCHS)
def test_full_size_architectures_are_recognised(name):
    cfg = get_model_config(name)
    assert infer_config(expected_shapes(cfg)) == cfg  # head widths included: from the named model of that width
    assert resolve_config(expected_shapes(cfg)) == cfg


def test_any_depth_and_width_is_inferred():
    cfg = {**get_model_config("ViT-B-16"), "vision_layers": 5, "vision_width": 192, "image_resolution": 96}
    cfg.update(text_num_hidden_layers=4, text_hidden_size=256, text_num_attention_heads=4, text_intermediate_size=512)
    cfg.update(embed_dim=64, vision_patch_size=8)
    assert infer_config(expected_shapes(cfg)) == cfg
    resnet = {**get_model_config("RN50"), "vision_layers": [2, 3, 1, 4], "vision_width": 32, "image_resolution": 96}
    assert infer_config(expected_shapes(resnet)) == resnet


def test_unknown_override_is_refused():
    with pytest.raises(CheckpointError, match="override 'vision_heads' is not a model config field"):
        resolve_config(expected_shapes(get_model_config("ViT-B-16")), overrides={"vision_heads": 12})


# ----------------------------------------------------------------------------- the restricted unpickler


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_zip(path: Path, payload: bytes, storages: dict[str, bytes] | None = None, byteorder: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
        if byteorder:
            zf.writestr("archive/byteorder", byteorder)
        for key, data in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", data)
    return path


def test_malicious_pickle_runs_nothing_and_names_the_global(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": {"w": _RunsCode(marker)}}, protocol=2)
    pickle.loads(payload)  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    path = _torch_zip(tmp_path / "evil.pt", payload)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global (posix|os)\.system") as err:
        load_torch_state(path)
    assert not marker.exists()
    assert str(path) in str(err.value)
    code = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert_weights.py"), str(path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert code.returncode == 2 and "system" in code.stderr and not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("torch", "load"), ("numpy", "load")])
def test_other_globals_are_refused(tmp_path, module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x001\x85R."  # GLOBAL, ('1',), REDUCE
    with pytest.raises(UnsafePickleError, match=f"global {module}.{name}"):
        load_torch_state(_torch_zip(tmp_path / "x.pt", payload))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    data = (PARITY / "ViT-B-16.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a zip archive.*truncated"):
        convert_checkpoint(cut, tmp_path / "out")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated"):
        load_torch_state(empty)


def test_storage_shorter_than_its_tensor_is_an_error(tmp_path):
    pid = ("storage", "FloatStorage", "0", "cpu", 6)
    payload = _pickle_state({"w": (pid, 0, (2, 3), (3, 1))})
    path = _torch_zip(tmp_path / "short.pt", payload, {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(CheckpointError, match="holds 16 bytes, 6 x 4 expected"):
        load_torch_state(path)


def test_legacy_format_is_refused_with_the_fix(tmp_path):
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"rest")  # torch < 1.6 magic number
    with pytest.raises(CheckpointError, match=r"legacy \(torch < 1.6\).*torch.save\(torch.load"):
        load_torch_state(legacy)


def test_strided_and_typed_storages_are_read(tmp_path):
    """A transposed fp16 view and an int64 scalar, laid out as torch writes them."""
    half = np.arange(6, dtype="<f2")
    payload = _pickle_state({
        "t": (("storage", "HalfStorage", "0", "cpu", 6), 0, (3, 2), (1, 3)),  # the transpose of a [2, 3] tensor
        "n": (("storage", "LongStorage", "1", "cpu", 1), 0, (), ()),
    })  # fmt: skip
    path = _torch_zip(tmp_path / "v.pt", payload, {"0": half.tobytes(), "1": np.array([7], "<i8").tobytes()})
    state = load_torch_state(path)
    np.testing.assert_array_equal(state["t"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    assert (
        state["t"].dtype == np.float32 and state["n"].dtype == np.int64 and state["n"].shape == () and state["n"] == 7
    )


def test_big_endian_archive_is_read(tmp_path):
    payload = _pickle_state({"w": (("storage", "FloatStorage", "0", "cpu", 3), 0, (3,), (1,))})
    values = np.array([1.5, -2.0, 3.25], dtype=">f4")
    state = load_torch_state(_torch_zip(tmp_path / "be.pt", payload, {"0": values.tobytes()}, byteorder="big"))
    np.testing.assert_array_equal(state["w"], values.astype(np.float32))
    assert state["w"].dtype == np.dtype("float32")  # native order


def _pickle_state(tensors: dict) -> bytes:
    """Pickle ``{"state_dict": {name: tensor}}`` with the globals and persistent ids torch.save writes."""

    buf = io.BytesIO()
    # Hand-write the opcodes: GLOBAL for the storage class and _rebuild_tensor_v2, BINPERSID for the storage.
    out = [b"\x80\x02}X\n\x00\x00\x00state_dict}("]
    for name, ((_, kind, key, loc, numel), offset, shape, stride) in tensors.items():
        out.append(b"X" + len(name).to_bytes(4, "little") + name.encode())
        out.append(b"ctorch._utils\n_rebuild_tensor_v2\n(")
        out.append(b"(X\x07\x00\x00\x00storagec" + f"torch\n{kind}\n".encode())
        for text in (key, loc):
            out.append(b"X" + len(text).to_bytes(4, "little") + text.encode())
        out.append(b"J" + numel.to_bytes(4, "little") + b"tQ")
        out.append(b"J" + offset.to_bytes(4, "little"))
        for seq in (shape, stride):
            out.append(b"(" + b"".join(b"J" + n.to_bytes(4, "little") for n in seq) + b"t")
        out.append(b"\x89ccollections\nOrderedDict\n)RtR")
    out.append(b"us.")
    buf.write(b"".join(out))
    return buf.getvalue()


# ----------------------------------------------------------------------------- PaddleNLP and safetensors


def test_paddlenlp_directory_round_trip(converted, tmp_path):
    name, dst, _ = converted
    if name == "RN50":
        with pytest.raises(CheckpointError, match="PaddleNLP's ChineseCLIPModel has ViT image towers only"):
            export_paddlenlp(dst, tmp_path / "nlp")
        return
    export_paddlenlp(dst, tmp_path / "nlp")
    config = json.loads((tmp_path / "nlp" / "config.json").read_text())
    assert config["model_type"] == "chinese_clip" and config["vision_config"]["hidden_act"] == "quick_gelu"
    back = tmp_path / "back"
    report = convert_checkpoint(tmp_path / "nlp", back)  # no overrides: head counts come from config.json
    assert report["format"] == "paddlenlp"
    assert report["config"] == json.loads((dst / "model_config.json").read_text())
    from safetensors.numpy import load_file

    ours, again = load_file(str(dst / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert ours.keys() == again.keys()
    for key, value in ours.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_paddlenlp_pdparams_read_through_restricted_unpickler(tmp_path):
    dst = tmp_path / "model"
    convert_checkpoint(PARITY / "ViT-B-16.pt", dst, overrides=_overrides(_golden("ViT-B-16")))
    export_paddlenlp(dst, tmp_path / "nlp")
    from safetensors.numpy import load_file

    state = load_file(str(tmp_path / "nlp" / "model.safetensors"))
    (tmp_path / "nlp" / "model.safetensors").unlink()
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(tmp_path / "nlp" / "model_state.pdparams"))
    loaded = load_pdparams(tmp_path / "nlp" / "model_state.pdparams")
    assert loaded.keys() == state.keys()
    weights, _ = read_paddlenlp(tmp_path / "nlp")
    assert weights.keys() == load_file(str(dst / "model.safetensors")).keys()
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"w": _RunsCode(tmp_path / "pwned")}))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_pdparams(evil)
    objects = tmp_path / "objects.pdparams"
    objects.write_bytes(pickle.dumps({"w": np.array([1, "a"], dtype=object)}))
    with pytest.raises(UnsafePickleError, match="array of Python objects"):
        load_pdparams(objects)
    assert not (tmp_path / "pwned").exists()


def test_conversion_imports_neither_paddle_nor_torch():
    code = (
        "import sys, paddle_mm.models.conversion; bad = {'paddle', 'torch', 'paddlenlp'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
