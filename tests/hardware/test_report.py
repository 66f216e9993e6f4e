"""python -m hardware: the machine report, its ISA detection and the cached GEMM ceiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from hardware import gemm, report
from hardware.plugin import fake_plugin_env
from tests.conftest import ROOT


@pytest.mark.parametrize(
    "arch, fields, expected",
    [
        ("x86_64", {"flags": "fpu sse avx2 fma avx512f avx512_vnni"}, {"avx2", "fma", "avx512f", "avx512_vnni"}),
        ("aarch64", {"Features": "fp asimd asimddp sve i8mm"}, {"asimd", "asimddp", "sve", "i8mm"}),
        ("loongarch64", {"features": "cpucfg lam ual fpu lsx lasx crc32"}, {"lsx", "lasx"}),
        ("riscv64", {"isa": "rv64imafdcv_zicsr_zifencei"}, {"v"}),
        ("riscv64", {"isa": "rv64imafdc_zicsr"}, set()),
    ],
)
def test_isa_features_per_architecture(monkeypatch, arch, fields, expected):
    monkeypatch.setattr(report.platform, "machine", lambda: arch)
    monkeypatch.setattr(report, "cpuinfo_field", lambda name: fields.get(name, ""))
    found = report.isa_features()
    assert {k for k, v in found.items() if v} == expected and found  # every listed feature is reported


def test_gemm_ceiling_is_measured_once_per_machine_and_threads(monkeypatch, tmp_path):
    monkeypatch.setenv("PADDLE_MM_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(gemm, "measure", lambda threads: calls.append(threads) or {"fp32_gflops": 10.0 * threads})
    fingerprint = {"cpu": "test cpu", "cores": "2"}
    assert gemm.ceiling(1, fingerprint) == {"fp32_gflops": 10.0, "cached": False}
    assert gemm.ceiling(1, fingerprint) == {"fp32_gflops": 10.0, "cached": True}
    assert gemm.ceiling(2, fingerprint)["cached"] is False  # another thread count is another measurement
    assert gemm.ceiling(1, {**fingerprint, "cpu": "other"})["cached"] is False  # another machine too
    assert gemm.ceiling(1, fingerprint, remeasure=True)["cached"] is False
    assert calls == [1, 2, 1, 1]
    (tmp_path / gemm.CACHE_FILE).write_text("{not json")  # a corrupt cache costs a measurement, not a crash
    assert gemm.ceiling(1, fingerprint)["cached"] is False


def test_report_lists_the_plugin_device_and_its_backends(tmp_path):
    env = {**os.environ, **fake_plugin_env(), "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2"}
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "hardware", "--no-gemm", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["paddle"]["devices"] == {"cpu": 1, "npu": 1} and r["paddle"]["plugins"] == ["npu"]
    on_npu = r["backends"]["npu:0"]
    assert on_npu["checkpoint"] == {"paddle": None} and on_npu["paddle_inference"] == {"paddle_inference": None}
    assert "onnxruntime-cann" in on_npu["onnx_fp32"]["onnxruntime"] and on_npu["onnx_int8"] == {}
    assert r["backends"]["cpu"]["onnx_int8"] == {"onnxruntime": None}
    text = proc.stdout
    assert "plugins    npu (CUSTOM_DEVICE_ROOT=" in text and "devices: cpu x1, npu x1" in text
    assert "backends on npu:0:" in text and "GEMM" not in text


def test_each_precision_ceiling_is_its_fastest_kernel(monkeypatch):
    def sleeper(seconds):
        return lambda x: time.sleep(seconds)

    kernels = {
        "fp32 slow": sleeper(0.004),
        "fp32 fast": sleeper(0.001),
        "int8 only": sleeper(0.002),
    }  # no bf16 kernel: a CPU without BF16_ISA
    monkeypatch.setattr(gemm, "all_kernels", lambda threads, directory: kernels)
    r = gemm.measure(1, rounds=2, block=1)
    assert r["fp32_kernel"] == "fast" and r["fp32_gflops"] == r["kernels"]["fp32 fast"] > r["kernels"]["fp32 slow"]
    assert r["int8_kernel"] == "only" and r["bf16_gflops"] is None and r["bf16_kernel"] is None


def test_bf16_is_refused_in_one_line_on_a_cpu_without_it(monkeypatch):
    from hardware import DEFAULT_DEVICE, inference
    from hardware.device import DeviceSpec

    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"precision bf16 needs a CPU with one of \['avx512_bf16'.*use precision="):
        inference.check_bf16(DeviceSpec(DEFAULT_DEVICE))
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: True)
    inference.check_bf16(DeviceSpec(DEFAULT_DEVICE))
    with pytest.raises(ValueError, match="with oneDNN only"):
        inference.check_bf16(DeviceSpec(DEFAULT_DEVICE), mkldnn=False)
