"""The measured fp32, BF16 and INT8 matrix-multiply ceilings of this CPU, cached per machine.

One ViT-B/16 MLP projection at batch 8 ([1576 x 768] x [768 x 3072], 2 FLOP per multiply-add) through every
kernel paddle_mm's backends can use for it, timed in interleaved blocks (``benchmarks/bench_gemm_peak.py``
is the longer version):

- fp32: ONNX Runtime ``MatMul`` and oneDNN's fp32 inner product in Paddle Inference;
- bf16: oneDNN's BF16 inner product in Paddle Inference (``enable_mkldnn_bfloat16``; only on a CPU with
  :data:`hardware.tables.BF16_ISA`; ONNX Runtime has no BF16 matmul for x86 CPUs), its fp32 -> BF16 input
  reorder included, as a graph pays it;
- int8: ONNX Runtime's dynamic ``DynamicQuantizeMatMul`` (what ``quantize_dynamic`` exports run) and the
  static QDQ graph (``QuantizeLinear`` -> ``DequantizeLinear`` -> ``MatMul`` with INT8 per-channel weights,
  which ONNX Runtime fuses into an integer matmul: what ``quantize_static`` exports run).

A precision's ceiling is its fastest kernel: no tower can beat it, so the benchmark and docs/performance.md
quote each row's fraction of it. The result is cached in ``$PADDLE_MM_CACHE_DIR`` (default
``~/.cache/paddle_mm``) under the machine fingerprint and thread count; a busy machine measures low, which
is why the load average is stored with it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

M, K, N = 8 * 197, 768, 3072
CACHE_FILE = "gemm_ceiling.json"
KERNELS = 3  # bump when the kernels or how they are timed change: older cache entries are measured again


def gemm_session(nodes, initializers, threads: int):
    """An ONNX Runtime session on the host of one [M, K] -> [M, N] graph, with the project's session options,
    as a function of ``x`` returning the product.

    The output is bound once to a preallocated array (IOBinding): a plain ``session.run`` allocates a fresh
    [M, N] output every call, and the page faults of those 19 MB cost the fp32 MatMul 13 % of its rate
    (401 against 463 GFLOP/s on a 2-core Zen 5, interleaved in one process), which a tower's MatMuls, writing
    into ONNX Runtime's reused arena, do not pay: the ceiling read below what the towers reached.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from .device import DeviceSpec
    from .inference import onnxruntime_providers, onnxruntime_session_options
    from .tables import DEFAULT_DEVICE

    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    options = onnxruntime_session_options(threads)
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=onnxruntime_providers(DeviceSpec(DEFAULT_DEVICE))
    )
    binding, y = session.io_binding(), np.empty((M, N), np.float32)
    binding.bind_output("y", "cpu", 0, np.float32, [M, N], y.ctypes.data)

    def run(x: np.ndarray) -> np.ndarray:
        binding.bind_cpu_input("x", x)
        session.run_with_iobinding(binding)
        return y

    return run


def onnxruntime_kernels(w: np.ndarray, threads: int) -> dict[str, Callable]:
    """fp32 MatMul, dynamic INT8 and static (QDQ, per-channel) INT8 sessions for ``x @ w``."""
    from onnx import TensorProto, helper, numpy_helper

    scale = np.float32(np.abs(w).max() / 127)
    col_scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)  # per output channel
    x_scale = np.float32(4.0 / 127)  # activations of a standard normal input: |x| < 4
    qdq = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    return {
        "fp32 onnxruntime MatMul": gemm_session(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")], threads
        ),
        "int8 onnxruntime DynamicQuantizeMatMul": gemm_session(
            [helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "z"], ["y"], domain="com.microsoft")],
            [
                numpy_helper.from_array(np.round(w / scale).astype(np.int8), "w"),
                numpy_helper.from_array(np.array(scale), "s"),
                numpy_helper.from_array(np.array(0, np.int8), "z"),
            ],
            threads,
        ),
        "int8 onnxruntime static QDQ MatMul": gemm_session(
            qdq,
            [
                numpy_helper.from_array(np.array(x_scale), "xs"),
                numpy_helper.from_array(np.array(128, np.uint8), "xz"),
                numpy_helper.from_array(np.round(w / col_scale).astype(np.int8), "wq"),
                numpy_helper.from_array(col_scale, "ws"),
                helper.make_tensor("wz", TensorProto.INT8, [N], [0] * N),
            ],
            threads,
        ),
    }


