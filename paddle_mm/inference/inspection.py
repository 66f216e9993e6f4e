"""``InspectionPredictor``: defect class, its probability and the anomaly score of camera frames, from an
inspection export (:mod:`paddle_mm.export.inspection`). Files are checked against the SHA-256 digests of
``inference.yml`` before a runtime reads them; frames go through the same OpenCV pre-processing as training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hardware import DEFAULT_DEVICE, DeviceSpec

from ..io import check_digests
from ..vision.frame import check_frame_config, normalize, preprocess_frame


@dataclass
class Inspection:
    label: str
    class_id: int
    score: float  # probability of the predicted class
    anomaly: float | None  # PatchCore score; None when the predictor was built without it
    is_anomalous: bool | None  # anomaly > the export's threshold (None without a threshold)


class InspectionPredictor:
    """``predictor(frames) -> [Inspection]`` over an export directory.

    backend: ``paddle_inference`` or ``onnxruntime``; precision: ``fp32`` or ``int8`` (ONNX Runtime only);
    anomaly: also compute the anomaly score (one more graph run and a kNN over the bank)."""

    def __init__(
        self,
        model_dir: str | Path,
        backend: str = "onnxruntime",
        precision: str = "fp32",
        anomaly: bool = True,
        threads: int | None = None,
    ):
        from .backends import build_backend

        self.dir = Path(model_dir)
        yml = self.dir / "inference.yml"
        if not yml.is_file():
            raise FileNotFoundError(f"{yml} not found: export first (python tools/export_inspection.py ...)")
        info = yaml.safe_load(yml.read_text(encoding="utf-8"))
        if "Inspection" not in info:
            raise ValueError(f"{yml} has no Inspection section: not an inspection export")
        self.info = info["Inspection"]
        self.classes = self.info["classes"]
        self.frame_cfg = check_frame_config(self.info["frame"])
        files = self.info["graphs"]["classify"]["files"]
        if backend not in files.get(precision, {}):
            raise ValueError(f"no {precision} graph for {backend!r} in {yml}; available: {files}")
        device = DeviceSpec(DEFAULT_DEVICE)
        names = files[precision][backend]
        check_digests(self.dir, self.info["digests"], names)
        self.classify = build_backend(backend, [self.dir / n for n in names], device, threads)
        self.anomaly = None
        if anomaly:
            a_names = self.info["graphs"]["anomaly"]["files"]["fp32"][backend]
            check_digests(self.dir, self.info["digests"], a_names)
            self.anomaly = build_backend(backend, [self.dir / n for n in a_names], device, threads)
        self.threshold = self.info["anomaly"]["threshold"]

    def frames(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB images of any size -> the pre-processed uint8 frames [N, S, S, 3]."""
        return np.stack([preprocess_frame(img, self.frame_cfg) for img in images])

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        return self.classify.run({"x": normalize(frames)})[0]

    def anomaly_scores(self, frames: np.ndarray) -> np.ndarray:
        if self.anomaly is None:
            raise ValueError("built with anomaly=False: no anomaly graph loaded")
        return self.anomaly.run({"x": normalize(frames)})[0]

    def __call__(self, images: list[np.ndarray]) -> list[Inspection]:
        frames = self.frames(images)
        probs = self.probabilities(frames)
        scores = self.anomaly_scores(frames) if self.anomaly is not None else [None] * len(frames)
        out = []
        for p, a in zip(probs, scores):
            k = int(p.argmax())
            flag = None if a is None or self.threshold is None else bool(a > self.threshold)
            out.append(Inspection(self.classes[k], k, float(p[k]), None if a is None else float(a), flag))
        return out


def describe(info: dict[str, Any]) -> str:
    return f"{info['Global']['model_name']}: {len(info['Inspection']['classes'])} classes"
