"""paddle_mm: a PaddlePaddle-native multimodal toolkit built around Chinese-CLIP.

`import paddle_mm` is kept light on purpose: nothing here imports paddle, paddlenlp or
paddlex. Public names are resolved lazily on first access.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "UnifiedTokenizer": "paddle_mm.tokenizer",
    "tokenize": "paddle_mm.text.tokenizer",
    "WordPieceTokenizer": "paddle_mm.text.tokenizer",
    "ImageTransform": "paddle_mm.vision.transforms",
    "load_config": "paddle_mm.config",
    "build_model": "paddle_mm.models",
    "create_model": "paddle_mm.models",
    "list_models": "paddle_mm.models",
    "load_model": "paddle_mm.models",
    "save_model": "paddle_mm.models",
    "load_from_name": "paddle_mm.models.pretrained",
    "load_corpus": "paddle_mm.data.datasets",
    "export_model": "paddle_mm.export",
    "Predictor": "paddle_mm.inference",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'paddle_mm' has no attribute {name!r}")
    value = getattr(_import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API (resolved lazily) and the module's own names: what ``dir(paddle_mm)`` and completion show."""
    return sorted(set(globals()) | set(__all__))
