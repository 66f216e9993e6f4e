"""hardware/: device strings, availability checks, CPU tuning."""

import pytest

import hardware
from hardware import cpu as hw_cpu
from hardware.device import DeviceError, DeviceSpec, amp_dtype, collective_backend, parse_device


@pytest.mark.parametrize(
    "text, spec",
    [
        ("cpu", DeviceSpec("cpu", 0)),
        ("GPU:1", DeviceSpec("gpu", 1)),
        ("npu:3", DeviceSpec("npu", 3)),
        (" xpu ", DeviceSpec("xpu", 0)),
    ],
)
def test_parse_device(text, spec):
    assert parse_device(text) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("tpu", "unknown device 'tpu'"),
        ("gpu:x", "must be a non-negative integer"),
        ("gpu:-1", "must be a non-negative integer"),
    ],
)
def test_parse_device_errors_name_the_string(text, message):
    with pytest.raises(DeviceError, match=message):
        parse_device(text)


def test_cpu_is_always_available_and_resolves():
    assert hardware.available_devices()["cpu"] == 1
    assert str(hardware.resolve_device("cpu")) == "cpu"


def test_absent_accelerator_is_refused_before_paddle_touches_it():
    found = hardware.available_devices()
    for kind in ("gpu", "xpu", "npu"):
        if kind not in found:
            with pytest.raises(DeviceError, match=f"device '{kind}' is not available on this machine"):
                hardware.resolve_device(kind)


def test_amp_and_collectives_per_device():
    assert amp_dtype(DeviceSpec("cpu")) is None  # Paddle 3.3 has no CPU autocast
    assert amp_dtype(DeviceSpec("gpu")) == "float16"
    assert collective_backend(DeviceSpec("cpu")) == "gloo" and collective_backend(DeviceSpec("gpu")) == "nccl"


def test_tune_cpu_env_sets_mkl_flag_on_amd_only(monkeypatch):
    monkeypatch.setattr(hw_cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(hw_cpu, "cpu_vendor", lambda: "GenuineIntel")
    assert hw_cpu.tune_cpu_env() == {}
    for vendor in ("AuthenticAMD", "HygonGenuine"):
        monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
        monkeypatch.setattr(hw_cpu, "cpu_vendor", lambda v=vendor: v)
        assert hw_cpu.tune_cpu_env() == {"MKL_DEBUG_CPU_TYPE": "5"}
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "2")  # the user's choice wins
    assert hw_cpu.tune_cpu_env() == {}


def test_cpu_vendor_reads_proc_cpuinfo():
    vendor = hw_cpu.cpu_vendor()
    assert isinstance(vendor, str)
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return
    if "vendor_id" in text:
        assert vendor and vendor in text
