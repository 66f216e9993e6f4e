"""Every task's evaluation against hand-computed values: retrieval (``RetrievalTask.evaluate``), matching
(``MatchingTask.evaluate``: contrastive top 10 re-ranked by the fusion), VQA and classification
(``VQATask.evaluate``), each through the registry (``build_task``).

The models are stand-ins whose outputs are crafted score matrices: an image's pixels hold its column number and
a caption's second token its row number, so every rank below can be read off the matrices by hand.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_mm.config import load_config
from paddle_mm.data.datasets import ImageTextCorpus
from paddle_mm.data.vqa import VQASplit
from paddle_mm.tasks import build_task
from paddle_mm.tasks.matching import RERANK_K
from paddle_mm.tasks.retrieval import EvalData
from paddle_mm.tasks.vqa import VQADataset

ROOT = Path(__file__).resolve().parents[2]


def _corpus(tmp_path: Path, payloads: dict[int, bytes], texts: list[list[int]]) -> ImageTextCorpus:
    """A TSV corpus: image id -> payload (its column number as text, or junk), text ``t{k}`` -> image ids."""
    tsv = "".join(f"{i}\t{base64.b64encode(p).decode()}\n" for i, p in payloads.items())
    (tmp_path / "imgs.tsv").write_text(tsv)
    rows = [{"text_id": 1000 + k, "text": f"t{k}", "image_ids": ids} for k, ids in enumerate(texts)]
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ImageTextCorpus.from_tsv(tmp_path / "imgs.tsv", tmp_path / "texts.jsonl")


def transform(data: bytes) -> np.ndarray:
    """Payload b"3" -> pixels [1, 1, 1] holding 3.0; anything else is undecodable (ValueError)."""
    return np.full((1, 1, 1), float(data.decode()), np.float32)


def tokenizer(texts: list[str]) -> np.ndarray:
    """``t{k}`` -> [CLS, k + 1, SEP, PAD]."""
    return np.array([[101, int(t[1:]) + 1, 102, 0] for t in texts], dtype=np.int64)


class CraftedCLIP:
    """encode_text(row k) . encode_image(column c) is ``sim[k, c]`` up to a positive factor per row (the rows are
    normalised; give every row one norm to keep the columns comparable too). ``fusion_scores[k, c]`` is the
    fusion's matching logit of the pair."""

    def __init__(self, sim: np.ndarray, fusion_scores: np.ndarray | None = None):
        self.sim, self.fusion_scores = sim.astype(np.float32), fusion_scores
        self.config = type("Config", (), {"pad_id": 0, "embed_dim": sim.shape[1]})()
        self.training = True

    def eval(self) -> None:
        self.training = False

    def train(self) -> None:
        self.training = True

    def encode_image(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        columns = pixel_values.numpy()[:, 0, 0, 0].astype(int)
        return paddle.to_tensor(np.eye(self.sim.shape[1], dtype=np.float32)[columns])

    def encode_text(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return paddle.to_tensor(self.sim[input_ids.numpy()[:, 1] - 1])

    def features(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> dict[str, np.ndarray]:
        return {"rows": input_ids.numpy()[:, 1] - 1, "columns": pixel_values.numpy()[:, 0, 0, 0].astype(int)}

    def fusion(self, f: dict[str, np.ndarray]) -> dict[str, paddle.Tensor]:
        return {"logits": paddle.to_tensor(self.fusion_scores[f["rows"], f["columns"]][:, None])}


def test_retrieval_recall_at_k_both_directions(tmp_path):
    # 4 readable images (columns 0-3) and image 14, which cannot be decoded
    corpus = _corpus(tmp_path, {10: b"0", 11: b"1", 12: b"2", 13: b"3", 14: b"junk"}, [[11], [12, 10], [14]])
    sim = np.array(  # every row a permutation of one set of values: one norm, so columns compare as written
        [
            [0.8, 0.4, 0.3, 0.2],  # t0 -> image 11 (column 1): rank 2
            [0.3, 0.2, 0.8, 0.4],  # t1 -> images 12, 10 (columns 2, 0): column 2 at rank 1
            [0.2, 0.3, 0.4, 0.8],  # t2 -> image 14, undecodable: stays a query and misses
        ]
    )
    model = CraftedCLIP(sim)
    cfg = load_config(ROOT / "tests" / "configs" / "tiny.yml", ["Metric.Eval=[{Recall: {topk: [2]}}]"])
    task = build_task(cfg)
    assert (task.main_metric, task.higher_is_better) == ("MR", True)
    # R@1/5/10 always, R@2 asked for
    m = task.evaluate(model, EvalData(corpus, transform, tokenizer, "", "valid"), batch_size=2)
    t2i = {"r1": 100 / 3, "r2": 200 / 3, "r5": 200 / 3, "r10": 200 / 3}
    assert m["t2i"] == pytest.approx({**t2i, "mean_recall": (100 / 3 + 200 / 3 + 200 / 3) / 3})
    # image -> text: column 0 ranks t0 (0.8) above its caption t1 (0.3): rank 2; column 1 finds t0 and column 2
    # t1 at rank 1; column 3 is in no caption, so it is no query
    i2t = {"r1": 200 / 3, "r2": 100.0, "r5": 100.0, "r10": 100.0}
    assert m["i2t"] == pytest.approx({**i2t, "mean_recall": (200 / 3 + 100 + 100) / 3})
    assert m["MR"] == pytest.approx(((100 / 3 + 400 / 3) / 3 + (200 / 3 + 200) / 3) / 2)
    assert m["skipped"].startswith("skipped 1 of 5 ")
    assert model.training  # the model goes back to training mode
    scalars = task.log_eval(m, epoch=1)  # what VisualDL gets
    assert scalars["MR"] == m["MR"] and scalars["t2i_R@2"] == pytest.approx(200 / 3)


def _matching_case(tmp_path):
    """12 images (columns 0-11, above RERANK_K = 10) and 3 captions; each caption's contrastive order and the
    fusion's scores on its contrastive top 10."""
    assert RERANK_K == 10
    contrastive_order = [
        list(range(12)),  # t0: its image, column 4, at contrastive rank 5
        list(range(12)),  # t1: columns 9 and 11 at ranks 10 and 12: only the first is in the top 10
        [2, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # t2: columns 2 and 7, at ranks 1 and 8
    ]
    fusion_order = [  # the top 10 after re-ranking, best first
        [4, 0, 1, 2, 3, 5, 6, 7, 8, 9],  # t0: column 4 first
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],  # t1: column 9, the 10th, first
        [0, 1, 7, 3, 4, 2, 5, 6, 8, 9],  # t2: column 7 third, column 2 sixth
    ]
    sim = np.zeros((3, 12))
    fusion = np.full((3, 12), np.nan)  # the fusion must only be asked about the top 10
    for t in range(3):
        sim[t, contrastive_order[t]] = 1.0 - 0.05 * np.arange(12)
        fusion[t, fusion_order[t]] = 3.0 - 0.5 * np.arange(10)  # logits: negative ones too
    payloads = {100 + c: str(c).encode() for c in range(12)}
    return _corpus(tmp_path, payloads, [[104], [109, 111], [102, 107]]), CraftedCLIP(sim, fusion)


def test_matching_evaluate_reranks_the_contrastive_top_10(tmp_path):
    corpus, model = _matching_case(tmp_path)
    task = build_task(load_config(ROOT / "configs" / "fusion" / "concat_matching.yml"))
    assert (task.name, task.main_metric) == ("matching", "mean_recall")
    m = task.evaluate(model, EvalData(corpus, transform, tokenizer, "", "valid"), batch_size=5)
    ideal_2 = 1 + 1 / np.log2(3)  # two relevant images at ranks 1 and 2
    # contrastive: positives at ranks 5 (t0), 10 and 12 (t1), 1 and 8 (t2)
    assert m["contrastive"] == pytest.approx(
        {
            "r1": 100 / 3,
            "r5": 200 / 3,
            "r10": 100.0,
            "mean_recall": (100 / 3 + 200 / 3 + 100) / 3,
            "mrr": (1 / 5 + 1 / 10 + 1) / 3 * 100,
            "ndcg@10": (1 / np.log2(6) + 1 / np.log2(11) / ideal_2 + (1 + 1 / np.log2(9)) / ideal_2) / 3 * 100,
        }
    )
    # re-ranked: positives at ranks 1 (t0), 1 and 12 (t1: the 12th is not re-ranked), 3 and 6 (t2)
    assert {k: v for k, v in m.items() if k != "contrastive"} == pytest.approx(
        {
            "r1": 200 / 3,
            "r5": 100.0,
            "r10": 100.0,
            "mean_recall": (200 / 3 + 100 + 100) / 3,
            "mrr": (1 + 1 + 1 / 3) / 3 * 100,
            "ndcg@10": (1 + 1 / ideal_2 + (1 / np.log2(4) + 1 / np.log2(7)) / ideal_2) / 3 * 100,
        }
    )
    assert model.training


def _vqa_dataset() -> VQADataset:
    answers = ("是", "否", "1", "2", "红色")
    questions = [  # (type, label, the ten human answers)
        ("exist", "是", ["是"] * 10),
        ("exist", "否", ["否"] * 7 + ["是"] * 3),
        ("count", "2", ["2"] * 2 + ["1"] * 8),
        ("count", "1", ["1"] * 10),
        ("colour", "红色", ["红色"] * 10),
    ]
    records = [
        {"question_id": q, "image_id": q, "question": f"问题{q}", "question_type": t, "answer": a, "answers": h}
        for q, (t, a, h) in enumerate(questions)
    ]
    images = np.zeros((5, 4, 4, 3), np.uint8)
    return VQADataset(VQASplit(images, np.arange(5), records, answers), context_length=8)


class CraftedVQA:
    """Returns the rows of ``logits`` in call order (the evaluation walks the dataset in order)."""

    def __init__(self, logits: np.ndarray):
        self.logits, self.next_row, self.training = logits.astype(np.float32), 0, True
        self.config = type("Config", (), {"pad_id": 0})()

    def eval(self) -> None:
        self.training = False

    def train(self) -> None:
        self.training = True

    def __call__(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> dict[str, paddle.Tensor]:
        assert pixel_values.shape[1:] == [3, 4, 4] and input_ids.shape[0] == pixel_values.shape[0]
        rows = self.logits[self.next_row : self.next_row + pixel_values.shape[0]]
        self.next_row += len(rows)
        return {"logits": paddle.to_tensor(rows)}


@pytest.mark.parametrize("task_name", ["vqa", "classification"])
def test_vqa_and_classification_evaluate(tmp_path, task_name):
    (tmp_path / "answers.json").write_text(json.dumps(["是", "否", "1", "2", "红色"], ensure_ascii=False))
    cfg = load_config(
        ROOT / "configs" / "fusion" / "concat_vqa.yml",
        [f"Global.task={task_name}", f"DataLoader.Train.dataset.root={tmp_path}"],
    )
    task = build_task(cfg)
    assert task.name == task_name
    assert task.main_metric == {"vqa": "vqa_acc", "classification": "accuracy"}[task_name]
    predicted = [0, 0, 2, 3, 4]  # 是, 是, 1, 2, 红色
    logits = np.eye(5)[predicted] * 2.0 - 1.0
    model = CraftedVQA(logits)
    m = task.evaluate(model, _vqa_dataset(), batch_size=2)
    assert model.next_row == 5 and model.training
    # soft accuracy: q1 "是" matches 3 of 10 humans -> (3 * 2/3 + 7 * 1) / 10 = 0.9; q2 "1" matches 8 -> 1.0;
    # q3 "2" matches none -> 0
    assert m["vqa_acc"] == pytest.approx((1 + 0.9 + 1 + 0 + 1) / 5 * 100)
    assert m["accuracy"] == pytest.approx(40.0)  # q0 and q4 equal their label
    # F1 per class: 是 tp 1, predicted 2, true 1 -> 2/3; 否, 1, 2: no hit -> 0; 红色 -> 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 5 * 100)
    assert m["micro_f1"] == pytest.approx(40.0)
    assert m["per_type"] == pytest.approx({"colour": 100.0, "count": 0.0, "exist": 50.0})
