"""Run exported models: :class:`Predictor` over Paddle Inference or ONNX Runtime, or ``auto``.

A predictor loads an export directory, or an SM-signed package of one (:meth:`Predictor.from_package`),
verified before any file reaches a runtime. Importing this package imports neither paddle nor onnxruntime;
a backend imports its runtime when built.
"""

from .model_dir import ExportDirError, read_inference_yml
from .predictor import BACKEND_CHOICES, Prediction, Predictor
from .source import ModelSource, open_predictor
from .verified import VerifiedExport, verify_export

__all__ = [
    "BACKEND_CHOICES",
    "ExportDirError",
    "ModelSource",
    "Prediction",
    "Predictor",
    "VerifiedExport",
    "read_inference_yml",
    "open_predictor",
    "verify_export",
]
