"""What a task supplies to the trainer (:class:`Task`), and one prepared training batch (:class:`Batch`).

The trainer (``paddle_mm.engine.train``) runs every task the same way:

    task = build_task(cfg)
    model = task.build_model(cfg["Arch"])
    loader, sampler, dataset = task.build_train_loader(cfg["DataLoader"]["Train"], model.config, world, rank, seed)
    loss_fn = task.build_loss(cfg["Loss"]["Train"])
    for batch in loader:
        b = task.prepare(batch, model.config.pad_id)       # model inputs, loss targets, samples
        loss = loss_fn({**model(*b.inputs), **b.targets})["loss"]
        ... backward, optimizer step ...
        task.after_step(model)                              # e.g. retrieval's logit-scale clamp
    metrics = task.evaluate(model, task.load_eval(cfg["DataLoader"]["Eval"]["dataset"], model.config), batch_size)
    metrics[task.main_metric]                               # selects the best epoch (higher_is_better)

``tools/eval.py`` runs the same ``load_eval`` / ``evaluate`` on a saved checkpoint after ``check_checkpoint``,
prints ``report(metrics)`` and writes ``eval_record(metrics)``.

Everything a task needs from the config it reads once, in ``__init__``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import paddle

from ..config import ConfigError
from ..losses import CombinedLoss, build_loss

logger = logging.getLogger("paddle_mm")


class Batch(NamedTuple):
    """A training batch as the model and the loss take it."""

    inputs: tuple  # positional model inputs, e.g. (pixel_values [B, 3, S, S], input_ids [B, L])
    targets: dict[str, paddle.Tensor]  # loss arguments the model does not produce, e.g. labels [B]
    n: int  # samples in the batch (0: nothing to train on, skip it)

    def head(self, n: int) -> Batch:
        """The first ``n`` samples (every rank must train on the same batch size)."""
        return Batch(tuple(x[:n] for x in self.inputs), {k: v[:n] for k, v in self.targets.items()}, n)


class Task(ABC):
    """One training task: retrieval, vqa, classification or matching (``Global.task``)."""

    name: str
    main_metric: str  # the evaluation metric that selects ``best_model``
    higher_is_better: bool = True
    losses: tuple[str, ...]  # the Loss.Train terms that read what this task's model and batches give
    contrastive: bool = False  # its loss couples the samples of a batch (Global.accum_mode features is for these)

    @abstractmethod
    def build_model(self, arch: dict[str, Any]) -> paddle.nn.Layer:
        """The model from the ``Arch`` section; ``model.config`` holds image_resolution, context_length, pad_id."""

    @abstractmethod
    def build_train_loader(
        self, section: dict[str, Any], model_config, world: int, rank: int, seed: int
    ) -> tuple[paddle.io.DataLoader, Any, paddle.io.Dataset]:
        """(loader, sampler, dataset) from ``DataLoader.Train``; the sampler has ``set_epoch(epoch, skip)``."""

    def build_loss(self, items: list[dict[str, dict[str, Any]]]) -> CombinedLoss:
        """The training loss from ``Loss.Train``: it reads the model's outputs plus :attr:`Batch.targets`, so
        only the terms in :attr:`losses` fit (a ConfigError names the others)."""
        wrong = sorted({name for item in items for name in item} - set(self.losses))
        if wrong:
            raise ConfigError(
                f"Loss.Train {wrong} does not fit Global.task={self.name}; use {' and/or '.join(self.losses)}"
            )
        return build_loss([{name: _with_teacher(name, args) for name, args in item.items()} for item in items])

    @abstractmethod
    def prepare(self, batch: dict[str, Any], pad_id: int) -> Batch:
        """A loader batch -> model inputs, loss targets and the number of samples."""

    def after_step(self, model: paddle.nn.Layer) -> None:
        """Runs after every optimizer step (e.g. a clamp on a parameter); nothing by default."""
        return None

    def step_scalars(self, model: paddle.nn.Layer) -> dict[str, float]:
        """Extra values for the training log line and ``train_metrics.jsonl`` (e.g. ``logit_scale``)."""
        return {}

    def log_epoch(self, epoch: int) -> None:
        """Log what the task saw in the data during the epoch (skipped samples, repeated captions); nothing by
        default."""
        return None

    @abstractmethod
    def load_eval(self, dataset_cfg: dict[str, Any], model_config) -> Any:
        """The evaluation data of a ``DataLoader.Eval.dataset`` section, as :meth:`evaluate` takes it."""

    @abstractmethod
    def evaluate(self, model: paddle.nn.Layer, data: Any, batch_size: int) -> dict[str, Any]:
        """Metrics (x100) on the whole evaluation split; holds :attr:`main_metric`. The model ends in the mode
        it started in."""

    @abstractmethod
    def log_eval(self, metrics: dict[str, Any], epoch: int) -> dict[str, float]:
        """Log the evaluation line of ``metrics``; return the scalars for VisualDL (``eval/<name>``)."""

    def check_checkpoint(self, model: paddle.nn.Layer, path) -> None:
        """Raise a ConfigError when ``model`` (loaded from ``path``) is not the kind of model this task evaluates;
        ``tools/eval.py`` calls it before loading the data. Accepts any model by default."""
        return None

    def wrong_checkpoint(self, want: str, model: paddle.nn.Layer, path) -> ConfigError:
        """The one-line error for a checkpoint of the wrong kind: what the task wants, what ``path`` holds."""
        holds = "a fusion model" if hasattr(model, "fusion_name") else f"a {getattr(model, 'model_type', 'CLIP')} model"
        if getattr(model, "matching", False):
            holds += " for matching"
        return ConfigError(
            f"Global.task={self.name} evaluates {want} checkpoint, but {path} holds {holds}; "
            "pass the config the checkpoint was trained with (its run folder's config.yml)"
        )

    def report(self, metrics: dict[str, Any]) -> list[str]:
        """The lines ``tools/eval.py`` prints for ``metrics``; the main metric by default."""
        return [f"{self.main_metric}: {metrics[self.main_metric]:.2f}"]

    def eval_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What ``tools/eval.py`` writes to ``eval_<split>.json`` beside the checkpoint and the data."""
        return {"task": self.name, "metrics": metrics}

    def history_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What ``train_summary.json`` keeps of an evaluation."""
        return metrics


def load_teacher(path: str) -> paddle.nn.Layer:
    """A DistillLoss teacher from its ``Loss.Train`` path: a model or checkpoint directory, a run folder, or a
    Chinese-CLIP ``.pt`` (:func:`paddle_mm.load_from_name`)."""
    from ..models.pretrained import load_from_name

    try:
        model, _ = load_from_name(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"DistillLoss teacher: {err}") from None
    return model


def _with_teacher(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A loss term's arguments with its teacher path replaced by the loaded model (DistillLoss only)."""
    if name != "DistillLoss" or not isinstance(args.get("teacher"), str):
        return args
    return {**args, "teacher": load_teacher(args["teacher"])}
