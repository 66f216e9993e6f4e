"""hardware/: device strings, availability checks, CPU tuning."""

import os

import pytest

import hardware
from hardware import cpu as hw_cpu
from hardware import device as hw_device
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
    assert amp_dtype(DeviceSpec("npu")) == "bfloat16"  # AMP on Ascend: bf16, as the tables say
    assert collective_backend(DeviceSpec("cpu")) == "gloo" and collective_backend(DeviceSpec("gpu")) == "nccl"
    assert collective_backend(DeviceSpec("npu")) == "xccl" and collective_backend(DeviceSpec("xpu")) == "bkcl"


def test_device_env_flags_fill_in_what_the_user_left_unset(monkeypatch):
    import paddle

    for key in DeviceSpec("npu").caps.env:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLAGS_allocator_strategy", "naive_best_fit")  # the user's choice wins
    before = paddle.get_flags("FLAGS_use_stride_kernel")
    try:
        changed = hw_device.apply_device_env(DeviceSpec("npu"))
        assert changed == {"FLAGS_npu_jit_compile": "0", "FLAGS_use_stride_kernel": "0"}
        assert paddle.get_flags("FLAGS_use_stride_kernel")["FLAGS_use_stride_kernel"] is False  # set in Paddle too
    finally:
        paddle.set_flags(before)


def test_a_bare_accelerator_type_takes_the_local_rank(monkeypatch):
    import paddle

    placed = []
    monkeypatch.setattr(hw_device, "available_devices", lambda: {"cpu": 1, "npu": 2})
    monkeypatch.setattr(hw_device, "apply_device_env", lambda spec: {})
    monkeypatch.setattr(paddle, "set_device", placed.append)
    monkeypatch.setenv("PADDLE_LOCAL_RANK", "1")
    assert hardware.resolve_device("npu") == DeviceSpec("npu", 1) and placed == ["npu:1"]
    assert hardware.resolve_device("npu:0") == DeviceSpec("npu", 0)  # an explicit index is kept
    monkeypatch.setenv("PADDLE_LOCAL_RANK", "2")
    with pytest.raises(DeviceError, match="only 2 npu device"):
        hardware.resolve_device("npu")


ZEN3_FLAGS = "fpu sse2 avx avx2 fma bmi2"
ZEN5_FLAGS = ZEN3_FLAGS + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16"


def test_tune_cpu_env_sets_mkl_flag_on_amd_only(monkeypatch):
    """AMD / Hygon get MKL's best kernel family their flags allow (AVX-512: 7, AVX2: 5, neither: none)."""
    flags = {"flags": ZEN5_FLAGS}
    monkeypatch.setattr(hw_cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(hw_cpu, "cpuinfo_field", lambda name: flags[name])
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(hw_cpu, "cpu_vendor", lambda: "GenuineIntel")
    assert hw_cpu.tune_cpu_env() == {}
    for vendor in ("AuthenticAMD", "HygonGenuine"):
        for cpu_flags, want in ((ZEN5_FLAGS, {"MKL_DEBUG_CPU_TYPE": "7"}), (ZEN3_FLAGS, {"MKL_DEBUG_CPU_TYPE": "5"}),
                                ("fpu sse2 avx", {})):  # fmt: skip
            flags["flags"] = cpu_flags
            monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
            monkeypatch.setattr(hw_cpu, "cpu_vendor", lambda v=vendor: v)
            assert hw_cpu.tune_cpu_env() == want, (vendor, cpu_flags)
            assert os.environ.get("MKL_DEBUG_CPU_TYPE") == want.get("MKL_DEBUG_CPU_TYPE")
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "2")  # the user's choice wins
    assert hw_cpu.tune_cpu_env() == {}
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "2"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("fpu sse2 avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl avx512_fp16", "SkylakeX"),
        ("fpu sse2 avx2 fma avx512f", "Haswell"),  # AVX-512 without BW/DQ/VL (Knights Landing): not SkylakeX
        ("fpu sse2 avx2 fma", "Haswell"),
        ("fpu sse2 sse4_2", None),
    ],
)
def test_tune_openblas_env_names_kernels_by_isa(monkeypatch, flags, expected):
    monkeypatch.setattr(hw_cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(hw_cpu, "cpuinfo_field", lambda name: flags if name == "flags" else "")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert hw_cpu.tune_openblas_env() == ({"OPENBLAS_CORETYPE": expected} if expected else {})
    assert hw_cpu.os.environ.get("OPENBLAS_CORETYPE") == expected
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")  # the user's choice wins
    assert hw_cpu.tune_openblas_env() == {} and hw_cpu.os.environ["OPENBLAS_CORETYPE"] == "Zen"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(hw_cpu.platform, "machine", lambda: "aarch64")
    assert hw_cpu.tune_openblas_env() == {}


def test_cpu_vendor_reads_proc_cpuinfo():
    vendor = hw_cpu.cpu_vendor()
    assert isinstance(vendor, str)
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return
    if "vendor_id" in text:
        assert vendor and vendor in text


def test_cpu_training_processes_is_one_per_usable_core_up_to_the_limit(monkeypatch):
    for cores, limit, want in ((1, 2, 1), (2, 2, 2), (16, 2, 2), (16, 4, 4), (3, 8, 3)):
        monkeypatch.setattr(hw_cpu.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert hardware.cpu_training_processes(limit) == want, (cores, limit)
