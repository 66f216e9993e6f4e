"""Model registry: named architectures are data (``model_configs/<name>.json``), built by plain functions.

``create_model("ViT-B-16")`` builds a randomly initialised model; ``load_model(dir)`` builds one from a saved
directory (``model_config.json`` + ``model.safetensors``) and loads its weights, failing loudly on any missing,
unexpected or mis-shaped tensor. ``model_config.json`` names the kind of model it holds (``model_type``): ``"clip"``
(the CLIP fields at the top level, as before the field existed: a file without it is a CLIP) or ``"fusion"``
(``{"fusion": {...}, "clip": {CLIP fields}}``, :mod:`.fusion`). ``save_model`` also writes the vocabulary and the
tokenizer's sizes (``vocab.txt``, ``tokenizer_config.json``), so ``UnifiedTokenizer.from_pretrained(dir)`` works on
it. ``load_from_name`` (``paddle_mm.load_from_name``, in :mod:`.pretrained`) is Chinese-CLIP's call of that name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .registry import create_model, get_model_config, list_models  # noqa: F401 (re-exported: paddle_mm.models.create_model)

MODEL_CONFIG_FILE = "model_config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # paddle_mm.tokenizer.CONFIG_NAME
MODEL_TYPES = ("clip", "fusion", "inspection", "captioning")  # model_config.json's model_type


def build_model(arch: dict[str, Any]):
    """Build the model described by a validated ``Arch`` config section.

    ``Arch.name`` picks the named architecture; any other architecture field in the section overrides
    it; ``freeze_vision`` stops gradients to the image tower (LiT-style locked-image tuning).
    """
    arch = dict(arch)
    name = arch.pop("name")
    freeze_vision = arch.pop("freeze_vision", False)
    model = create_model(name, **arch)
    if freeze_vision:
        model.lock_image_tower()
    return model


def model_config_dict(model) -> dict[str, Any]:
    """What ``model_config.json`` holds for ``model``: its kind (``model_type``) and everything needed to build it."""
    from dataclasses import asdict

    config = asdict(model.config)
    if getattr(model, "model_type", None) == "inspection":  # InspectionClassifier: a CNN, no text tower
        return {"model_type": "inspection", **config}
    if getattr(model, "model_type", None) == "captioning":  # CaptionModel: ViT tower + caption decoder
        return {"model_type": "captioning", "caption": model.describe(), "clip": config}
    describe = getattr(model, "describe", None)  # FusionModel: its fusion, head size, labels
    if describe is None:
        return {"model_type": "clip", **config}
    return {"model_type": "fusion", "fusion": describe(), "clip": config}


def save_model(model, directory: str | Path) -> Path:
    """Write ``model_config.json`` + ``model.safetensors`` into ``directory`` (created if missing).

    ``model`` is a CLIP or a fusion model; ``model_config.json`` says which (see the module docstring)."""
    from ..io import save_safetensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), directory / WEIGHTS_FILE)
    _write_text_atomic(
        directory / MODEL_CONFIG_FILE, json.dumps(model_config_dict(model), ensure_ascii=False, indent=2)
    )
    _save_tokenizer(model.config, directory)
    return directory


def _save_tokenizer(cfg, directory: Path) -> None:
    """vocab.txt + tokenizer_config.json beside the weights: the vocabulary travels with the model."""
    from ..text.tokenizer import WordPieceTokenizer

    if not hasattr(cfg, "vocab_size"):  # an image-only model (inspection classifier): no tokenizer to write
        return
    tokenizer = WordPieceTokenizer(context_length=cfg.context_length)
    if tokenizer.pad_id != cfg.pad_id or tokenizer.vocab_size > cfg.vocab_size:
        return  # not the Chinese-CLIP vocabulary this model was built for: write nothing rather than a wrong one
    tokenizer.save_vocabulary(directory)  # byte for byte
    sizes = {"context_length": cfg.context_length, "image_size": cfg.image_resolution}
    _write_text_atomic(directory / TOKENIZER_CONFIG_FILE, json.dumps(sizes, indent=2) + "\n")


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``model_config.json`` of a model directory, with ``model_type`` always set (``"clip"`` when absent)."""
    config_file = Path(path) / MODEL_CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: load_model expects a directory written by save_model or by training "
            "(holding model_config.json and model.safetensors)"
        )
    cfg = json.loads(config_file.read_text(encoding="utf-8"))
    cfg.setdefault("model_type", "clip")  # written before the field existed: always a CLIP
    if cfg["model_type"] not in MODEL_TYPES:
        raise ValueError(f"{config_file}: model_type {cfg['model_type']!r} is not one of {MODEL_TYPES}")
    return cfg


def model_from_config(cfg: dict[str, Any]):
    """A randomly initialised model of the kind and shape a ``model_config.json`` dict describes."""
    from .chinese_clip import CLIP, CLIPConfig

    cfg = dict(cfg)
    kind = cfg.pop("model_type", "clip")
    if kind == "clip":
        return CLIP(CLIPConfig.from_dict(cfg))
    if kind == "inspection":
        from .inspection import InspectionClassifier, InspectionConfig

        return InspectionClassifier(InspectionConfig(**cfg))
    if kind == "captioning":
        from .captioning import caption_from_config

        return caption_from_config(CLIP(CLIPConfig.from_dict(cfg["clip"])), cfg["caption"])
    from .fusion import fusion_from_config

    return fusion_from_config(CLIP(CLIPConfig.from_dict(cfg["clip"])), cfg["fusion"])


def load_model(path: str | Path):
    """Build and load a model saved by :func:`save_model` or a training checkpoint directory: a CLIP, a
    fusion model (:class:`~paddle_mm.models.fusion.FusionModel`) or an inspection classifier
    (:class:`~paddle_mm.models.inspection.InspectionClassifier`), as its ``model_config.json`` says.

    A checkpoint's ``model.safetensors`` is checked against the SHA-256 in its ``state.json`` first
    (a mismatch raises ``CheckpointError`` naming the file).
    """
    from ..io import load_state_into, verify_digests

    path = Path(path)
    cfg = read_model_config(path)
    verify_digests(path, (WEIGHTS_FILE,))
    model = model_from_config(cfg)
    load_state_into(model, path / WEIGHTS_FILE)
    model.eval()
    return model


def _write_text_atomic(path: Path, text: str) -> None:
    from ..io import atomic_write

    atomic_write(path, text)
