"""Visual question answering (``Global.task: vqa``): answer classification over the answer vocabulary of the data
(``answers.json``) with CLIP towers and a fusion (``Arch.fusion``).

The loss reads the VQA soft scores (``answer_scores``); evaluation reports VQA soft accuracy (``vqa_acc``, the
selection metric), accuracy, macro F1 and accuracy per question type. With ``CellLoss`` in ``Loss.Train`` the model
gets a training-only cell head and the training batches carry ``cell_labels``, what each cell of the image holds
according to the training split's scene records (``{split}_scenes.jsonl``); with ``AttendLoss`` they carry
``attend_cells``, the cells each question refers to. The evaluation data never loads scene records.
``classification`` (one label per sample, :mod:`paddle_mm.tasks.classification`) reads the same data.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import paddle

from ..config import ConfigError
from ..data.vqa import (
    CELL_CLASSES,
    CELL_GRID,
    VQASplit,
    load_vqa_split,
    read_answers,
    read_cell_labels,
    referenced_cells,
)
from ..metrics import accuracy, f1_scores, vqa_soft_accuracy
from ..models.fusion import build_fusion_model
from ..text.tokenizer import tokenize, trim_padding
from ..vision.transforms import CLIP_MEAN, CLIP_STD
from .base import Batch, Task
from .loaders import build_loader

logger = logging.getLogger("paddle_mm")

_MEAN = np.array(CLIP_MEAN, np.float32).reshape(3, 1, 1)
_STD = np.array(CLIP_STD, np.float32).reshape(3, 1, 1)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 RGB [N, S, S, 3] -> float32 [N, 3, S, S] with CLIP's mean / std."""
    return (images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - _MEAN) / _STD


