"""Run exported models: :class:`Predictor` over Paddle Inference or ONNX Runtime, or ``auto``.

Importing this package imports neither paddle nor onnxruntime; a backend imports its runtime when built.
"""

from .model_dir import ExportDirError, read_inference_yml
from .predictor import BACKEND_CHOICES, Predictor

__all__ = ["BACKEND_CHOICES", "ExportDirError", "Predictor", "read_inference_yml"]
