"""Rollback state: highest sequence per model, never reused, stored atomically."""

from __future__ import annotations

import json

import pytest

from paddle_mm.package import PackageConfigError, RollbackError, RollbackStore, verify_package

from .helpers import NOW, make_model, sign


def test_sequence_recorded_and_reverify_allowed(pkg, trust, state) -> None:
    first = verify_package(pkg, trust, model="tiny-clip", state=state, now=NOW)
    stored = json.loads(state.path.read_text())
    assert stored == {"tiny-clip": {"sequence": 5, "version": "1.5", "manifest_sm3": first.manifest_sm3}}
    verify_package(pkg, trust, model="tiny-clip", state=state, now=NOW)  # same package again is fine
    assert sorted(p.name for p in state.path.parent.iterdir()) == ["sequences.json", "sequences.json.lock"]


def test_newer_sequence_advances(tmp_path, key, trust, state) -> None:
    for seq in (3, 4, 9):
        root = tmp_path / f"v{seq}"
        make_model(root, seed=seq)
        sign(root, key, sequence=seq)
        verify_package(root, trust, model="tiny-clip", state=state, now=NOW)
    assert json.loads(state.path.read_text())["tiny-clip"]["sequence"] == 9


def test_reused_sequence_with_other_content_refused(tmp_path, key, trust, state) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_model(a, seed=1)
    make_model(b, seed=2)
    sign(a, key, sequence=5)
    sign(b, key, sequence=5)
    verify_package(a, trust, model="tiny-clip", state=state, now=NOW)
    with pytest.raises(RollbackError, match="never be reused"):
        verify_package(b, trust, model="tiny-clip", state=state, now=NOW)


def test_models_tracked_separately(tmp_path, key, trust, state) -> None:
    for name, seq in (("model-a", 8), ("model-b", 2)):
        root = tmp_path / name
        make_model(root)
        sign(root, key, model=name, sequence=seq)
        verify_package(root, trust, model=name, state=state, now=NOW)
    stored = json.loads(state.path.read_text())
    assert (stored["model-a"]["sequence"], stored["model-b"]["sequence"]) == (8, 2)


def test_corrupt_state_is_an_error_not_a_reset(pkg, trust, tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(PackageConfigError, match="never delete it"):
        verify_package(pkg, trust, model="tiny-clip", state=RollbackStore(path), now=NOW)
