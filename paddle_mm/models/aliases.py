"""Other names of the five released Chinese-CLIP models, mapped onto ours (``model_configs/<name>.json``).

Users copy names from the Chinese-CLIP README and articles ("Chinese-CLIP"), from Hugging Face and PaddleNLP
(``OFA-Sys/chinese-clip-vit-base-patch16``; PaddleNLP uses the same ids for the four ViT models). Matching is
case-insensitive; the ``OFA-Sys/`` prefix may be left out.
"""

from __future__ import annotations

# lower-case alias -> our model name
MODEL_ALIASES: dict[str, str] = {
    "chinese-clip": "ViT-B-16",  # the model the Chinese-CLIP README and articles mean by the bare name
    "ofa-sys/chinese-clip-rn50": "RN50",
    "ofa-sys/chinese-clip-vit-base-patch16": "ViT-B-16",
    "ofa-sys/chinese-clip-vit-large-patch14": "ViT-L-14",
    "ofa-sys/chinese-clip-vit-large-patch14-336px": "ViT-L-14-336",
    "ofa-sys/chinese-clip-vit-huge-patch14": "ViT-H-14",
}


def resolve_model_name(name: str, known: list[str]) -> str:
    """Our model name for ``name``: itself when it is in ``known``, else its alias target or the member of
    ``known`` that equals it ignoring case. An unknown name comes back unchanged, for the caller's error."""
    if name in known:
        return name
    key = name.strip().lower()
    if key in MODEL_ALIASES:
        return MODEL_ALIASES[key]
    if "ofa-sys/" + key in MODEL_ALIASES:
        return MODEL_ALIASES["ofa-sys/" + key]
    by_lower = {k.lower(): k for k in known}
    return by_lower.get(key, name)
