"""benchmarks/bench_inference.py (behind tools/benchmark.py): the cn_clip reference row runs in the user's environment,
not paddle_mm's CPU tuning."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_inference.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_tool", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cn_clip_row_drops_what_tune_cpu_env_set(benchmark, monkeypatch):
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "5")  # as tune_cpu_env leaves it in the parent
    args = argparse.Namespace(threads=2)
    tuned = {"MKL_DEBUG_CPU_TYPE": "5"}
    assert "MKL_DEBUG_CPU_TYPE" not in benchmark.worker_env(args, "cn_clip", tuned)
    assert benchmark.worker_env(args, "onnxruntime/int8", tuned)["MKL_DEBUG_CPU_TYPE"] == "5"
    assert benchmark.worker_env(args, "cn_clip", tuned)["OMP_NUM_THREADS"] == "2"


def test_a_value_the_user_set_is_kept_for_cn_clip(benchmark, monkeypatch):
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")  # the user's own; tune_cpu_env then sets nothing
    assert benchmark.worker_env(argparse.Namespace(threads=1), "cn_clip", {})["MKL_DEBUG_CPU_TYPE"] == "4"
