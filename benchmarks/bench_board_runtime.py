"""The C++ board runtime (pmm-run, native x86 build) next to ONNX Runtime fp32, per tower and batch size.

    python benchmarks/bench_board_runtime.py                              # ViT-B-16, batch 1 and 8
    python benchmarks/bench_board_runtime.py --model CN-CLIP-Tiny --repeat 3   # smoke run

Weights are random (seeded): speed does not depend on their values, and no download is needed. Both
engines get the same inputs and thread count: pixels [B, 3, S, S] and token ids of real captions trimmed to
the longest (what paddle_mm's predictor and pmm-run both do). ONNX Runtime runs the fp32 tower graphs of
paddle_mm's export (attention fused for ONNX Runtime); pmm-run runs the GGUF from tools/export_gguf.py.
Each engine is timed --rounds times, interleaved (ORT, pmm-run, pmm-run on ggml's own GEMM, again), each
timing the mean of --repeat warm runs; the table gives medians and the range of the per-round ratio.
pmm-run times itself in-process (no process start, no model load); PMM_GEMM=ggml runs it on ggml's own f32
product (llamafile's tinyBLAS on x86) instead of the packed kernel, to show what that kernel is worth.
The feature column is pmm-run's max abs difference from the eager Paddle model on the same inputs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from hardware.inference import default_threads  # noqa: E402

CAPTIONS = [
    "一只橘色的猫趴在窗台上晒太阳",
    "两个孩子在海边的沙滩上堆沙堡",
    "雨后的城市街道倒映着霓虹灯",
    "一辆红色的公交车停在站台旁边",
    "厨房里摆着新鲜的蔬菜和水果",
    "穿着校服的学生在操场上跑步",
    "夜晚的山顶可以看到满天星星",
    "一位老人在公园里打太极拳",
]


def prepare(model_name: str, work: Path) -> tuple[object, Path, Path]:
    """(eager model, gguf file, ONNX export directory) of a seeded random-initialised model."""
    import paddle

    from paddle_mm.export.exporter import ExportOptions, export_model
    from paddle_mm.export.gguf_export import convert_model_dir
    from paddle_mm.models import create_model, save_model
    from paddle_mm.vision.transforms import ImageTransform

    paddle.seed(0)
    model = create_model(model_name)
    model.eval()
    save_model(model, work / "model")
    gguf = convert_model_dir(work / "model", work / "model.gguf")
    options = ExportOptions(graphs=("image", "text"), int8=False, verify_batches=(1, 2))
    transform = ImageTransform(model.config.image_resolution)
    export_model(model, work / "export", transform, model_name, options, log=lambda *a: None)
    return model, gguf, work / "export"


def ort_session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    from hardware import DEFAULT_DEVICE, DeviceSpec
    from hardware.inference import onnxruntime_providers, onnxruntime_session_options

    # the host session exactly as the Predictor builds it
    opts = onnxruntime_session_options(threads)
    return ort.InferenceSession(str(path), opts, providers=onnxruntime_providers(DeviceSpec(DEFAULT_DEVICE)))


def ort_ms(session: object, feeds: dict[str, np.ndarray], repeat: int) -> float:
    session.run(None, feeds)  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        session.run(None, feeds)
    return (time.perf_counter() - start) / repeat * 1000


def pmm_ms(binary: Path, gguf: Path, flag: str, npy: Path, threads: int, repeat: int, gemm: str = "packed") -> float:
    cmd = [str(binary), "--model", str(gguf), flag, str(npy), "--threads", str(threads), "--repeat", str(repeat)]
    env = {**os.environ, "PMM_GEMM": gemm}  # "ggml": ggml's own product instead of the packed kernel
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.split()[-1])


def pmm_features(binary: Path, gguf: Path, flag: str, npy: Path, threads: int, out: Path) -> np.ndarray:
    cmd = [str(binary), "--model", str(gguf), flag, str(npy), "--threads", str(threads), "--npy", str(out)]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return np.load(out / ("image_features.npy" if flag == "--pixels" else "text_features.npy"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=default_threads(), help="default: the usable cores")
    parser.add_argument("--repeat", type=int, default=10, help="warm runs per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timings per engine; medians reported")
    args = parser.parse_args()

    import paddle

    from hardware.runtime.build import build
    from paddle_mm.text import WordPieceTokenizer

    binary = build("x86_64")
    with tempfile.TemporaryDirectory(prefix="bench_board_") as tmp:
        work = Path(tmp)
        model, gguf, export = prepare(args.model, work)
        size = model.config.image_resolution
        rng = np.random.default_rng(0)
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(
            f"model {args.model} (random weights), threads {args.threads}; each engine timed {args.rounds} times,"
            f" interleaved, each timing the mean of {args.repeat} warm runs; medians, ratio range in brackets"
        )
        print(f"load average {load} (compare ratios, not milliseconds, on a busy machine)")
        header = ("tower", "batch", "ORT fp32 ms", "pmm-run ms", "pmm/ORT", "ggml-GEMM ms", "ggml/ORT", "feature diff")
        print("{:<6} {:>5} {:>12} {:>11} {:>21} {:>13} {:>9} {:>13}".format(*header))
        for batch in args.batches:
            pixels = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
            ids = WordPieceTokenizer().encode_batch([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)])
            ids = ids[:, : int((ids != 0).sum(axis=1).max())]  # trimmed to the longest, as both engines run
            padded = np.zeros((batch, model.config.context_length), dtype=np.int64)
            padded[:, : ids.shape[1]] = ids
            np.save(work / "pixels.npy", pixels)
            np.save(work / "ids.npy", padded)
            with paddle.no_grad():
                eager = {
                    "image": model.encode_image(paddle.to_tensor(pixels)).numpy(),
                    "text": model.encode_text(paddle.to_tensor(ids)).numpy(),
                }
            runs = {
                "image": (export / "image.onnx", {"pixel_values": pixels}, "--pixels", work / "pixels.npy"),
                "text": (export / "text.onnx", {"input_ids": ids}, "--ids", work / "ids.npy"),
            }
            for tower, (onnx, feeds, flag, npy) in runs.items():
                session = ort_session(onnx, args.threads)
                ort, pmm, old = [], [], []
                for _ in range(args.rounds):  # interleaved: a load change hits all three alike
                    ort.append(ort_ms(session, feeds, args.repeat))
                    pmm.append(pmm_ms(binary, gguf, flag, npy, args.threads, args.repeat))
                    old.append(pmm_ms(binary, gguf, flag, npy, args.threads, args.repeat, gemm="ggml"))
                features = pmm_features(binary, gguf, flag, npy, args.threads, work)
                diff = float(np.abs(features - eager[tower]).max())
                ratios = [o / p for o, p in zip(ort, pmm)]
                spread = f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                print(
                    f"{tower:<6} {batch:>5} {np.median(ort):>12.2f} {np.median(pmm):>11.2f} {spread:>21}"
                    f" {np.median(old):>13.2f} {np.median(ort) / np.median(old):>8.2f}x {diff:>13.2e}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
