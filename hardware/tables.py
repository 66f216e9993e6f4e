"""What each device, backend and model format can do, as data. The only file that names devices.

Three tables (the shape FastDeploy made familiar) and one rule: a backend serves a (format, device) pair when
the format is among its formats and the device among its devices; :mod:`hardware.select` keeps the first
such backend, in ``BACKEND_ORDER``, that is actually installed, and names the install command of each one
that is not. Adding an accelerator is adding a row here, not a branch elsewhere: code outside this file
asks for capabilities (``amp_dtype``, ``collective``, ``int8``), never for a vendor.

Probes (how Paddle shows a device) and Paddle Inference set-up calls live here too, as small functions in
the rows, because they are the per-device facts; nothing in them runs at import (paddle loads lazily).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# -- how Paddle reaches a device: count usable devices of a type, without ever touching an absent one ----------


def _count_builtin(paddle, kind: str) -> int:
    return 1


def _count_cuda(paddle, kind: str) -> int:
    ok = paddle.is_compiled_with_cuda() and not paddle.is_compiled_with_rocm()
    return paddle.device.cuda.device_count() if ok else 0


def _count_rocm(paddle, kind: str) -> int:
    return paddle.device.cuda.device_count() if paddle.is_compiled_with_rocm() else 0


def _count_kunlun(paddle, kind: str) -> int:
    return paddle.device.xpu.device_count() if paddle.is_compiled_with_xpu() else 0


def _count_plugin(paddle, kind: str) -> int:
    """Devices of a custom-device plugin type; 0 when no plugin registered it (asking further would abort)."""
    if kind not in (paddle.device.get_all_custom_device_type() or []):
        return 0
    return len([d for d in paddle.device.get_available_custom_device() if d.split(":")[0] == kind])


# -- Paddle Inference: how a Config is pointed at device ``index`` ---------------------------------------------


def _pi_host(config, kind: str, index: int) -> None:
    config.disable_gpu()  # threads and oneDNN: hardware.inference.paddle_inference_config


def _pi_cuda(config, kind: str, index: int) -> None:
    config.enable_use_gpu(256, index)  # initial pool MB; it grows as needed


def _pi_kunlun(config, kind: str, index: int) -> None:
    config.enable_xpu()
    config.set_xpu_device_id(index)


def _pi_plugin(config, kind: str, index: int) -> None:
    config.enable_custom_device(kind, index)  # only after _count_plugin said the plugin is loaded


@dataclass(frozen=True)
class Device:
    """One device type and what it can do. ``type`` is Paddle's name (``npu`` in ``npu:0``)."""

    type: str
    title: str  # what its users call it
    count: Callable = field(repr=False)  # (paddle, type) -> usable devices in this process
    paddle_inference: Callable = field(repr=False)  # (config, type, index): point a Paddle Inference Config at it
    precisions: tuple[str, ...]  # training compute dtypes
    amp_dtype: str | None  # the autocast dtype; None where Paddle has no autocast (CPU)
    collective: str  # multi-process communication library (paddle.distributed)
    int8: bool  # dynamic-INT8 inference (ONNX Runtime) is offered
    env: dict[str, str]  # flags the vendor's docs / PaddleX set for it; applied unless the user set them
    ort_providers: tuple[str, ...]  # ONNX Runtime execution providers, in order of preference
    install: str  # the command that provides the Paddle build or plugin
    ort_install: str  # how to get its ONNX Runtime execution provider (a sentence)
    tested_here: str  # what this project's CI runs on it


_NO_ORT = "ONNX Runtime has no build for it: use the paddle_inference backend"

