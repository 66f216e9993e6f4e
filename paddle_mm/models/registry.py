"""Named architectures are data: ``model_configs/<name>.json``, read into a dict and built by :func:`create_model`.

Kept apart from ``models/__init__.py`` (saving and loading) so that :mod:`.fusion` and the config schema can
build or name a CLIP without importing the loader, which itself builds fusion models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .aliases import resolve_model_name

_CONFIG_DIR = Path(__file__).parent / "model_configs"


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
