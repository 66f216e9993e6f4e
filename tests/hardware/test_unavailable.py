"""Every device or backend that is not on this machine is one line naming it and its install command, exit
code 2; nothing aborts. Each is asked for in a fresh process: an unloaded custom device aborts Paddle (SIGABRT)
when asked blindly, which only a subprocess survives to report."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hardware.tables import DEFAULT_DEVICE, DEVICES
from tests.conftest import ROOT, run_tool, tiny_args

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2"}
ENV.pop("CUSTOM_DEVICE_ROOT", None)  # no plugin: none of the accelerators is here
ABSENT = [kind for kind in DEVICES if kind != DEFAULT_DEVICE]


def _one_error_line(proc: subprocess.CompletedProcess, *expected: str) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode} (-6 is SIGABRT): {proc.stderr[-2000:]}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "ccache" not in ln and "warnings.warn" not in ln]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_each_absent_device_is_one_line_with_its_install_command():
    procs = {  # all at once: each is mostly the interpreter and paddle starting
        kind: subprocess.Popen(
            [sys.executable, "-m", "hardware", "--device", f"{kind}:0"],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for kind in ABSENT
    }
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        _one_error_line(done, f"device '{kind}:0' is not available on this machine", DEVICES[kind].install)


@pytest.mark.parametrize(
    "device, expected",
    [
        ("xpu", "device 'xpu' is not available on this machine"),
        ("tpu", "unknown device 'tpu'; expected one of"),
    ],
)
def test_training_on_an_absent_or_unknown_device_exits_2(tiny_data, tmp_path, device, expected):
    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", f"Global.device={device}"), env=ENV)
    line = _one_error_line(proc, expected)
    assert line.startswith("device error: ")


def test_paddle_inference_on_an_unloaded_plugin_device_raises_instead_of_aborting(tmp_path):
    """Without the check, ``enable_custom_device`` + ``create_predictor`` kills the process with SIGABRT."""
    script = textwrap.dedent(
        f"""
        import sys, paddle
        from hardware import DeviceError, parse_device
        from paddle_mm.inference.backends import PaddleInferenceBackend
        layer = paddle.nn.Linear(4, 2)
        paddle.jit.save(layer, r"{tmp_path}/m", input_spec=[paddle.static.InputSpec([None, 4], "float32")])
        try:
            PaddleInferenceBackend([r"{tmp_path}/m.json", r"{tmp_path}/m.pdiparams"], parse_device("npu:0"))
        except DeviceError as err:
            print(f"device error: {{err}}", file=sys.stderr)
            sys.exit(2)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    _one_error_line(proc, "device 'npu:0' is not available on this machine", DEVICES["npu"].install)
