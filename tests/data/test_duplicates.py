"""Duplicate captions in a batch (#240): the per-batch check, the guard the trainer calls, the dataset report."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.data.duplicates import DuplicateCaptionGuard, duplicate_rows, find_duplicate_captions
from paddle_mm.text.tokenizer import tokenize


def test_rows_repeating_an_earlier_row_are_found_and_firsts_are_kept():
    ids = tokenize(["红色的圆形", "蓝色的三角形", "红色的圆形", "红色的 圆形", "绿色的菱形", "蓝色的三角形"])
    assert duplicate_rows(ids).tolist() == [2, 3, 5]  # "红色的 圆形" tokenizes like "红色的圆形"
    assert duplicate_rows(ids[[1, 4]]).tolist() == []
    with pytest.raises(ValueError, match=r"must be \[batch, length\], got shape \(52,\)"):
        duplicate_rows(ids[0])


def test_guard_warns_once_and_drops_only_when_asked():
    batch = tokenize(["猫", "狗", "猫", "鸟", "猫"])
    messages: list[str] = []
    warn_only = DuplicateCaptionGuard(log=messages.append)
    assert warn_only(batch).tolist() == [0, 1, 2, 3, 4]
    assert warn_only(batch).tolist() == [0, 1, 2, 3, 4]
    assert warn_only(tokenize(["猫", "狗"])).tolist() == [0, 1]
    assert len(messages) == 1 and messages[0].startswith("2 of 5 captions in a training batch repeat an earlier one")
    assert "#240" in messages[0]
    assert warn_only.summary() == "2 of 3 batches had repeated captions (4 of 12 rows, kept)"
    dropping = DuplicateCaptionGuard(drop=True, log=messages.append)
    assert dropping(batch).tolist() == [0, 1, 3]
    assert "left out of the loss" in messages[-1]
    assert dropping.summary() == "1 of 1 batches had repeated captions (2 of 5 rows, dropped)"


def test_dataset_report_predicts_the_duplicates_of_random_batches():
    # 48 class names used as captions, 10 images each: the #240 situation
    texts = [f"类别{c}" for c in range(48) for _ in range(10)]
    report = find_duplicate_captions(texts)
    assert (report.n_rows, report.n_distinct, report.n_repeated_rows) == (480, 48, 432)
    assert report.most_common[0][1] == 10
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(48), 10)
    batch = 32
    pairs = [
        sum(c * (c - 1) // 2 for c in np.bincount(labels[rng.choice(480, batch, replace=False)])) for _ in range(3000)
    ]
    assert report.expected_duplicate_pairs(batch) == pytest.approx(np.mean(pairs), rel=0.05)
    assert report.expected_duplicate_pairs(batch) == pytest.approx(32 * 31 / 2 * 48 * 90 / (480 * 479))
    assert report.batch_duplicate_chance(batch) > 0.99
    assert "a random batch of 32 holds 9.32 same-caption pairs" in report.summary(batch)
    unique = find_duplicate_captions([f"描述{i}" for i in range(100)])
    assert unique.expected_duplicate_pairs(64) == 0 and unique.most_common == [] and unique.n_repeated_rows == 0


def test_shapes_training_pairs_do_repeat_captions(tiny_data):
    """A caption true for several images gives several training pairs with the same text."""
    from paddle_mm.data.datasets import PairDataset, load_corpus

    corpus = load_corpus(tiny_data, "train")
    pairs = PairDataset(corpus, transform=lambda b: b, tokenizer=tokenize)
    report = find_duplicate_captions(corpus.texts[k].text for k in pairs.text_index)
    multi = sum(len(t.image_ids) - 1 for t in corpus.texts)
    assert report.n_repeated_rows >= multi > 0
