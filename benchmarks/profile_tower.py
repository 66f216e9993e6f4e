"""Where a tower's fp32 time goes, and which runtime configuration gets it closest to the GEMM ceiling.

    python benchmarks/profile_tower.py --export-dir output/benchmark/export --tower text --batch 1 \
        [--threads 2] [--rounds 5] [--out profile.json]

For one tower and batch it times, in interleaved rounds (one run of each configuration per round):

- ``fused``: the export's ONNX graph (attention blocks fused into ONNX Runtime ``Attention`` ops) with
  paddle_mm's session options (all graph optimizations, no spinning:
  :func:`hardware.inference.onnxruntime_session_options`);
- ``fused, spinning``: the same with intra-op threads that spin between runs (ONNX Runtime's default);
- ``fused, extended opt``: graph optimization level EXTENDED instead of ALL (no layout transformations);
- ``unfused``: the plain paddle2onnx graph (MatMul + Softmax attention), converted again from the export's
  Paddle files;
- ``paddle_inference``: the Paddle Inference fp32 predictor (oneDNN);
- the fp32 GEMM ceiling (:mod:`hardware.gemm`, ONNX Runtime), timed in the same rounds.

It prints each configuration's median ms, GFLOP/s and fraction of that ceiling, then ONNX Runtime's own
profile of the ``fused`` configuration: the share and ms of each operator type (MatMul and Attention are the
GEMMs; LayerNormalization, Gelu, Add, Reshape, Transpose and the rest is the time outside them that keeps a
tower off its ceiling), and the rate of the MatMuls per weight shape (are the tower's own products at the
ceiling?).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CEILING = "gemm ceiling"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # "benchmarks" alone names pyarrow's package


def tower_flops(cfg: dict, tower: str, length: int) -> float:
    from bench_inference import tower_flops as flops

    return flops(cfg, tower, length)


def ort_session(path: Path, threads: int, spinning: bool = False, level: str = "ALL", profile: str | None = None):
    import onnxruntime as ort

    from hardware import DEFAULT_DEVICE, DeviceSpec
    from hardware.inference import onnxruntime_providers, onnxruntime_session_options

    options = onnxruntime_session_options(threads)
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    if spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=onnxruntime_providers(DeviceSpec(DEFAULT_DEVICE)))


def unfused_graph(export_dir: Path, tower: str, out: Path) -> Path:
    """The tower converted again from the export's Paddle files, attention left as MatMul + Softmax."""
    from paddle_mm.export.graphs import graph_specs
    from paddle_mm.export.onnx_export import paddle_to_onnx, save_onnx
    from paddle_mm.inference import read_inference_yml

    info = read_inference_yml(export_dir)
    spec = graph_specs(int(info.preprocess["image"]["size"]), int(info.model["embed_dim"]))[tower]
    model_file, params_file = info.files(tower, "paddle_inference", "fp32")
    model, _ = paddle_to_onnx(model_file, params_file, spec, fuse=False)
    save_onnx(model, out)
    return out


