"""Multimodal classification (``Global.task: classification``): the VQA data format with one label per sample
(the ``answer`` field, a class name from ``answers.json``). The loss reads ``labels``; ``accuracy`` selects the best
epoch; evaluation reports the same metrics as :mod:`paddle_mm.tasks.vqa`."""

from __future__ import annotations

from .vqa import VQATask


class ClassificationTask(VQATask):
    """``Global.task: classification``: VQA's model, data and evaluation, selected on accuracy."""

    name = "classification"
    main_metric = "accuracy"
