"""Export an inspection classifier: Paddle Inference, ONNX, INT8 ONNX, the anomaly graph and bank, inference.yml.

Layout of the export directory (every file's SHA-256 in ``inference.yml``; see docs/inspection.md):

- ``inference.json`` / ``inference.pdiparams``: softmax class probabilities [B, C] of frames [B, 3, S, S]. The
  names and the ``Global`` / ``PreProcess`` / ``PostProcess`` sections of ``inference.yml`` are PaddleX's, so
  ``paddlex.create_model(model_name=..., model_dir=...)`` runs it as an image classifier.
- ``inference.onnx`` and ``inference.int8.onnx``: the same graph for ONNX Runtime, fp32 and INT8 (static QDQ
  quantization of the BatchNorm-folded convolutions, per-channel weights, activation ranges calibrated on training
  frames; :data:`INT8_RECIPE`).
- ``anomaly.json`` / ``anomaly.pdiparams`` / ``anomaly.onnx``: the PatchCore anomaly score [B] of frames, with
  the memory bank of clean-part patch features inside the graph (:class:`~paddle_mm.models.inspection.AnomalyScore`),
  so a signed package holds only inference models and every runtime scores the same way.

Every graph is checked against the eager model before ``inference.yml`` is written; the whole directory is
staged and replaces ``out_dir`` only once checked (:func:`paddle_mm.io.staged_directory`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import yaml

from hardware import DEFAULT_DEVICE, DeviceSpec

from ..io import file_digests, staged_directory
from ..vision.frame import IMAGENET_MEAN, IMAGENET_STD, normalize
from .exporter import trace
from .onnx_export import constants_to_initializers, prune_unused_initializers, remove_identities

INFERENCE_YML = "inference.yml"
CLASSIFY_FILES = ["inference.json", "inference.pdiparams"]
ANOMALY_FILES = ["anomaly.json", "anomaly.pdiparams"]

# How the INT8 graph is made (docs/inspection.md, "INT8"; benchmarks/bench_inspection_int8.py compares variants):
# - ops: the op types quantized. The softmax stays fp32 (uint8 probabilities tie at 1/255 steps).
# - keep_fp32: convolutions left fp32: "none"; "stem_se" (the 3-channel stem and the 1x1 convolutions on pooled
#   vectors: squeeze-excitation and the class-expand head); "depthwise" (stem_se plus the depthwise ones).
# - exclude: more node names left fp32; calibration: minmax | percentile | entropy, on `frames` training frames.
# - fold_bn: fold BatchNorm into the convolutions first (onnxruntime's quant_pre_process). Without it a QDQ pair
#   sits between each Conv and its BatchNorm, so one per-tensor scale covers pre-BN channels of very different ranges.
# Measured on the shipped config's model: without the fold 72-88% top-1 agreement with fp32 (every layout); with it,
# quantizing every Conv agrees on 99.2% of validation frames at fp32's batch-1 speed, while leaving some fp32 (stem,
# SE, depthwise) agrees as well or worse and runs up to 2x slower (more Quantize/Dequantize between the islands).
INT8_RECIPE: dict[str, Any] = {
    "ops": ["Conv"],
    "fold_bn": True,
    "keep_fp32": "none",
    "exclude": [],
    "calibration": "percentile",
    "percentile": 99.999,
    "frames": 256,
}
KEEP_FP32 = ("none", "stem_se", "depthwise")
CALIBRATIONS = ("minmax", "percentile", "entropy")


class InspectionExportError(ValueError):
    """An exported graph disagrees with the eager model beyond the allowed tolerance."""


def _jit_save(layer, prefix: Path, size: int) -> None:
    trace(layer, [paddle.static.InputSpec([None, 3, size, size], "float32", "x")], prefix)


def _to_onnx(stage: Path, name: str, opset: int = 13) -> None:
    import onnx
    import paddle2onnx

    raw = paddle2onnx.export(
        str(stage / f"{name}.json"), str(stage / f"{name}.pdiparams"), None, opset_version=opset,
        enable_onnx_checker=True,
    )  # fmt: skip
    model = onnx.load_from_string(raw)
    constants_to_initializers(model.graph)  # quantization needs BatchNorm / Conv parameters as initializers
    remove_identities(model.graph)
    prune_unused_initializers(model.graph)
    onnx.checker.check_model(model)
    (stage / f"{name}.onnx").write_bytes(model.SerializeToString())


def check_int8_recipe(recipe: dict[str, Any] | None) -> dict[str, Any]:
    """INT8_RECIPE updated by ``recipe``; an unknown key or choice is a one-line ValueError."""
    out = {**INT8_RECIPE, **(recipe or {})}
    unknown = sorted(set(out) - set(INT8_RECIPE))
    if unknown:
        raise ValueError(f"unknown INT8 recipe key(s) {unknown}; known: {sorted(INT8_RECIPE)}")
    for key, choices in (("keep_fp32", KEEP_FP32), ("calibration", CALIBRATIONS)):
        if out[key] not in choices:
            raise ValueError(f"INT8 recipe {key}={out[key]!r}; choose one of {list(choices)}")
    return out


def quantize_static_int8(
    fp32: Path, int8: Path, calibration: np.ndarray, recipe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """INT8 QDQ graph with per-channel weights; activation ranges from ``calibration`` frames [N, 3, S, S]
    (normalised), as ``recipe`` (:data:`INT8_RECIPE`) says. Returns what was done, for ``inference.yml``.

    Static, not the dynamic quantization of the CLIP towers (:mod:`.quantize`): a CNN is convolutions, which
    dynamic quantization leaves fp32 or turns into the slow ``ConvInteger``; QDQ convolutions run as
    ``QLinearConv`` on x86."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    r = check_int8_recipe(recipe)
    batch = min(16, len(calibration))
    calibration = calibration[: len(calibration) // batch * batch]  # equal batches: the histogram collector stacks them

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": calibration[i : i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self.batches, None)

    source = fp32
    if r["fold_bn"]:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        source = int8.with_name(int8.name + ".pre.onnx")
        quant_pre_process(str(fp32), str(source), skip_symbolic_shape=True)  # ONNX shape inference suffices
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(source))).graph
    keep_fp32 = sorted(set(fp32_convs(graph, r["keep_fp32"])) | set(r["exclude"]))
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[r["calibration"]]  # fmt: skip
    extra = {"CalibPercentile": r["percentile"]} if r["calibration"] == "percentile" else {}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it warns to run its shape pre-processing, which these static shapes do not need
    try:
        quantize_static(
            str(source), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(r["ops"]),
            nodes_to_exclude=keep_fp32, calibrate_method=method, extra_options=extra,
        )  # fmt: skip
    finally:
        root.setLevel(level)
        if source != fp32:
            source.unlink(missing_ok=True)
    quantized = [n.name for n in graph.node if n.op_type in r["ops"] and n.name not in keep_fp32]
    return {"method": "onnxruntime.quantization.quantize_static", "format": "QDQ", "per_channel": True,
            **{k: v for k, v in r.items() if k != "frames"}, "calibration_frames": int(len(calibration)),
            "quantized_nodes": len(quantized), "fp32_nodes": len(keep_fp32)}  # fmt: skip


