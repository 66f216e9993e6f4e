"""The scene-record losses of the VQA task: their values, their targets, what they read, and that they train.

CellLoss supervises the image tower's patch tokens with what each cell of the 3x3 board holds; AttendLoss
supervises where the fusion's question looks (the cells the question refers to). Both targets come from the
training split's scene records; evaluation, export and the held-out splits never see them (docs/fusion.md, steps
14-16).
"""

from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from paddle_mm.data.vqa import CELL_CLASSES, CELL_GRID, read_cell_labels, referenced_cells
from paddle_mm.losses import AttendLoss, CellLoss, build_loss
from paddle_mm.models.fusion import build_fusion_model
from tests.fusion.test_fusion_models import TOWERS, arch_from_config, inputs

# 24 px with 8-px patches: a 3x3 patch grid, one patch per cell, as the shipped configs at 48 px / 16 px
CELL_TOWERS = {**TOWERS, "image_resolution": 24}
N_OUT = 7


def cell_model(fusion: str = "cross_attention", towers: dict | None = None, **cells):
    arch = arch_from_config({"name": fusion, "hidden": 32, "heads": 2, "layers": 1})
    arch.update(towers or CELL_TOWERS)
    return build_fusion_model(arch, N_OUT, cell_classes=cells.get("classes", 5), cell_grid=cells.get("grid", 3))


def test_cell_loss_value_on_a_hand_built_case():
    """Mean over the labelled cells of -log softmax(logits)[label]; -1 cells are left out."""
    logits = np.array([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], [[1.0, 3.0, 0.5], [4.0, -2.0, 0.0]]], np.float32)
    labels = np.array([[0, 2], [1, -1]], np.int64)  # (B=2, cells=2); the last cell is ignored
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -(log_p[0, 0, 0] + log_p[0, 1, 2] + log_p[1, 0, 1]) / 3
    got = CellLoss(weight=0.5)(cell_logits=paddle.to_tensor(logits), cell_labels=paddle.to_tensor(labels))
    assert float(got) == pytest.approx(0.5 * want, rel=1e-5)
    perfect = np.where(np.arange(3) == labels[..., None], 30.0, -30.0).astype(np.float32)
    assert float(CellLoss()(cell_logits=paddle.to_tensor(perfect), cell_labels=paddle.to_tensor(labels))) < 1e-6


def test_cell_loss_without_a_cell_head_names_the_fix():
    with pytest.raises(ValueError, match="cell_logits"):
        build_loss([{"VQALoss": {}}, {"CellLoss": {}}])(
            {"logits": paddle.zeros([2, 3]), "answer_scores": paddle.ones([2, 3])}
        )


