"""The measured fp32, BF16 and INT8 matrix-multiply ceilings of this CPU, cached per machine.

What is timed is the GEMM work of two ViT-B/16 MLP blocks at batch 8, nothing else: ``x`` [1576 x 768] ->
[768 x 3072] -> [3072 x 768] -> [768 x 3072] -> [3072 x 768] (four matrix products with their own weights,
2 FLOP per multiply-add), through every kernel paddle_mm's backends can use for it, timed in interleaved
blocks (``benchmarks/bench_gemm_peak.py`` is the longer version):

- fp32: ONNX Runtime ``MatMul`` and oneDNN's fp32 inner product in Paddle Inference;
- bf16: oneDNN's BF16 inner product in Paddle Inference (``enable_mkldnn_bfloat16``; only on a CPU with
  :data:`hardware.tables.BF16_ISA`; ONNX Runtime has no BF16 matmul for x86 CPUs);
- int8: ONNX Runtime's dynamic ``DynamicQuantizeMatMul`` (what ``quantize_dynamic`` exports run) and the
  static QDQ graph (``QuantizeLinear`` -> ``DequantizeLinear`` -> ``MatMul`` with INT8 per-channel weights,
  which ONNX Runtime fuses into an integer matmul: what ``quantize_static`` exports run).

A chain, not one product, because a tower's matmuls hand their outputs to each other inside the runtime: a
single product timed alone pays per call what a tower pays once per run (oneDNN's fp32 -> BF16 reorder of the
input and back for the output, a fresh output buffer), and read 565 GFLOP/s for BF16 against 885 for the
chain (fp32 oneDNN 356 against 402; 2-core Zen 5, interleaved in one process), so the towers' BF16 rows
stood above "their ceiling". The chain's outputs are ONNX Runtime's own arena buffers and one preallocated
output (IOBinding); Paddle Inference copies the input in once. Twelve blocks run at the rate of one (453
against 454 GFLOP/s, ONNX Runtime fp32), so weights streaming from memory cost nothing measurable here.

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
BLOCKS = 2  # MLP blocks in the chain
FLOP = 2 * M * K * N * 2 * BLOCKS  # per run of a kernel
SHAPE = f"{BLOCKS} x ([{M} x {K}] x [{K} x {N}] x [{N} x {K}])"
CACHE_FILE = "gemm_ceiling.json"
KERNELS = 4  # bump when the kernels or how they are timed change: older cache entries are measured again


def weights(blocks: int = BLOCKS, seed: int = 0) -> list[np.ndarray]:
    """A chain's weights, [K, N] and [N, K] per block, scaled by 1/sqrt(fan-in) so activations stay ~N(0, 1)."""
    rng = np.random.default_rng(seed)
    shapes = [(K, N), (N, K)] * blocks
    return [(rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[0]))) for shape in shapes]


def inputs() -> np.ndarray:
    """The [M, K] activations every ceiling kernel is timed on."""
    return np.random.default_rng(1).standard_normal((M, K), dtype=np.float32)


def reference(x: np.ndarray, ws: list[np.ndarray]) -> np.ndarray:
    """The chain in float64, for checking a kernel's result."""
    y = x.astype(np.float64)
    for w in ws:
        y = y @ w
    return y


def gemm_session(nodes, initializers, threads: int, rows: int = M):
    """An ONNX Runtime session on the host of one [rows, K] -> [rows, K] graph, with the project's session
    options, as a function of ``x`` returning the result.

    The output is bound once to a preallocated array (IOBinding): a plain ``session.run`` allocates a fresh
    output every call, and for one [M, N] product the page faults of those 19 MB cost the fp32 MatMul 13 % of
    its rate (401 against 463 GFLOP/s on a 2-core Zen 5, interleaved in one process).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from .device import DeviceSpec
    from .inference import onnxruntime_providers, onnxruntime_session_options
    from .tables import DEFAULT_DEVICE

    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, K])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    options = onnxruntime_session_options(threads)
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=onnxruntime_providers(DeviceSpec(DEFAULT_DEVICE))
    )
    binding, y = session.io_binding(), np.empty((rows, K), np.float32)
    binding.bind_output("y", DEFAULT_DEVICE, 0, np.float32, [rows, K], y.ctypes.data)

    def run(x: np.ndarray) -> np.ndarray:
        binding.bind_cpu_input("x", x)
        session.run_with_iobinding(binding)
        return y

    return run


def _chain(make, products: int = 2 * BLOCKS) -> tuple[list, list]:
    """Nodes and initializers of a chain of ``products`` products; ``make(i, src, dst)`` gives one product's."""
    nodes, inits = [], []
    for i in range(products):
        src, dst = ("x" if i == 0 else f"h{i}"), ("y" if i == products - 1 else f"h{i + 1}")
        n, t = make(i, src, dst)
        nodes += n
        inits += t
    return nodes, inits


def fp32_chain(ws: list[np.ndarray], threads: int, rows: int = M) -> Callable:
    """The ONNX Runtime fp32 ``MatMul`` session of the chain ``x @ ws[0] @ ws[1] ...`` on [rows, K] inputs."""
    from onnx import helper, numpy_helper

    def fp32(i, src, dst):
        return [helper.make_node("MatMul", [src, f"w{i}"], [dst])], [numpy_helper.from_array(ws[i], f"w{i}")]

    return gemm_session(*_chain(fp32, len(ws)), threads, rows)


