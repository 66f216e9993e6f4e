"""``Global.task: inspection``: defect classification of camera frames with a light CNN (PP-LCNet, MobileNetV3).

Data: the PaddleClas / PaddleX classification layout (``DataLoader.*.dataset.name: ImageListDataset``; list
files + ``label_list.txt``, or a folder per class), pre-processed on OpenCV as
``DataLoader.*.dataset.preprocess`` says (:mod:`paddle_mm.vision.frame`). Training flips and rotates frames by
multiples of 90 degrees (parts have no preferred orientation). The loss reads ``logits`` and ``labels``
(``ClassificationLoss``); evaluation reports accuracy (the selection metric), macro F1 and recall per class.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import paddle

from ..config import ConfigError
from ..data.image_list import ImageListDataset, read_label_list
from ..data.workers import worker_init
from ..metrics import accuracy, f1_scores
from ..vision.frame import check_frame_config, normalize
from .base import Batch, Task
from .loaders import GlobalBatchSampler


def recall_per_class(pred: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Recall (x100) of every class that occurs in ``labels``."""
    return {c: accuracy(pred[labels == i], labels[labels == i]) for i, c in enumerate(classes) if (labels == i).any()}


class _TrainItems(paddle.io.Dataset):
    """Normalised, randomly flipped / rotated frames of an :class:`ImageListDataset`."""

    def __init__(self, data: ImageListDataset, seed: int):
        self.data, self.seed, self.epoch = data, seed, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        frame, label = self.data[i]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i]))
        frame = np.rot90(frame, int(rng.integers(4)))
        if rng.random() < 0.5:
            frame = frame[:, ::-1]
        return {"pixel_values": normalize(np.ascontiguousarray(frame)[None])[0], "labels": np.int64(label)}


class _EpochSampler:
    """The trainer's sampler with the dataset told the epoch (so augmentation differs per epoch, repeatably)."""

    def __init__(self, sampler, items: _TrainItems):
        self.sampler, self.items = sampler, items

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return iter(self.sampler)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.items.epoch = epoch
        self.sampler.set_epoch(epoch, skip=skip)


logger = logging.getLogger("paddle_mm")


def frame_config(dataset_cfg: dict[str, Any], image_resolution: int) -> dict[str, Any]:
    return check_frame_config({**(dataset_cfg.get("preprocess") or {}), "size": image_resolution})


class InspectionTask(Task):
    """``Global.task: inspection``: see the module docstring."""

    name = "inspection"
    main_metric = "accuracy"
    losses = ("ClassificationLoss",)

    def __init__(self, cfg: dict[str, Any]):
        for key in ("Train", "Eval"):
            section = cfg["DataLoader"][key]
            if section is not None and section["dataset"]["name"] != "ImageListDataset":
                raise ConfigError(
                    f"Global.task=inspection reads DataLoader.{key}.dataset.name: ImageListDataset, not "
                    f"{section['dataset']['name']!r}; set it (data from tools/make_inspection_data.py)"
                )
        self.classes = read_label_list(cfg["DataLoader"]["Train"]["dataset"]["root"])

    def build_model(self, arch: dict[str, Any]):
        from ..models.inspection import build_classifier

        return build_classifier(arch, len(self.classes))

    def load_eval(self, dataset_cfg: dict[str, Any], model_config) -> ImageListDataset:
        data = ImageListDataset(
            dataset_cfg["root"], dataset_cfg["split"], frame_config(dataset_cfg, model_config.image_resolution)
        )
        if data.classes != self.classes:
            raise ConfigError(f"{dataset_cfg['root']}/label_list.txt differs from the training data's: {data.classes}")
        return data

    def build_train_loader(self, section: dict[str, Any], model_config, world: int, rank: int, seed: int):
        data = self.load_eval(section["dataset"], model_config)
        items = _TrainItems(data, seed)
        s = section["sampler"]
        sampler = GlobalBatchSampler(len(items), s["batch_size"], world, rank, s["shuffle"], s["drop_last"], seed)
        loader = paddle.io.DataLoader(
            items,
            batch_sampler=sampler,
            num_workers=section["loader"]["num_workers"],
            return_list=True,
            worker_init_fn=worker_init(),
        )
        return loader, _EpochSampler(sampler, items), items

    def prepare(self, batch: dict[str, paddle.Tensor], pad_id: int) -> Batch:
        return Batch((batch["pixel_values"],), {"labels": batch["labels"]}, int(batch["labels"].shape[0]))

    def evaluate(self, model, data: ImageListDataset, batch_size: int) -> dict[str, Any]:
        """accuracy, macro_f1 and ``recall`` per class (x100) on a whole split."""
        pred = predict_probs(model, data.frames, batch_size).argmax(axis=1)
        return {
            "accuracy": accuracy(pred, data.labels),
            **f1_scores(pred, data.labels, len(self.classes)),
            "recall": recall_per_class(pred, data.labels, self.classes),
        }

    def log_eval(self, metrics: dict[str, Any], epoch: int) -> dict[str, float]:
        logger.info(f"[Eval][Epoch {epoch}] {self.format_metrics(metrics)}")
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}

    def check_checkpoint(self, model, path) -> None:
        if getattr(model, "model_type", None) != "inspection":
            raise self.wrong_checkpoint("an inspection classifier", model, path)

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [self.format_metrics(metrics)]

    @staticmethod
    def format_metrics(m: dict[str, Any]) -> str:
        recall = ", ".join(f"{c}: {v:.1f}" for c, v in m["recall"].items())
        return f"accuracy: {m['accuracy']:.2f}, macro_f1: {m['macro_f1']:.2f}; recall per class: {recall}"


@paddle.no_grad()
def predict_probs(model, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax probabilities [N, C] of pre-processed uint8 frames [N, S, S, 3], in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(frames), batch_size):
        logits = model(paddle.to_tensor(normalize(frames[s : s + batch_size])))["logits"]
        out.append(paddle.nn.functional.softmax(logits, axis=-1).numpy())
    if was_training:
        model.train()
    return np.concatenate(out)


@paddle.no_grad()
def patch_features(model, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """PatchCore patch features [N, P, D] (``InspectionClassifier.patch_embedding``) of uint8 frames."""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(frames), batch_size):
        out.append(model.patch_embedding(paddle.to_tensor(normalize(frames[s : s + batch_size]))).numpy())
    if was_training:
        model.train()
    return np.concatenate(out)


def fit_anomaly(model, train: ImageListDataset, val: ImageListDataset, coreset: int = 2000, batch_size: int = 64):
    """(PatchCore bank from the clean training parts, threshold = the 99th percentile of clean validation scores)."""
    from ..models.patchcore import PatchCoreScorer

    good = train.classes.index("good") if "good" in train.classes else 0
    scorer = PatchCoreScorer.fit(patch_features(model, train.frames[train.labels == good], batch_size), coreset)
    val_scores = scorer.score(patch_features(model, val.frames[val.labels == good], batch_size))
    return scorer.bank, float(np.percentile(val_scores, 99))
