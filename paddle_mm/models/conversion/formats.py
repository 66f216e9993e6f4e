"""Whole conversions between directories: a Chinese-CLIP ``.pt`` or a PaddleNLP ``ChineseCLIPModel`` directory
into a paddle_mm model directory (:func:`convert_checkpoint`), and a paddle_mm directory out to PaddleNLP's
layout (:func:`export_paddlenlp`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...io import CheckpointError, atomic_write, load_safetensors, save_safetensors
from .. import MODEL_CONFIG_FILE, WEIGHTS_FILE, get_model_config, list_models
from .names import cn_clip_to_paddle, paddle_to_paddlenlp, paddlenlp_to_paddle
from .shapes import check_shapes, expected_shapes, resolve_config
from .torch_zip import TorchCheckpoint, load_pdparams

NLP_CONFIG_FILE = "config.json"
NLP_WEIGHT_FILES = ("model.safetensors", "model_state.safetensors", "model_state.pdparams")


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    arch: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert a Chinese-CLIP ``.pt`` or a PaddleNLP ChineseCLIP directory into a paddle_mm model directory.

    ``dst`` receives ``model_config.json`` + ``model.safetensors`` for ``paddle_mm.load_model(dst)``.
    Returns a small report: source format, architecture name (or "inferred"), tensor count, config.
    """
    src = Path(src)
    fmt = detect_format(src)
    if fmt == "cn_clip":
        with TorchCheckpoint(src) as ckpt:
            state = cn_clip_to_paddle(ckpt.state_dict())  # reads and casts one tensor at a time
    elif fmt == "paddlenlp":
        state, nlp_config = read_paddlenlp(src)
        overrides = {**paddlenlp_heads(nlp_config), **(overrides or {})}
    else:
        raise CheckpointError(f"{src} is already a paddle_mm model directory: load it with paddle_mm.load_model")
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    cfg = resolve_config(shapes, arch, overrides)
    write_model_dir(dst, cfg, state)
    named = next((n for n in list_models() if get_model_config(n) == cfg), "inferred")
    return {"format": fmt, "architecture": named, "tensors": len(state), "config": cfg}


def detect_format(src: Path) -> str:
    """The source format: "cn_clip" (a torch file), "paddlenlp" (config.json + weights), "paddle_mm"."""
    if src.is_file():
        return "cn_clip"
    if (src / MODEL_CONFIG_FILE).is_file():
        return "paddle_mm"
    if (src / NLP_CONFIG_FILE).is_file():
        return "paddlenlp"
    if src.is_dir():
        raise CheckpointError(
            f"{src}: a directory without {MODEL_CONFIG_FILE} (paddle_mm) or {NLP_CONFIG_FILE} (PaddleNLP); "
            "pass a Chinese-CLIP .pt file or one of those directories"
        )
    raise FileNotFoundError(f"checkpoint {str(src)!r} not found")


