"""One tiny VQA training through tools/train.py (Global.task: vqa), and the benchmark's corruptions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_tool

CONFIG = ROOT / "configs" / "fusion" / "cross_attention_vqa.yml"


@pytest.fixture(scope="module")
def vqa_data(tmp_path_factory):
    from paddle_mm.data.vqa import make_vqa_dataset

    out = tmp_path_factory.mktemp("vqa_train")
    make_vqa_dataset(out, {"train": 96, "val": 40}, seed=5, image_size=32)
    return out


def train(config: Path, data: Path, out: Path, epochs: int, *overrides: str):
    """tools/train.py on a shipped fusion config, shrunk to the tiny data: 32 px, towers from scratch."""
    args = [
        f"DataLoader.Train.dataset.root={data}",
        f"DataLoader.Eval.dataset.root={data}",
        f"Global.output_dir={out}",
        f"Global.epochs={epochs}",
        "Global.progress_bar=false",
        "Arch.image_resolution=32",
        "Arch.fusion.clip_weights=null",
        "DataLoader.Train.sampler.batch_size=32",
    ]
    return run_tool("train.py", "-c", str(config), "-o", *args, *overrides)


def test_train_vqa_end_to_end(vqa_data, tmp_path):
    proc = train(CONFIG, vqa_data, tmp_path, 2, "Global.print_batch_step=1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "CN-CLIP-Tiny"
    summary = json.loads((run / "train_summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert all(
        0.0 <= h["vqa_acc"] <= 100.0 and set(h["per_type"]) == {"count", "colour", "shape", "position", "exist"}
        for h in summary["history"]
    )
    assert summary["best_metric"] == max(h["vqa_acc"] for h in summary["history"])
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "[Eval][Epoch 2] vqa_acc:" in log and "logit_scale" not in log
    for name in ("best_model", "latest"):
        assert (run / name / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 and all(np.isfinite(r["loss"]) for r in rows)


def test_train_classification_end_to_end(vqa_data, tmp_path):
    """Global.task: classification on the same data: one label per sample, accuracy selects the best epoch."""
    proc = train(CONFIG, vqa_data, tmp_path, 2, "Global.task=classification", "Loss.Train=[{ClassificationLoss: {}}]")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "CN-CLIP-Tiny"
    summary = json.loads((run / "train_summary.json").read_text())
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert summary["best_metric"] == max(h["accuracy"] for h in history)
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows)
    # the loss is cross-entropy over the answer classes: it starts near log(29) with a fresh head
    assert abs(rows[0]["loss"] - np.log(29)) < 1.0


def test_vqa_task_rejects_a_caption_dataset(vqa_data, tmp_path):
    proc = run_tool(
        "train.py",
        "-c",
        str(CONFIG),
        "-o",
        f"DataLoader.Train.dataset.root={vqa_data}",
        "DataLoader.Train.dataset.name=ImageTextDataset",
        f"Global.output_dir={tmp_path}",
    )
    assert proc.returncode != 0 and "VQADataset" in proc.stderr


def test_image_corruptions_grow_with_severity():
    from paddle_mm.demo.corruptions import IMAGE_CORRUPTIONS, corrupt_images, perturb_text

    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    for kind in IMAGE_CORRUPTIONS:
        diffs = [np.abs(corrupt_images(images, kind, s).astype(float) - images).mean() for s in (1, 3, 5)]
        assert 0 < diffs[0] < diffs[2], (kind, diffs)
        np.testing.assert_array_equal(corrupt_images(images, kind, 2), corrupt_images(images, kind, 2))  # seeded
    rng = np.random.default_rng(0)
    q = "图中有几个蓝色的三角形？"
    assert perturb_text(q, "homophone", 5, rng) != q and perturb_text(q, "homophone", 5, rng).endswith("？")
    assert len(perturb_text(q, "char_delete", 5, rng)) < len(q)
    swapped = perturb_text(q, "char_swap", 5, rng)
    assert sorted(swapped) == sorted(q) and swapped != q


def test_train_matching_end_to_end(tiny_data, tmp_path):
    proc = train(ROOT / "configs" / "fusion" / "cross_attention_matching.yml", tiny_data, tmp_path, 1)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "CN-CLIP-Tiny" / "train_summary.json").read_text())
    (record,) = summary["history"]
    for key in ("r1", "r5", "r10", "mean_recall", "mrr", "ndcg@10"):
        assert 0.0 <= record[key] <= 100.0 and 0.0 <= record["contrastive"][key] <= 100.0
    assert record["r10"] == record["contrastive"]["r10"]  # re-ranking the top 10 keeps the same 10 images
    assert summary["best_metric"] == record["mean_recall"]
    # the re-ranking is the fusion's: the saved weights evaluated here give the logged metrics, and with the
    # fusion's scores zeroed (its head's last layer) they give others
    from paddle_mm.config import load_config
    from paddle_mm.engine.tasks import build_task
    from paddle_mm.io import load_state_into

    cfg = load_config(tmp_path / "CN-CLIP-Tiny" / "config.yml")
    task = build_task(cfg)
    model = task.build_model(cfg["Arch"])
    load_state_into(model, tmp_path / "CN-CLIP-Tiny" / "best_model" / "model.safetensors")
    data = task.load(cfg["DataLoader"]["Eval"]["dataset"], model.config)
    ranks = ("r1", "r5", "mrr", "ndcg@10")
    assert {k: task.evaluate(model, data, 64)[k] for k in ranks} == pytest.approx({k: record[k] for k in ranks})
    for p in model.fusion.head[-1].parameters():
        p.set_value(p * 0)
    assert {k: task.evaluate(model, data, 64)[k] for k in ranks} != pytest.approx({k: record[k] for k in ranks})
