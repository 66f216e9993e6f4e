"""Tasks besides retrieval for ``tools/train.py`` (``Global.task``): VQA and multimodal classification.

A task tells the trainer how to build its model (CLIP towers + ``Arch.fusion``), its data, the model inputs and
loss targets of a batch, and how to evaluate. Retrieval (the default) keeps the trainer's own CLIP code path.

- ``vqa``: answer classification over the answer vocabulary of the data (``answers.json``); the loss reads the
  VQA soft scores (``answer_scores``); evaluation reports VQA soft accuracy (``vqa_acc``, the selection metric),
  accuracy, macro F1 and accuracy per question type.
- ``classification``: the same data format, one label per sample (the ``answer`` field, a class name from
  ``answers.json``); the loss reads ``labels``; ``accuracy`` selects the best epoch.
- ``matching``: image-text matching on caption data (``ImageTextDataset``): a one-logit fusion head scores
  pairs, trained on the batch's positives and in-batch hard negatives (``MatchingLoss``, with ``ClipLoss`` on the
  pooled embeddings that mine them). Evaluation re-ranks the contrastive top ``RERANK_K`` images of every caption
  with the fusion score: R@1/5/10 (``mean_recall`` selects the best epoch), MRR and NDCG@10, next to the same
  metrics of the contrastive ranking alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle

from ..data.vqa import VQASplit, load_vqa_split, read_answers
from ..metrics import accuracy, f1_scores, vqa_soft_accuracy
from ..text.tokenizer import tokenize
from ..vision.transforms import CLIP_MEAN, CLIP_STD
from .data import GlobalBatchSampler, trim_padding
from .run import worker_init

TASKS = ("retrieval", "vqa", "classification", "matching")
RERANK_K = 10

_MEAN = np.array(CLIP_MEAN, np.float32).reshape(3, 1, 1)
_STD = np.array(CLIP_STD, np.float32).reshape(3, 1, 1)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 RGB [N, S, S, 3] -> float32 [N, 3, S, S] with CLIP's mean / std."""
    return (images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - _MEAN) / _STD


class VQADataset(paddle.io.Dataset):
    """Items of a :class:`VQASplit`: normalised pixels, question ids, soft answer scores and the label."""

    def __init__(self, split: VQASplit, context_length: int):
        self.split = split
        self.input_ids = np.asarray(tokenize([q["question"] for q in split.questions], context_length=context_length))
        self.scores = split.answer_scores()
        col = {a: i for i, a in enumerate(split.answers)}
        self.labels = np.array([col.get(q["answer"], -1) for q in split.questions], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        image = self.split.images[self.split.image_index[i]][None]
        return {
            "pixel_values": normalize_images(image)[0],
            "input_ids": self.input_ids[i],
            "answer_scores": self.scores[i],
            "labels": self.labels[i],
        }


class VQATask:
    """``Global.task: vqa`` (or ``classification``): see the module docstring."""

    def __init__(self, cfg: dict[str, Any]):
        self.name = cfg["Global"]["task"]
        self.main_metric = "vqa_acc" if self.name == "vqa" else "accuracy"
        for key in ("Train", "Eval"):
            section = cfg["DataLoader"][key]
            if section is not None and section["dataset"]["name"] != "VQADataset":
                raise ValueError(
                    f"Global.task={self.name} reads DataLoader.{key}.dataset.name: VQADataset, "
                    f"not {section['dataset']['name']!r}; set it (data from tools/make_vqa_data.py)"
                )
        if cfg["Arch"].get("fusion") is None:
            raise ValueError(
                f"Global.task={self.name} needs an Arch.fusion section, e.g. Arch.fusion: {{name: cross_attention}}"
            )
        self.answers = read_answers(cfg["DataLoader"]["Train"]["dataset"]["root"])

    def build_model(self, arch: dict[str, Any]):
        from ..models.fusion import build_fusion_model

        return build_fusion_model(arch, len(self.answers), labels=self.answers)

    def load(self, dataset_cfg: dict[str, Any], model_config) -> VQADataset:
        split = load_vqa_split(dataset_cfg["root"], dataset_cfg["split"], model_config.image_resolution)
        if split.answers != self.answers:
            raise ValueError(
                f"{dataset_cfg['root']}/answers.json differs from the training data's; use one generated copy"
            )
        return VQADataset(split, model_config.context_length)

    def build_train_loader(self, section: dict[str, Any], model_config, world: int, rank: int, seed: int):
        dataset = self.load(section["dataset"], model_config)
        s = section["sampler"]
        sampler = GlobalBatchSampler(len(dataset), s["batch_size"], world, rank, s["shuffle"], s["drop_last"], seed)
        loader = paddle.io.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=section["loader"]["num_workers"],
            return_list=True,
            worker_init_fn=worker_init(),  # workers die with the trainer, even after kill -9
        )
        return loader, sampler, dataset

    def prepare(self, batch: dict[str, paddle.Tensor], pad_id: int) -> tuple[tuple, dict[str, paddle.Tensor], int]:
        """Batch -> (model inputs, loss targets, samples)."""
        ids = paddle.to_tensor(trim_padding(np.asarray(batch["input_ids"]), pad_id))
        targets = {"answer_scores": batch["answer_scores"], "labels": batch["labels"]}
        return (batch["pixel_values"], ids), targets, int(batch["labels"].shape[0])

    def evaluate(self, model, dataset: VQADataset, batch_size: int) -> dict[str, Any]:
        """Metrics (x100) on a whole split: vqa_acc, accuracy, macro_f1 and accuracy per question type."""
        logits = predict_logits(model, dataset, batch_size)
        return task_metrics(logits, dataset)


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


