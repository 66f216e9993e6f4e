"""The accelerator path end to end: training, evaluation, export and Paddle Inference on a device other than
the host, against the host's results.

By default the device is the fake npu plugin (hardware/fake_npu, built by scripts/setup.sh): host memory and
Paddle's CPU kernels behind the custom-device interface, so results must equal the host's bit for bit up to
oneDNN-vs-plain kernel rounding. On a machine with a real card: ``pytest -m device --device npu:0`` (then the
tolerances below are those of different kernels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hardware.plugin import fake_plugin_env
from hardware.tables import DEFAULT_DEVICE, FAKE_PLUGIN
from tests.conftest import ROOT, run_tool, tiny_args

pytestmark = pytest.mark.device
RUN = "CN-CLIP-Tiny"


@pytest.fixture(scope="session")
def accelerator(request) -> tuple[str, dict[str, str], bool]:
    """(device string, environment for its processes, whether it is the fake plugin)."""
    chosen = request.config.getoption("--device")
    if chosen:
        return chosen, {}, False
    return FAKE_PLUGIN["device"], fake_plugin_env(), True  # not built: FileNotFoundError naming the command


@pytest.fixture(scope="session")
def accel_run(accelerator, tiny_data, tmp_path_factory) -> Path:
    """tiny_run's training, on the accelerator."""
    device, env, _ = accelerator
    out = tmp_path_factory.mktemp("accel_run")
    proc = run_tool("train.py", *tiny_args(tiny_data, out, "-o", f"Global.device={device}"), env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


def _losses(run: Path) -> list[float]:
    lines = (run / RUN / "train_metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_training_and_evaluation_match_the_host(accelerator, accel_run, tiny_run):
    device, _, fake = accelerator
    log = (accel_run / RUN / "train.log").read_text(encoding="utf-8")
    assert f"training {RUN} on {device} x 1 process(es)" in log
    host, accel = _losses(tiny_run), _losses(accel_run)
    assert len(accel) == len(host) >= 20
    assert accel == pytest.approx(host, rel=1e-6 if fake else 2e-3)
    ran = [json.loads((r / RUN / "train_summary.json").read_text())["history"] for r in (tiny_run, accel_run)]
    assert [h["MR"] for h in ran[1]] == pytest.approx([h["MR"] for h in ran[0]], abs=1e-9 if fake else 2.0)


@pytest.fixture(scope="session")
def accel_export(accelerator, accel_run, tiny_data) -> Path:
    device, env, _ = accelerator
    out = accel_run / "export"
    weights = f"Global.pretrained_model={accel_run / RUN / 'latest'}"
    args = tiny_args(tiny_data, accel_run, "-o", f"Global.device={device}", weights, f"Global.save_inference_dir={out}")
    proc = run_tool("export_model.py", *args, "--no-int8", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


COMPARE = """
import ctypes, json, os, sys
import numpy as np
from paddle_mm.inference import Predictor

export, device, plugin = sys.argv[1], sys.argv[2], os.environ.get("CUSTOM_DEVICE_ROOT")
allocations = ctypes.CDLL(f"{plugin}/LIBRARY").FakeDeviceAllocations if plugin else lambda: -1
out, allocated = {}, {}
for d in ("HOST", device):
    before = allocations()
    p = Predictor(export, backend="paddle_inference", device=d, threads=1, batch_size=3)
    texts = p.encode_texts(["左上角有一个红色的圆形", "两个蓝色的三角形", "一个绿色的正方形"])
    images = p.runner("image").run(p.sample_feeds("image", 3))[0]
    out[d], allocated[d] = (texts, images), allocations() - before
print(json.dumps({
    "allocated": allocated,
    "texts": float(np.abs(out["HOST"][0] - out[device][0]).max()),
    "images": float(np.abs(out["HOST"][1] - out[device][1]).max()),
    "scale": float(np.abs(out["HOST"][1]).max()),
}))
""".replace("HOST", DEFAULT_DEVICE).replace("LIBRARY", FAKE_PLUGIN["library"])


def test_the_export_gives_the_host_outputs_through_paddle_inference(accelerator, accel_export):
    device, env, fake = accelerator
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE, str(accel_export), device],
        cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    diff = json.loads(proc.stdout.strip().splitlines()[-1])
    if fake:  # the accelerator's predictor really placed its tensors on the plugin device; the host's did not
        assert diff["allocated"][device] > 0 and diff["allocated"][DEFAULT_DEVICE] == 0, diff
    tol = 1e-5 if fake else 2e-2
    assert diff["texts"] <= tol and diff["images"] <= tol * max(1.0, diff["scale"]), diff


def test_a_backend_without_a_provider_for_the_device_exits_2(accelerator, accel_export):
    device, env, fake = accelerator
    if not fake:
        pytest.skip("a real card may have its ONNX Runtime provider installed")
    args = ["--model_dir", str(accel_export), "--device", device, "--backend", "onnxruntime", "--text", "a"]
    proc = run_tool("predict.py", *args, "--image", str(accel_export / "vocab.txt"), env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("device error: ") and "pip install onnxruntime-cann" in proc.stderr
