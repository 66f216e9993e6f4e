"""A failed export leaves the previous good export exactly as it was; a finished one replaces it whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from paddle_mm.export import ExportOptions, ExportVerificationError, export_model
from paddle_mm.inference import ExportDirError, Predictor
from paddle_mm.io import file_digest
from paddle_mm.vision.transforms import ImageTransform

FAST = {"graphs": ("image", "text"), "int8": False, "verify_batches": (2,), "threads": 1}


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(directory.iterdir())}


def export(model, out: Path, **options):
    options = ExportOptions(**{**FAST, **options})
    return export_model(model, out, ImageTransform(32), "CN-CLIP-Tiny", options, log=lambda _m: None)


def test_a_failed_export_leaves_the_previous_export_intact(tiny_model, tmp_path):
    out = tmp_path / "inference"
    export(tiny_model, out)
    before = snapshot(out)
    with pytest.raises(ExportVerificationError):
        export(tiny_model, out, graphs=("image", "text", "clip"), atol=-1.0)  # every graph is written, then fails
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inference"]  # the staged copy is gone
    assert Predictor(out, backend="onnxruntime", threads=1).encode_texts(["一只猫"]).shape == (1, 32)


def test_a_finished_export_replaces_the_previous_one_whole(tiny_model, tmp_path):
    out = tmp_path / "inference"
    export(tiny_model, out, graphs=("image", "text", "clip"))
    info = export(tiny_model, out)
    assert info.directory == out and "clip.json" not in snapshot(out)  # nothing of the old export is mixed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inference"]


def test_a_directory_that_is_not_an_export_is_not_replaced(tiny_model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportDirError, match="not empty and holds no inference.yml"):
        export(tiny_model, tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_failure_of_the_int8_graphs_alone_names_the_way_out(tiny_model, tmp_path):
    way_out = r"only INT8 graphs fail: export without them, .*--no-int8"
    with pytest.raises(ExportVerificationError, match=way_out) as err:
        export(tiny_model, tmp_path / "a", graphs=("text",), int8=True, int8_min_cosine=1.01)  # no INT8 reaches it
    assert "text onnxruntime/int8 batch 2: min cosine" in str(err.value)
    with pytest.raises(ExportVerificationError) as err:  # an fp32 graph fails too: no such advice
        export(tiny_model, tmp_path / "b", graphs=("text",), int8=True, int8_min_cosine=1.01, atol=-1.0)
    assert "only INT8" not in str(err.value) and "onnxruntime/fp32" in str(err.value)
