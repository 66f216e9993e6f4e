"""The graphs an export writes: the image tower, the text tower and both towers with logits; for a fusion model
(:mod:`paddle_mm.models.fusion`) the ``fusion`` graph, its head's logits for image-question pairs.

Each is a thin Layer around a loaded :class:`~paddle_mm.models.chinese_clip.CLIP` (or fusion model) whose
``forward`` takes named inputs, so that the static graph's inputs carry those names. Batch is dynamic everywhere;
the text length is dynamic too (any length up to ``context_length``), so a predictor may drop all-padding columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.static import InputSpec


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: its name, dtype and shape; a dynamic dimension is named by a string
    (``"image_batch"``), so ONNX files and ``inference.yml`` say which dimensions must agree."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


class ImageEncoder(nn.Layer):
    """pixel_values float32 [B, 3, S, S] -> image_features [B, D], unnormalized (``CLIP.encode_image``)."""

    def __init__(self, clip: nn.Layer):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        return self.clip.encode_image(pixel_values)


class TextEncoder(nn.Layer):
    """input_ids int64 [B, L] -> text_features [B, D], unnormalized (``CLIP.encode_text``; pad id masked)."""

    def __init__(self, clip: nn.Layer):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return self.clip.encode_text(input_ids)


class CLIPScorer(nn.Layer):
    """Both towers in one graph: normalized features of each side and ``logits_per_image`` [Bi, Bt]."""

    def __init__(self, clip: nn.Layer):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> tuple[paddle.Tensor, ...]:
        image_features = F.normalize(self.clip.encode_image(pixel_values), axis=-1)
        text_features = F.normalize(self.clip.encode_text(input_ids), axis=-1)
        logits_per_image = self.clip.logit_scale.exp() * paddle.matmul(image_features, text_features, transpose_y=True)
        return image_features, text_features, logits_per_image


@dataclass(frozen=True)
class GraphSpec:
    """How to build one exported graph (``layer(model)``) and what its inputs and outputs are.

    ``int8_check``: how an INT8 variant is held to the eager model: ``cosine`` (feature rows) or, for logits,
    ``softmax`` / ``sigmoid`` (max abs difference of the probabilities they give)."""

    name: str
    layer: Callable[[nn.Layer], nn.Layer]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    int8_check: str = "cosine"

    def input_spec(self) -> list[InputSpec]:
        return [InputSpec([None if isinstance(d, str) else d for d in t.shape], t.dtype, t.name) for t in self.inputs]


def graph_specs(image_size: int, embed_dim: int) -> dict[str, GraphSpec]:
    """The three graphs for a model with this input resolution and feature size, keyed by graph name."""
    pixels = TensorInfo("pixel_values", "float32", ("image_batch", 3, image_size, image_size))
    ids = TensorInfo("input_ids", "int64", ("text_batch", "text_length"))
    image_out = TensorInfo("image_features", "float32", ("image_batch", embed_dim))
    text_out = TensorInfo("text_features", "float32", ("text_batch", embed_dim))
    logits = TensorInfo("logits_per_image", "float32", ("image_batch", "text_batch"))
    return {
        "image": GraphSpec("image", ImageEncoder, (pixels,), (image_out,)),
        "text": GraphSpec("text", TextEncoder, (ids,), (text_out,)),
        "clip": GraphSpec("clip", CLIPScorer, (pixels, ids), (image_out, text_out, logits)),
    }


def fusion_graph_spec(model: nn.Layer) -> GraphSpec:
    """The ``fusion`` graph of a fusion model: its inputs (both, or a baseline's one) -> ``logits`` [B, n_outputs].

    One batch dimension for both inputs: the graph scores pairs (image i with question i)."""
    from ..models.fusion import fusion_input_names, fusion_logits_layer

    S = model.config.image_resolution
    known = {
        "pixel_values": TensorInfo("pixel_values", "float32", ("batch", 3, S, S)),
        "input_ids": TensorInfo("input_ids", "int64", ("batch", "text_length")),
    }
    logits = TensorInfo("logits", "float32", ("batch", model.n_outputs))
    check = "sigmoid" if model.matching else "softmax"
    return GraphSpec(
        "fusion", fusion_logits_layer, tuple(known[n] for n in fusion_input_names(model)), (logits,), check
    )


def model_graph_specs(model: nn.Layer) -> dict[str, GraphSpec]:
    """Every graph ``model`` can be exported as: the CLIP graphs, or a fusion model's towers and ``fusion``."""
    cfg = model.config
    specs = graph_specs(cfg.image_resolution, cfg.embed_dim)
    if not is_fusion(model):
        return specs
    return {"image": specs["image"], "text": specs["text"], "fusion": fusion_graph_spec(model)}


def is_fusion(model: nn.Layer) -> bool:
    return hasattr(model, "fusion_name")


GRAPHS = ("image", "text", "clip")  # a CLIP's graphs
FUSION_GRAPHS = ("fusion",)  # what a fusion model's export writes by default (it may add its "image" / "text" towers)
