"""INT8 recipes for an inspection classifier, side by side: agreement with fp32, accuracy, batch-1 latency.

    python benchmarks/bench_inspection_int8.py -c configs/inspection/pplcnet_x0_5_parts.yml \
        -o Global.pretrained_model=output/inspection/PP-LCNet_x0_5/best_model \
        [--variants depthwise stem_se_entropy ...] [--sensitivity] [--latency 300] [--work output/int8] [--out r.json]

Writes the checkpoint's fp32 ONNX graph (as the exporter does), then one static QDQ INT8 graph per recipe
(:data:`paddle_mm.export.inspection.INT8_RECIPE` changed as :data:`VARIANTS` says), calibrated on training frames.
For each: top-1 agreement with fp32 on the validation and test splits (the exporter's gate is >= 95% on
validation), test accuracy and recall per class, and the median batch-1 latency of fp32 and INT8 measured
interleaved in the same run (their ratio is the figure to compare; the load average is printed beside it).

``--sensitivity``: quantize one convolution at a time (everything else fp32) and rank the convolutions by how many
validation frames change class and by the largest probability change; then keep the most sensitive ones fp32, one
more at a time, until the agreement reaches ``--target`` (the ``sensitive`` row).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# "nofold": BatchNorm left after each Conv (the recipe before the fold); the others fold it first (INT8_RECIPE)
VARIANTS: dict[str, dict] = {
    "nofold_all_minmax": {"fold_bn": False, "keep_fp32": "none", "calibration": "minmax"},
    "nofold_all_percentile": {"fold_bn": False, "keep_fp32": "none"},
    "nofold_stem_se_percentile": {"fold_bn": False, "keep_fp32": "stem_se"},
    "nofold_depthwise_percentile": {"fold_bn": False},
    "all_minmax": {"keep_fp32": "none", "calibration": "minmax"},
    "all_percentile": {"keep_fp32": "none"},
    "all_entropy": {"keep_fp32": "none", "calibration": "entropy"},
    "stem_se_minmax": {"keep_fp32": "stem_se", "calibration": "minmax"},
    "stem_se_percentile": {"keep_fp32": "stem_se"},
    "stem_se_entropy": {"keep_fp32": "stem_se", "calibration": "entropy"},
    "stem_se_percentile_all_frames": {"keep_fp32": "stem_se", "frames": 100000},
    "depthwise_percentile": {},
    "depthwise_percentile_all_frames": {"frames": 100000},
}


def _session(path: Path):
    from hardware import DEFAULT_DEVICE, DeviceSpec
    from paddle_mm.inference.backends import build_backend

    return build_backend("onnxruntime", [path], DeviceSpec(DEFAULT_DEVICE), threads=None)


def _probs(session, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run({"x": x[i : i + 64]})[0] for i in range(0, len(x), 64)])


def _latency_pair(a, b, frame: np.ndarray, runs: int) -> tuple[float, float]:
    """Median ms per call of sessions a and b at batch 1, timed in alternating blocks of 10 after 20 warm-ups."""
    ta, tb = [], []
    for s in (a, b):
        for _ in range(20):
            s.run({"x": frame})
    for _ in range(max(1, runs // 10)):
        for s, out in ((a, ta), (b, tb)):
            for _ in range(10):
                t = time.perf_counter()
                s.run({"x": frame})
                out.append(time.perf_counter() - t)
    return float(np.median(ta) * 1000), float(np.median(tb) * 1000)


class Bench:
    """The fp32 graph, the splits and the fp32 predictions every recipe is compared with."""

    def __init__(self, cfg: dict, work: Path):
        from paddle_mm.engine.checkpoint import resolve_checkpoint
        from paddle_mm.export.inspection import _jit_save, _to_onnx
        from paddle_mm.models import load_model
        from paddle_mm.models.inspection import InspectionLogits
        from paddle_mm.tasks.inspection import InspectionTask
        from paddle_mm.vision.frame import normalize

        model = load_model(resolve_checkpoint(cfg["Global"]["pretrained_model"]))
        model.eval()
        task = InspectionTask(cfg)
        split = dict(cfg["DataLoader"]["Eval"]["dataset"])
        self.train = task.load_eval(cfg["DataLoader"]["Train"]["dataset"], model.config)
        self.val = task.load_eval(split, model.config)
        self.test = task.load_eval({**split, "split": "test"}, model.config)
        self.classes = task.classes
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        _jit_save(InspectionLogits(model), work / "inference", int(model.config.image_resolution))
        _to_onnx(work, "inference")
        self.fp32 = _session(work / "inference.onnx")
        self.x_val, self.x_test = normalize(self.val.frames), normalize(self.test.frames)
        self.p_val, self.p_test = _probs(self.fp32, self.x_val), _probs(self.fp32, self.x_test)

    def quantize(self, name: str, recipe: dict) -> tuple[Path, dict]:
        from paddle_mm.export.inspection import calibration_frames, check_int8_recipe, quantize_static_int8
        from paddle_mm.vision.frame import normalize

        frames = calibration_frames(self.train.frames, check_int8_recipe(recipe)["frames"])
        path = self.work / f"{name}.int8.onnx"
        return path, quantize_static_int8(self.work / "inference.onnx", path, normalize(frames), recipe)

    def measure(self, name: str, recipe: dict, latency: int) -> dict:
        from paddle_mm.metrics import accuracy
        from paddle_mm.tasks.inspection import recall_per_class

        path, done = self.quantize(name, recipe)
        q = _session(path)
        q_val, q_test = _probs(q, self.x_val), _probs(q, self.x_test)
        row = {
            "recipe": recipe,
            "quantized_nodes": done["quantized_nodes"],
            "calibration_frames": done["calibration_frames"],
            "agreement_val": float((q_val.argmax(1) == self.p_val.argmax(1)).mean() * 100),
            "agreement_test": float((q_test.argmax(1) == self.p_test.argmax(1)).mean() * 100),
            "max_prob_diff_val": float(np.abs(q_val - self.p_val).max()),
            "accuracy_test_fp32": accuracy(self.p_test.argmax(1), self.test.labels),
            "accuracy_test_int8": accuracy(q_test.argmax(1), self.test.labels),
            "recall_test_int8": recall_per_class(q_test.argmax(1), self.test.labels, self.classes),
        }
        if latency:
            row["latency_ms_fp32"], row["latency_ms_int8"] = _latency_pair(self.fp32, q, self.x_test[:1], latency)
            row["int8_speedup"] = row["latency_ms_fp32"] / row["latency_ms_int8"]
        return row

    def sensitivity(self, target: float, latency: int) -> dict:
        """Per-convolution damage (quantized alone), then the greedy fp32 set reaching ``target`` agreement."""
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from paddle_mm.export.inspection import fp32_convs

        quant_pre_process(str(self.work / "inference.onnx"), str(self.work / "folded.onnx"), skip_symbolic_shape=True)
        graph = onnx.shape_inference.infer_shapes(onnx.load(str(self.work / "folded.onnx"))).graph
        base = set(fp32_convs(graph, "stem_se"))
        convs = [n.name for n in graph.node if n.op_type == "Conv" and n.name not in base]
        ranked = []
        for name in convs:
            path, _ = self.quantize("one", {"keep_fp32": "stem_se", "exclude": [c for c in convs if c != name]})
            q_val = _probs(_session(path), self.x_val)
            flips = int((q_val.argmax(1) != self.p_val.argmax(1)).sum())
            ranked.append((flips, float(np.abs(q_val - self.p_val).max()), name))
        ranked.sort(reverse=True)
        kept, row = [], None
        for k in range(len(ranked) + 1):
            kept = [name for _, _, name in ranked[:k]]
            row = self.measure("sensitive", {"keep_fp32": "stem_se", "exclude": kept}, 0)
            if row["agreement_val"] >= target:
                break
        if latency:
            row = self.measure("sensitive", {"keep_fp32": "stem_se", "exclude": kept}, latency)
        return {"per_conv": [{"conv": n, "val_flips": f, "max_prob_diff": d} for f, d, n in ranked],
                "kept_fp32": kept, "sensitive": row}  # fmt: skip


def main() -> None:
    from paddle_mm.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-o", "--override", action="append", default=[])
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--sensitivity", action="store_true", help="rank convolutions; the greedy 'sensitive' recipe")
    p.add_argument("--target", type=float, default=99.0, help="agreement (%%) the sensitive recipe stops at")
    p.add_argument("--latency", type=int, default=0, help="timed batch-1 runs per graph (0: skip)")
    p.add_argument("--work", default="output/bench_inspection_int8")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cfg = load_config(args.config, args.override)
    bench = Bench(cfg, Path(args.work))
    res = {"load_average_before": os.getloadavg(), "cpu_count": os.cpu_count(), "variants": {}}
    for name in args.variants:
        res["variants"][name] = row = bench.measure(name, VARIANTS[name], args.latency)
        print(_line(name, row), flush=True)
    if args.sensitivity:
        res["sensitivity"] = s = bench.sensitivity(args.target, args.latency)
        for r in s["per_conv"]:
            print(f"  {r['conv']:40s} flips {r['val_flips']:3d}  max prob diff {r['max_prob_diff']:.3f}")
        print(_line(f"sensitive ({len(s['kept_fp32'])} more fp32)", s["sensitive"]), flush=True)
    res["load_average_after"] = os.getloadavg()
    print(f"load average before {res['load_average_before']}, after {res['load_average_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


def _line(name: str, r: dict) -> str:
    speed = f"  fp32 {r['latency_ms_fp32']:.3f} ms  int8 {r['latency_ms_int8']:.3f} ms" if "int8_speedup" in r else ""
    return (f"{name:34s} q {r['quantized_nodes']:3d}  agree val {r['agreement_val']:6.2f}  test "
            f"{r['agreement_test']:6.2f}  acc fp32 {r['accuracy_test_fp32']:6.2f} int8 {r['accuracy_test_int8']:6.2f}"
            f"{speed}")  # fmt: skip


if __name__ == "__main__":
    main()