def test_cell_labels_come_from_the_scene_records(tmp_path):
    scenes = [
        {"image_id": 7, "objects": [{"cell": [0, 2], "colour": "red", "shape": "circle"}]},
        {"image_id": 9, "objects": [{"cell": [2, 1], "colour": "white", "shape": "cross"}]},
    ]
    (tmp_path / "train_scenes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scenes))
    (tmp_path / "train_imgs.tsv").write_text("")
    got = read_cell_labels(tmp_path, "train", [9, 7, 9])  # per question, in question order
    want = np.zeros((3, 9), np.int64)
    want[[0, 2], 2 * CELL_GRID + 1] = CELL_CLASSES.index("white cross")
    want[1, 0 * CELL_GRID + 2] = CELL_CLASSES.index("red circle")
    np.testing.assert_array_equal(got, want)
    assert CELL_CLASSES[0] == "empty" and len(CELL_CLASSES) == 1 + 6 * 8
    with pytest.raises(KeyError, match="no scene record for images \\[5\\]"):
        read_cell_labels(tmp_path, "train", [5])
    with pytest.raises(FileNotFoundError, match="make_vqa_data"):
        read_cell_labels(tmp_path, "test", [7])


def test_cell_head_pools_each_cells_patches():
    """A 6x6 patch grid: cell (r, c) averages patches (2r..2r+1, 2c..2c+1), row-major like the labels."""
    model = cell_model(towers={**TOWERS, "image_resolution": 48}, classes=TOWERS["vision_width"])
    W = TOWERS["vision_width"]
    model.cell_head.weight.set_value(paddle.eye(W))  # the head passes the pooled tokens through
    model.cell_head.bias.set_value(paddle.zeros([W]))
    grid = np.arange(36, dtype=np.float32).reshape(6, 6)  # patch (i, j) holds i * 6 + j in every channel
    tokens = np.concatenate([np.full((1, W), -99.0), np.repeat(grid.reshape(36, 1), W, 1)])[None]  # (1, 37, W)
    got = model.cell_logits(paddle.to_tensor(tokens.astype(np.float32))).numpy()[0, :, 0]  # (9,)
    want = [grid[2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean() for r in range(3) for c in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("fusion", ["cross_attention", "concat"])
def test_cell_head_is_training_only(fusion):
    """cell_logits in training; in eval mode the outputs equal a model without a head (same weights)."""
    paddle.seed(0)
    model = cell_model(fusion)
    pixels, ids = inputs()
    pixels = pixels[:, :, :24, :24]
    model.train()
    assert model(pixels, ids)["cell_logits"].shape == [3, 9, 5]
    model.eval()
    out = model(pixels, ids)
    assert "cell_logits" not in out
    plain = build_fusion_model({**arch_from_config({"name": fusion, "hidden": 32, "heads": 2, "layers": 1}),
                                **CELL_TOWERS}, N_OUT)
    plain.set_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("cell_head")})
    plain.eval()
    np.testing.assert_allclose(plain(pixels, ids)["logits"].numpy(), out["logits"].numpy(), atol=1e-6)
    assert "cell_classes" in model.describe() and "cell_classes" not in plain.describe()


def test_cell_head_needs_an_image_tower_that_it_can_read():
    with pytest.raises(ValueError, match="'text_only' has none to supervise.*remove CellLoss"):
        cell_model("text_only")



def _train_towers(weight: float | None, steps: int = 4, term: str = "CellLoss") -> dict[str, np.ndarray]:
    """The image tower after a few AdamW steps on VQALoss (+ ``term`` at ``weight``; None: neither it nor a cell
    head)."""
    paddle.seed(0)
    model = cell_model() if weight is not None else build_fusion_model(
        {**arch_from_config({"name": "cross_attention", "hidden": 32, "heads": 2, "layers": 1}), **CELL_TOWERS}, N_OUT
    )
    terms = [{"VQALoss": {}}] + ([{term: {"weight": weight}}] if weight is not None else [])
    loss_fn = build_loss(terms)
    opt = paddle.optimizer.AdamW(1e-2, parameters=[p for p in model.parameters() if not p.stop_gradient])
    rng = np.random.default_rng(1)
    pixels, ids = inputs(4)
    pixels = pixels[:, :, :24, :24]
    targets = {
        "answer_scores": paddle.to_tensor(np.eye(N_OUT, dtype=np.float32)[rng.integers(0, N_OUT, 4)]),
        "cell_labels": paddle.to_tensor(rng.integers(0, 5, (4, 9))),
        "attend_cells": paddle.to_tensor((rng.random((4, 9)) < 0.3).astype(np.float32)),
    }
    paddle.seed(1)  # the same dropout masks with and without a cell head (whose initialisation draws numbers)
    model.train()
    for _ in range(steps):
        loss = loss_fn({**model(pixels, ids), **targets})["loss"]
        loss.backward()
        opt.step()
        opt.clear_grad()
    return {k: v.numpy() for k, v in model.clip.visual.state_dict().items()}


@pytest.mark.parametrize("term", ["CellLoss", "AttendLoss"])
def test_the_term_changes_what_the_towers_learn(term):
    """weight 1 moves the image tower elsewhere than weight 0; weight 0 trains it exactly as without the term."""
    without, zero, one = _train_towers(None), _train_towers(0.0, term=term), _train_towers(1.0, term=term)
    for k in without:
        np.testing.assert_allclose(zero[k], without[k], atol=1e-6, err_msg=k)
    moved = max(float(np.abs(one[k] - zero[k]).max()) for k in zero)
    assert moved > 1e-3


def test_attend_loss_value_on_a_hand_built_case():
    """-log of the attention share on the referred cells, averaged over the rows that refer to any."""
    att = np.full((3, 9), 0.05, np.float32)
    att[0, 4] = 0.6  # row 0: 0.6 on cell 4, 0.05 elsewhere (0.2 left to the [CLS] token of a cross-attention)
    att[1, [0, 8]] = 0.3
    mask = np.zeros((3, 9), np.float32)
    mask[0, 4] = 1
    mask[1, [0, 8, 2]] = 1  # three cells: 0.3 + 0.3 + 0.05
    want = (-np.log(0.6) - np.log(0.65)) / 2  # row 2 refers to nothing: left out
    got = AttendLoss(weight=2.0)(image_attention=paddle.to_tensor(att), attend_cells=paddle.to_tensor(mask))
    assert float(got) == pytest.approx(2.0 * want, rel=1e-5)
    # a 6x6 patch grid: each cell's share is the sum over its 2x2 patches
    fine = np.zeros((1, 6, 6), np.float32)
    fine[0, 0:2, 2:4] = 0.1  # cell (0, 1): 0.4
    fine[0, 5, 5] = 0.6  # cell (2, 2)
    one = np.zeros((1, 9), np.float32)
    one[0, 1] = 1
    got = AttendLoss()(image_attention=paddle.to_tensor(fine.reshape(1, 36)), attend_cells=paddle.to_tensor(one))
    assert float(got) == pytest.approx(-np.log(0.4), rel=1e-5)


def test_referenced_cells_follow_the_question_and_the_scene():
    red_circle, red_square, blue_circle = (CELL_CLASSES.index(n) for n in ("red circle", "red square", "blue circle"))
    labels = np.zeros((5, 9), np.int64)
    labels[:, [0, 4, 8]] = [red_circle, red_square, blue_circle]
    questions = [
        {"params": {"cell": [2, 1]}},  # the named cell, whatever it holds
        {"params": {"colour": "red"}},  # every red object
        {"params": {"colour": "red", "shape": "circle"}},
        {"params": {"colour": "blue", "shape": "square"}},  # nothing matches: existence 否 / count 0
        {"params": {"colour": "blue", "shape": "circle"}},
    ]
    got = referenced_cells(questions, labels)
    want = np.zeros((5, 9), np.float32)
    want[0, 7] = want[1, 0] = want[1, 4] = want[2, 0] = want[4, 8] = 1
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fusion", ["cross_attention", "mfb"])
def test_image_attention_is_training_only(fusion):
    model = cell_model(fusion)
    pixels, ids = inputs()
    pixels = pixels[:, :, :24, :24]
    model.train()
    att = model(pixels, ids)["image_attention"].numpy()
    assert att.shape == (3, 9) and (att >= 0).all()
    sums = att.sum(axis=1)  # mfb attends over the patches only; cross_attention also over the [CLS] token
    assert np.allclose(sums, 1.0, atol=1e-5) if fusion == "mfb" else ((sums > 0.05) & (sums < 1.0)).all()
    model.eval()
    assert "image_attention" not in model(pixels, ids)


def test_attend_loss_needs_a_fusion_that_attends(tmp_path):
    from paddle_mm.config import ConfigError, load_config
    from paddle_mm.tasks import build_task
    from tests.conftest import ROOT

    (tmp_path / "answers.json").write_text('["是", "否"]', encoding="utf-8")
    cfg = load_config(
        ROOT / "configs/fusion/concat_vqa.yml",
        [f"DataLoader.Train.dataset.root={tmp_path}", "Loss.Train=[{VQALoss: {}}, {AttendLoss: {}}]"],
    )
    with pytest.raises(ConfigError, match="fusion 'concat' does not attend over them: use cross_attention or mfb"):
        build_task(cfg)


def test_training_reads_the_training_scenes_only(tmp_path):
    """tools/train.py with CellLoss and AttendLoss: the validation split's scene records are deleted and training
    still runs (the evaluation data never reads them); the log line shows each term; the checkpoint keeps its cell
    head, loads, and tools/eval.py evaluates it."""
    from paddle_mm.data.vqa import make_vqa_dataset
    from paddle_mm.models import load_model
    from tests.conftest import ROOT, run_tool

    data = tmp_path / "data"
    make_vqa_dataset(data, {"train": 64, "valid": 20}, seed=3, image_size=24)
    (data / "valid_scenes.jsonl").unlink()
    args = [
        f"DataLoader.Train.dataset.root={data}",
        f"DataLoader.Eval.dataset.root={data}",
        f"Global.output_dir={tmp_path / 'out'}",
        "Global.epochs=1",
        "Global.progress_bar=false",
        "Global.print_batch_step=1",
        "Arch.image_resolution=24",
        "Arch.vision_patch_size=8",
        "Arch.fusion.clip_weights=null",
        "DataLoader.Train.sampler.batch_size=32",
        "Loss.Train=[{VQALoss: {}}, {CellLoss: {weight: 1.0}}, {AttendLoss: {weight: 1.0}}]",
    ]
    proc = run_tool("train.py", "-c", str(ROOT / "configs/fusion/cross_attention_vqa.yml"), "-o", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "out" / "CN-CLIP-Tiny"
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "VQALoss: " in log and "CellLoss: " in log and "AttendLoss: " in log  # each term on the log line
    model = load_model(run / "best_model")
    assert model.cell_head is not None and model.describe()["cell_classes"] == len(CELL_CLASSES)
    proc = run_tool("eval.py", "-c", str(run / "config.yml"), "-o", f"Global.pretrained_model={run / 'best_model'}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
