"""The measured fp32 and INT8 matrix-multiply ceiling of this CPU, cached per machine.

One ViT-B/16 MLP projection at batch 8 ([1576 x 768] x [768 x 3072], 2 FLOP per multiply-add) through ONNX
Runtime's fp32 ``MatMul`` and its dynamic INT8 ``DynamicQuantizeMatMul`` (the kernel paddle_mm's INT8 exports
use), timed in interleaved blocks (``benchmarks/bench_gemm_peak.py`` is the longer version). No tower can beat
this rate, so the benchmark and docs/performance.md quote it beside their throughputs. The result is cached in
``$PADDLE_MM_CACHE_DIR`` (default ``~/.cache/paddle_mm``) under the machine fingerprint and thread count; a
busy machine measures low, which is why the load average is stored with it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

M, K, N = 8 * 197, 768, 3072
CACHE_FILE = "gemm_ceiling.json"


def gemm_session(nodes, initializers, threads: int):
    """An ONNX Runtime session on the host of one [M, K] -> [M, N] graph, with the project's session options."""
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
    return lambda x: session.run(None, {"x": x})


def measure(threads: int, rounds: int = 3, block: int = 2) -> dict:
    """GFLOP/s (GOP/s for INT8) of both kernels: median over ``rounds`` interleaved blocks of ``block`` runs."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    scale = np.float32(np.abs(w).max() / 127)
    runners = {
        "fp32": gemm_session(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")], threads
        ),
        "int8": gemm_session(
            [helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "z"], ["y"], domain="com.microsoft")],
            [
                numpy_helper.from_array(np.round(w / scale).astype(np.int8), "w"),
                numpy_helper.from_array(np.array(scale), "s"),
                numpy_helper.from_array(np.array(0, np.int8), "z"),
            ],
            threads,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(x)  # warm-up
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(block):
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    flop = 2 * M * K * N
    result = {f"{name}_gflops": round(flop / float(np.median(ts)) / 1e9, 1) for name, ts in times.items()}
    result.update(
        shape=f"[{M} x {K}] x [{K} x {N}]", threads=threads, runs=rounds * block,
        load_average=round(os.getloadavg()[0], 2), measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )  # fmt: skip
    return result


def cache_path() -> Path:
    return Path(os.environ.get("PADDLE_MM_CACHE_DIR") or Path.home() / ".cache" / "paddle_mm") / CACHE_FILE


def ceiling(threads: int, fingerprint: dict[str, str], remeasure: bool = False) -> dict:
    """The cached measurement for this machine and thread count, measuring (a few seconds) when absent."""
    key = json.dumps({**fingerprint, "threads": threads}, sort_keys=True)
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