def write_model_dir(dst: str | Path, cfg: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> Path:
    """Write a paddle_mm model directory (what ``paddle_mm.load_model`` reads) with tensors in model order."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    order = [k for k in expected_shapes(cfg) if k in state]
    save_safetensors({k: state[k] for k in order}, dst / WEIGHTS_FILE, {"format": "np"})
    atomic_write(dst / MODEL_CONFIG_FILE, json.dumps(dict(cfg), indent=2))
    return dst


def read_paddlenlp(src: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """paddle_mm-named weights and PaddleNLP's config from a ChineseCLIPModel directory."""
    config = json.loads((src / NLP_CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model_type") != "chinese_clip":
        raise CheckpointError(
            f"{src / NLP_CONFIG_FILE}: model_type {config.get('model_type')!r}, expected 'chinese_clip' "
            "(a PaddleNLP ChineseCLIPModel directory)"
        )
    weights = next((src / n for n in NLP_WEIGHT_FILES if (src / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{src}: none of {list(NLP_WEIGHT_FILES)} found (sharded checkpoints are not supported)")
    state = load_pdparams(weights) if weights.suffix == ".pdparams" else load_safetensors(weights)
    if any(k.startswith("text_model.encoder.layer.") for k in state):
        raise CheckpointError(
            f"{weights}: Hugging Face transformers naming (torch layout); convert it with PaddleNLP first or use "
            "the Chinese-CLIP .pt release"
        )
    return paddlenlp_to_paddle(state), config


def paddlenlp_heads(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a PaddleNLP config states that weights cannot: head widths, dropouts, and checks on the rest."""
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    checks = {
        "vision hidden_act": (vision.get("hidden_act", "quick_gelu"), "quick_gelu"),
        "text hidden_act": (text.get("hidden_act", "gelu"), "gelu"),
        "vision layer_norm_eps": (vision.get("layer_norm_eps", 1e-5), 1e-5),
        "text layer_norm_eps": (text.get("layer_norm_eps", 1e-12), 1e-12),
    }
    for what, (value, supported) in checks.items():
        if value != supported:
            raise CheckpointError(f"PaddleNLP config: {what} {value!r} is not Chinese-CLIP's {supported!r}")
    width = vision.get("hidden_size", 768)
    if vision.get("intermediate_size", 4 * width) != 4 * width:
        raise CheckpointError(f"PaddleNLP config: vision intermediate_size must be 4 x hidden_size ({4 * width})")
    return {
        "vision_head_width": width // vision.get("num_attention_heads", 12),
        "text_num_attention_heads": text.get("num_attention_heads", 12),
        "text_hidden_dropout_prob": text.get("hidden_dropout_prob", 0.1),
        "text_attention_probs_dropout_prob": text.get("attention_probs_dropout_prob", 0.1),
        "text_initializer_range": text.get("initializer_range", 0.02),
    }


def paddlenlp_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """PaddleNLP ``ChineseCLIPConfig`` fields (``config.json``) for a ViT paddle_mm config."""
    if isinstance(cfg["vision_layers"], (list, tuple)):
        raise CheckpointError(
            f"vision_layers {cfg['vision_layers']!r} is a ResNet (RN50): PaddleNLP's ChineseCLIPModel has ViT image "
            "towers only; keep RN50 in the paddle_mm or cn_clip format"
        )
    width = cfg["vision_width"]
    return {
        "architectures": ["ChineseCLIPModel"],
        "model_type": "chinese_clip",
        "projection_dim": cfg["embed_dim"],
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "model_type": "chinese_clip_text_model",
            "vocab_size": cfg["vocab_size"],
            "hidden_size": cfg["text_hidden_size"],
            "num_hidden_layers": cfg["text_num_hidden_layers"],
            "num_attention_heads": cfg["text_num_attention_heads"],
            "intermediate_size": cfg["text_intermediate_size"],
            "hidden_act": cfg["text_hidden_act"],
            "hidden_dropout_prob": cfg["text_hidden_dropout_prob"],
            "attention_probs_dropout_prob": cfg["text_attention_probs_dropout_prob"],
            "max_position_embeddings": cfg["text_max_position_embeddings"],
            "type_vocab_size": cfg["text_type_vocab_size"],
            "initializer_range": cfg["text_initializer_range"],
            "layer_norm_eps": 1e-12,
            "pad_token_id": cfg["pad_id"],
        },
        "vision_config": {
            "model_type": "chinese_clip_vision_model",
            "hidden_size": width,
            "intermediate_size": 4 * width,
            "num_hidden_layers": cfg["vision_layers"],
            "num_attention_heads": width // cfg["vision_head_width"],
            "image_size": cfg["image_resolution"],
            "patch_size": cfg["vision_patch_size"],
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
    }


def export_paddlenlp(src: str | Path, dst: str | Path) -> Path:
    """Write a paddle_mm model directory as a PaddleNLP ``ChineseCLIPModel`` directory.

    ``dst`` gets ``config.json`` + ``model.safetensors``, which
    ``paddlenlp.transformers.ChineseCLIPModel.from_pretrained(dst)`` loads.
    """
    src, dst = Path(src), Path(dst)
    if detect_format(src) != "paddle_mm":
        raise CheckpointError(f"{src}: --to paddlenlp needs a paddle_mm model directory (with {MODEL_CONFIG_FILE})")
    cfg = json.loads((src / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    nlp_config = paddlenlp_config(cfg)
    state = load_safetensors(src / WEIGHTS_FILE)
    check_shapes(cfg, {k: v.shape for k, v in state.items()}, f"{src / MODEL_CONFIG_FILE}")
    floats = {k: v.astype(np.float32, copy=False) if v.dtype.kind == "f" else v for k, v in state.items()}
    dst.mkdir(parents=True, exist_ok=True)
    save_safetensors(paddle_to_paddlenlp(floats), dst / "model.safetensors", {"format": "np"})
    atomic_write(dst / NLP_CONFIG_FILE, json.dumps(nlp_config, indent=2))
    return dst
