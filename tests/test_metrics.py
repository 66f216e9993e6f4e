"""Retrieval metrics against a direct transcription of Chinese-CLIP's evaluation logic."""

import numpy as np
import pytest

from paddle_mm.metrics import (
    chinese_clip_score_json,
    recall_at_k,
    retrieval_log_line,
    retrieval_metrics,
    retrieval_report,
    search,
    topk_indices,
)
from tests.cn_clip_reference import cn_clip_compute_score


def test_hand_computed_example():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.0, 0.2, 0.1]])
    r = recall_at_k(scores, [{0}, {2}, {0, 1}], ks=(1, 2))
    assert r["r1"] == pytest.approx(200 / 3)  # rows 0 and 2 hit at rank 1; row 1's answer is ranked last
    assert r["r2"] == pytest.approx(200 / 3)
    assert r["r10"] == pytest.approx(100.0)
    assert r["mean_recall"] == pytest.approx((200 / 3 + 100 + 100) / 3)


@pytest.mark.parametrize("seed", range(5))
def test_equals_chinese_clip_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    n_text, n_img = 300, 120
    sim = rng.normal(size=(n_text, n_img)).astype(np.float32)
    gts = [set(rng.choice(n_img, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(n_text)]
    for t, gt in enumerate(gts):  # make the task non-trivial: boost the right answers a bit
        for i in gt:
            sim[t, i] += rng.uniform(0, 3)
    ours = retrieval_metrics(sim, gts)["t2i"]
    top10 = topk_indices(sim, 10)
    preds = {t: top10[t].tolist() for t in range(n_text)}
    ref = cn_clip_compute_score(preds, {t: sorted(g) for t, g in enumerate(gts)})
    assert [ours["mean_recall"], ours["r1"], ours["r5"], ours["r10"]] == pytest.approx(ref, abs=1e-9)
    assert 0 < ref[1] < 100  # the example is neither trivial nor hopeless


def test_topk_is_sorted_and_stable():
    scores = np.array([[1.0, 3.0, 3.0, 2.0]])
    assert topk_indices(scores, 3).tolist() == [[1, 2, 3]]
    full = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    assert (topk_indices(scores, 3) == full).all()


def test_image_to_text_direction_uses_the_transpose():
    sim = np.array([[0.9, 0.0], [0.8, 0.1], [0.0, 0.2]])  # 3 texts x 2 images
    m = retrieval_metrics(sim, [{0}, {0}, {1}])
    assert m["t2i"]["r1"] == pytest.approx(100.0)
    assert m["i2t"]["r1"] == pytest.approx(100.0)  # image 0's best text is 0 (correct), image 1's is 2 (correct)
    m = retrieval_metrics(sim, [{0}, {0}, {0}])  # now no text describes image 1: it is not a query
    assert m["i2t"]["r1"] == pytest.approx(100.0) and m["t2i"]["r1"] == pytest.approx(200 / 3)
    m = retrieval_metrics(sim, [{1}, {0}, {0}])  # image 0's best text (0) and image 1's (2) are both wrong
    assert m["i2t"]["r1"] == pytest.approx(0.0) and m["i2t"]["r5"] == pytest.approx(100.0)


def test_score_json_matches_chinese_clip_shape():
    out = chinese_clip_score_json({"r1": 10.0, "r5": 20.0, "r10": 30.0, "mean_recall": 20.0})
    assert out == {
        "success": True,
        "score": 20.0,
        "scoreJson": {"score": 20.0, "mean_recall": 20.0, "r1": 10.0, "r5": 20.0, "r10": 30.0},
    }


def test_search_returns_rows_best_first_with_their_cosines():
    gallery = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    queries = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert search(queries, gallery, 2) == [[(2, 1.0), (1, 0.8)], [(0, 1.0), (1, 0.6)]]


def test_retrieval_report_and_log_line_print_every_k_and_both_means():
    m = {
        "t2i": {"r1": 10.0, "r5": 20.0, "r10": 30.0, "mean_recall": 20.0},
        "i2t": {"r1": 40.0, "r5": 50.0, "r10": 60.0, "mean_recall": 50.0},
        "MR": 35.0,
    }
    assert retrieval_report(m) == [
        "text -> image: R@1: 10.00, R@5: 20.00, R@10: 30.00, MR: 20.00",
        "image -> text: R@1: 40.00, R@5: 50.00, R@10: 60.00, MR: 50.00",
        "MR (both directions): 35.00",
    ]
    assert retrieval_log_line(m, (1, 10)) == (
        "t2i R@1: 10.00 t2i R@10: 30.00 i2t R@1: 40.00 i2t R@10: 60.00, MR(t2i): 20.00, MR(i2t): 50.00, MR: 35.00"
    )
