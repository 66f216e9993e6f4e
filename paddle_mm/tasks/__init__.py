"""Training tasks: what differs between retrieval, VQA, classification, matching, inspection and captioning
(``Global.task``).

Each task (:class:`~paddle_mm.tasks.base.Task`) builds its model, training data and loss, prepares a batch,
runs a hook after every optimizer step, evaluates, names its main metric and writes its log lines; the trainer
(``paddle_mm.engine.train``) runs all of them the same way. Not imported by ``import paddle_mm``.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError
from .base import Batch, Task
from .captioning import CaptioningTask
from .classification import ClassificationTask
from .inspection import InspectionTask
from .matching import MatchingTask
from .retrieval import RetrievalTask
from .vqa import VQATask

TASKS: dict[str, type[Task]] = {
    "retrieval": RetrievalTask,
    "vqa": VQATask,
    "classification": ClassificationTask,
    "matching": MatchingTask,
    "inspection": InspectionTask,
    "captioning": CaptioningTask,
}


def build_task(cfg: dict[str, Any]) -> Task:
    """The task of ``Global.task``, reading what it needs from the config."""
    name = cfg["Global"]["task"]
    if name not in TASKS:
        raise ConfigError(f"unknown Global.task {name!r}; available: {sorted(TASKS)}")
    return TASKS[name](cfg)


__all__ = ["TASKS", "Batch", "Task", "build_task"]