DEVICES: dict[str, Device] = {
    d.type: d
    for d in (
        Device(
            type="cpu",
            title="CPU (x86-64, ARM64, LoongArch via a native Paddle build)",
            count=_count_builtin,
            paddle_inference=_pi_host,
            precisions=("float32",),
            amp_dtype=None,
            collective="gloo",
            int8=True,
            # Strided views make every reshape after a transpose run Paddle's slow element-wise strided copy;
            # contiguous transposes cut the quickstart's step (batch 64) from ~163 to ~100 ms of CPU, same numbers.
            env={"FLAGS_use_stride_kernel": "0"},
            ort_providers=("CPUExecutionProvider",),
            install="pip install paddlepaddle==3.3.1",
            ort_install="install it with: pip install onnxruntime",
            tested_here="everything",
        ),
        Device(
            type="gpu",
            title="NVIDIA GPU (CUDA)",
            count=_count_cuda,
            paddle_inference=_pi_cuda,
            precisions=("float32", "float16", "bfloat16"),
            amp_dtype="float16",
            collective="nccl",
            int8=False,
            env={},
            ort_providers=("CUDAExecutionProvider",),
            install="pip install paddlepaddle-gpu==3.3.1 -i https://www.paddlepaddle.org.cn/packages/stable/cu126/",
            ort_install="install it with: pip install onnxruntime-gpu",
            tested_here="not tested (no GPU here)",
        ),
        Device(
            type="npu",
            title="Huawei Ascend (CANN, paddle-custom-npu plugin)",
            count=_count_plugin,
            paddle_inference=_pi_plugin,
            precisions=("float32", "float16", "bfloat16"),
            amp_dtype="bfloat16",
            collective="xccl",
            int8=False,
            env={
                "FLAGS_npu_jit_compile": "0",
                "FLAGS_use_stride_kernel": "0",
                "FLAGS_allocator_strategy": "auto_growth",
            },
            ort_providers=("CANNExecutionProvider",),
            install="pip install paddle-custom-npu -i https://www.paddlepaddle.org.cn/packages/stable/npu/"
            " (needs the CANN toolkit; docs/hardware.md)",
            ort_install="install it with: pip install onnxruntime-cann (needs the CANN toolkit)",
            tested_here="fake npu plugin (hardware/fake_npu): training, evaluation, export, Paddle Inference",
        ),
        Device(
            type="xpu",
            title="Kunlunxin XPU",
            count=_count_kunlun,
            paddle_inference=_pi_kunlun,
            precisions=("float32", "float16"),
            amp_dtype="float16",
            collective="bkcl",
            int8=False,
            env={"BKCL_FORCE_SYNC": "1", "BKCL_TIMEOUT": "1800", "FLAGS_use_stride_kernel": "0"},
            ort_providers=(),
            install="pip install paddlepaddle-xpu -i https://www.paddlepaddle.org.cn/packages/stable/xpu-p800/",
            ort_install=_NO_ORT,
            tested_here="not tested (no Kunlun card here)",
        ),
        Device(
            type="dcu",
            title="Hygon DCU (ROCm build of Paddle)",
            count=_count_rocm,
            paddle_inference=_pi_cuda,
            precisions=("float32", "float16"),
            amp_dtype="float16",
            collective="nccl",
            int8=False,
            env={},
            ort_providers=("ROCMExecutionProvider", "MIGraphXExecutionProvider"),
            install="install the Paddle DCU build from the Paddle/DTK docker image (docs/hardware.md)",
            ort_install="install an onnxruntime built with ROCm / MIGraphX",
            tested_here="not tested (no DCU here)",
        ),
        Device(
            type="mlu",
            title="Cambricon MLU (paddle-custom-mlu plugin)",
            count=_count_plugin,
            paddle_inference=_pi_plugin,
            precisions=("float32", "float16"),
            amp_dtype="float16",
            collective="xccl",
            int8=False,
            env={},
            ort_providers=(),
            install="build paddle-custom-mlu from PaddleCustomDevice (backends/mlu) with the Cambricon Neuware SDK",
            ort_install=_NO_ORT,
            tested_here="not tested",
        ),
        Device(
            type="gcu",
            title="Enflame GCU (paddle-custom-gcu plugin)",
            count=_count_plugin,
            paddle_inference=_pi_plugin,
            precisions=("float32", "float16"),
            amp_dtype="float16",
            collective="xccl",
            int8=False,
            env={},
            ort_providers=(),
            install="build paddle-custom-gcu from PaddleCustomDevice (backends/gcu) with the TopsRider SDK",
            ort_install=_NO_ORT,
            tested_here="not tested",
        ),
    )
}


@dataclass(frozen=True)
class Format:
    """A model format paddle_mm writes, and the files that hold one graph of it."""

    name: str
    title: str
    files: str
    int8: bool = False  # needs a device whose ``int8`` is True


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("checkpoint", "training checkpoint", "model.safetensors + config"),
        Format("paddle_inference", "Paddle inference graph (PIR)", "<graph>.json + <graph>.pdiparams"),
        Format("onnx_fp32", "ONNX fp32", "<graph>.onnx"),
        Format("onnx_int8", "ONNX dynamic INT8", "<graph>.int8.onnx", int8=True),
    )
}


