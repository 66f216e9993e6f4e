"""``load_from_name``: Chinese-CLIP's one call from a released model to ``(model, preprocess)``, with no download.

    model, preprocess = paddle_mm.load_from_name("clip_cn_vit-b-16.pt")       # a Chinese-CLIP .pt, converted in memory
    model, preprocess = paddle_mm.load_from_name("models/vit-b-16")           # a paddle_mm model directory
    model, preprocess = paddle_mm.load_from_name("ViT-B-16", download_root="~/.cache/clip")  # the .pt cn_clip saved
    pixels = paddle.to_tensor(preprocess("cat.jpg")[None])                     # [1, 3, S, S]

Nothing is downloaded: a released name finds the file cn_clip's own ``load_from_name`` downloads
(``<download_root>/clip_cn_<name>.pt``, default root ``~/.cache/clip`` as cn_clip's) or fails in one line
naming the file to fetch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import MODEL_CONFIG_FILE, list_models, load_model

# cn_clip.clip.utils._MODELS: released name -> the file its load_from_name downloads
CN_CLIP_FILES = {
    "ViT-B-16": "clip_cn_vit-b-16.pt",
    "ViT-L-14": "clip_cn_vit-l-14.pt",
    "ViT-L-14-336": "clip_cn_vit-l-14-336.pt",
    "ViT-H-14": "clip_cn_vit-h-14.pt",
    "RN50": "clip_cn_rn50.pt",
}
DEFAULT_DOWNLOAD_ROOT = Path("~/.cache/clip")


def load_from_name(
    name: str | os.PathLike,
    device: str = "cpu",
    download_root: str | os.PathLike | None = None,
    interpolation: str = "pil_bicubic",
    arch: str | None = None,
    **overrides: Any,
):
    """``(model in eval mode, preprocess)`` for a Chinese-CLIP ``.pt``, a paddle_mm model or checkpoint directory,
    or a released name whose ``.pt`` is already in ``download_root``.

    ``preprocess`` maps one image (path, bytes, array, PIL image) to float32 ``[3, S, S]`` as Chinese-CLIP's
    transform does. ``arch`` (a name of :func:`paddle_mm.list_models`) and ``overrides`` (config fields) pick
    the architecture of a ``.pt`` when its shapes do not (head counts); by default it is inferred from them.
    """
    import hardware

    from ..vision.transforms import ImageTransform

    path = resolve_name(name, download_root)
    hardware.resolve_device(device)
    model = _from_pt(path, arch or _released_arch(name), overrides) if path.is_file() else _from_dir(path)
    model.eval()
    return model, ImageTransform(model.config.image_resolution, interpolation=interpolation)


def resolve_name(name: str | os.PathLike, download_root: str | os.PathLike | None = None) -> Path:
    """The file or directory ``name`` stands for; FileNotFoundError (one line, what to pass) when there is none."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if str(name) in CN_CLIP_FILES:
        root = Path(download_root or DEFAULT_DOWNLOAD_ROOT).expanduser()
        candidate = root / CN_CLIP_FILES[str(name)]
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(
            f"load_from_name({str(name)!r}): {candidate} not found and paddle_mm downloads nothing; fetch "
            f"{CN_CLIP_FILES[str(name)]} from Chinese-CLIP's model list into {root} (or pass download_root=...), "
            "or pass the path of a .pt or of a paddle_mm model directory"
        )
    raise FileNotFoundError(
        f"load_from_name({str(name)!r}): no such file or directory; pass a Chinese-CLIP .pt, a paddle_mm model "
        f"directory, or a released name {sorted(CN_CLIP_FILES)} whose .pt is in download_root"
    )


def _released_arch(name: str | os.PathLike) -> str | None:
    return str(name) if str(name) in CN_CLIP_FILES and str(name) in list_models() else None


def _from_dir(path: Path):
    if not (path / MODEL_CONFIG_FILE).is_file() and (path / "best_model" / MODEL_CONFIG_FILE).is_file():
        path = path / "best_model"  # a training run's folder: its best checkpoint
    return load_model(path)


def _from_pt(path: Path, arch: str | None, overrides: dict[str, Any]):
    """A Chinese-CLIP ``.pt`` converted in memory (no torch): shapes checked exactly against the architecture."""
    import numpy as np

    from .chinese_clip import CLIP, CLIPConfig
    from .conversion import CheckpointError, TorchCheckpoint, resolve_config
    from .conversion.names import cn_clip_to_paddle

    with TorchCheckpoint(path) as ckpt:
        state = cn_clip_to_paddle(ckpt.state_dict())
    cfg = resolve_config({k: tuple(v.shape) for k, v in state.items()}, arch, overrides or None)
    model = CLIP(CLIPConfig.from_dict(cfg))
    own = model.state_dict()
    if set(own) != set(state):  # resolve_config checked the shapes; the model must hold exactly those tensors
        raise CheckpointError(f"{path}: tensors {sorted(set(own) ^ set(state))[:5]} do not match the model")
    for key, param in own.items():
        param.set_value(np.asarray(state[key]).astype(np.dtype(str(param.numpy().dtype)), copy=False))
    return model
