"""The built-in VQA generator: determinism, true answers, balance, and no answer leak through the question."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from paddle_mm.data.vqa import (
    ANSWERS,
    ANSWERS_BY_TYPE,
    QUESTION_TYPES,
    check_answer,
    load_vqa_split,
    make_vqa_dataset,
)
from paddle_mm.demo.shapes import Obj


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vqa")
    make_vqa_dataset(out, {"train": 1500, "val": 100, "test": 500}, seed=3, image_size=32)
    return out


def _objects(path) -> dict[int, list[Obj]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {
        r["image_id"]: [Obj(tuple(o["cell"]), o["colour"], o["shape"], o["size"]) for o in r["objects"]] for r in rows
    }


def test_same_seed_same_bytes_and_splits_independent(vqa_dir, tmp_path):
    make_vqa_dataset(tmp_path, {"train": 50, "val": 0, "test": 500}, seed=3, image_size=32)
    for name in ("test_imgs.tsv", "test_questions.jsonl", "answers.json"):
        assert (tmp_path / name).read_bytes() == (vqa_dir / name).read_bytes(), name  # train size changed only
    make_vqa_dataset(tmp_path / "other", {"test": 50}, seed=4, image_size=32)
    assert (tmp_path / "other" / "test_questions.jsonl").read_bytes()[:2000] != (
        vqa_dir / "test_questions.jsonl"
    ).read_bytes()[:2000]


def test_every_answer_is_true_of_its_scene(vqa_dir):
    objects = _objects(vqa_dir / "train_scenes.jsonl")
    split = load_vqa_split(vqa_dir, "train")
    for q in split.questions:
        assert check_answer(objects[q["image_id"]], q["question_type"], q["params"], q["answer"]), q
        assert q["answers"] == [q["answer"]] * 10 and q["answer"] in ANSWERS_BY_TYPE[q["question_type"]]
    assert split.images.shape == (1500, 32, 32, 3) and split.answers == ANSWERS
    # one more answer changed must fail the check (the check is not vacuous)
    q = split.questions[0]
    wrong = next(a for a in ANSWERS_BY_TYPE[q["question_type"]] if a != q["answer"])
    assert not check_answer(objects[q["image_id"]], q["question_type"], q["params"], wrong)


def test_types_and_answers_are_balanced(vqa_dir):
    qs = load_vqa_split(vqa_dir, "train").questions
    assert Counter(q["question_type"] for q in qs) == {t: 300 for t in QUESTION_TYPES}
    for t in QUESTION_TYPES:
        counts = Counter(q["answer"] for q in qs if q["question_type"] == t)
        expected = 300 / len(ANSWERS_BY_TYPE[t])
        assert set(counts) == set(ANSWERS_BY_TYPE[t])
        assert max(abs(c - expected) for c in counts.values()) < 4 * np.sqrt(expected), (t, counts)


def test_question_text_does_not_give_the_answer_away(vqa_dir):
    """A lookup 'model' answering each exact test question with its most frequent train answer stays near the
    per-type prior: the question words are drawn independently of the answer."""
    train = load_vqa_split(vqa_dir, "train").questions
    test = load_vqa_split(vqa_dir, "test").questions
    by_text: dict[str, Counter] = {}
    by_type: dict[str, Counter] = {}
    for q in train:
        by_text.setdefault(q["question"], Counter())[q["answer"]] += 1
        by_type.setdefault(q["question_type"], Counter())[q["answer"]] += 1

    def guess(q):
        seen = by_text.get(q["question"])
        return (seen or by_type[q["question_type"]]).most_common(1)[0][0]

    lookup = np.mean([guess(q) == q["answer"] for q in test])
    prior = np.mean([1 / len(ANSWERS_BY_TYPE[t]) for t in QUESTION_TYPES])  # 0.23
    assert lookup < prior + 0.06, (lookup, prior)
