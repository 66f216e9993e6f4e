"""Fixtures shared across the suite: a tiny generated dataset and a runner for the command-line tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yml"


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--device",
        default=None,
        help="accelerator the 'device' tests run on (e.g. npu:0 on a real Ascend card); default: the fake npu "
        "plugin that scripts/setup.sh builds (docs/hardware.md)",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "device: runs on an accelerator (--device, default the fake npu plugin)")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small deterministic shapes dataset in Chinese-CLIP's TSV/JSONL format (train 96, valid 40 images)."""
    from paddle_mm.demo.shapes import make_dataset

    out = tmp_path_factory.mktemp("shapes")
    make_dataset(out, {"train": 96, "valid": 40}, seed=1, image_size=32)
    return out


def run_tool(tool: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``tools/<tool>`` in a fresh interpreter, as a user would."""
    cmd = [sys.executable, str(ROOT / "tools" / tool), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-c",
        str(TINY),
        "-o",
        f"DataLoader.Train.dataset.root={data}",
        f"DataLoader.Eval.dataset.root={data}",
        f"Global.output_dir={out}",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """Output directory of a finished 2-epoch tools/train.py run on the tiny config."""
    out = tmp_path_factory.mktemp("tiny_run")
    proc = run_tool("train.py", *tiny_args(tiny_data, out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out
