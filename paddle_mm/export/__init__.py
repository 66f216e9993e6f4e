"""Export for deployment: Paddle inference graphs, cleaned ONNX, INT8 towers, verified against eager.

``export_model(model, out_dir, transform)`` is the entry point (``tools/export_model.py`` wraps it); the
exported directory is read by :class:`paddle_mm.inference.Predictor`.
"""

from .exporter import ExportOptions, export_model
from .graphs import GRAPHS, graph_specs
from .verify import ExportVerificationError

__all__ = ["GRAPHS", "ExportOptions", "ExportVerificationError", "export_model", "graph_specs"]
