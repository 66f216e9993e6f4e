"""A tiny export for the predictor tests: two fp32 towers of a seeded random model, and a signing key.

Smaller than tests/export's export (no combined graph, no INT8, one verification batch), which those
tests need and these do not; fixtures cannot be shared across sibling test directories without the root
conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH, TINY_NAME


@pytest.fixture(scope="session")
def tower_export(tmp_path_factory) -> Path:
    import paddle

    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.models import create_model
    from paddle_mm.vision.transforms import ImageTransform

    paddle.seed(5)
    model = create_model(TINY_NAME, **TINY_ARCH)
    model.eval()
    out = tmp_path_factory.mktemp("tower_export")
    options = ExportOptions(graphs=("image", "text"), int8=False, verify_batches=(2,), threads=1)
    export_model(model, out, ImageTransform(32), "CN-CLIP-Tiny", options, log=lambda _msg: None)
    return out