class MatchingTask:
    """``Global.task: matching``: see the module docstring."""

    main_metric = "mean_recall"

    def __init__(self, cfg: dict[str, Any]):
        if cfg["Arch"].get("fusion") is None:
            raise ValueError("Global.task=matching needs an Arch.fusion section, e.g. {name: cross_attention}")
        for key in ("Train", "Eval"):
            section = cfg["DataLoader"][key]
            if section is not None and section["dataset"]["name"] != "ImageTextDataset":
                raise ValueError(
                    f"Global.task=matching reads caption data: set DataLoader.{key}.dataset.name: ImageTextDataset"
                )

    def build_model(self, arch: dict[str, Any]):
        from ..models.fusion import build_fusion_model

        return build_fusion_model(arch, 1, matching=True)

    def build_train_loader(self, section: dict[str, Any], model_config, world: int, rank: int, seed: int):
        from .data import build_train_loader

        return build_train_loader(
            section, model_config.image_resolution, model_config.context_length, world, rank, seed
        )

    def load(self, dataset_cfg: dict[str, Any], model_config):
        from .data import build_tokenizer, build_transform, load_split

        return (
            load_split(dataset_cfg),
            build_transform(dataset_cfg, model_config.image_resolution),
            build_tokenizer(model_config.context_length),
        )

    def prepare(self, batch: dict[str, paddle.Tensor], pad_id: int) -> tuple[tuple, dict[str, paddle.Tensor], int]:
        n = int(batch["n_good"])  # undecodable images were moved to the end of the batch
        ids = paddle.to_tensor(trim_padding(np.asarray(batch["input_ids"][:n]), pad_id))
        return (batch["pixel_values"][:n], ids), {}, n

    @paddle.no_grad()
    def evaluate(self, model, data, batch_size: int) -> dict[str, Any]:
        """Contrastive top-``RERANK_K`` per caption, re-ranked by the fusion's matching logit (metrics x100)."""
        from ..data.datasets import ImageDataset
        from .evaluate import encode_corpus

        corpus, transform, tokenizer = data
        was_training = model.training
        model.eval()
        enc = encode_corpus(model, corpus, transform, tokenizer, batch_size, progress=False)
        pixels = {int(item["image_id"]): item["pixel_values"] for item in ImageDataset(corpus, transform)}
        column = {image_id: c for c, image_id in enumerate(enc.image_ids)}
        positives = [{column[i] for i in t.image_ids if i in column} for t in enc.texts]
        sim = enc.text_features @ enc.image_features.T  # (n_texts, n_images)
        reranked = sim.copy()
        k = min(RERANK_K, sim.shape[1])
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        ids_all = np.asarray(tokenizer([t.text for t in enc.texts]))
        for t in range(len(enc.texts)):
            px = paddle.to_tensor(np.stack([pixels[enc.image_ids[c]] for c in top[t]]))
            ids = paddle.to_tensor(trim_padding(np.repeat(ids_all[t : t + 1], k, axis=0), model.config.pad_id))
            scores = model.fusion(model.features(px, ids))["logits"][:, 0].numpy()
            reranked[t, top[t]] = 10.0 + scores - scores.min()  # above every image outside the top k, in fusion order
        if was_training:
            model.train()
        return {**_ranking_metrics(reranked, positives), "contrastive": _ranking_metrics(sim, positives)}


def _ranking_metrics(sim: np.ndarray, positives: list[set[int]]) -> dict[str, float]:
    from ..metrics import mean_reciprocal_rank, ndcg_at_k, recall_at_k

    relevance = np.zeros_like(sim)
    for t, cols in enumerate(positives):
        relevance[t, list(cols)] = 1.0
    r = recall_at_k(sim, positives, (1, 5, 10))
    return {**r, "mrr": mean_reciprocal_rank(sim, positives), "ndcg@10": ndcg_at_k(sim, relevance, 10)}


def build_task(cfg: dict[str, Any]) -> VQATask | MatchingTask | None:
    """The task object for ``Global.task``; None for retrieval (the trainer's CLIP path)."""
    name = cfg["Global"]["task"]
    if name not in TASKS:
        raise ValueError(f"Global.task {name!r}: expected one of {TASKS}")
    if name == "matching":
        return MatchingTask(cfg)
    return None if name == "retrieval" else VQATask(cfg)
