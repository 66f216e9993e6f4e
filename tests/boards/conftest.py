"""Fixtures for the board runtime tests: a seeded CN-CLIP-Tiny, its GGUF, the native pmm-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware.runtime import build as board_build


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    import paddle

    from paddle_mm.models import create_model, save_model

    paddle.seed(0)
    # 128 px: 65 image tokens, so ggml's tiled flash attention (64-query tiles, a partial last tile) is what runs
    # and is compared, as for ViT-B-16's 197 tokens; at the default 64 px (17 tokens) only its per-row path runs.
    model = create_model("CN-CLIP-Tiny", image_resolution=128)
    return save_model(model, tmp_path_factory.mktemp("boards") / "tiny")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir) -> Path:
    from paddle_mm.export.gguf_export import convert_model_dir

    return convert_model_dir(tiny_model_dir, tiny_model_dir.parent / "tiny.gguf")


@pytest.fixture(scope="session")
def native_cmd() -> list[str]:
    return board_build.command("x86_64")
