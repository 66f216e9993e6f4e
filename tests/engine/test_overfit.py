"""Fixed-batch overfit, one per training path, through the trainer's own step (``train_one_epoch``).

Each test builds a tiny model from a shipped config, feeds ``train_one_epoch`` the same batch a few dozen times
and then checks, in eval mode, that the loss on that batch is near its floor and that the model gets every
sample of it right. Without ``optimizer.step()``, with a loss that ignores or scrambles its targets, or with a
fusion whose scores do not depend on the pair, these fail; "the loss went down" checks on shuffled data do not
(the batch order alone moves the loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest

from paddle_mm.config import load_config
from paddle_mm.data.collate import collate_skip_bad
from paddle_mm.data.datasets import PairDataset
from paddle_mm.engine.train import LoopSettings, TrainState, train_one_epoch
from paddle_mm.optim import build_optimizer, warmup_cosine
from paddle_mm.tasks import Task, build_task
from paddle_mm.tasks.loaders import build_tokenizer, build_transform, load_split

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "configs" / "tiny.yml"
VQA = ROOT / "configs" / "fusion" / "cross_attention_vqa.yml"
MATCHING = ROOT / "configs" / "fusion" / "cross_attention_matching.yml"
BATCH = 8
# the fusion configs' towers, shrunk: 64 px in 32-px patches (4 patches), trained from scratch
FUSION_OVERRIDES = (
    "Arch.image_resolution=64",
    "Arch.vision_patch_size=32",
    "Arch.fusion.clip_weights=null",
    "Arch.fusion.dropout=0.0",
)


@pytest.fixture(scope="module")
def vqa_data(tmp_path_factory) -> Path:
    from paddle_mm.data.vqa import make_vqa_dataset

    out = tmp_path_factory.mktemp("vqa_overfit")
    make_vqa_dataset(out, {"train": BATCH, "val": 0}, seed=5, image_size=64)
    return out


def _config(path: Path, data: Path, *overrides: str) -> dict[str, Any]:
    return load_config(
        path,
        [f"DataLoader.Train.dataset.root={data}", f"DataLoader.Eval.dataset.root={data}", "Global.seed=0", *overrides],
    )


def _batch(items: list[dict]) -> dict[str, Any]:
    """Items -> the batch a ``paddle.io.DataLoader`` with ``collate_skip_bad`` yields (arrays as tensors)."""
    out = collate_skip_bad(items)
    return {k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}


def _distinct_pairs(dataset: PairDataset, n: int) -> list[dict]:
    """Items of the first ``n`` pairs whose caption and pixels differ from every earlier pick (mean absolute
    difference > 0.1): only then can InfoNCE reach ~0 (two near-identical 32-px images hold it at log 2)."""
    picked: list[dict] = []
    captions: set[str] = set()
    for i in range(len(dataset)):
        caption = dataset.corpus.texts[dataset.text_index[i]].text
        item = dataset[i]
        if caption in captions or any(np.abs(item["pixel_values"] - p["pixel_values"]).mean() < 0.1 for p in picked):
            continue
        picked.append(item)
        captions.add(caption)
        if len(picked) == n:
            return picked
    raise AssertionError(f"the data has fewer than {n} distinct image-caption pairs")


def _overfit(model, task: Task, cfg: dict, batch: dict, steps: int, lr: float, warmup: int = 0) -> None:
    """``steps`` optimizer steps of ``train_one_epoch`` on the same batch (linear warmup, then cosine)."""
    lr_at = warmup_cosine(lr, warmup, steps)
    optimizer = build_optimizer(cfg["Optimizer"], model, lr_at)
    loss_fn = task.build_loss(cfg["Loss"]["Train"])
    train_one_epoch(model, [batch] * steps, task, loss_fn, optimizer, lr_at, TrainState(), LoopSettings(epochs=1))
    model.eval()


@paddle.no_grad()
def _eval_losses(model, task: Task, cfg: dict, b) -> tuple[dict[str, float], dict]:
    """The configured loss and each of its terms on one prepared batch (model in eval mode), and the outputs."""
    out = model(*b.inputs)
    return {k: float(v) for k, v in task.build_loss(cfg["Loss"]["Train"])({**out, **b.targets}).items()}, out


def _pair_batch(task: Task, cfg: dict, model) -> dict:
    """A batch of ``BATCH`` distinct image-caption pairs from the training split."""
    mcfg = model.config
    section = cfg["DataLoader"]["Train"]["dataset"]
    dataset = PairDataset(
        load_split(section), build_transform(section, mcfg.image_resolution), build_tokenizer(mcfg.context_length)
    )
    return _batch(_distinct_pairs(dataset, BATCH))


def _clamps_the_logit_scale(model, scale: paddle.Tensor, task: Task, cfg: dict, batch: dict) -> None:
    """A temperature above 100, one more step: the task's hook caps it at 100, as CLIP does."""
    scale.set_value(paddle.full_like(scale, 5.0))
    _overfit(model, task, cfg, batch, steps=1, lr=5e-4)
    assert float(scale) == pytest.approx(np.log(100), abs=1e-4)


