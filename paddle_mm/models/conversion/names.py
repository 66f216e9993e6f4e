"""Convert weights between cn_clip (PyTorch Chinese-CLIP) state dicts and paddle_mm's, in pure numpy.

Parameter names are the same on both sides (see ``chinese_clip.py``); what differs:

* Linear weights: torch stores [out, in], Paddle [in, out]. This includes ``attn.in_proj_weight``
  (torch [3d, d], ours [d, 3d]). Which tensors are Linear weights is decided by the parameter's
  name (its module), never by "is 2-D": embeddings, ``conv1.weight``, ``proj``, ``text_projection``
  and ``positional_embedding`` are 2-D or 4-D too and keep their layout.
* cn_clip checkpoints (``torch.load(path)["state_dict"]``) carry a ``module.`` prefix (DataParallel).
* ``bert.pooler.*`` (present in the BERT/RoBERTa weights cn_clip starts from; cn_clip's own BertModel has
  the pooler commented out and its trainer drops it on load) and ``bert.embeddings.position_ids`` (a
  buffer of newer BERT implementations) are dropped: CLIP never uses them.

Any other name that is not a parameter or buffer of paddle_mm's Chinese-CLIP (ViT or RN50's ModifiedResNet)
is an error naming the key, so a checkpoint layout we do not build (cn_clip's flash-attention ``Wqkv``) fails
here instead of loading half its weights.

PaddleNLP's ``ChineseCLIPModel`` is Paddle too ([in, out] Linear weights) but names and packs things
differently: :func:`paddlenlp_to_paddle` / :func:`paddle_to_paddlenlp` map between the two (split / join of
the ViT's packed q/k/v, renamed BERT modules, ``logit_scale`` [1] vs our 0-d). PaddleNLP has no ResNet tower.

No paddle (or torch) import: this runs where neither is installed. Arrays keep their dtype (released
checkpoints may be fp16); the loader casts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = ["DROPPED_KEYS", "cn_clip_to_paddle", "paddle_to_cn_clip", "paddle_to_paddlenlp", "paddlenlp_to_paddle"]

CHECKPOINT_PREFIX = "module."

# Keys a cn_clip state dict may carry that the Paddle model does not have, dropped on purpose (see above).
DROPPED_KEYS = (re.compile(r"bert\.pooler\..+"), re.compile(r"bert\.embeddings\.position_ids"))

_KEEP, _TRANSPOSE = "keep", "transpose"

# Every parameter of paddle_mm's ViT CLIP, by module. _TRANSPOSE marks the weights of Linear layers
# (and the packed q/k/v projection of nn.MultiheadAttention, which torch applies as a Linear).
_RES = r"visual\.transformer\.resblocks\.\d+\."
_BERT = r"bert\.encoder\.layer\.\d+\."
_BLOCK = r"visual\.layer[1-4]\.\d+\."  # a ModifiedResNet bottleneck
_LN = r"(weight|bias)"
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), action)
    for pattern, action in (
        # vision tower
        (r"visual\.conv1\.weight", _KEEP),  # Conv2D: [out, in, kh, kw] in both frameworks
        (r"visual\.(class_embedding|positional_embedding|proj)", _KEEP),  # used as x @ proj on both sides
        (rf"visual\.(ln_pre|ln_post)\.{_LN}", _KEEP),
        (_RES + r"attn\.in_proj_weight", _TRANSPOSE),
        (_RES + r"attn\.in_proj_bias", _KEEP),
        (_RES + r"attn\.out_proj\.weight", _TRANSPOSE),
        (_RES + r"attn\.out_proj\.bias", _KEEP),
        (_RES + r"mlp\.(c_fc|c_proj)\.weight", _TRANSPOSE),
        (_RES + r"mlp\.(c_fc|c_proj)\.bias", _KEEP),
        (_RES + rf"(ln_1|ln_2)\.{_LN}", _KEEP),
        # ModifiedResNet image tower (RN50): convolutions and BatchNorm keep their layout
        (r"visual\.conv[23]\.weight", _KEEP),
        (rf"visual\.bn[123]\.{_BN}", _KEEP),
        (_BLOCK + r"(conv[123]|downsample\.0)\.weight", _KEEP),
        (_BLOCK + rf"(bn[123]|downsample\.1)\.{_BN}", _KEEP),
        (r"visual\.attnpool\.positional_embedding", _KEEP),
        (r"visual\.attnpool\.[qkvc]_proj\.weight", _TRANSPOSE),
        (r"visual\.attnpool\.[qkvc]_proj\.bias", _KEEP),
        # text tower
        (r"bert\.embeddings\.(word|position|token_type)_embeddings\.weight", _KEEP),  # [num, dim] on both sides
        (rf"bert\.embeddings\.LayerNorm\.{_LN}", _KEEP),
        (_BERT + r"attention\.self\.(query|key|value)\.weight", _TRANSPOSE),
        (_BERT + r"attention\.self\.(query|key|value)\.bias", _KEEP),
        (_BERT + r"(attention\.output|intermediate|output)\.dense\.weight", _TRANSPOSE),
        (_BERT + r"(attention\.output|intermediate|output)\.dense\.bias", _KEEP),
        (_BERT + rf"(attention\.output|output)\.LayerNorm\.{_LN}", _KEEP),
        # heads
        (r"text_projection", _KEEP),  # used as x @ text_projection on both sides
        (r"logit_scale", _KEEP),
    )
)


def cn_clip_to_paddle(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn a cn_clip state dict (``torch.load(ckpt)["state_dict"]``, tensors as numpy) into paddle_mm's.

    Strips the ``module.`` prefix, drops :data:`DROPPED_KEYS`, transposes Linear weights. The result
    loads into ``paddle_mm``'s ``CLIP`` with ``set_state_dict`` with no missing or unexpected key when
    the config matches the checkpoint. Raises ``KeyError`` naming any key it cannot map.
    """
    out: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}  # converted name -> the key it came from
    for key, value in state.items():
        name = key.removeprefix(CHECKPOINT_PREFIX)
        if any(p.fullmatch(name) for p in DROPPED_KEYS):
            continue
        if name in out:
            raise KeyError(f"{source[name]!r} and {key!r} both map to {name!r}: keep only one of them")
        out[name], source[name] = _convert(name, key, value), key
    return out


