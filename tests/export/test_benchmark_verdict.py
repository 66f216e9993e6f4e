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
