"""Fixed-batch overfit, one per training path, through the trainer's own step (``train_one_epoch``).

Each test builds a tiny model from a shipped config, feeds ``train_one_epoch`` the same batch a few dozen times
and then checks, in eval mode, that the loss on that batch is near its floor and that the model gets every
sample of it right. Without ``optimizer.step()``, with a loss that ignores or scrambles its targets, or with a
fusion whose scores do not depend on the pair, these fail; "the loss went down" checks on shuffled data do not
(the batch order alone moves the loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import paddle
import pytest

from paddle_mm.config import load_config
from paddle_mm.data.collate import collate_skip_bad
from paddle_mm.data.datasets import PairDataset
from paddle_mm.data.duplicates import DuplicateCaptionGuard
from paddle_mm.engine.data import build_tokenizer, build_transform, load_split, trim_padding
from paddle_mm.engine.tasks import build_task
from paddle_mm.engine.train import TrainState, train_one_epoch
from paddle_mm.losses import build_loss
from paddle_mm.models import build_model
from paddle_mm.optim import build_optimizer, warmup_cosine

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


def _overfit(
    model, cfg: dict, batch: dict, steps: int, lr: float, warmup: int = 0, prepare: Callable | None = None
) -> None:
    """``steps`` optimizer steps of ``train_one_epoch`` on the same batch (linear warmup, then cosine)."""
    lr_at = warmup_cosine(lr, warmup, steps)
    optimizer = build_optimizer(cfg["Optimizer"], model, lr_at)
    train_one_epoch(
        model,
        [batch] * steps,
        build_loss(cfg["Loss"]["Train"]),
        optimizer,
        lr_at,
        TrainState(),
        epochs=1,
        accum_steps=1,
        seed=0,
        print_every=steps,
        amp={"use_amp": False, "level": "O1", "dtype": None},
        on_step=lambda state: None,
        dup_guard=DuplicateCaptionGuard(drop=False, log=lambda msg: None),
        progress=False,
        prepare=prepare,
    )
    model.eval()


@paddle.no_grad()
def _eval_losses(model, cfg: dict, inputs: tuple, targets: dict) -> tuple[dict[str, float], dict]:
    """The configured loss and each of its terms on one batch (model in eval mode), and the model's outputs."""
    out = model(*inputs)
    return {k: float(v) for k, v in build_loss(cfg["Loss"]["Train"])({**out, **targets}).items()}, out


def test_retrieval_overfits_a_fixed_batch(tiny_data):
    cfg = _config(TINY, tiny_data)
    paddle.seed(0)
    model = build_model({k: v for k, v in cfg["Arch"].items() if v is not None and k != "fusion"})
    mcfg = model.config
    section = cfg["DataLoader"]["Train"]["dataset"]
    dataset = PairDataset(
        load_split(section), build_transform(section, mcfg.image_resolution), build_tokenizer(mcfg.context_length)
    )
    batch = _batch(_distinct_pairs(dataset, BATCH))
    inputs = (batch["pixel_values"], paddle.to_tensor(trim_padding(batch["input_ids"].numpy(), mcfg.pad_id)))
    model.eval()
    before, _ = _eval_losses(model, cfg, inputs, {})
    # from scratch at 1e-3 or more these towers collapse onto one embedding (loss stuck near log 8): 5e-4
    _overfit(model, cfg, batch, steps=60, lr=5e-4, warmup=5)
    after, out = _eval_losses(model, cfg, inputs, {})
    assert before["loss"] > 2.0  # about log(8) for a fresh model
    assert after["loss"] < 0.05, f"ClipLoss on the trained batch {before['loss']:.3f} -> {after['loss']:.3f}"
    sim = (out["text_features"] @ out["image_features"].T).numpy()
    np.testing.assert_array_equal(sim.argmax(axis=1), np.arange(BATCH))  # every caption finds its own image
    model.logit_scale.set_value(paddle.full_like(model.logit_scale, 5.0))  # a temperature above 100: one more step
    _overfit(model, cfg, batch, steps=1, lr=5e-4)
    assert float(model.logit_scale) == pytest.approx(np.log(100), abs=1e-4)  # caps it at 100, as CLIP does


@pytest.mark.parametrize("task", ["vqa", "classification"])
def test_answer_classification_overfits_a_fixed_batch(vqa_data, task):
    loss = "VQALoss" if task == "vqa" else "ClassificationLoss"
    cfg = _config(VQA, vqa_data, *FUSION_OVERRIDES, f"Global.task={task}", f"Loss.Train=[{{{loss}: {{}}}}]")
    t = build_task(cfg)
    paddle.seed(0)
    model = t.build_model(cfg["Arch"])
    dataset = t.load(cfg["DataLoader"]["Train"]["dataset"], model.config)
    batch = _batch([dataset[i] for i in range(BATCH)])
    inputs, targets, _ = t.prepare(batch, model.config.pad_id)
    model.eval()
    before, _ = _eval_losses(model, cfg, inputs, targets)
    _overfit(model, cfg, batch, steps=30, lr=3e-3, prepare=lambda b: t.prepare(b, model.config.pad_id))
    after, out = _eval_losses(model, cfg, inputs, targets)
    before, after = before["loss"], after["loss"]
    # the floor of cross-entropy against soft targets is their entropy (0 for one label per sample)
    scores = batch["answer_scores"].numpy()
    p = scores / scores.sum(axis=1, keepdims=True)
    floor = 0.0 if task == "classification" else float(-(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1).mean())
    assert before > 2.5  # about log(29) answers for a fresh head
    assert after - floor < 0.05, f"{loss} {before:.3f} -> {after:.3f}, floor {floor:.3f}; expected within 0.05"
    np.testing.assert_array_equal(out["logits"].numpy().argmax(axis=1), batch["labels"].numpy())


def test_matching_overfits_a_fixed_batch(tiny_data):
    cfg = _config(MATCHING, tiny_data, *FUSION_OVERRIDES)
    t = build_task(cfg)
    paddle.seed(0)
    model = t.build_model(cfg["Arch"])
    mcfg = model.config
    section = cfg["DataLoader"]["Train"]["dataset"]
    dataset = PairDataset(
        load_split(section), build_transform(section, mcfg.image_resolution), build_tokenizer(mcfg.context_length)
    )
    batch = _batch(_distinct_pairs(dataset, BATCH))
    inputs, targets, _ = t.prepare(batch, mcfg.pad_id)
    model.eval()
    before, _ = _eval_losses(model, cfg, inputs, targets)
    _overfit(model, cfg, batch, steps=80, lr=2e-3, warmup=10, prepare=lambda b: t.prepare(b, mcfg.pad_id))
    after, out = _eval_losses(model, cfg, inputs, targets)
    assert before["ClipLoss"] > 2.0 and before["MatchingLoss"] > 0.6  # log(8) and log(2) for a fresh model
    assert after["ClipLoss"] < 0.1 and after["MatchingLoss"] < 0.25, f"losses {before} -> {after}"
    # the fusion tells the batch's pairs from its hard negatives (a fusion that ignores the pair scores them alike)
    logits, labels = out["match_logits"].numpy(), out["match_labels"].numpy()
    pos, neg = logits[labels == 1], logits[labels == 0]
    assert pos.mean() - neg.mean() > 4.0, (pos, neg)
