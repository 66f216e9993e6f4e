"""Model-name aliases: "Chinese-CLIP" and the Hugging Face / PaddleNLP ids of the five released models."""

from __future__ import annotations

import pytest

from paddle_mm.models import get_model_config, list_models
from paddle_mm.models.aliases import MODEL_ALIASES
from paddle_mm.tokenizer import UnifiedTokenizer


def test_every_alias_names_a_model_and_is_lower_case():
    assert set(MODEL_ALIASES.values()) == {"RN50", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14"}
    assert set(MODEL_ALIASES.values()) <= set(list_models())
    assert all(alias == alias.lower() for alias in MODEL_ALIASES)


@pytest.mark.parametrize(
    "alias, model",
    [
        ("Chinese-CLIP", "ViT-B-16"),
        ("chinese-clip", "ViT-B-16"),
        ("OFA-Sys/chinese-clip-rn50", "RN50"),
        ("OFA-Sys/chinese-clip-vit-base-patch16", "ViT-B-16"),
        ("OFA-Sys/chinese-clip-vit-large-patch14", "ViT-L-14"),
        ("OFA-SYS/Chinese-CLIP-ViT-Large-Patch14-336px", "ViT-L-14-336"),  # any case
        ("chinese-clip-vit-huge-patch14", "ViT-H-14"),  # without the OFA-Sys/ prefix
        ("vit-l-14-336", "ViT-L-14-336"),  # our own names, any case
        ("rn50", "RN50"),
    ],
)
def test_aliases_build_the_same_tokenizer_and_architecture(alias, model):
    assert get_model_config(alias) == get_model_config(model)
    tok, ref = UnifiedTokenizer.from_pretrained(alias), UnifiedTokenizer.from_pretrained(model)
    assert (tok.image.size, tok.text.context_length) == (ref.image.size, ref.text.context_length)


def test_an_unknown_id_is_still_refused_with_the_choices():
    with pytest.raises(KeyError, match="ViT-B-16"):
        UnifiedTokenizer.from_pretrained("OFA-Sys/chinese-clip-vit-tiny")
    with pytest.raises(KeyError, match="unknown model 'OFA-Sys/chinese-clip-vit-tiny'"):
        get_model_config("OFA-Sys/chinese-clip-vit-tiny")