@dataclass(frozen=True)
class Backend:
    """A runtime: the formats it runs, the devices it can drive, how to tell it is installed."""

    name: str
    title: str
    formats: tuple[str, ...]
    devices: tuple[str, ...] | None  # None: every device Paddle drives (it goes through Paddle)
    module: str  # importable when installed
    install: str


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("paddle", "Paddle eager", ("checkpoint",), None, "paddle", "pip install paddlepaddle==3.3.1"),
        Backend(
            "paddle_inference",
            "Paddle Inference",
            ("paddle_inference",),
            None,
            "paddle.inference",
            "pip install paddlepaddle==3.3.1",
        ),
        Backend(
            "onnxruntime",
            "ONNX Runtime",
            ("onnx_fp32", "onnx_int8"),
            tuple(t for t, d in DEVICES.items() if d.ort_providers),
            "onnxruntime",
            "pip install onnxruntime",
        ),
    )
}

# The format of an export variant, by (backend, precision) as inference.yml lists them.
VARIANT_FORMATS: dict[tuple[str, str], str] = {
    ("paddle_inference", "fp32"): "paddle_inference",
    ("onnxruntime", "fp32"): "onnx_fp32",
    ("onnxruntime", "int8"): "onnx_int8",
}

# Order of preference when several backends serve a (format, device); backend="auto" measures instead.
BACKEND_ORDER = ("paddle", "paddle_inference", "onnxruntime")

# CPU vendors on which Paddle's MKL (mklml) takes its generic path unless MKL_DEBUG_CPU_TYPE names a kernel family
# (hardware.cpu.tune_cpu_env).
MKL_SLOW_PATH_VENDORS = ("AuthenticAMD", "HygonGenuine")
# MKL_DEBUG_CPU_TYPE values for a CPU with these flags, best first. 7 is MKL's AVX-512 (Skylake-X) family
# (`perf` shows mkl_blas_avx512_sgemm_kernel_0), 5 its AVX2 family; 6 is Knights Landing's avx512_mic family,
# which may use AVX512ER/PF and is never chosen. Measured on a 2-core AMD EPYC Zen 5 (family 26, AVX-512), one
# [788 x 768] x [768 x 3072] sgemm, 2 threads: generic 86 GFLOP/s, 5: 206, 7: 367; results within 9e-7
# (relative) of a float64 product with each.
MKL_CPU_TYPES = (
    ("7", ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")),
    ("5", ("avx2", "fma")),
)
# OpenBLAS kernels to name for a CPU with these flags (/proc/cpuinfo spelling), best first. OpenBLAS builds with
# DYNAMIC_ARCH (faiss-cpu's bundled one) pick kernels by CPU model and fall back to "Prescott" (SSE3) on models they
# do not know: measured here on a virtualised Xeon (family 6 model 207, AVX-512), faiss's sgemm ran 24 GFLOP/s per
# core as Prescott, 96 as SkylakeX, 59 as Haswell (docs/deploy.md, *Search*).
OPENBLAS_CORETYPES = (
    ("SkylakeX", ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")),
    ("Haswell", ("avx2", "fma")),
)

# ISA features the machine report looks for in /proc/cpuinfo, by architecture (platform.machine()).
ISA_FEATURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"),
    "aarch64": ("asimd", "asimddp", "sve", "sve2", "bf16", "i8mm"),
    "loongarch64": ("lsx", "lasx"),
    "riscv64": ("v",),  # the vector extension, from the isa string rv64imafdcv...
}

# CPU flags (as /proc/cpuinfo spells them) with a BF16 dot-product instruction oneDNN uses for BF16 matmuls.
# Without AMX, Intel's avx512_bf16 (VDPBF16PS, one per cycle) does as many multiply-adds per cycle as two
# fp32 FMAs, so it only halves memory traffic there; docs/performance.md has the measured rates.
BF16_ISA = ("avx512_bf16", "amx_bf16")

DEFAULT_DEVICE = "cpu"  # the host: always present, the default everywhere

# The fake device the tests run on (hardware/plugin.py builds it): a custom-device plugin registered as this
# type, so the Ascend code path runs in CI without Ascend hardware.
FAKE_PLUGIN = {"type": "npu", "device": "npu:0", "source": "fake_npu/fake_npu.cc", "library": "libpaddle-custom-npu.so"}
