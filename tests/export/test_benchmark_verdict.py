"""benchmarks/bench_inference.py's verdicts and checks on made-up rows; the e2e pipeline's batching order."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def benchmark():
    return load(ROOT / "benchmarks" / "bench_inference.py", "benchmark_tool")


def row(variant: str, p10: float, p50: float, p90: float, items: float = 0.0, tower="image", batch=8) -> dict:
    return {"variant": variant, "p10_ms": p10, "p50_ms": p50, "p90_ms": p90, "items_per_s": items,
            "tower": tower, "batch": batch}  # fmt: skip


def test_a_busy_machine_is_said_plainly_with_the_rows_it_hides(benchmark):
    rows = [row("a/fp32", 90, 100, 110), row("b/fp32", 105, 115, 130), row("c/int8", 40, 45, 50)]
    busy = benchmark.group_verdict(rows, {"other_cores": benchmark.BUSY_CORES + 0.5}, 2)
    assert busy.startswith("machine too busy to tell rows apart") and "a/fp32 ~ b/fp32" in busy
    assert "c/int8 ~" not in busy  # its range does not touch the others
    quiet = benchmark.group_verdict(rows, {"other_cores": 0.05}, 2)
    assert quiet.startswith("quiet (other processes used 0.05 of 2 cores)") and "a/fp32 ~ b/fp32" in quiet
    apart = benchmark.group_verdict(
        [row("a/fp32", 90, 100, 104), row("b/fp32", 105, 115, 130)], {"other_cores": 0.0}, 2
    )
    assert apart.endswith("range: none")


def test_each_row_is_held_against_its_own_precisions_ceiling(benchmark):
    expected = {
        "cn_clip": "fp32",
        "paddle_eager": "fp32",
        "paddle_inference/fp32": "fp32",
        "paddle_inference/bf16": "bf16",
        "onnxruntime/int8": "int8",
        "onnxruntime/int8_static": "int8",
        "gemm/fp32-onnxruntime": "fp32",
        "gemm/bf16-onednn": "bf16",
        "gemm/int8-static": "int8",
    }
    assert {v: benchmark.ceiling_precision(v) for v in expected} == expected


def test_auto_check_compares_the_pick_with_the_fastest_fp32_row(benchmark):
    rows = [row("paddle_inference/fp32", 0, 0, 0, 10.0), row("onnxruntime/fp32", 0, 0, 0, 10.4),
            row("onnxruntime/int8", 0, 0, 0, 30.0)]  # fmt: skip
    assert benchmark.auto_check(rows, {"image_b8": {"backend": "paddle_inference"}}) == {"image_b8": True}  # 4 %
    rows[1]["items_per_s"] = 11.0  # 10 % faster than the pick: int8 rows do not count
    assert benchmark.auto_check(rows, {"image_b8": {"backend": "paddle_inference"}}) == {"image_b8": False}


def test_int8_keeps_the_faster_export_only_when_it_stands_out(benchmark):
    rows = [row("onnxruntime/int8", 90, 100, 110), row("onnxruntime/int8_static", 60, 70, 80)]
    assert benchmark.int8_choice(rows).startswith("int8: keep onnxruntime/int8_static (1.43x the other; ranges apart")
    rows[1].update(p10_ms=85, p50_ms=95, p90_ms=105)
    assert benchmark.int8_choice(rows).startswith("int8: static and dynamic within noise (1.05x); keep dynamic")
    assert benchmark.int8_choice(rows[:1]) is None


def test_the_pipeline_encodes_every_batch_once_in_order():
    from paddle_mm.inference.pipeline import pipelined

    seen = []

    def encode(batch):
        seen.append(list(batch))
        return batch

    with ThreadPoolExecutor(2) as pool:
        out = pipelined(list(range(19)), 4, lambda b: [x * 10 for x in b], encode, pool, depth=3)
    assert out == seen and seen == [[x * 10 for x in range(i, min(i + 4, 19))] for i in range(0, 19, 4)]


def test_rows_are_held_against_the_ceiling_timed_in_their_own_group(benchmark):
    rows = [
        {**row("onnxruntime/fp32", 0, 0, 0), "ceiling": "fp32", "gflop_per_s": 360.0},
        {**row("onnxruntime/int8", 0, 0, 0), "ceiling": "int8", "gflop_per_s": 900.0},
        {**row("gemm/fp32-onednn", 0, 0, 0), "ceiling": "fp32", "gflop_per_s": 350.0},
        {**row("gemm/fp32-onnxruntime", 0, 0, 0), "ceiling": "fp32", "gflop_per_s": 400.0},
        {**row("gemm/bf16-onednn", 0, 0, 0), "ceiling": "bf16", "gflop_per_s": 800.0},
    ]
    start = {"fp32_gflops": 300.0, "int8_gflops": 1000.0}  # measured minutes earlier, when the VM ran slower
    benchmark.hold_against_ceilings(rows, start)
    assert rows[0]["of_gemm_ceiling"] == pytest.approx(0.9) and rows[0]["ceiling_from"] == "group"
    assert rows[1]["of_gemm_ceiling"] == pytest.approx(0.9) and rows[1]["ceiling_from"] == "start of run"
    assert rows[3]["of_gemm_ceiling"] == pytest.approx(1.0) and rows[2]["of_gemm_ceiling"] == pytest.approx(0.875)


def test_ceiling_rows_are_neither_a_backend_for_auto_nor_a_rival_in_the_verdict(benchmark):
    rows = [row("onnxruntime/fp32", 90, 100, 110, 10.0), row("gemm/fp32-onnxruntime", 95, 100, 105, 80.0)]
    assert benchmark.auto_check(rows, {"image_b8": {"backend": "onnxruntime"}}) == {"image_b8": True}
    assert benchmark.group_verdict(rows, {"other_cores": 0.0}, 2).endswith("range: none")


def test_every_turn_of_a_row_starts_after_the_settling_pause(benchmark, monkeypatch):
    """Rows are live processes; a Paddle row's OpenMP threads spin 200 ms after its run. No row may be timed
    before the previous one's threads have settled."""
    import argparse

    events = []

    class FakeWorker:
        def __init__(self, args, work, variant, tower, batch, env):
            self.variant, self.error, self.warm_ms, self.proc = variant, "", 10.0, argparse.Namespace(pid=0)

        def ready(self):
            pass

        def run(self, n):
            events.append(("run", self.variant))

        def finish(self):
            return {"latencies_ms": [1.0]}

    class FakeLoad:
        def __init__(self, pids):
            pass

        def cores(self):
            return 0.0

    monkeypatch.setattr(benchmark, "Worker", FakeWorker)
    monkeypatch.setattr("hardware.cpu.OtherLoad", FakeLoad)
    monkeypatch.setattr(benchmark.time, "sleep", lambda s: events.append(("sleep", s)))
    args = argparse.Namespace(rounds=3, threads=2)
    results, _ = benchmark.run_group(args, Path("."), ["a/fp32", "b/fp32"], "image", 8, {}, settle_s=0.25)
    assert set(results) == {"a/fp32", "b/fp32"}
    runs = [i for i, e in enumerate(events) if e[0] == "run"]
    assert len(runs) == 6 and all(events[i - 1] == ("sleep", 0.25) for i in runs)


