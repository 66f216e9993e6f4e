"""Device decisions for deployed models: Paddle Inference configs, ONNX Runtime providers, thread counts
and the machine identity that backend measurements are cached under.

Like the rest of ``hardware``, this imports paddle and onnxruntime lazily and never imports paddle_mm.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

from .cpu import cpu_has_bf16, cpu_vendor, cpuinfo_field, keep_freed_memory
from .device import DeviceError, DeviceSpec, require_device
from .tables import BF16_ISA, DEFAULT_DEVICE, DEVICES

# oneDNN keeps compiled primitives per input shape; a dynamic batch and text length would grow that cache
# without bound, so keep the most recent shapes only (Paddle's own advice for variable-shape models). Each cached
# shape holds its own reordered copy of the weights (see shape_compiled).
MKLDNN_SHAPE_CACHE = 16
# Text fed to Paddle Inference is padded to a multiple of this many tokens (exact: pad keys are masked). Each
# new input shape costs oneDNN a compile: on the Zen 5 of docs/performance.md, the first run of a ViT-B-16
# text at a new length took 107 ms (p50) against 26 ms at a length seen before, while ONNX Runtime runs any
# length at once (21 ms). Multiples of 8 leave 7 lengths of a 52-token context per batch size.
PADDLE_TEXT_LENGTH_MULTIPLE = 8


def default_threads() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> int:
    """``threads`` or the default; raises ValueError naming a non-positive value."""
    if threads is None:
        return default_threads()
    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads={threads!r}: use a positive integer, or None for all {default_threads()} cores")
    return int(threads)


def paddle_inference_config(
    model_file: str,
    params_file: str,
    spec: DeviceSpec,
    threads: int | None = None,
    mkldnn: bool = True,
    bf16: bool = False,
):
    """A ``paddle.inference.Config`` for a ``.json`` + ``.pdiparams`` model on ``spec``.

    On CPU: oneDNN (``mkldnn``) with ``threads`` math threads; ``bf16``: oneDNN's BF16 kernels for the ops
    it has them for (weights are converted at load; activations are reordered to BF16 and back around them),
    only on a CPU with :data:`hardware.tables.BF16_ISA`. On accelerators the device must be present (checked
    first: an absent custom-device plugin would abort the process, not raise).
    """
    if bf16:
        check_bf16(spec, mkldnn)
    import paddle.inference as pi

    config = pi.Config(str(model_file), str(params_file))
    config.disable_glog_info()
    require_device(spec)  # first: pointing a Config at an absent plugin device aborts the process
    spec.caps.paddle_inference(config, spec.type, spec.index)
    if spec.type == DEFAULT_DEVICE:  # the host: math threads and oneDNN
        keep_freed_memory()  # else some processes fault a few hundred MB back in on every run
        config.set_cpu_math_library_num_threads(check_threads(threads))
        if mkldnn:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(MKLDNN_SHAPE_CACHE)
            if bf16:
                config.enable_mkldnn_bfloat16()
    return config


def check_bf16(spec: DeviceSpec, mkldnn: bool = True) -> None:
    """Raise ValueError (one line, with the alternative) when BF16 inference cannot run on ``spec`` here."""
    if spec.type != DEFAULT_DEVICE or not mkldnn:
        raise ValueError(f"precision bf16 runs on the host CPU with oneDNN only, not {spec}; use precision='fp32'")
    if not cpu_has_bf16():
        raise ValueError(
            f"precision bf16 needs a CPU with one of {list(BF16_ISA)} ({cpuinfo_field('model name') or 'this CPU'} "
            "has none); use precision='fp32' or 'int8'"
        )


def shape_compiled(backend: str, spec: DeviceSpec) -> str | None:
    """Why ``backend`` on ``spec`` pays for every input shape it has not run before, or None if it does not.

    Paddle Inference with oneDNN (the host CPU) compiles its kernels for each input shape and keeps, per
    cached shape (:data:`MKLDNN_SHAPE_CACHE`), its own reordered copy of the weights. Measured on a 2-core Zen 5
    with the ViT-B-16 text tower (``benchmarks/bench_mixed_shapes.py``, docs/export.md): the first run at a new
    (batch, length) took 96 ms more than the next (BF16: 70 ms), and over 48 calls of 35 shapes the predictor grew
    by 3.8 GB (BF16 1.9 GB) and took 1.7x as long as ONNX Runtime, which runs any shape at its steady speed in
    constant memory. A steady-state timing (``backend="auto"``) sees none of this, so a caller
    whose shapes vary (a server's dynamic batches) should not be handed such a runtime where another runs the
    same precision (:class:`paddle_mm.inference.Predictor` ``varying_shapes``).
    """
    if backend == "paddle_inference" and spec.type == DEFAULT_DEVICE:
        return (
            "compiles per input shape (~100 ms each) and keeps a copy of the weights per cached shape; "
            "for calls of varying batch size and text length use onnxruntime"
        )
    return None


def onnxruntime_providers(spec: DeviceSpec) -> list[str | tuple[str, dict]]:
    """ONNX Runtime providers for ``spec`` (CPU last as the fallback for unsupported ops).

    Raises DeviceError naming the providers this onnxruntime build has when none fits the device.
    """
    host = DEVICES[DEFAULT_DEVICE].ort_providers[0]
    if spec.type == DEFAULT_DEVICE:
        return [host]
    why = ort_provider_missing(spec)
    if why is not None:
        raise DeviceError(why)
    import onnxruntime as ort

    name = next(p for p in spec.caps.ort_providers if p in ort.get_available_providers())
    return [(name, {"device_id": spec.index}), host]


def ort_provider_missing(spec: DeviceSpec) -> str | None:
    """Why this onnxruntime cannot drive ``spec`` (one line with the install command), or None if it can."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if any(p in have for p in spec.caps.ort_providers):
        return None
    needs = list(spec.caps.ort_providers) or "one that does not exist"
    return (
        f"this onnxruntime has no execution provider for {str(spec)!r} (it has {have}; "
        f"{spec.caps.title} needs {needs}); {spec.caps.ort_install}"
    )


def onnxruntime_session_options(threads: int | None = None):
    """Session options: all graph optimizations, ``threads`` intra-op threads, sequential execution, and
    worker threads that spin between the ops of a run but stop spinning when the run ends.

    A predictor holds one session per graph, each with its own thread pool. With ONNX Runtime's default
    spinning, the pool that just finished keeps the cores busy while the next session runs: alternating the
    ViT-B-16 image and text towers at batch 1 (2 threads, Zen 5) took 122 / 57 ms per run against 87-92 / 30-31
    without spinning. ``session.force_spinning_stop`` ends the spinning with each run, so the alternation costs
    nothing (87-89 / 29 ms), while within a run the threads still spin between ops instead of sleeping and waking
    for each: single-session runs 7-13 % faster than without spinning (text batch 1 28-30 against 32-34 ms,
    docs/performance.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = check_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")  # no pool left spinning after a run
    options.log_severity_level = 3  # errors only: the export's unused-initializer notes are not news
    return options


def machine_fingerprint() -> dict[str, str]:
    """What makes a speed measurement valid only on this machine: CPU model and count, accelerator kind,
    and the versions of the runtimes measured. Cached backend choices are keyed by it."""
    return {
        "cpu": cpuinfo_field("model name") or platform.processor() or platform.machine(),
        "cpu_vendor": cpu_vendor(),
        "cores": str(default_threads()),
        "machine": platform.machine(),
        "paddlepaddle": _version("paddlepaddle"),
        "onnxruntime": _version("onnxruntime"),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