def onnxruntime_kernels(ws: list[np.ndarray], threads: int, names: set[str] | None = None) -> dict[str, Callable]:
    """fp32 MatMul, dynamic INT8 and static (QDQ, per-channel) INT8 sessions of the chain ``x @ ws[0] @ ...``
    (only those in ``names`` when given)."""
    from onnx import TensorProto, helper, numpy_helper

    x_scale = np.float32(6.0 / 127)  # activations ~N(0, 1): |x| < 6

    def dynamic(i, src, dst):
        scale = np.float32(np.abs(ws[i]).max() / 127)
        node = helper.make_node(
            "DynamicQuantizeMatMul", [src, f"w{i}", f"s{i}", f"z{i}"], [dst], domain="com.microsoft"
        )
        return [node], [
            numpy_helper.from_array(np.round(ws[i] / scale).astype(np.int8), f"w{i}"),
            numpy_helper.from_array(np.array(scale), f"s{i}"),
            numpy_helper.from_array(np.array(0, np.int8), f"z{i}"),
        ]

    def qdq(i, src, dst):
        col_scale = (np.abs(ws[i]).max(axis=0) / 127).astype(np.float32)  # per output channel
        nodes = [
            helper.make_node("QuantizeLinear", [src, "xs", "xz"], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", "xs", "xz"], [f"d{i}"]),
            helper.make_node("DequantizeLinear", [f"wq{i}", f"ws{i}", f"wz{i}"], [f"wd{i}"], axis=1),
            helper.make_node("MatMul", [f"d{i}", f"wd{i}"], [dst]),
        ]
        inits = [
            numpy_helper.from_array(np.round(ws[i] / col_scale).astype(np.int8), f"wq{i}"),
            numpy_helper.from_array(col_scale, f"ws{i}"),
            helper.make_tensor(f"wz{i}", TensorProto.INT8, [ws[i].shape[1]], [0] * ws[i].shape[1]),
        ]
        if i == 0:
            inits += [
                numpy_helper.from_array(np.array(x_scale), "xs"),
                numpy_helper.from_array(np.array(128, np.uint8), "xz"),
            ]
        return nodes, inits

    builders = {
        "fp32 onnxruntime MatMul": lambda: fp32_chain(ws, threads),
        "int8 onnxruntime DynamicQuantizeMatMul": lambda: gemm_session(*_chain(dynamic, len(ws)), threads),
        "int8 onnxruntime static QDQ MatMul": lambda: gemm_session(*_chain(qdq, len(ws)), threads),
    }
    return {name: build() for name, build in builders.items() if names is None or name in names}


def paddle_inference_kernels(
    ws: list[np.ndarray], threads: int, directory: Path, names: set[str] | None = None
) -> dict[str, Callable]:
    """oneDNN fp32 and (where the CPU has it) BF16 inner products of the chain in Paddle Inference (only those in
    ``names`` when given)."""
    import paddle
    import paddle.inference as pi

    from .cpu import cpu_has_bf16
    from .device import DeviceSpec
    from .inference import paddle_inference_config
    from .tables import DEFAULT_DEVICE

    layers = []
    for w in ws:
        layer = paddle.nn.Linear(*w.shape, bias_attr=False)
        layer.weight.set_value(w)
        layers.append(layer)
    net = paddle.nn.Sequential(*layers)
    net.eval()
    paddle.jit.save(net, str(directory / "gemm"), input_spec=[paddle.static.InputSpec([None, K], "float32", "x")])
    runners = {}
    for name, bf16 in (("fp32 paddle_inference oneDNN", False), ("bf16 paddle_inference oneDNN", True)):
        if (bf16 and not cpu_has_bf16()) or (names is not None and name not in names):
            continue
        config = paddle_inference_config(
            str(directory / "gemm.json"), str(directory / "gemm.pdiparams"), DeviceSpec(DEFAULT_DEVICE), threads,
            bf16=bf16,
        )  # fmt: skip
        predictor = pi.create_predictor(config)
        runners[name] = _paddle_runner(predictor)
    return runners


def _paddle_runner(predictor) -> Callable:
    """``x -> chain(x)`` in the predictor. The input is copied in only when ``x`` changes: the ceiling is the
    inner products' rate, and a tower copies its input once per run."""
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
    ws = weights()
    return {**onnxruntime_kernels(ws, threads), **paddle_inference_kernels(ws, threads, directory)}


def kernel(name: str, threads: int, directory: Path) -> Callable:
    """One kernel of :func:`all_kernels` by its full name (``"fp32 onnxruntime MatMul"``), built alone."""
    ws = weights()
    if " onnxruntime " in name:
        runners = onnxruntime_kernels(ws, threads, {name})
    else:
        runners = paddle_inference_kernels(ws, threads, directory, {name})
    if name not in runners:
        raise ValueError(f"unknown GEMM kernel {name!r}; see hardware.gemm.all_kernels for this CPU's")
    return runners[name]


def measure(threads: int, rounds: int = 3, block: int = 2) -> dict:
    """GFLOP/s of every kernel (GOP/s for INT8), and per precision the fastest (its ceiling)."""
    x = inputs()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="paddle_mm_gemm_") as tmp:
        times = time_kernels(all_kernels(threads, Path(tmp)), x, rounds, block)
    kernels = {name: round(FLOP / float(np.median(ts)) / 1e9, 1) for name, ts in times.items()}
    result = {}
    for precision in ("fp32", "bf16", "int8"):
        rates = {k: v for k, v in kernels.items() if k.startswith(precision + " ")}
        result[f"{precision}_gflops"] = max(rates.values()) if rates else None
        result[f"{precision}_kernel"] = max(rates, key=rates.get)[len(precision) + 1 :] if rates else None
    result.update(
        kernels=kernels, shape=SHAPE, threads=threads, runs=rounds * block,
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