def paddle_inference_kernels(w: np.ndarray, threads: int, directory: Path) -> dict[str, Callable]:
    """oneDNN fp32 and (where the CPU has it) BF16 inner products for ``x @ w`` in Paddle Inference."""
    import paddle
    import paddle.inference as pi

    from .cpu import cpu_has_bf16
    from .device import DeviceSpec
    from .inference import paddle_inference_config
    from .tables import DEFAULT_DEVICE

    layer = paddle.nn.Linear(K, N)
    layer.weight.set_value(w)
    layer.eval()
    paddle.jit.save(layer, str(directory / "gemm"), input_spec=[paddle.static.InputSpec([None, K], "float32", "x")])
    runners = {}
    for name, bf16 in (("fp32 paddle_inference oneDNN", False), ("bf16 paddle_inference oneDNN", True)):
        if bf16 and not cpu_has_bf16():
            continue
        config = paddle_inference_config(
            str(directory / "gemm.json"), str(directory / "gemm.pdiparams"), DeviceSpec(DEFAULT_DEVICE), threads,
            bf16=bf16,
        )  # fmt: skip
        predictor = pi.create_predictor(config)
        runners[name] = _paddle_runner(predictor)
    return runners


def _paddle_runner(predictor) -> Callable:
    """``x -> x @ w`` in the predictor. The input is copied in only when ``x`` changes: the ceiling is the
    inner product's rate, and a tower copies its input once per run, not once per matmul."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output = predictor.get_output_handle(predictor.get_output_names()[0])
    bound: list[np.ndarray] = []

    def run(x: np.ndarray):
        if not bound or bound[0] is not x:
            handle.reshape(list(x.shape))
            handle.copy_from_cpu(x)
            bound[:] = [x]
        predictor.run()
        return output

    return run


def time_kernels(runners: dict[str, Callable], x: np.ndarray, rounds: int, block: int) -> dict[str, list[float]]:
    """Seconds per run of each kernel: ``rounds`` interleaved blocks of ``block`` timed runs, each block after
    one untimed run (a thread pool that just finished may still be spinning)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(x)  # warm-up: kernels and plans are built on the first call
    for _ in range(rounds):
        for name, run in runners.items():
            run(x)
            for _ in range(block):
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    return times


def all_kernels(threads: int, directory: Path) -> dict[str, Callable]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((K, N), dtype=np.float32)
    return {**onnxruntime_kernels(w, threads), **paddle_inference_kernels(w, threads, directory)}


def kernel(name: str, threads: int, directory: Path) -> Callable:
    """One kernel of :func:`all_kernels` by its full name (``"fp32 onnxruntime MatMul"``), built alone."""
    w = np.random.default_rng(0).standard_normal((K, N), dtype=np.float32)
    runners = (
        onnxruntime_kernels(w, threads) if " onnxruntime " in name else paddle_inference_kernels(w, threads, directory)
    )
    if name not in runners:
        raise ValueError(f"unknown GEMM kernel {name!r}; this CPU has: {', '.join(runners)}")
    return runners[name]


def inputs() -> np.ndarray:
    """The [M, K] activations every ceiling kernel is timed on."""
    return np.random.default_rng(1).standard_normal((M, K), dtype=np.float32)


def measure(threads: int, rounds: int = 3, block: int = 2) -> dict:
    """GFLOP/s of every kernel (GOP/s for INT8), and per precision the fastest (its ceiling)."""
    x = inputs()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="paddle_mm_gemm_") as tmp:
        times = time_kernels(all_kernels(threads, Path(tmp)), x, rounds, block)
    flop = 2 * M * K * N
    kernels = {name: round(flop / float(np.median(ts)) / 1e9, 1) for name, ts in times.items()}
    result = {}
    for precision in ("fp32", "bf16", "int8"):
        rates = {k: v for k, v in kernels.items() if k.startswith(precision + " ")}
        result[f"{precision}_gflops"] = max(rates.values()) if rates else None
        result[f"{precision}_kernel"] = max(rates, key=rates.get)[len(precision) + 1 :] if rates else None
    result.update(
        kernels=kernels, shape=f"[{M} x {K}] x [{K} x {N}]", threads=threads, runs=rounds * block,
        load_average=round(max(load_before, os.getloadavg()[0]), 2), measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )  # fmt: skip
    return result


def cache_path() -> Path:
    return Path(os.environ.get("PADDLE_MM_CACHE_DIR") or Path.home() / ".cache" / "paddle_mm") / CACHE_FILE


def ceiling(threads: int, fingerprint: dict[str, str], remeasure: bool = False) -> dict:
    """The cached measurement for this machine and thread count, measuring (a few seconds) when absent."""
    key = json.dumps({**fingerprint, "threads": threads, "kernels": KERNELS}, sort_keys=True)
    path = cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if key in data and not remeasure:
        return {**data[key], "cached": True}
    data[key] = measure(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)
    return {**data[key], "cached": False}
