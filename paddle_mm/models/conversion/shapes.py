"""The architecture a state dict implies: every tensor shape a config builds (:func:`expected_shapes`), the
config read back from shapes (:func:`infer_config`), and the check that a checkpoint fits a config.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ...io import CheckpointError
from .. import get_model_config, list_models

# ----------------------------------------------------------------------------- architecture from shapes

_BERT_HEAD_WIDTH = 64  # every Chinese-CLIP text tower (RBT3, RoBERTa-wwm-ext base / large)
_ARCH_DEFAULTS: dict[str, Any] = {
    "vision_head_width": 64,
    "text_attention_probs_dropout_prob": 0.1,
    "text_hidden_act": "gelu",
    "text_hidden_dropout_prob": 0.1,
    "text_initializer_range": 0.02,
    "context_length": 52,
    "pad_id": 0,
}


def expected_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor name of ``CLIP(cfg)``'s state dict and its shape, in model order, without building it."""
    shapes: dict[str, tuple[int, ...]] = {
        "text_projection": (cfg["text_hidden_size"], cfg["embed_dim"]),
        "logit_scale": (),
    }
    if isinstance(cfg["vision_layers"], (list, tuple)):
        shapes.update(_resnet_shapes(cfg))
    else:
        shapes.update(_vit_shapes(cfg))
    shapes.update(_bert_shapes(cfg))
    return shapes


