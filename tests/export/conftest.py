"""One tiny export shared by the export tests: a seeded random model, every graph, fp32 and INT8."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH, TINY_NAME


@pytest.fixture(scope="session")
def tiny_model():
    import paddle

    from paddle_mm.models import create_model

    paddle.seed(3)
    model = create_model(TINY_NAME, **TINY_ARCH)
    model.eval()
    return model


@pytest.fixture(scope="session")
def export_dir(tiny_model, tmp_path_factory) -> Path:
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.vision.transforms import ImageTransform

    out = tmp_path_factory.mktemp("export")
    export_model(
        tiny_model,
        out,
        ImageTransform(32),
        "CN-CLIP-Tiny",
        ExportOptions(verify_batches=(1, 3, 8)),
        log=lambda _msg: None,
    )
    return out
