"""An export checks itself at load: digests name a changed file, a truncated graph is one line, auto falls back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from paddle_mm.inference import ExportDirError, Predictor

IMAGES = [np.full((32, 32, 3), v, np.uint8) for v in (0, 90, 200)]


def copy_export(tower_export: Path, dst: Path) -> Path:
    shutil.copytree(tower_export, dst)
    return dst


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def drop_digests(export: Path) -> None:
    """The inference.yml of an export written before digests were recorded."""
    doc = yaml.safe_load((export / "inference.yml").read_text(encoding="utf-8"))
    del doc["Export"]["digests"]
    (export / "inference.yml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_inference_yml_records_the_sha256_of_every_file(tower_export):
    from paddle_mm.inference.model_dir import read_inference_yml, referenced_files
    from paddle_mm.io import file_digest

    info = read_inference_yml(tower_export)
    digests = info.export["digests"]
    assert sorted(digests) == sorted(referenced_files(info))
    assert all(digests[n] == file_digest(tower_export / n) for n in digests)


@pytest.mark.parametrize(
    "name, backend", [("image.pdiparams", "paddle_inference"), ("image.onnx", "onnxruntime"), ("vocab.txt", "auto")]
)
def test_a_flipped_byte_is_one_line_naming_the_file(tower_export, tmp_path, name, backend):
    export = copy_export(tower_export, tmp_path / "export")
    flip_byte(export / name, -3 if name == "vocab.txt" else -100)
    with pytest.raises(ExportDirError) as err:
        Predictor(export, backend=backend, threads=1, cache_dir=tmp_path).encode_images(IMAGES)
    message = str(err.value)
    assert "\n" not in message and f"{export / name}: SHA-256" in message and "re-export" in message


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("name, backend", [("image.onnx", "onnxruntime"), ("image.pdiparams", "paddle_inference")])
def test_a_truncated_graph_without_digests_is_one_line(tower_export, tmp_path, name, backend):
    export = copy_export(tower_export, tmp_path / "export")
    drop_digests(export)
    truncate(export / name)
    with pytest.raises(ExportDirError) as err:
        Predictor(export, backend=backend, threads=1).encode_images(IMAGES)
    message = str(err.value)
    assert "\n" not in message and f"{backend} cannot load it" in message and name in message


@pytest.mark.parametrize("digests", [True, False])
@pytest.mark.parametrize("name, other", [("image.onnx", "paddle_inference"), ("image.pdiparams", "onnxruntime")])
def test_auto_falls_back_from_a_truncated_graph(tower_export, tmp_path, digests, name, other):
    export = copy_export(tower_export, tmp_path / "export")
    want = Predictor(export, backend=other, threads=1).encode_images(IMAGES)
    if not digests:
        drop_digests(export)
    truncate(export / name)
    predictor = Predictor(export, backend="auto", threads=1, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(predictor.encode_images(IMAGES), want, atol=1e-5)
    choice = predictor.choices["image"]
    broken = "onnxruntime" if other == "paddle_inference" else "paddle_inference"
    assert choice.backend == other and name in choice.failed[broken]