def _vit_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    w, p, res = cfg["vision_width"], cfg["vision_patch_size"], cfg["image_resolution"]
    shapes = {
        "visual.class_embedding": (w,),
        "visual.positional_embedding": ((res // p) ** 2 + 1, w),
        "visual.proj": (w, cfg["embed_dim"]),
        "visual.conv1.weight": (w, 3, p, p),
        "visual.ln_pre.weight": (w,),
        "visual.ln_pre.bias": (w,),
    }
    for i in range(cfg["vision_layers"]):
        block = f"visual.transformer.resblocks.{i}."
        shapes.update({
            block + "attn.in_proj_weight": (w, 3 * w),
            block + "attn.in_proj_bias": (3 * w,),
            block + "attn.out_proj.weight": (w, w),
            block + "attn.out_proj.bias": (w,),
            block + "ln_1.weight": (w,),
            block + "ln_1.bias": (w,),
            block + "mlp.c_fc.weight": (w, 4 * w),
            block + "mlp.c_fc.bias": (4 * w,),
            block + "mlp.c_proj.weight": (4 * w, w),
            block + "mlp.c_proj.bias": (w,),
            block + "ln_2.weight": (w,),
            block + "ln_2.bias": (w,),
        })  # fmt: skip
    shapes.update({"visual.ln_post.weight": (w,), "visual.ln_post.bias": (w,)})
    return shapes


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    names = ("weight", "bias", "running_mean", "running_var")
    return {**{f"{prefix}.{n}": (channels,) for n in names}, f"{prefix}.num_batches_tracked": ()}


def _resnet_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    w, res, embed = cfg["vision_width"], cfg["image_resolution"], cfg["embed_dim"]
    shapes = {"visual.conv1.weight": (w // 2, 3, 3, 3), **_bn("visual.bn1", w // 2)}
    shapes.update({"visual.conv2.weight": (w // 2, w // 2, 3, 3), **_bn("visual.bn2", w // 2)})
    shapes.update({"visual.conv3.weight": (w, w // 2, 3, 3), **_bn("visual.bn3", w)})
    inplanes = w
    for stage, blocks in enumerate(cfg["vision_layers"]):
        planes = w * 2**stage
        for b in range(blocks):
            pre = f"visual.layer{stage + 1}.{b}."
            shapes.update({pre + "conv1.weight": (planes, inplanes, 1, 1), **_bn(pre + "bn1", planes)})
            shapes.update({pre + "conv2.weight": (planes, planes, 3, 3), **_bn(pre + "bn2", planes)})
            shapes.update({pre + "conv3.weight": (4 * planes, planes, 1, 1), **_bn(pre + "bn3", 4 * planes)})
            if b == 0 and (stage > 0 or inplanes != 4 * planes):
                shapes.update({pre + "downsample.0.weight": (4 * planes, inplanes, 1, 1)})
                shapes.update(_bn(pre + "downsample.1", 4 * planes))
            inplanes = 4 * planes
    c = 32 * w
    shapes["visual.attnpool.positional_embedding"] = ((res // 32) ** 2 + 1, c)
    for proj in ("k_proj", "q_proj", "v_proj"):
        shapes.update({f"visual.attnpool.{proj}.weight": (c, c), f"visual.attnpool.{proj}.bias": (c,)})
    shapes.update({"visual.attnpool.c_proj.weight": (c, embed), "visual.attnpool.c_proj.bias": (embed,)})
    return shapes


def _bert_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    h, inter = cfg["text_hidden_size"], cfg["text_intermediate_size"]
    shapes = {
        "bert.embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": (cfg["text_max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (cfg["text_type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
    }
    for i in range(cfg["text_num_hidden_layers"]):
        pre = f"bert.encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes.update({f"{pre}attention.self.{name}.weight": (h, h), f"{pre}attention.self.{name}.bias": (h,)})
        shapes.update({
            pre + "attention.output.dense.weight": (h, h),
            pre + "attention.output.dense.bias": (h,),
            pre + "attention.output.LayerNorm.weight": (h,),
            pre + "attention.output.LayerNorm.bias": (h,),
            pre + "intermediate.dense.weight": (h, inter),
            pre + "intermediate.dense.bias": (inter,),
            pre + "output.dense.weight": (inter, h),
            pre + "output.dense.bias": (h,),
            pre + "output.LayerNorm.weight": (h,),
            pre + "output.LayerNorm.bias": (h,),
        })  # fmt: skip
    return shapes


def _count(shapes: Iterable[str], pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for name in shapes if (m := regex.match(name))}
    if found != set(range(len(found))):
        raise CheckpointError(f"layer indices {sorted(found)} of {pattern!r} are not 0..N-1: layers are missing")
    return len(found)


def _need(shapes: Mapping[str, tuple[int, ...]], name: str) -> tuple[int, ...]:
    if name not in shapes:
        raise CheckpointError(f"tensor {name!r} is missing: this is not a complete Chinese-CLIP checkpoint")
    return tuple(shapes[name])


def _grid(tokens: int, name: str) -> int:
    side = math.isqrt(tokens - 1)
    if side * side != tokens - 1:
        raise CheckpointError(f"{name} has {tokens} rows, not 1 + a square grid: cannot infer the image size")
    return side


def infer_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """A model config (cn_clip field names) from the shapes of a paddle_mm-named state dict.

    Head counts are not in the weights: see the module docstring for how they are chosen.
    """
    word = _need(shapes, "bert.embeddings.word_embeddings.weight")
    cfg: dict[str, Any] = dict(_ARCH_DEFAULTS)
    cfg.update(
        embed_dim=_need(shapes, "text_projection")[1],
        vocab_size=word[0],
        text_hidden_size=word[1],
        text_max_position_embeddings=_need(shapes, "bert.embeddings.position_embeddings.weight")[0],
        text_type_vocab_size=_need(shapes, "bert.embeddings.token_type_embeddings.weight")[0],
        text_num_hidden_layers=_count(shapes, r"bert\.encoder\.layer\.(\d+)\."),
        text_intermediate_size=_need(shapes, "bert.encoder.layer.0.intermediate.dense.weight")[1],
        text_num_attention_heads=max(1, word[1] // _BERT_HEAD_WIDTH),
    )
    cfg["context_length"] = min(cfg["context_length"], cfg["text_max_position_embeddings"])
    if "visual.attnpool.positional_embedding" in shapes:
        tokens = _need(shapes, "visual.attnpool.positional_embedding")[0]
        cfg.update(
            vision_layers=[_count(shapes, rf"visual\.layer{s}\.(\d+)\.") for s in range(1, 5)],
            vision_width=_need(shapes, "visual.conv3.weight")[0],
            vision_patch_size=None,
            image_resolution=32 * _grid(tokens, "visual.attnpool.positional_embedding"),
        )
    else:
        conv = _need(shapes, "visual.conv1.weight")
        tokens = _need(shapes, "visual.positional_embedding")[0]
        cfg.update(
            vision_layers=_count(shapes, r"visual\.transformer\.resblocks\.(\d+)\."),
            vision_width=conv[0],
            vision_patch_size=conv[2],
            image_resolution=conv[2] * _grid(tokens, "visual.positional_embedding"),
        )
        for name in list_models():  # head width is not in the weights: take it from a named model of this width
            named = get_model_config(name)
            if not isinstance(named["vision_layers"], list) and named["vision_width"] == cfg["vision_width"]:
                cfg["vision_head_width"] = named["vision_head_width"]
                break
    return cfg


def check_shapes(cfg: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], label: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensor whose shape differs from what ``cfg`` builds."""
    expected = expected_shapes(cfg)
    for name, shape in expected.items():
        if name not in shapes:
            raise CheckpointError(f"tensor {name!r} of {label} (shape {list(shape)}) is missing from the checkpoint")
        if tuple(shapes[name]) != shape:
            raise CheckpointError(
                f"tensor {name!r}: the checkpoint has shape {list(shapes[name])}, {label} expects {list(shape)}"
            )
    extra = [name for name in shapes if name not in expected]
    if extra:
        raise CheckpointError(f"tensor {extra[0]!r} (shape {list(shapes[extra[0]])}) is not part of {label}")


def resolve_config(
    shapes: Mapping[str, tuple[int, ...]], arch: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The config for a state dict: ``arch``'s (checked), else a named model that fits exactly, else inferred.

    ``overrides`` replace fields before the shape check (e.g. head widths for a custom model).
    """
    if arch is not None:
        cfg, label = get_model_config(arch), f"--arch {arch}"
    else:
        cfg, label = infer_config(shapes), "the inferred architecture"
        for name in list_models():
            named = get_model_config(name)
            if _same_shapes(named, shapes):
                cfg, label = named, name
                break
    for key in overrides or {}:
        if key not in cfg:
            raise CheckpointError(f"override {key!r} is not a model config field; fields: {sorted(cfg)}")
    cfg.update(overrides or {})
    if overrides:
        label += f" with {dict(overrides)}"
    check_shapes(cfg, shapes, label)
    return cfg


def _same_shapes(cfg: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    expected = expected_shapes(cfg)
    return expected.keys() == shapes.keys() and all(tuple(shapes[k]) == v for k, v in expected.items())
