"""Model registry: named architectures are data (``model_configs/<name>.json``), built by plain functions.

``create_model("ViT-B-16")`` builds a randomly initialised model; ``load_model(dir)`` builds one from a
saved directory (``model_config.json`` + ``model.safetensors``) and loads its weights, failing loudly on
any missing, unexpected or mis-shaped tensor. ``save_model`` also writes the vocabulary and the tokenizer's
sizes (``vocab.txt``, ``tokenizer_config.json``), so ``UnifiedTokenizer.from_pretrained(dir)`` works on it.
``load_from_name`` (:mod:`.pretrained`) is Chinese-CLIP's call of that name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .aliases import resolve_model_name

_CONFIG_DIR = Path(__file__).parent / "model_configs"
MODEL_CONFIG_FILE = "model_config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # paddle_mm.tokenizer.CONFIG_NAME


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` and ``Arch.name``."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.json"))


def get_model_config(name: str) -> dict[str, Any]:
    """The architecture dict of a named model (a fresh copy); aliases such as "Chinese-CLIP" are accepted."""
    name = resolve_model_name(name, list_models())
    path = _CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"unknown model {name!r}; available: {list_models()}")
    return json.loads(path.read_text(encoding="utf-8"))


def create_model(name: str, **overrides: Any):
    """Build a named architecture with random weights; ``overrides`` replace fields of its config."""
    from .chinese_clip import CLIP, CLIPConfig

    cfg = get_model_config(name)
    cfg.update(overrides)
    return CLIP(CLIPConfig.from_dict(cfg))


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


def save_model(model, directory: str | Path) -> Path:
    """Write ``model_config.json`` + ``model.safetensors`` into ``directory`` (created if missing)."""
    from dataclasses import asdict

    from ..engine.checkpoint import save_safetensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), directory / WEIGHTS_FILE)
    _write_text_atomic(directory / MODEL_CONFIG_FILE, json.dumps(asdict(model.config), indent=2))
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


def load_from_name(name, device: str = "cpu", download_root=None, **options: Any):
    """``(model, preprocess)`` from a Chinese-CLIP .pt, a model directory or a released name (:mod:`.pretrained`)."""
    from .pretrained import load_from_name as load

    return load(name, device, download_root, **options)


def load_model(path: str | Path):
    """Build and load a model saved by :func:`save_model` or a training checkpoint directory.

    A checkpoint's ``model.safetensors`` is checked against the SHA-256 in its ``state.json`` first
    (a mismatch raises ``CheckpointError`` naming the file).
    """
    from ..engine.checkpoint import load_state_into, verify_digests
    from .chinese_clip import CLIP, CLIPConfig

    path = Path(path)
    config_file = path / MODEL_CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: load_model expects a directory written by save_model or by training "
            "(holding model_config.json and model.safetensors)"
        )
    verify_digests(path, (WEIGHTS_FILE,))
    model = CLIP(CLIPConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8"))))
    load_state_into(model, path / WEIGHTS_FILE)
    model.eval()
    return model


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
