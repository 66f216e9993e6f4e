"""paddle_mm.io: atomic writes leave the old file or the new one, safetensors round-trips exactly, a corrupt or
mismatched weight file is a one-line CheckpointError / KeyError naming it."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.io import (
    CheckpointError,
    atomic_open,
    atomic_write,
    load_safetensors,
    load_state_into,
    save_safetensors,
    staged_directory,
)


def test_streamed_safetensors_is_readable_and_exact(tmp_path):
    from safetensors.numpy import load_file

    arrays = {
        "b": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a": np.array(2.5, dtype=np.float32),  # 0-d stays 0-d
        "n": np.array(7, dtype=np.int64),
        "h": np.ones((3, 1), dtype=np.float16),
        "t": np.arange(6, dtype=np.float32).reshape(2, 3).T,  # not contiguous
    }
    save_safetensors(arrays, tmp_path / "x.safetensors", {"format": "np"})
    back = load_file(str(tmp_path / "x.safetensors"))  # the reference reader, not ours
    assert back.keys() == arrays.keys()
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        np.testing.assert_array_equal(back[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path) as f:
            f.write("half of the new")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"


def test_a_failed_staged_directory_keeps_the_old_one(tmp_path):
    target = tmp_path / "export"
    with staged_directory(target) as d:
        (d / "a").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with staged_directory(target) as d:
            (d / "a").write_text("half of the new")
            raise RuntimeError("boom")
    assert (target / "a").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["export"]
    with staged_directory(target, fsync=True) as d:
        (d / "a").write_text("new")
    assert (target / "a").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["export"]


def test_a_crash_between_the_renames_of_a_single_writer_swap_leaves_the_old_directory_where_readers_look(
    tmp_path, monkeypatch
):
    """engine.checkpoint's contract: a kill between 'old aside' and 'new in place' leaves .<name>.old, which
    resolve_checkpoint reads; the next save removes what the crash left (.tmp and .old) and swaps normally."""
    import os

    from paddle_mm.engine.checkpoint import resolve_checkpoint

    target = tmp_path / "latest"
    with staged_directory(target, single_writer=True) as d:
        (d / "state.json").write_text("1")
    real_replace, calls = os.replace, []

    def crash_on_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")  # the process dies here: nothing after it runs
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(target, single_writer=True) as d:
            (d / "state.json").write_text("2")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not target.exists() and (tmp_path / ".latest.tmp" / "state.json").read_text() == "2"
    assert resolve_checkpoint(target) == tmp_path / ".latest.old"
    assert (resolve_checkpoint(target) / "state.json").read_text() == "1"
    with staged_directory(target, single_writer=True) as d:
        (d / "state.json").write_text("3")
    assert (target / "state.json").read_text() == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]  # the crash's .tmp and .old are gone


def test_a_truncated_safetensors_file_is_a_checkpoint_error(tmp_path):
    path = save_safetensors({"w": np.ones((4, 4), np.float32)}, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="m.safetensors is corrupt or truncated"):
        load_safetensors(path)


class _Param:
    def __init__(self, shape):
        self.shape, self.value = list(shape), None

    def numpy(self):
        return np.zeros(self.shape, np.float32)

    def set_value(self, value):
        self.value = value


class _Model:
    def __init__(self, **shapes):
        self.params = {name: _Param(shape) for name, shape in shapes.items()}

    def state_dict(self):
        return self.params


def test_load_state_into_checks_names_and_shapes(tmp_path):
    path = save_safetensors({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, tmp_path / "m.safetensors")
    model = _Model(w=(2, 3))
    load_state_into(model, path)
    np.testing.assert_array_equal(model.params["w"].value, np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match=r"tensor 'w' has shape \[2, 3\], the model expects \[3, 2\]"):
        load_state_into(_Model(w=(3, 2)), path)
    with pytest.raises(KeyError, match=r"missing \['v'\], unexpected \[\]"):
        load_state_into(_Model(w=(2, 3), v=(1,)), path)
