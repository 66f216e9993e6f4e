"""tools/zero_shot.py writes under the output folder, never into the data, and its errors are one line with a code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH, TINY_NAME, run_tool


@pytest.fixture(scope="module")
def zs_data(tmp_path_factory) -> Path:
    from paddle_mm.demo.shapes_zero_shot import make_shapes_zero_shot

    out = tmp_path_factory.mktemp("zs") / "shapes_zs"
    make_shapes_zero_shot(out, per_class=2, seed=5, image_size=32, colours=["red", "blue"], shapes=["circle"])
    return out


@pytest.fixture(scope="module")
def zs_model(tmp_path_factory) -> Path:
    import paddle

    from paddle_mm.models import create_model, save_model

    paddle.seed(11)
    return save_model(create_model(TINY_NAME, **TINY_ARCH), tmp_path_factory.mktemp("zs_model"))


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def zero_shot(model: Path, data: Path, tmp_path: Path, *extra: str):
    args = ["--model", str(model), "--data", str(data), "--templates", "imagenet", "--no-cache", *extra]
    return run_tool("zero_shot.py", *args)


def test_the_result_goes_under_the_output_folder_not_into_the_data(zs_model, zs_data, tmp_path):
    before = listing(zs_data)
    proc = zero_shot(zs_model, zs_data, tmp_path, "--output_dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "zero_shot" / "shapes_zs_test.json").read_text(encoding="utf-8"))
    assert result["n_images"] == 4 and listing(zs_data) == before


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--split", "nosuch"], 3, "nosuch"),
        (["--out", "FILE/r.json"], 4, "--out"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(zs_model, zs_data, tmp_path, extra, code, message):
    (tmp_path / "FILE").write_text("a file, not a folder", encoding="utf-8")
    extra = [e.replace("FILE", str(tmp_path / "FILE")) for e in extra]
    proc = zero_shot(zs_model, zs_data, tmp_path, "--output_dir", str(tmp_path / "out"), *extra)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Global." not in lines[0]  # this tool has no config: the message names its own options


def test_a_device_not_on_this_machine_names_the_option_this_tool_has(zs_model, zs_data, tmp_path):
    proc = zero_shot(zs_model, zs_data, tmp_path, "--output_dir", str(tmp_path), "--device", "tpu")
    assert proc.returncode == 2 and "--device" in proc.stderr and "Global.device" not in proc.stderr
    assert "Traceback" not in proc.stderr