def paddle_to_cn_clip(state: Mapping[str, np.ndarray], prefix: str = CHECKPOINT_PREFIX) -> dict[str, np.ndarray]:
    """The inverse of :func:`cn_clip_to_paddle`: paddle_mm weights (as numpy) -> a cn_clip state dict.

    Linear weights go back to torch's [out, in]; every key gets ``prefix`` (default ``"module."``, as in
    released checkpoints; cn_clip's loaders accept ``""`` too). Raises ``KeyError`` naming any key that
    is not a paddle_mm CLIP parameter.
    """
    return {prefix + key: _convert(key, key, value) for key, value in state.items()}


def _convert(name: str, key: str, value: np.ndarray) -> np.ndarray:
    """Apply the rule for ``name`` (``key`` is the caller's original spelling, for error messages)."""
    action = _action(name, key)
    value = np.asarray(value)
    if action == _KEEP:
        return value
    if value.ndim != 2:
        raise ValueError(f"{key!r} is a Linear weight and must be 2-D, got shape {list(value.shape)}")
    return np.ascontiguousarray(value.T)  # the transpose is its own inverse: one rule serves both directions


def _action(name: str, key: str) -> str:
    for pattern, action in _RULES:
        if pattern.fullmatch(name):
            return action
    raise KeyError(
        f"cannot convert weight {key!r}: it is not a parameter of paddle_mm's Chinese-CLIP; check that this is a "
        "Chinese-CLIP (cn_clip / QA-CLIP) state dict, or add a rule for it in paddle_mm/models/conversion/names.py"
    )


# ----------------------------------------------------------------------------- PaddleNLP ChineseCLIPModel