def fp32_convs(graph, keep: str) -> list[str]:
    """Names of the convolutions ``keep`` (:data:`INT8_RECIPE`) leaves fp32, from a shape-inferred graph."""
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input})
    out = []
    for n in graph.node:
        if n.op_type != "Conv" or keep == "none":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        shape = shapes.get(n.input[0], [])
        stem_or_vector = len(shape) == 4 and (shape[1] == 3 or shape[2:] == [1, 1])
        if stem_or_vector or (keep == "depthwise" and group > 1):
            out.append(n.name)
    return out


def _run(backend: str, files: list[Path], x: np.ndarray) -> list[np.ndarray]:
    from ..inference.backends import build_backend

    return build_backend(backend, files, DeviceSpec(DEFAULT_DEVICE), threads=None).run({"x": x})


@paddle.no_grad()
def export_inspection(
    model,
    out_dir: str | Path,
    classes: list[str],
    frame_cfg: dict[str, Any],
    bank: np.ndarray,
    calibration: np.ndarray,
    check_frames: np.ndarray,
    *,
    threshold: float | None = None,
    int8: bool = True,
    atol: float = 1e-4,
    int8_min_agreement: float = 0.95,
    int8_recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write and check the export (module docstring). ``calibration`` / ``check_frames``: uint8 frames
    [N, S, S, 3] (training frames calibrate INT8; ``check_frames`` compare every graph with eager). Returns
    the written ``inference.yml`` as a dict. ``int8_recipe``: changes to :data:`INT8_RECIPE`."""
    from ..models.inspection import AnomalyScore, InspectionLogits
    from ..models.patchcore import PatchCoreScorer

    model.eval()
    size = int(model.config.image_resolution)
    probs_layer, score_layer = InspectionLogits(model), AnomalyScore(model, bank)
    x = normalize(check_frames)
    eager = probs_layer(paddle.to_tensor(x)).numpy()
    eager_scores = PatchCoreScorer(bank).score(model.patch_embedding(paddle.to_tensor(x)).numpy())
    out_dir = Path(out_dir)
    verification: dict[str, Any] = {"frames": int(len(x))}
    with staged_directory(out_dir) as stage:
        _jit_save(probs_layer, stage / "inference", size)
        _jit_save(score_layer, stage / "anomaly", size)
        _to_onnx(stage, "inference")
        _to_onnx(stage, "anomaly")
        for backend, files in (("paddle_inference", CLASSIFY_FILES), ("onnxruntime", ["inference.onnx"])):
            got = _run(backend, [stage / f for f in files], x)[0]
            verification[f"classify_{backend}_max_abs_diff"] = _checked(float(np.abs(got - eager).max()), atol, backend)
        for backend, files in (("paddle_inference", ANOMALY_FILES), ("onnxruntime", ["anomaly.onnx"])):
            got = _run(backend, [stage / f for f in files], x)[0]
            diff = float(np.abs(got - eager_scores).max() / max(1.0, np.abs(eager_scores).max()))
            verification[f"anomaly_{backend}_max_rel_diff"] = _checked(diff, atol * 10, backend)  # sqrt near 0
        files = CLASSIFY_FILES + ["inference.onnx"] + ANOMALY_FILES + ["anomaly.onnx"]
        quant = None
        if int8:
            quant = quantize_static_int8(
                stage / "inference.onnx", stage / "inference.int8.onnx", normalize(calibration), int8_recipe
            )
            got = _run("onnxruntime", [stage / "inference.int8.onnx"], x)[0]
            agree = float((got.argmax(1) == eager.argmax(1)).mean())
            verification["int8_top1_agreement"] = agree
            if agree < int8_min_agreement:
                raise InspectionExportError(
                    f"INT8 graph agrees with fp32 on {agree:.3f} of {len(x)} frames (< {int8_min_agreement}); "
                    "export with --no-int8 (int8=False), or compare recipes with benchmarks/bench_inspection_int8.py"
                )
            files.append("inference.int8.onnx")
        info = inference_yml(model.config.name, classes, frame_cfg, size, threshold, quant, verification)
        info["Inspection"]["anomaly"]["bank_size"] = int(len(bank))
        info["Inspection"]["digests"] = file_digests(stage, files)
        (stage / INFERENCE_YML).write_text(yaml.safe_dump(info, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return info


def _checked(diff: float, atol: float, what: str) -> float:
    if not diff <= atol:
        raise InspectionExportError(f"{what} output differs from eager by {diff:.3g} (> atol {atol}); export refused")
    return diff


def inference_yml(
    name: str,
    classes: list[str],
    frame_cfg: dict[str, Any],
    size: int,
    threshold: float | None,
    quant: dict[str, Any] | None,
    verification: dict[str, Any],
) -> dict[str, Any]:
    """PaddleX's fields (Global.model_name, PreProcess.transform_ops, PostProcess.Topk) plus ours (Inspection)."""
    files = {"fp32": {"paddle_inference": CLASSIFY_FILES, "onnxruntime": ["inference.onnx"]}}
    if quant is not None:
        files["int8"] = {"onnxruntime": ["inference.int8.onnx"]}
    return {
        "Global": {"model_name": name},
        "PreProcess": {
            "transform_ops": [
                {"ResizeImage": {"size": [size, size], "interpolation": "AREA"}},
                {
                    "NormalizeImage": {
                        "mean": list(IMAGENET_MEAN),
                        "std": list(IMAGENET_STD),
                        "scale": 1 / 255,
                        "order": "",
                        "channel_num": 3,
                    }
                },  # fmt: skip
                {"ToCHWImage": None},
            ]
        },
        "PostProcess": {"Topk": {"topk": 1, "label_list": list(classes)}},
        "Inspection": {
            "classes": list(classes),
            "frame": dict(frame_cfg),
            "graphs": {
                "classify": {"inputs": ["x"], "outputs": ["probs"], "files": files},
                "anomaly": {
                    "inputs": ["x"],
                    "outputs": ["score"],
                    "files": {"fp32": {"paddle_inference": ANOMALY_FILES, "onnxruntime": ["anomaly.onnx"]}},
                },
            },
            "anomaly": {"method": "PatchCore kNN, bank in the graph", "threshold": threshold},
            "int8": quant,
            "verification": verification,
        },
    }


def export_from_config(
    cfg: dict[str, Any],
    int8: bool = True,
    log=print,
    int8_min_agreement: float = 0.95,
    int8_recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``tools/export_model.py`` for ``Global.task: inspection``: load ``Global.pretrained_model``, fit the
    anomaly bank on the clean training parts, export into ``Global.save_inference_dir``."""
    from ..engine.checkpoint import resolve_checkpoint
    from ..models import load_model
    from ..tasks.inspection import InspectionTask, fit_anomaly

    g = cfg["Global"]
    model = load_model(resolve_checkpoint(g["pretrained_model"]))
    task = InspectionTask(cfg)
    train = task.load_eval(cfg["DataLoader"]["Train"]["dataset"], model.config)
    val = task.load_eval((cfg["DataLoader"]["Eval"] or cfg["DataLoader"]["Train"])["dataset"], model.config)
    bank, threshold = fit_anomaly(model, train, val)
    log(f"anomaly bank: {bank.shape[0]} patch features of clean parts; threshold {threshold:.4f}")
    calibration = calibration_frames(train.frames, check_int8_recipe(int8_recipe)["frames"])
    frame_cfg = {k: v for k, v in train_frame_cfg(cfg).items()}
    return export_inspection(
        model, g["save_inference_dir"], task.classes, frame_cfg, bank, calibration, val.frames,
        threshold=threshold, int8=int8, int8_min_agreement=int8_min_agreement, int8_recipe=int8_recipe,
    )  # fmt: skip


def calibration_frames(frames: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` training frames drawn without replacement (all of them when fewer), the same for a seed."""
    rng = np.random.default_rng(seed)
    return frames[rng.choice(len(frames), min(count, len(frames)), replace=False)]


def train_frame_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    from ..tasks.inspection import frame_config

    return frame_config(cfg["DataLoader"]["Train"]["dataset"], cfg["Arch"]["image_resolution"])
