"""The shipped configs/fusion: every fusion has a VQA and a matching config, all start from the towers that
configs/fusion/towers_clip.yml trains, and those weights really reach the fusion model's towers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_mm.config import ConfigError, load_config
from paddle_mm.io import save_safetensors
from paddle_mm.models import build_model
from paddle_mm.models.fusion import FUSIONS, build_fusion_model
from tests.conftest import ROOT

FUSION_DIR = ROOT / "configs" / "fusion"
TOWERS = FUSION_DIR / "towers_clip.yml"
BASELINES = ("text_only", "image_only")
TOWER_KEYS = (
    "name",
    "image_resolution",
    "vision_patch_size",
    "vision_layers",
    "vision_width",
    "vision_head_width",
    "text_hidden_size",
    "text_num_hidden_layers",
    "text_intermediate_size",
    "embed_dim",
    "context_length",
)


def fusion_configs() -> list[Path]:
    return sorted(p for p in FUSION_DIR.glob("*.yml") if p != TOWERS)


def test_every_fusion_has_its_configs():
    names = {p.name for p in fusion_configs()}
    assert {f"{f}_vqa.yml" for f in FUSIONS} <= names
    assert {f"{f}_matching.yml" for f in FUSIONS if f not in BASELINES} <= names


@pytest.mark.parametrize("path", fusion_configs(), ids=lambda p: p.stem)
def test_config_starts_from_the_towers_config(path):
    towers = load_config(TOWERS, [])
    cfg = load_config(path, [])
    expected = Path(towers["Global"]["output_dir"]) / towers["Arch"]["name"] / "best_model"
    assert Path(cfg["Arch"]["fusion"]["clip_weights"]) == expected
    for key in TOWER_KEYS:  # same tower geometry, or the weights would not load
        assert cfg["Arch"][key] == towers["Arch"][key], key
    assert cfg["Global"]["task"] == ("matching" if path.stem.endswith("_matching") else "vqa")


@pytest.fixture(scope="module")
def towers_checkpoint(tmp_path_factory):
    """A towers_clip.yml model (random init, seed 1) saved the way a training run saves best_model."""
    arch = load_config(TOWERS, [])["Arch"]
    paddle.seed(1)
    model = build_model({k: v for k, v in arch.items() if v is not None and k != "fusion"})
    out = tmp_path_factory.mktemp("towers") / "best_model"
    out.mkdir()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    save_safetensors(state, out / "model.safetensors")
    return out, state


@pytest.mark.parametrize("path", fusion_configs(), ids=lambda p: p.stem)
def test_config_builds_with_the_trained_towers(path, towers_checkpoint):
    weights, state = towers_checkpoint
    cfg = load_config(path, [f"Arch.fusion.clip_weights={weights}"])
    paddle.seed(0)  # a different init than the towers checkpoint: equality below comes from loading
    model = build_fusion_model(cfg["Arch"], 29, matching=cfg["Global"]["task"] == "matching")
    tower = model.clip.state_dict()
    for key in ("visual.conv1.weight", "bert.embeddings.word_embeddings.weight", "visual.proj", "text_projection"):
        np.testing.assert_array_equal(tower[key].numpy(), state[key], err_msg=key)


def test_missing_towers_name_the_config_that_trains_them(tmp_path):
    cfg = load_config(FUSION_DIR / "concat_vqa.yml", [f"Arch.fusion.clip_weights={tmp_path / 'nothing'}"])
    with pytest.raises(ConfigError, match="towers_clip.yml.*clip_weights=null"):
        build_fusion_model(cfg["Arch"], 29)
