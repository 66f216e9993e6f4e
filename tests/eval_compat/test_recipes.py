"""configs/chinese_clip: the recipes carry Chinese-CLIP's run_scripts values and train on the built-in data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from paddle_mm.config import load_config
from tests.conftest import ROOT, run_tool

RECIPES = ROOT / "configs" / "chinese_clip"

# The hyper-parameters of Chinese-CLIP's run_scripts/*_finetune_vit-b-16_rbt-base*.sh (cn_clip 1.6.0) and the
# defaults of cn_clip/training/params.py they rely on (Adam betas/eps: get_default_params("ViT-B-16")).
CN_CLIP_SCRIPTS = {
    "vit-b-16_muge.yml": dict(
        context_length=52,
        warmup=100,
        batch_size=128,
        valid_batch_size=128,
        accum_freq=1,
        lr=5e-5,
        wd=0.001,
        max_epochs=3,
        vision_model="ViT-B-16",
        mask_ratio=0.0,
    ),
    "vit-b-16_flickr30k-cn.yml": dict(
        context_length=52,
        warmup=100,
        batch_size=128,
        valid_batch_size=128,
        accum_freq=1,
        lr=5e-5,
        wd=0.001,
        max_epochs=3,
        vision_model="ViT-B-16",
        mask_ratio=0.0,
    ),
    "vit-b-16_muge_flip.yml": dict(
        context_length=52,
        warmup=100,
        batch_size=128,
        valid_batch_size=128,
        accum_freq=1,
        lr=5e-5,
        wd=0.001,
        max_epochs=3,
        vision_model="ViT-B-16",
        mask_ratio=0.5,
    ),
    # run_scripts/muge_finetune_vit-b-16_rbt-base_distillation.sh (+ --use-augment --distillation)
    "vit-b-16_muge_distillation.yml": dict(
        context_length=52,
        warmup=100,
        batch_size=128,
        valid_batch_size=128,
        accum_freq=1,
        lr=5e-5,
        wd=0.001,
        max_epochs=3,
        vision_model="ViT-B-16",
        mask_ratio=0.0,
        use_augment=True,
        distillation=True,
    ),
    # no script of theirs: the MUGE values with --context-length=128 --batch-size=32 --accum-freq=4
    "vit-b-16_muge_long-context.yml": dict(
        context_length=128,
        warmup=100,
        batch_size=32,
        valid_batch_size=128,
        accum_freq=4,
        lr=5e-5,
        wd=0.001,
        max_epochs=3,
        vision_model="ViT-B-16",
        mask_ratio=0.0,
    ),
}

SHRINK = [
    "Global.device=cpu",
    "Global.pretrained_model=null",
    "AMP.use_amp=false",
    "Global.epochs=1",
    "Global.print_batch_step=2",
    "Global.progress_bar=false",
    "Arch.name=CN-CLIP-Tiny",
    "Arch.image_resolution=32",
    "Arch.vision_layers=1",
    "Arch.text_num_hidden_layers=1",
    "Arch.embed_dim=32",
    "DataLoader.Train.sampler.batch_size=16",
    "DataLoader.Train.loader.num_workers=0",
    "DataLoader.Eval.loader.num_workers=0",
    "DataLoader.Eval.sampler.batch_size=64",
    "Optimizer.lr.warmup_steps=3",
]


def test_every_recipe_is_listed():
    assert sorted(p.name for p in RECIPES.glob("*.yml")) == sorted(CN_CLIP_SCRIPTS)


@pytest.mark.parametrize("name", sorted(CN_CLIP_SCRIPTS))
def test_recipe_carries_the_run_script_values(name):
    theirs = CN_CLIP_SCRIPTS[name]
    cfg = load_config(RECIPES / name)
    opt, train = cfg["Optimizer"], cfg["DataLoader"]["Train"]
    assert cfg["Arch"]["name"] == theirs["vision_model"]
    assert (cfg["Arch"]["context_length"] or 52) == theirs["context_length"]
    assert (cfg["Arch"].get("mask_ratio") or 0.0) == theirs["mask_ratio"]
    assert opt["lr"]["learning_rate"] == theirs["lr"] and opt["lr"]["name"] == "Cosine"
    assert opt["lr"]["warmup_steps"] == theirs["warmup"] and opt["lr"]["warmup_epoch"] == 0
    assert opt["weight_decay"] == theirs["wd"]
    assert (opt["name"], opt["beta1"], opt["beta2"], opt["epsilon"]) == ("AdamW", 0.9, 0.98, 1e-6)
    assert train["sampler"]["batch_size"] == theirs["batch_size"]
    assert cfg["DataLoader"]["Eval"]["sampler"]["batch_size"] == theirs["valid_batch_size"]
    assert cfg["Global"]["accum_steps"] == theirs["accum_freq"]
    assert cfg["Global"]["epochs"] == theirs["max_epochs"]
    assert cfg["Loss"]["Train"][0] == {"ClipLoss": {"weight": 1.0, "gather_with_grad": False, "aggregate": True}}
    assert [next(iter(t)) for t in cfg["Loss"]["Train"][1:]] == (["DistillLoss"] if theirs.get("distillation") else [])
    assert cfg["DataLoader"]["Train"]["dataset"]["transform"]["augment"] == theirs.get("use_augment", False)
    # --accum-freq caches features: accumulated micro-batches are negatives of each other
    assert theirs["accum_freq"] == 1 or cfg["Global"]["accum_mode"] == "features"


def test_documented_command_is_the_one_tested():
    """The built-in-data command in each recipe's header uses only overrides that SHRINK also sets."""
    for path in RECIPES.glob("*.yml"):
        header = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
        command = " ".join(
            ln.lstrip("# ").rstrip("\\ ")
            for ln in header
            if "tools/train.py -c configs/chinese" in ln or ln.startswith("#     ")
        )
        assert f"configs/chinese_clip/{path.name}" in command
        keys = {tok.split("=")[0] for tok in command.split() if "=" in tok}
        assert keys <= {s.split("=")[0] for s in SHRINK} | {
            "DataLoader.Train.dataset.root",
            "DataLoader.Eval.dataset.root",
            "DataLoader.Train.sampler.batch_size",
            "Optimizer.lr.warmup_steps",
            "Loss.Train",  # the distillation recipe's teacher: a model trained on the built-in data first
        }, path.name


def test_muge_recipe_trains_on_the_built_in_data(tiny_data, tmp_path):
    proc = run_tool(
        "train.py",
        "-c",
        str(RECIPES / "vit-b-16_muge_flip.yml"),
        "-o",
        *SHRINK,
        f"Global.output_dir={tmp_path}",
        f"DataLoader.Train.dataset.root={tiny_data}",
        f"DataLoader.Eval.dataset.root={tiny_data}",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "CN-CLIP-Tiny"
    saved = yaml.safe_load((run / "config.yml").read_text(encoding="utf-8"))
    assert saved["Optimizer"]["lr"]["learning_rate"] == 5e-5 and saved["Optimizer"]["weight_decay"] == 0.001
    assert saved["Arch"]["mask_ratio"] == 0.5 and saved["Arch"]["context_length"] == 52
    summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["global_step"] > 0 and 0 <= summary["history"][0]["MR"] <= 100
    logged = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert logged[0]["lr"] == pytest.approx(5e-5 * 2 / 3)  # step 2 of a 3-step linear warm-up to 5e-5
    assert Path(run / "best_model" / "model.safetensors").is_file()
