"""Fixtures shared across the suite: a tiny generated dataset and a runner for the command-line tools."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yml"


def _tiny_arch() -> tuple[str, dict]:
    arch = dict(yaml.safe_load(TINY.read_text(encoding="utf-8"))["Arch"])
    return arch.pop("name"), arch


# The tiny architecture every test builds: the named model and the overrides tests/configs/tiny.yml gives it
# (1-layer towers, 32 px images), read from that file so the training runs and the in-process models agree.
TINY_NAME, TINY_ARCH = _tiny_arch()

# Every named model shrunk to a size that builds, trains a step and exports in a second or two (the per-model
# sweep in tests/models); the fields left alone (vocab_size, context_length, pad_id, activations, dropout) keep
# the named model's values. ResNet towers (RN50) shrink differently: four stages of one block, 8 channels wide.
SMALL = {
    "embed_dim": 32,
    "image_resolution": 32,
    "vision_layers": 1,
    "vision_width": 64,
    "vision_head_width": 32,
    "vision_patch_size": 16,
    "text_hidden_size": 64,
    "text_num_hidden_layers": 1,
    "text_num_attention_heads": 2,
    "text_intermediate_size": 128,
    "text_max_position_embeddings": 64,
}
SMALL_RESNET = {**SMALL, "vision_layers": [1, 1, 1, 1], "vision_width": 8, "vision_patch_size": None}

SIGNED_MODEL = "cn-clip-tiny-serving"  # the model name sign_copy signs the tiny export as


@pytest.fixture(scope="session")
def tower_export(tmp_path_factory) -> Path:
    """Two fp32 towers (image, text) of a seeded random tiny model, exported once for the inference, serving and
    deploy tests (no combined graph, no INT8, one verification batch)."""
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


@pytest.fixture(scope="session")
def signer(tmp_path_factory) -> tuple:
    """A fresh SM2 key and its public key file: (PrivateKey, path of signer.pub)."""
    from paddle_mm.package import PrivateKey

    key = PrivateKey.generate()
    pub = tmp_path_factory.mktemp("trust") / "signer.pub"
    pub.write_bytes(key.public_key.to_pem())
    return key, pub


def sign_copy(export: Path, key, dest: Path, sequence: int, version: str, model: str = SIGNED_MODEL) -> Path:
    """A copy of ``export`` at ``dest`` signed with ``key`` as ``model`` (valid 30 days from now)."""
    from paddle_mm.package import LocalSigner, sign_package

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(export, dest)
    now = dt.datetime.now(dt.timezone.utc)
    sign_package(
        dest,
        LocalSigner(key),
        model=model,
        version=version,
        sequence=sequence,
        now=now,
        expires=now + dt.timedelta(days=30),
    )
    return dest


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