class VQADataset(paddle.io.Dataset):
    """Items of a :class:`VQASplit`: normalised pixels, question ids, soft answer scores and the label; with
    ``cell_labels`` ([N questions, cells], training only) also what each cell of the question's image holds and
    which cells the question refers to (``attend_cells``)."""

    def __init__(self, split: VQASplit, context_length: int, cell_labels: np.ndarray | None = None):
        if cell_labels is not None and len(cell_labels) != len(split):
            raise ValueError(
                f"{len(cell_labels)} rows of cell labels for {len(split)} questions; give one per question"
            )
        self.split = split
        self.cell_labels = cell_labels
        self.attend_cells = None if cell_labels is None else referenced_cells(split.questions, cell_labels)
        self.input_ids = np.asarray(tokenize([q["question"] for q in split.questions], context_length=context_length))
        self.scores = split.answer_scores()
        col = {a: i for i, a in enumerate(split.answers)}
        self.labels = np.array([col.get(q["answer"], -1) for q in split.questions], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        image = self.split.images[self.split.image_index[i]][None]
        item = {
            "pixel_values": normalize_images(image)[0],
            "input_ids": self.input_ids[i],
            "answer_scores": self.scores[i],
            "labels": self.labels[i],
        }
        if self.cell_labels is not None:
            item["cell_labels"] = self.cell_labels[i]
            item["attend_cells"] = self.attend_cells[i]
        return item


class VQATask(Task):
    """``Global.task: vqa``: see the module docstring."""

    name = "vqa"
    main_metric = "vqa_acc"
    # the batches carry soft scores, labels and, with CellLoss / AttendLoss, the scene targets
    losses = ("VQALoss", "ClassificationLoss", "CellLoss", "AttendLoss")

    def __init__(self, cfg: dict[str, Any]):
        for key in ("Train", "Eval"):
            section = cfg["DataLoader"][key]
            if section is not None and section["dataset"]["name"] != "VQADataset":
                raise ConfigError(
                    f"Global.task={self.name} reads DataLoader.{key}.dataset.name: VQADataset, "
                    f"not {section['dataset']['name']!r}; set it (data from tools/make_vqa_data.py)"
                )
        if cfg["Arch"].get("fusion") is None:
            raise ConfigError(
                f"Global.task={self.name} needs an Arch.fusion section, e.g. Arch.fusion: {{name: cross_attention}}"
            )
        self.answers_root = cfg["DataLoader"]["Train"]["dataset"]["root"]
        self.answers = read_answers(self.answers_root)
        # CellLoss needs a cell head on the model; it and AttendLoss need scene targets in the training batches
        terms = {name for item in cfg["Loss"]["Train"] or [] for name in item}
        self.cell_loss = "CellLoss" in terms
        self.scene_targets = bool(terms & {"CellLoss", "AttendLoss"})
        fusion = cfg["Arch"]["fusion"]
        if "AttendLoss" in terms and not (
            fusion["name"] == "cross_attention" or (fusion["name"] == "mfb" and fusion.get("attend", True))
        ):
            raise ConfigError(
                f"Loss.Train AttendLoss supervises where the question looks over the patches; fusion "
                f"{fusion['name']!r} does not attend over them: use cross_attention or mfb (attend: true), or remove it"
            )

    def build_model(self, arch: dict[str, Any]) -> paddle.nn.Layer:
        cells = {"cell_classes": len(CELL_CLASSES), "cell_grid": CELL_GRID} if self.cell_loss else {}
        return build_fusion_model(arch, len(self.answers), labels=self.answers, **cells)

    def build_train_loader(self, section: dict[str, Any], model_config, world: int, rank: int, seed: int):
        dataset = self.load_dataset(section["dataset"], model_config, with_cells=self.scene_targets)
        return (*build_loader(dataset, section, world, rank, seed), dataset)

    def prepare(self, batch: dict[str, paddle.Tensor], pad_id: int) -> Batch:
        ids = paddle.to_tensor(trim_padding(np.asarray(batch["input_ids"]), pad_id))
        targets = {"answer_scores": batch["answer_scores"], "labels": batch["labels"]}
        if "cell_labels" in batch:
            targets["cell_labels"] = batch["cell_labels"]  # (B, cells)
            targets["attend_cells"] = batch["attend_cells"]  # (B, cells)
        return Batch((batch["pixel_values"], ids), targets, int(batch["labels"].shape[0]))

    def load_dataset(self, dataset_cfg: dict[str, Any], model_config, with_cells: bool = False) -> VQADataset:
        """A split of the data, checked to share the training data's answer vocabulary; ``with_cells`` (training
        with CellLoss / AttendLoss only) adds each question's scene targets from the split's scene records."""
        split = load_vqa_split(dataset_cfg["root"], dataset_cfg["split"], model_config.image_resolution)
        if split.answers != self.answers:
            raise ValueError(
                f"{dataset_cfg['root']}/answers.json differs from the training data's; use one generated copy"
            )
        cells = None
        if with_cells:
            image_ids = [q["image_id"] for q in split.questions]
            cells = read_cell_labels(dataset_cfg["root"], dataset_cfg["split"], image_ids)
        return VQADataset(split, model_config.context_length, cells)

    def load_eval(self, dataset_cfg: dict[str, Any], model_config) -> VQADataset:
        return self.load_dataset(dataset_cfg, model_config)

    def evaluate(self, model: paddle.nn.Layer, data: VQADataset, batch_size: int) -> dict[str, Any]:
        """Metrics (x100) on a whole split: vqa_acc, accuracy, macro_f1 and accuracy per question type."""
        return task_metrics(predict_logits(model, data, batch_size), data)

    def log_eval(self, metrics: dict[str, Any], epoch: int) -> dict[str, float]:
        logger.info(f"[Eval][Epoch {epoch}] {'; '.join(self.report(metrics))}")
        return {self.main_metric: metrics[self.main_metric]}

    def check_checkpoint(self, model: paddle.nn.Layer, path) -> None:
        """A VQA / classification fusion whose answers are the training data's ``answers.json``."""
        if not hasattr(model, "fusion_name") or model.matching:
            raise self.wrong_checkpoint("a VQA / classification fusion", model, path)
        if list(self.answers) != model.labels:
            raise ConfigError(
                f"the checkpoint's {len(model.labels or [])} answers differ from {self.answers_root}/answers.json; "
                "evaluate on the data it was trained on"
            )

    def report(self, metrics: dict[str, Any]) -> list[str]:
        m = metrics
        per_type = ", ".join(f"{t}: {v:.2f}" for t, v in m["per_type"].items())
        main = f"vqa_acc: {m['vqa_acc']:.2f}, accuracy: {m['accuracy']:.2f}, macro_f1: {m['macro_f1']:.2f}"
        return [main, f"accuracy per question type: {per_type}"]


@paddle.no_grad()
def predict_logits(
    model, dataset: VQADataset, batch_size: int, pixel_values: np.ndarray | None = None, input_ids=None
) -> np.ndarray:
    """[N, A] logits over a dataset in eval mode; ``pixel_values`` ([N, 3, S, S]) / ``input_ids`` ([N, L])
    replace the dataset's inputs (the robustness benchmark passes corrupted ones)."""
    was_training = model.training
    model.eval()
    ids_all = dataset.input_ids if input_ids is None else np.asarray(input_ids)
    pad_id = model.config.pad_id
    out = []
    for start in range(0, len(dataset), batch_size):
        rows = np.arange(start, min(start + batch_size, len(dataset)))
        if pixel_values is None:
            pixels = normalize_images(dataset.split.images[dataset.split.image_index[rows]])
        else:
            pixels = pixel_values[rows]
        ids = trim_padding(ids_all[rows], pad_id)
        out.append(model(paddle.to_tensor(pixels), paddle.to_tensor(ids))["logits"].numpy())
    if was_training:
        model.train()
    return np.concatenate(out)


def task_metrics(logits: np.ndarray, dataset: VQADataset) -> dict[str, Any]:
    """vqa_acc, accuracy, F1 and accuracy per question type (x100) of [N, A] logits on ``dataset``."""
    pred = logits.argmax(axis=1)
    answers = dataset.split.answers
    questions = dataset.split.questions
    out: dict[str, Any] = {
        "vqa_acc": vqa_soft_accuracy([answers[p] for p in pred], [q["answers"] for q in questions]),
        "accuracy": accuracy(pred, dataset.labels),
        **f1_scores(pred, dataset.labels, len(answers)),
    }
    types = np.array([q.get("question_type", "all") for q in questions])
    out["per_type"] = {t: accuracy(pred[types == t], dataset.labels[types == t]) for t in sorted(set(types))}
    return out
