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

Any other name that is not a parameter of the ViT Chinese-CLIP model is an error naming the key, so a
checkpoint of an architecture we do not build (RN50's ModifiedResNet, a flash-attention ``Wqkv`` layout)
fails here instead of loading half its weights.

No paddle (or torch) import: this runs where neither is installed. Arrays keep their dtype (released
checkpoints may be fp16); the loader casts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = ["DROPPED_KEYS", "cn_clip_to_paddle", "paddle_to_cn_clip"]

CHECKPOINT_PREFIX = "module."

# Keys a cn_clip state dict may carry that the Paddle model does not have, dropped on purpose (see above).
DROPPED_KEYS = (re.compile(r"bert\.pooler\..+"), re.compile(r"bert\.embeddings\.position_ids"))

_KEEP, _TRANSPOSE = "keep", "transpose"

# Every parameter of paddle_mm's ViT CLIP, by module. _TRANSPOSE marks the weights of Linear layers
# (and the packed q/k/v projection of nn.MultiheadAttention, which torch applies as a Linear).
_RES = r"visual\.transformer\.resblocks\.\d+\."
_BERT = r"bert\.encoder\.layer\.\d+\."
_LN = r"(weight|bias)"
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

_RN50_HINT = re.compile(r"visual\.(attnpool|layer\d|bn\d|conv[23])\.")


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
    hint = (
        "it belongs to the ModifiedResNet (RN50) image tower, which paddle_mm does not build yet"
        if _RN50_HINT.match(name)
        else "it is not a parameter of paddle_mm's ViT Chinese-CLIP; check that this is a Chinese-CLIP "
        "(cn_clip / QA-CLIP) state dict, or add a rule for it in paddle_mm/models/convert.py"
    )
    raise KeyError(f"cannot convert weight {key!r}: {hint}")