# PaddleNLP's ViT packs nothing: q/k/v are three Linears where we (and cn_clip) keep one [d, 3d] weight.
_NLP_QKV = ("q_proj", "k_proj", "v_proj")
# (paddle_mm name, PaddleNLP name) templates: {i} a layer index, {p} weight or bias, {e} an embedding table.
_NLP_NAMES: tuple[tuple[str, str], ...] = (
    ("visual.proj", "vision_projection"),
    ("visual.class_embedding", "vision_model.class_embedding"),
    ("visual.positional_embedding", "vision_model.positional_embedding.weight"),
    ("visual.conv1.weight", "vision_model.conv1.weight"),
    ("visual.ln_pre.{p}", "vision_model.ln_pre.{p}"),
    ("visual.ln_post.{p}", "vision_model.ln_post.{p}"),
    (
        "visual.transformer.resblocks.{i}.attn.out_proj.{p}",
        "vision_model.transformer.layers.{i}.self_attn.out_proj.{p}",
    ),
    ("visual.transformer.resblocks.{i}.ln_1.{p}", "vision_model.transformer.layers.{i}.norm1.{p}"),
    ("visual.transformer.resblocks.{i}.ln_2.{p}", "vision_model.transformer.layers.{i}.norm2.{p}"),
    ("visual.transformer.resblocks.{i}.mlp.c_fc.{p}", "vision_model.transformer.layers.{i}.linear1.{p}"),
    ("visual.transformer.resblocks.{i}.mlp.c_proj.{p}", "vision_model.transformer.layers.{i}.linear2.{p}"),
    ("bert.embeddings.{e}_embeddings.weight", "text_model.embeddings.{e}_embeddings.weight"),
    ("bert.embeddings.LayerNorm.{p}", "text_model.embeddings.layer_norm.{p}"),
    ("bert.encoder.layer.{i}.attention.self.query.{p}", "text_model.encoder.layers.{i}.self_attn.q_proj.{p}"),
    ("bert.encoder.layer.{i}.attention.self.key.{p}", "text_model.encoder.layers.{i}.self_attn.k_proj.{p}"),
    ("bert.encoder.layer.{i}.attention.self.value.{p}", "text_model.encoder.layers.{i}.self_attn.v_proj.{p}"),
    ("bert.encoder.layer.{i}.attention.output.dense.{p}", "text_model.encoder.layers.{i}.self_attn.out_proj.{p}"),
    ("bert.encoder.layer.{i}.attention.output.LayerNorm.{p}", "text_model.encoder.layers.{i}.norm1.{p}"),
    ("bert.encoder.layer.{i}.intermediate.dense.{p}", "text_model.encoder.layers.{i}.linear1.{p}"),
    ("bert.encoder.layer.{i}.output.dense.{p}", "text_model.encoder.layers.{i}.linear2.{p}"),
    ("bert.encoder.layer.{i}.output.LayerNorm.{p}", "text_model.encoder.layers.{i}.norm2.{p}"),
    ("text_projection", "text_projection"),
    ("logit_scale", "logit_scale"),
)
_SLOTS = {"i": r"\d+", "p": "weight|bias", "e": "word|position|token_type"}


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for slot, alternatives in _SLOTS.items():
        pattern = pattern.replace(re.escape("{" + slot + "}"), f"(?P<{slot}>{alternatives})")
    return re.compile(pattern)


_TO_NLP = tuple((_template_regex(ours), theirs) for ours, theirs in _NLP_NAMES)
_FROM_NLP = tuple((_template_regex(theirs), ours) for ours, theirs in _NLP_NAMES)
_NLP_PACKED = re.compile(r"vision_model\.transformer\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
# Keys a PaddleNLP checkpoint may carry that CLIP never uses: position-id buffers, BERT's pooler.
NLP_DROPPED_KEYS = (re.compile(r".*position_ids"), re.compile(r"text_model\.pooler\..+"))


def paddle_to_paddlenlp(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """paddle_mm weights (ViT towers only) -> PaddleNLP ``ChineseCLIPModel`` state dict (both [in, out])."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        value = np.asarray(value)
        packed = re.fullmatch(r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", key)
        if packed:
            layer, kind = packed.groups()
            for name, part in zip(_NLP_QKV, np.split(value, 3, axis=-1)):  # [d, 3d] -> 3 x [d, d]
                out[f"vision_model.transformer.layers.{layer}.self_attn.{name}.{kind}"] = np.ascontiguousarray(part)
            continue
        out[_rename(key, _TO_NLP, "paddle_mm", "PaddleNLP")] = value.reshape(1) if key == "logit_scale" else value
    return out


def paddlenlp_to_paddle(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PaddleNLP ``ChineseCLIPModel`` state dict -> paddle_mm's (the inverse of :func:`paddle_to_paddlenlp`).

    Drops :data:`NLP_DROPPED_KEYS`; raises ``KeyError`` naming a key it cannot map or a q/k/v part missing.
    """
    out: dict[str, np.ndarray] = {}
    parts: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for key, value in state.items():
        if any(p.fullmatch(key) for p in NLP_DROPPED_KEYS):
            continue
        value = np.asarray(value)
        packed = _NLP_PACKED.fullmatch(key)
        if packed:
            layer, which, kind = packed.groups()
            parts.setdefault((layer, kind), {})[which] = value
            continue
        name = _rename(key, _FROM_NLP, "PaddleNLP", "paddle_mm")
        out[name] = value.reshape(()) if name == "logit_scale" else value
    for (layer, kind), qkv in sorted(parts.items()):
        missing = [w for w in "qkv" if w not in qkv]
        if missing:
            raise KeyError(
                f"vision layer {layer}: {kind} of {[f'{w}_proj' for w in missing]} missing; q, k and v come together"
            )
        out[f"visual.transformer.resblocks.{layer}.attn.in_proj_{kind}"] = np.concatenate(
            [qkv["q"], qkv["k"], qkv["v"]], axis=-1
        )
    return out


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...], source: str, target: str) -> str:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match:
            return template.format(**match.groupdict())
    raise KeyError(
        f"cannot map {source} weight {key!r} to {target}: no rule matches it (PaddleNLP's ChineseCLIPModel has ViT "
        "image towers only; RN50 checkpoints stay in the paddle_mm / cn_clip formats)"
    )