def op_profile(profile_file: str, weight_shapes: dict[str, tuple] | None = None) -> dict:
    """From an ONNX Runtime profile (JSON trace of node events), after its first run (warm-up): the share of
    operator time and the ms per run of each op type, and the ms per run of the MatMuls by weight shape
    (``weight_shapes``: MatMul node name -> its weight's [K, N])."""
    events = json.loads(Path(profile_file).read_text(encoding="utf-8"))
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    after = runs[0]["ts"] + runs[0]["dur"] if len(runs) > 1 else -1
    count = max(len(runs) - 1, 1)
    per_type: dict[str, float] = defaultdict(float)
    per_shape: dict[tuple, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e.get("ts", 0) > after:
            op, node = e.get("args", {}).get("op_name", "?"), e["name"][: -len("_kernel_time")]
            per_type[op] += e.get("dur", 0)
            if op == "MatMul" and node in (weight_shapes or {}):
                per_shape[weight_shapes[node]] += e.get("dur", 0)
    total = sum(per_type.values()) or 1.0
    order = sorted(per_type.items(), key=lambda kv: -kv[1])
    return {
        "shares": {k: v / total for k, v in order},
        "ms_per_run": {k: v / count / 1e3 for k, v in order},
        "matmul_ms_per_run": {shape: v / count / 1e3 for shape, v in per_shape.items()},
    }


def matmul_weight_shapes(onnx_file: str) -> dict[str, tuple]:
    """MatMul node name -> [K, N] of its constant weight."""
    import onnx

    model = onnx.load(onnx_file, load_external_data=False)
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return {n.name: dims[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in dims}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export-dir", required=True)
    p.add_argument("--tower", choices=["image", "text"], default="text")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import hardware

    hardware.tune_cpu_env()
    from hardware import DEFAULT_DEVICE, DeviceSpec, gemm
    from paddle_mm.inference import read_inference_yml
    from paddle_mm.inference.auto import SETTLE_S
    from paddle_mm.inference.backends import PaddleInferenceBackend

    export_dir = Path(args.export_dir)
    info = read_inference_yml(export_dir)
    from paddle_mm.models import get_model_config

    cfg = {**get_model_config(info.model["name"]), **info.model}  # the architecture of the exported model's name
    rng = np.random.default_rng(0)
    if args.tower == "image":
        size = int(info.preprocess["image"]["size"])
        name, x = "pixel_values", rng.standard_normal((args.batch, 3, size, size)).astype(np.float32)
    else:
        length = int(info.preprocess["text"]["context_length"])
        x = rng.integers(1000, 20000, (args.batch, length)).astype(np.int64)
        x[:, 0], x[:, -1], name = 101, 102, "input_ids"
    flops = tower_flops(cfg, args.tower, x.shape[1] if args.tower == "text" else 0) * args.batch
    fused = info.files(args.tower, "onnxruntime", "fp32")[0]
    with tempfile.TemporaryDirectory(prefix="profile_tower_") as tmp:
        unfused = unfused_graph(export_dir, args.tower, Path(tmp) / f"{args.tower}.unfused.onnx")
        sessions = {
            "fused": ort_session(fused, args.threads),
            "fused, spinning": ort_session(fused, args.threads, spinning=True),
            "fused, extended opt": ort_session(fused, args.threads, level="EXTENDED"),
            "unfused": ort_session(unfused, args.threads),
        }
        runs = {k: (lambda s=s: s.run(None, {name: x})) for k, s in sessions.items()}
        pi = PaddleInferenceBackend(
            info.files(args.tower, "paddle_inference", "fp32"), DeviceSpec(DEFAULT_DEVICE), args.threads
        )
        runs["paddle_inference"] = lambda: pi.run({name: x})
        chain, chain_x = gemm.kernel("fp32 onnxruntime MatMul", args.threads, Path(tmp)), gemm.inputs()
        runs[CEILING] = lambda: chain(chain_x)  # hardware.gemm's fp32 ceiling, timed among the configurations
        times: dict[str, list[float]] = {k: [] for k in runs}
        for run in runs.values():
            run(), run()  # warm-up
        for r in range(args.rounds):
            names = list(runs)[r % len(runs) :] + list(runs)[: r % len(runs)]
            for k in names:
                time.sleep(SETTLE_S)  # Paddle Inference's OpenMP threads spin 200 ms after its run
                runs[k]()  # untimed: another configuration's pool may still be spinning
                t0 = time.perf_counter()
                runs[k]()
                times[k].append((time.perf_counter() - t0) * 1e3)
        profiled = ort_session(fused, args.threads, profile=str(Path(tmp) / "ort"))
        for _ in range(max(3, args.rounds) + 1):
            profiled.run(None, {name: x})
        weight_shapes = matmul_weight_shapes(fused)
        profile = op_profile(profiled.end_profiling(), weight_shapes)
    shares = profile["shares"]
    fp32_ceiling = gemm.FLOP / (float(np.median(times.pop(CEILING))) / 1e3) / 1e9
    print(f"{args.tower} tower, batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds; "
          f"{flops / 1e9:.2f} GFLOP per call; fp32 GEMM ceiling {fp32_ceiling:.1f} GFLOP/s (hardware.gemm's "
          "ONNX Runtime chain, timed in the same rounds)")  # fmt: skip
    print("| configuration | median ms | spread (max/min) | GFLOP/s | of fp32 ceiling |\n|---|---|---|---|---|")
    summary = {}
    for k, ts in times.items():
        med = float(np.median(ts))
        rate = flops / (med / 1e3) / 1e9
        summary[k] = {"median_ms": med, "gflop_per_s": rate, "of_ceiling": rate / fp32_ceiling, "ms": ts}
        print(f"| {k} | {med:.2f} | {max(ts) / min(ts):.2f} | {rate:.1f} | {rate / fp32_ceiling:.0%} |")
    print("\nONNX Runtime profile of `fused` (per run, after a warm-up run):")
    print("| op type | share | ms |\n|---|---|---|")
    for op, share in list(shares.items())[:12]:
        print(f"| {op} | {share:.1%} | {profile['ms_per_run'][op]:.2f} |")
    rows = args.batch * (x.shape[1] if args.tower == "text" else (size // cfg["vision_patch_size"]) ** 2 + 1)
    print(f"\nMatMul by weight shape ({rows} rows; Attention holds the q/k/v product):")
    print("| weight | ms | GFLOP/s | of fp32 ceiling |\n|---|---|---|---|")
    shapes = list(weight_shapes.values())
    for (k, n), ms in profile["matmul_ms_per_run"].items():
        count = shapes.count((k, n))
        if count == 1:  # the output projection, on the pooled rows only
            continue
        rate = 2 * rows * k * n * count / (ms / 1e3) / 1e9
        print(f"| [{k} x {n}] x {count} | {ms:.2f} | {rate:.0f} | {rate / fp32_ceiling:.0%} |")
    if args.out:
        ops = {"shares": shares, "ms_per_run": profile["ms_per_run"]}
        Path(args.out).write_text(json.dumps({"args": vars(args), "configs": summary, "ops": ops}, indent=1))


if __name__ == "__main__":
    main()