def test_retrieval_overfits_a_fixed_batch(tiny_data):
    cfg = _config(TINY, tiny_data)
    task = build_task(cfg)
    paddle.seed(0)
    model = task.build_model(cfg["Arch"])
    batch = _pair_batch(task, cfg, model)
    b = task.prepare(batch, model.config.pad_id)
    model.eval()
    before, _ = _eval_losses(model, task, cfg, b)
    # from scratch at 1e-3 or more these towers collapse onto one embedding (loss stuck near log 8): 5e-4
    _overfit(model, task, cfg, batch, steps=60, lr=5e-4, warmup=5)
    after, out = _eval_losses(model, task, cfg, b)
    assert before["loss"] > 2.0  # about log(8) for a fresh model
    assert after["loss"] < 0.05, f"ClipLoss on the trained batch {before['loss']:.3f} -> {after['loss']:.3f}"
    sim = (out["text_features"] @ out["image_features"].T).numpy()
    np.testing.assert_array_equal(sim.argmax(axis=1), np.arange(BATCH))  # every caption finds its own image
    _clamps_the_logit_scale(model, model.logit_scale, task, cfg, batch)


@pytest.mark.parametrize("task_name", ["vqa", "classification"])
def test_answer_classification_overfits_a_fixed_batch(vqa_data, task_name):
    loss = "VQALoss" if task_name == "vqa" else "ClassificationLoss"
    cfg = _config(VQA, vqa_data, *FUSION_OVERRIDES, f"Global.task={task_name}", f"Loss.Train=[{{{loss}: {{}}}}]")
    task = build_task(cfg)
    paddle.seed(0)
    model = task.build_model(cfg["Arch"])
    dataset = task.load_eval(cfg["DataLoader"]["Train"]["dataset"], model.config)
    batch = _batch([dataset[i] for i in range(BATCH)])
    b = task.prepare(batch, model.config.pad_id)
    model.eval()
    before, _ = _eval_losses(model, task, cfg, b)
    _overfit(model, task, cfg, batch, steps=30, lr=3e-3)
    after, out = _eval_losses(model, task, cfg, b)
    before, after = before["loss"], after["loss"]
    # the floor of cross-entropy against soft targets is their entropy (0 for one label per sample)
    scores = batch["answer_scores"].numpy()
    p = scores / scores.sum(axis=1, keepdims=True)
    floor = 0.0 if task_name == "classification" else float(-(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1).mean())
    assert before > 2.5  # about log(29) answers for a fresh head
    assert after - floor < 0.05, f"{loss} {before:.3f} -> {after:.3f}, floor {floor:.3f}; expected within 0.05"
    np.testing.assert_array_equal(out["logits"].numpy().argmax(axis=1), batch["labels"].numpy())


def test_matching_overfits_a_fixed_batch(tiny_data):
    cfg = _config(MATCHING, tiny_data, *FUSION_OVERRIDES)
    task = build_task(cfg)
    paddle.seed(0)
    model = task.build_model(cfg["Arch"])
    batch = _pair_batch(task, cfg, model)
    b = task.prepare(batch, model.config.pad_id)
    model.eval()
    before, _ = _eval_losses(model, task, cfg, b)
    _overfit(model, task, cfg, batch, steps=80, lr=2e-3, warmup=10)
    after, out = _eval_losses(model, task, cfg, b)
    assert before["ClipLoss"] > 2.0 and before["MatchingLoss"] > 0.6  # log(8) and log(2) for a fresh model
    assert after["ClipLoss"] < 0.1 and after["MatchingLoss"] < 0.25, f"losses {before} -> {after}"
    # the fusion tells the batch's pairs from its hard negatives (a fusion that ignores the pair scores them alike)
    logits, labels = out["match_logits"].numpy(), out["match_labels"].numpy()
    pos, neg = logits[labels == 1], logits[labels == 0]
    assert pos.mean() - neg.mean() > 4.0, (pos, neg)
    _clamps_the_logit_scale(model, model.clip.logit_scale, task, cfg, batch)
