"""Helpers shared by the package tests: tiny safetensors models, signing with fixed times, openssl probing."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from paddle_mm.package import LocalSigner, PrivateKey, sign_package
from paddle_mm.package.manifest import UTC

CHUNK = 64 << 10  # smallest chunk size, so a ~200 KB weight file spans several chunks
NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)


def make_model(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A two-file safetensors model (~200 KB of weights + config) at ``root``; returns the tensors."""
    rng = np.random.default_rng(seed)
    tensors = {"proj.weight": rng.standard_normal((200, 256)).astype(np.float32),
               "proj.bias": rng.standard_normal(256).astype(np.float32)}
    root.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(root / "model.safetensors"))
    (root / "config.json").write_text('{"embed_dim": 256, "context_length": 52}')
    return tensors


def sign(root: Path, key: PrivateKey, *, model: str = "tiny-clip", sequence: int = 5, **kw) -> None:
    kw.setdefault("now", NOW)
    sign_package(root, LocalSigner(key), model=model, version=f"1.{sequence}", sequence=sequence,
                 chunk_size=CHUNK, **kw)


def openssl_sm2_missing() -> str | None:
    """Why the openssl command line cannot do SM2 here, or None when it can."""
    exe = shutil.which("openssl")
    if exe is None:
        return "no openssl binary on PATH"
    proc = subprocess.run([exe, "genpkey", "-algorithm", "SM2"], capture_output=True, check=False)
    return None if proc.returncode == 0 else f"openssl lacks SM2: {proc.stderr.decode(errors='replace')[:200]}"
