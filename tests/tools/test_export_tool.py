"""tools/export_model.py: a failed export keeps the previous one, and its errors are one line with an exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH, TINY_NAME, run_tool, tiny_args


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import paddle

    from paddle_mm.models import create_model, save_model

    paddle.seed(9)
    return save_model(create_model(TINY_NAME, **TINY_ARCH), tmp_path_factory.mktemp("ckpt"))


def export(data: Path, tmp_path: Path, checkpoint: Path, target: Path, *flags: str):
    overrides = [f"Global.pretrained_model={checkpoint}", f"Global.save_inference_dir={target}"]
    overrides += [f"Arch.{k}={v}" for k, v in TINY_ARCH.items()]
    return run_tool("export_model.py", *tiny_args(data, tmp_path, "-o", *overrides), "--graphs", "image", *flags)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failed_export_exits_1_and_keeps_the_previous_export(tiny_data, checkpoint, tmp_path):
    target = tmp_path / "inference"
    proc = export(tiny_data, tmp_path, checkpoint, target, "--no-onnx", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = snapshot(target)
    proc = export(tiny_data, tmp_path, checkpoint, target, "--threads", "1", "--atol", "-1")
    assert proc.returncode == 1 and "the previous export, if any, is unchanged" in proc.stderr, proc.stderr[-2000:]
    assert snapshot(target) == before and "inference.yml" in before


@pytest.mark.parametrize("case, code", [("not_an_export", 4), ("no_checkpoint", 6)])
def test_errors_are_one_line_with_their_exit_code(tiny_data, checkpoint, tmp_path, case, code):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    source = tmp_path / "nope" if case == "no_checkpoint" else checkpoint
    proc = export(tiny_data, tmp_path, source, target, "--no-onnx")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert (target / "notes.txt").read_text(encoding="utf-8") == "mine"
