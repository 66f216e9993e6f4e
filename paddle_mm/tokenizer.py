"""UnifiedTokenizer: one object that turns texts and images into Chinese-CLIP model inputs.

    tok = UnifiedTokenizer.from_pretrained("ViT-B-16")
    batch = tok(text=["一只猫", "一只狗"], image=["cat.jpg", "dog.jpg"])
    # input_ids / attention_mask / token_type_ids: int64 [2, 52]; pixel_values: float32 [2, 3, 224, 224]

Texts go through paddle_mm.text.tokenizer (ids equal to cn_clip.clip.tokenize), images through
paddle_mm.vision.transforms.ImageTransform (equal to cn_clip's image_transform). Nothing here imports
paddle unless return_tensors="pd" is asked for.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paddle_mm.models.aliases import resolve_model_name
from paddle_mm.text.tokenizer import DEFAULT_CONTEXT_LENGTH, WordPieceTokenizer
from paddle_mm.vision.transforms import CLIP_MEAN, CLIP_STD, ImageTransform

__all__ = ["UnifiedTokenizer"]

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "models" / "model_configs"
VOCAB_NAME = "vocab.txt"
CONFIG_NAME = "tokenizer_config.json"
MODEL_CONFIG_NAME = "model_config.json"  # paddle_mm.models.MODEL_CONFIG_FILE (not imported: that loads more)
EXPORT_CONFIG_NAME = "inference.yml"  # paddle_mm.inference.model_dir.INFERENCE_YML
CONFIG_KEYS = ("context_length", "image_size", "image_mean", "image_std", "interpolation")
RETURN_TENSORS = ("np", "pd")


class UnifiedTokenizer:
    """Text tokenizer + image transform behind one call.

    Args:
        text: a WordPieceTokenizer (anything whose call maps a list of texts to a dict holding
            int64 input_ids [N, L]); None for an image-only tokenizer.
        image: an ImageTransform (anything mapping one image to float32 [3, S, S]); None for text only.
    """

    def __init__(self, text: WordPieceTokenizer | None = None, image: ImageTransform | None = None):
        if text is None and image is None:
            raise ValueError("UnifiedTokenizer needs a text tokenizer, an image transform or both")
        self.text = text
        self.image = image

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike) -> UnifiedTokenizer:
        """Build from a model name or from a directory written by save_pretrained.

        A name is a file paddle_mm/models/model_configs/<name>.json: its image_resolution and
        context_length are used with the bundled Chinese-CLIP vocabulary. A directory is one written by
        save_pretrained (vocab.txt, optionally tokenizer_config.json with any of: context_length,
        image_size, image_mean, image_std, interpolation), a model or training checkpoint directory
        (paddle_mm.save_model writes both files there; an older one without them gets the bundled
        vocabulary and its model_config.json's sizes), or an export directory (tools/export_model.py:
        vocab.txt and inference.yml's PreProcess).
        """
        path = Path(name_or_dir)
        if path.is_dir():
            return cls._from_directory(path)
        return cls._from_model_name(os.fspath(name_or_dir))

    @classmethod
    def _from_model_name(cls, name: str) -> UnifiedTokenizer:
        available = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
        name = resolve_model_name(name, available)  # "Chinese-CLIP", "OFA-Sys/chinese-clip-vit-base-patch16", ...
        if name not in available:
            raise KeyError(f"unknown model {name!r}; available: {available} (or pass a directory holding {VOCAB_NAME})")
        config = json.loads((MODEL_CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8"))
        context_length = int(config.get("context_length", DEFAULT_CONTEXT_LENGTH))
        return cls(WordPieceTokenizer(context_length=context_length), ImageTransform(int(config["image_resolution"])))

    @classmethod
    def _from_directory(cls, directory: Path) -> UnifiedTokenizer:
        config = _read_config(directory / CONFIG_NAME) or _export_config(directory) or _model_config(directory)
        vocab = directory / VOCAB_NAME
        if not vocab.is_file():
            if not (directory / MODEL_CONFIG_NAME).is_file():
                raise FileNotFoundError(
                    f"{directory} has no {VOCAB_NAME}: pass a directory written by UnifiedTokenizer.save_pretrained, "
                    "paddle_mm.save_model (a checkpoint) or tools/export_model.py, or a model name"
                )
            vocab = None  # a checkpoint saved before vocab.txt travelled with it: the vocabulary it was trained on
        text = WordPieceTokenizer(vocab, context_length=int(config.get("context_length", DEFAULT_CONTEXT_LENGTH)))
        image = ImageTransform(
            size=int(config.get("image_size", 224)),
            mean=tuple(config.get("image_mean", CLIP_MEAN)),
            std=tuple(config.get("image_std", CLIP_STD)),
            interpolation=config.get("interpolation", "pil_bicubic"),
        )
        return cls(text, image)

    def save_pretrained(self, directory: str | os.PathLike) -> list[str]:
        """Write vocab.txt (if there is a text tokenizer) and tokenizer_config.json; return their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written, config = [], {}
        if self.text is not None:
            written.append(self.text.save_vocabulary(directory))
            config["context_length"] = self.text.context_length
        if self.image is not None:
            config |= {
                "image_size": self.image.size,
                "image_mean": list(self.image.mean),
                "image_std": list(self.image.std),
                "interpolation": self.image.interpolation,
            }
        target = directory / CONFIG_NAME
        target.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return [*written, os.fspath(target)]

    # -- calling --------------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        image: Any = None,
        return_tensors: str = "np",
    ) -> dict[str, Any]:
        """Model inputs for `text` and/or `image`.

        text: one string or a list -> input_ids, attention_mask, token_type_ids (int64 [N, L]).
        image: one image (path, bytes, uint8 array, PIL image) or a list of them, or a uint8
            [N, H, W, 3] array -> pixel_values (float32 [N, 3, S, S]).
        return_tensors: "np" for numpy arrays, "pd" for paddle tensors (imports paddle then).
        Raises ImageDecodeError (a ValueError naming the image) when an image cannot be decoded.
        """
        if return_tensors not in RETURN_TENSORS:
            raise ValueError(f"return_tensors={return_tensors!r}; choose one of {RETURN_TENSORS}")
        if text is None and image is None:
            raise ValueError("pass text=..., image=... or both")
        batch: dict[str, Any] = {}
        if text is not None:
            if self.text is None:
                raise ValueError("this UnifiedTokenizer has no text tokenizer; build it with text=WordPieceTokenizer()")
            batch.update(self.text([text] if isinstance(text, str) else list(text)))
        if image is not None:
            if self.image is None:
                raise ValueError("this UnifiedTokenizer has no image transform; build it with image=ImageTransform()")
            batch["pixel_values"] = self._pixels(image)
        return _to_paddle(batch) if return_tensors == "pd" else batch

    def _pixels(self, image: Any) -> np.ndarray:
        if isinstance(image, (list, tuple)):
            images = image
        elif isinstance(image, np.ndarray) and image.ndim == 4:
            images = list(image)
        else:
            images = [image]
        if not images:
            return np.zeros((0, 3, self.image.size, self.image.size), dtype=np.float32)
        return np.stack([self.image(item) for item in images])

    def __repr__(self) -> str:
        return f"UnifiedTokenizer(text={self.text!r}, image={self.image!r})"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise TypeError(f"{path} must hold a JSON object with keys from {CONFIG_KEYS}, not {type(config).__name__}")
    for key in config:
        if key not in CONFIG_KEYS:
            hint = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise KeyError(f"unknown key {key!r} in {path}{did_you_mean}; allowed: {list(CONFIG_KEYS)}")
    return config


def _export_config(directory: Path) -> dict[str, Any]:
    """tokenizer_config keys from an export's inference.yml PreProcess section ({} when there is none)."""
    path = directory / EXPORT_CONFIG_NAME
    if not path.is_file():
        return {}
    import yaml

    pre = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("PreProcess", {})
    image, text = pre.get("image", {}), pre.get("text", {})
    keys = {"image_size": "size", "image_mean": "mean", "image_std": "std", "interpolation": "interpolation"}
    config = {ours: image[theirs] for ours, theirs in keys.items() if theirs in image}
    return config | ({"context_length": text["context_length"]} if "context_length" in text else {})


def _model_config(directory: Path) -> dict[str, Any]:
    """tokenizer_config keys from a checkpoint's model_config.json ({} when there is none)."""
    path = directory / MODEL_CONFIG_NAME
    if not path.is_file():
        return {}
    model = json.loads(path.read_text(encoding="utf-8"))
    model = model.get("clip", model)  # a fusion model's towers (model_type "fusion")
    return {"image_size": model["image_resolution"], "context_length": model.get("context_length", 52)}


def _to_paddle(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    import paddle  # only here: the tokenizer itself never needs paddle

    return {key: paddle.to_tensor(value) for key, value in batch.items()}
