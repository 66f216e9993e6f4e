"""The task registry and the seams the trainer relies on: ``build_task`` for every shipped config, batches cut to
the same size on every rank, and a trainer without task branches."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_mm.config import ConfigError, load_config
from paddle_mm.engine import train as train_module
from paddle_mm.tasks import TASKS, Batch, Task, build_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "config, name",
    [
        ("tests/configs/tiny.yml", "retrieval"),
        ("configs/fusion/concat_vqa.yml", "vqa"),
        ("configs/fusion/concat_matching.yml", "matching"),
    ],
)
def test_build_task_follows_global_task(config, name, tmp_path):
    (tmp_path / "answers.json").write_text('["是", "否"]', encoding="utf-8")
    cfg = load_config(ROOT / config, [f"DataLoader.Train.dataset.root={tmp_path}"])
    task = build_task(cfg)
    assert isinstance(task, TASKS[name]) and isinstance(task, Task) and task.name == name
    if name == "vqa":  # classification reads the same data, selected on accuracy
        cfg["Global"]["task"] = "classification"
        assert (build_task(cfg).name, build_task(cfg).main_metric) == ("classification", "accuracy")


def test_the_config_schema_offers_exactly_the_registered_tasks():
    from paddle_mm.config_schema import GLOBAL  # the config layer lists the names without importing the tasks

    assert set(GLOBAL.fields["task"].choices) == set(TASKS)


def test_unknown_task_names_the_choices():
    cfg = load_config(ROOT / "tests" / "configs" / "tiny.yml")
    cfg["Global"]["task"] = "segmentation"
    with pytest.raises(
        ConfigError, match=r"unknown Global.task 'segmentation'; available: \['captioning', 'classification', "
    ):
        build_task(cfg)


@pytest.mark.parametrize(
    "config, loss, fits",
    [
        ("tests/configs/tiny.yml", "VQALoss", "ClipLoss and/or DistillLoss"),
        (
            "configs/fusion/concat_vqa.yml",
            "ClipLoss",
            "VQALoss and/or ClassificationLoss and/or CellLoss and/or AttendLoss",
        ),
        ("configs/fusion/concat_matching.yml", "VQALoss", "ClipLoss and/or MatchingLoss"),
    ],
)
def test_a_loss_that_does_not_fit_the_task_is_a_config_error(config, loss, fits, tmp_path):
    """Found when the run starts (exit 2 from tools/train.py), not as a KeyError at the first step."""
    (tmp_path / "answers.json").write_text('["是", "否"]', encoding="utf-8")
    cfg = load_config(ROOT / config, [f"DataLoader.Train.dataset.root={tmp_path}"])
    task = build_task(cfg)
    task.build_loss(cfg["Loss"]["Train"])  # the config's own loss fits
    with pytest.raises(
        ConfigError, match=rf"Loss.Train \['{loss}'\] does not fit Global.task={task.name}; use {fits}$"
    ):
        task.build_loss([{loss: {}}])


def test_batch_head_cuts_inputs_and_targets():
    b = Batch((paddle.arange(12).reshape([4, 3]), paddle.arange(4)), {"labels": paddle.to_tensor([5, 6, 7, 8])}, 4)
    h = b.head(2)
    assert h.n == 2
    np.testing.assert_array_equal(h.inputs[0].numpy(), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(h.inputs[1].numpy(), [0, 1])
    np.testing.assert_array_equal(h.targets["labels"].numpy(), [5, 6])
    assert train_module._same_size_on_every_rank(b) is b  # one process: nothing to agree on


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def test_trainer_has_no_task_branches():
    """``train`` / ``train_one_epoch`` run every task alike: no task names, no ``is None`` switches on a task or a
    prepare function, each well under 60 lines."""
    source = Path(train_module.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    for name in ("train", "_train", "train_one_epoch"):
        fn = _function(tree, name)
        assert fn.end_lineno - fn.lineno + 1 < 50, f"{name} is {fn.end_lineno - fn.lineno + 1} lines"
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not strings & set(TASKS), strings & set(TASKS)
    assert "task is None" not in source and "prepare is None" not in source


@pytest.mark.parametrize(
    "config, override, message",
    [
        ("tests/configs/tiny.yml", "Global.task=matching", r"Global.task=matching needs an Arch.fusion section"),
        ("configs/fusion/concat_matching.yml", "DataLoader.Eval.dataset.name=VQADataset", "reads caption data"),
        ("tests/configs/tiny.yml", "Global.task=vqa", r"dataset.name: VQADataset, not 'ImageTextDataset'"),
    ],
)
def test_a_config_the_task_cannot_run_is_a_config_error(config, override, message, tmp_path):
    cfg = load_config(ROOT / config, [f"DataLoader.Train.dataset.root={tmp_path}", override])
    with pytest.raises(ConfigError, match=message):
        build_task(cfg)