def test_a_ceiling_kernel_is_built_by_name_and_computes_the_chain():
    import numpy as np

    from hardware import gemm

    with pytest.raises(ValueError, match="unknown GEMM kernel 'fp32 onnxruntime Conv'"):
        gemm.kernel("fp32 onnxruntime Conv", 1, Path("."))
    x, ws = gemm.inputs(), gemm.weights()
    expected = gemm.reference(x[:64], ws)
    assert len(ws) == 2 * gemm.BLOCKS and gemm.FLOP == 2 * gemm.M * sum(w.size for w in ws)
    y = gemm.kernel("fp32 onnxruntime MatMul", 1, Path("."))(x)
    assert y.shape == (gemm.M, gemm.K)
    np.testing.assert_allclose(y[:64], expected, rtol=1e-3, atol=1e-3)
    y = gemm.kernel("int8 onnxruntime DynamicQuantizeMatMul", 1, Path("."))(x)
    assert np.corrcoef(y[:64].ravel(), expected.ravel())[0, 1] > 0.99  # quantized, but the same chain


def test_the_paddle_ceiling_kernels_compute_the_chain(tmp_path):
    import numpy as np

    from hardware import gemm

    run, x, ws = gemm.kernel("fp32 paddle_inference oneDNN", 1, tmp_path), gemm.inputs(), gemm.weights()
    y = run(x).copy_to_cpu()
    b = run(x[::-1].copy()).copy_to_cpu()  # a new input is copied in, not the first one's result reused
    np.testing.assert_allclose(y[:64], gemm.reference(x[:64], ws), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(b[:64], gemm.reference(x[::-1][:64], ws), rtol=1e-3, atol=1e-3)
