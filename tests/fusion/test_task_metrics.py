"""Task metrics and losses against hand-computed values."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_mm.losses import build_loss
from paddle_mm.metrics import accuracy, f1_scores, mean_reciprocal_rank, ndcg_at_k, vqa_soft_accuracy


def test_accuracy_and_f1():
    pred, labels = np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0])
    assert accuracy(pred, labels) == pytest.approx(60.0)
    # class 0: tp 1, pred 2, true 2 -> 0.5; class 1: tp 1, pred 1, true 2 -> 2/3; class 2: tp 1, pred 2, true 1 -> 2/3
    f = f1_scores(pred, labels, n_classes=4)  # class 3 never occurs: left out of the macro mean
    assert f["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3 * 100)
    assert f["micro_f1"] == pytest.approx(60.0)


def test_vqa_soft_accuracy_official_formula():
    humans = [["2"] * 2 + ["3"] * 8, ["是"] * 10, ["红色"] * 3 + ["橙色"] * 7, ["a"]]
    # 2 of 10 match: 8 subsets keep 2 matches (2/3), 2 keep 1 (1/3) -> 0.6; all match -> 1; 3 match: 7 subsets keep
    # 3 (1.0), 3 keep 2 (2/3) -> 0.9; one annotator: exact match
    assert vqa_soft_accuracy(["2", "是", "红色", "a"], humans) == pytest.approx((0.6 + 1.0 + 0.9 + 1.0) / 4 * 100)
    assert vqa_soft_accuracy(["5", "否", "蓝色", "b"], humans) == 0.0
    with pytest.raises(ValueError, match="2 predictions but 4"):
        vqa_soft_accuracy(["a", "b"], humans)


def test_ndcg_and_mrr():
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    rel = np.array([[0, 2, 1], [1, 0, 0]])
    # q0 ranking [0, 1, 2]: gains 0, 3, 1 -> dcg = 3/log2(3) + 1/log2(4); ideal 3 + 1/log2(3)
    q0 = (3 / np.log2(3) + 0.5) / (3 + 1 / np.log2(3))
    # q1 ranking [2, 1, 0]: gain 1 at rank 3 -> 1/log2(4); ideal 1
    q1 = 0.5
    assert ndcg_at_k(scores, rel, 3) == pytest.approx((q0 + q1) / 2 * 100)
    assert ndcg_at_k(scores, rel, 1) == pytest.approx(0.0 + 0.0)
    assert mean_reciprocal_rank(scores, [{1, 2}, {0}]) == pytest.approx((1 / 2 + 1 / 3) / 2 * 100)
    assert mean_reciprocal_rank(scores, [set(), {2}]) == pytest.approx(50.0)


def test_vqa_loss_is_cross_entropy_for_single_answers():
    logits = paddle.to_tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    scores = paddle.to_tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = build_loss([{"VQALoss": {}}])({"logits": logits, "answer_scores": scores})["loss"]
    expected = paddle.nn.functional.cross_entropy(logits, paddle.to_tensor([1, 0]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    cls = build_loss([{"ClassificationLoss": {}}])({"logits": logits, "labels": paddle.to_tensor([1, 0])})
    assert float(cls["loss"]) == pytest.approx(float(expected), rel=1e-6)
