"""Fixtures for SM-signed package tests: keys, trust, rollback state, a signed package, a loader spy."""

from __future__ import annotations

from pathlib import Path

import pytest

from paddle_mm.package import PrivateKey, RollbackStore, TrustAnchor, TrustStore, loading

from .helpers import make_model, sign


@pytest.fixture(scope="session")
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def trust(key: PrivateKey) -> TrustStore:
    return TrustStore([TrustAnchor(key.public_key)])


@pytest.fixture
def state(tmp_path: Path) -> RollbackStore:
    return RollbackStore(tmp_path / "state" / "sequences.json")


@pytest.fixture
def pkg(tmp_path: Path, key: PrivateKey) -> Path:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, key)
    return root


@pytest.fixture
def loader_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call into the parsers; attack tests assert it stays empty."""
    calls: list[str] = []
    real_st, real_inf = loading._load_safetensors, loading._inference_config
    monkeypatch.setattr(loading, "_load_safetensors", lambda w: calls.append("safetensors") or real_st(w))
    monkeypatch.setattr(loading, "_inference_config", lambda f, lp: calls.append("inference") or real_inf(f, lp))
    return calls
