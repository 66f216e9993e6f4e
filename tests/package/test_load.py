"""load_verified hands Paddle the verified bytes: safetensors from memory, inference models from sealed memfds."""

from __future__ import annotations

import fcntl
import os

import numpy as np
import pytest

from paddle_mm.package import FormatPolicyError, load_verified

from .helpers import NOW, make_model, sign


def test_safetensors_values_match(tmp_path, key, trust, state) -> None:
    root = tmp_path / "pkg"
    tensors = make_model(root, seed=3)
    sign(root, key)
    loaded = load_verified(root, trust, model="tiny-clip", state=state, now=NOW)
    assert sorted(loaded.state_dict) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded.state_dict[name].numpy(), value)


def test_loader_sees_verified_bytes_not_the_file(tmp_path, key, trust, state, monkeypatch) -> None:
    """The file is swapped right after it was read and hashed: the loader still gets the verified bytes."""
    from paddle_mm.package import fsio, loading

    root = tmp_path / "pkg"
    tensors = make_model(root, seed=4)
    sign(root, key)
    real_read = fsio.read_exact

    def read_then_swap(fd, offset, length, name):
        data = real_read(fd, offset, length, name)
        if name == "model.safetensors":
            make_model(root, seed=99)  # attacker rewrites the file after our read
        return data

    monkeypatch.setattr(fsio, "read_exact", read_then_swap)
    loaded = loading.load_verified(root, trust, model="tiny-clip", state=state, now=NOW)
    np.testing.assert_array_equal(loaded.state_dict["proj.bias"].numpy(), tensors["proj.bias"])


def test_sharded_safetensors_must_be_disjoint(tmp_path, key, trust, state) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    (root / "model-2.safetensors").write_bytes((root / "model.safetensors").read_bytes())
    sign(root, key)
    with pytest.raises(FormatPolicyError, match="repeats tensors"):
        load_verified(root, trust, model="tiny-clip", state=state, now=NOW)


def test_paddle_inference_model_runs_from_sealed_memory(tmp_path, key, trust, state) -> None:
    paddle = pytest.importorskip("paddle")
    paddle.seed(0)
    net = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.ReLU())
    net.eval()
    spec = [paddle.static.InputSpec([None, 4], "float32", "x")]
    root = tmp_path / "pkg"
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), str(root / "inference"))
    sign(root, key)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    expected = net(paddle.to_tensor(x)).numpy()

    loaded = load_verified(root, trust, model="tiny-clip", state=state, now=NOW)
    assert loaded.manifest.model_format == "paddle-inference"
    for fd in loaded._fds:  # sealed: nobody, not even this process, can change the bytes now
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
    predictor = paddle.inference.create_predictor(loaded.inference_config)
    loaded.close()
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(x.shape)
    handle.copy_from_cpu(x)
    predictor.run()
    out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
