"""The built-in VQA generator: determinism, true answers, balance, no answer leak through the question, and
shape / position / colour answers that the pixels alone determine."""

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
    same_colour_distractor,
)
from paddle_mm.demo.shapes import CELLS, COLOURS, POSITIONS, SHAPES, Obj, Scene, Style, render_scene

IMAGE_SIZE = 48  # the size configs/fusion trains at: one 16-px cell per ViT patch


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vqa")
    make_vqa_dataset(out, {"train": 1500, "val": 100, "test": 500}, seed=3, image_size=IMAGE_SIZE)
    return out


def _objects(path) -> dict[int, list[Obj]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {
        r["image_id"]: [Obj(tuple(o["cell"]), o["colour"], o["shape"], o["size"]) for o in r["objects"]] for r in rows
    }


def test_same_seed_same_bytes_and_splits_independent(vqa_dir, tmp_path):
    make_vqa_dataset(tmp_path, {"train": 50, "val": 0, "test": 500}, seed=3, image_size=IMAGE_SIZE)
    for name in ("test_imgs.tsv", "test_questions.jsonl", "answers.json"):
        assert (tmp_path / name).read_bytes() == (vqa_dir / name).read_bytes(), name  # train size changed only
    make_vqa_dataset(tmp_path / "other", {"test": 50}, seed=4, image_size=IMAGE_SIZE)
    assert (tmp_path / "other" / "test_questions.jsonl").read_bytes()[:2000] != (
        vqa_dir / "test_questions.jsonl"
    ).read_bytes()[:2000]


def test_every_answer_is_true_of_its_scene(vqa_dir):
    objects = _objects(vqa_dir / "train_scenes.jsonl")
    split = load_vqa_split(vqa_dir, "train")
    for q in split.questions:
        assert check_answer(objects[q["image_id"]], q["question_type"], q["params"], q["answer"]), q
        assert q["answers"] == [q["answer"]] * 10 and q["answer"] in ANSWERS_BY_TYPE[q["question_type"]]
    assert split.images.shape == (1500, IMAGE_SIZE, IMAGE_SIZE, 3) and split.answers == ANSWERS
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


def test_most_questions_have_a_same_colour_object_of_another_shape(vqa_dir):
    """Count, existence and position questions, and shape questions at a named cell, mostly come with an object of
    the asked colour in another shape (87.5 % of count / existence by design, every 否 existence question, 80 %+ of
    position and shape-at-a-cell): colour alone does not find the answer."""
    objects = _objects(vqa_dir / "train_scenes.jsonl")
    share: dict[str, list[bool]] = {}
    for q in load_vqa_split(vqa_dir, "train").questions:
        kind = q["question_type"] + ("_at_cell" if q["question_type"] == "shape" and "cell" in q["params"] else "")
        share.setdefault(kind, []).append(
            same_colour_distractor(objects[q["image_id"]], q["question_type"], q["params"])
        )
    share = {k: float(np.mean(v)) for k, v in share.items()}
    for kind, expected in {"count": 0.875, "exist": 0.875, "position": 0.84, "shape_at_cell": 0.8}.items():
        assert abs(share[kind] - expected) < 0.06, (kind, share)
    assert share["shape"] == 0.0  # a shape question naming a colour names the only object of that colour
    no = [
        q for q in load_vqa_split(vqa_dir, "train").questions if q["question_type"] == "exist" and q["answer"] == "否"
    ]
    assert all(same_colour_distractor(objects[q["image_id"]], "exist", q["params"]) for q in no)


def test_a_colour_only_answerer_is_at_chance_on_count_and_existence(vqa_dir):
    """An answerer that sees every object's colour but not its shape: for each (question type, number of objects of
    the asked colour) it gives the most frequent train answer. On the test split it stays at chance (count 25 %,
    existence 50 %); on data where the asked colour's objects were mostly the asked shape (the earlier generator:
    15 % of 否 existence questions had such a distractor) it answered 86 % of count and 89 % of existence
    questions right (1500 train, 500 test questions)."""
    seen: dict[tuple, Counter] = {}

    def key(objects, q):
        return q["question_type"], sum(o.colour == q["params"]["colour"] for o in objects)

    def grouped(split):
        objects = _objects(vqa_dir / f"{split}_scenes.jsonl")
        qs = [q for q in load_vqa_split(vqa_dir, split).questions if q["question_type"] in ("count", "exist")]
        return [(key(objects[q["image_id"]], q), q) for q in qs]

    for k, q in grouped("train"):
        seen.setdefault(k, Counter())[q["answer"]] += 1
    right: dict[str, list[bool]] = {"count": [], "exist": []}
    for k, q in grouped("test"):
        right[q["question_type"]].append(k in seen and seen[k].most_common(1)[0][0] == q["answer"])
    acc = {t: float(np.mean(v)) for t, v in right.items()}
    assert acc["count"] < 0.25 + 0.1 and acc["exist"] < 0.5 + 0.12, acc


# ----------------------------------------------------------------------------- a pixel oracle


def _shape_templates(size: int) -> dict[str, np.ndarray]:
    """Per shape, the share of each pixel of a cell that a large black object centred in it covers (0..1)."""
    plain = Style((128, 128, 128), "plain", 0, ((0, 0),) * 9, ((0, 0, 0),) * 9)
    c = size // 3
    out = {}
    for shape in SHAPES:
        img = render_scene(Scene(0, 0, "template", (Obj((1, 1), "black", shape, "large"),), plain), size)
        out[shape] = np.abs(img[c : 2 * c, c : 2 * c].astype(np.float64) - 128).sum(-1) / (3 * (128 - 25))
    return out


def _read_cell(image: np.ndarray, cell: tuple[int, int], templates: dict) -> tuple[str, str] | None:
    """(colour, shape) of the object in ``cell`` of an RGB image, or None for an empty cell: the background is the
    median of the cell's border, the colour the nearest palette colour, the shape the nearest template."""
    c = image.shape[0] // 3
    patch = image[cell[0] * c : (cell[0] + 1) * c, cell[1] * c : (cell[1] + 1) * c].astype(np.float64)
    border = np.concatenate([patch[0], patch[-1], patch[:, 0], patch[:, -1]])
    diff = np.abs(patch - np.median(border, axis=0)).sum(-1)
    fg = diff > 60  # tints and textures move the background by 30 at most; every palette colour by far more
    if not fg.any():
        return None
    colour = min(COLOURS, key=lambda n: np.abs(patch[fg].mean(0) - COLOURS[n][1]).sum())
    coverage = np.clip(diff / diff[fg].mean(), 0, 1)
    return colour, min(templates, key=lambda s: np.abs(coverage - templates[s]).sum())


def test_shape_position_and_colour_answers_are_read_off_the_pixels(vqa_dir):
    """A fixed, unlearned reader (template matching per grid cell) answers every shape, position and colour
    question from the image alone: the answer is determined by the pixels, with each object large and centred
    in its cell (small or off-centre shapes at 48 px made this reader wrong on about 40 % of them)."""
    split = load_vqa_split(vqa_dir, "train")
    templates = _shape_templates(IMAGE_SIZE)
    right: dict[str, list[bool]] = {"shape": [], "position": [], "colour": []}
    for q, row in zip(split.questions, split.image_index):
        qtype = q["question_type"]
        if qtype not in right:
            continue
        seen = {cell: _read_cell(split.images[row], cell, templates) for cell in CELLS}
        if qtype == "position":
            named = (q["params"]["colour"], q["params"]["shape"])
            cells = [cell for cell, obj in seen.items() if obj == named]
            right[qtype].append(len(cells) == 1 and POSITIONS[cells[0]][0] == q["answer"])
            continue
        if "cell" not in q["params"]:  # a shape question naming the only object of a colour
            found = [obj for obj in seen.values() if obj is not None and obj[0] == q["params"]["colour"]]
            right[qtype].append(len(found) == 1 and SHAPES[found[0][1]] == q["answer"])
            continue
        obj = seen[tuple(q["params"]["cell"])]
        read = None if obj is None else (COLOURS[obj[0]][0] if qtype == "colour" else SHAPES[obj[1]])
        right[qtype].append(read == q["answer"])
    assert {t: len(v) for t, v in right.items()} == {"shape": 300, "position": 300, "colour": 300}
    assert {t: float(np.mean(v)) for t, v in right.items()} == {"shape": 1.0, "position": 1.0, "colour": 1.0}


def test_every_cell_shows_its_coordinates(vqa_dir):
    """The board's colour cast: in every image, the background's red rises from column to column and its blue from
    row to row by about 20 (BOARD_STEP), whatever the background tone, texture or objects."""
    images = load_vqa_split(vqa_dir, "test").images.astype(np.float64)
    c = IMAGE_SIZE // 3
    border = np.ones((c, c), dtype=bool)
    border[1:-1, 1:-1] = False
    cells = images.reshape(len(images), 3, c, 3, c, 3).transpose(0, 1, 3, 2, 4, 5)  # (N, row, col, c, c, RGB)
    bg = np.median(cells[:, :, :, border], axis=3)  # (N, row, col, RGB): objects never reach a cell's border
    red_steps = np.diff(bg[..., 0] - bg[..., 1], axis=2)  # red minus green, column to column
    blue_steps = np.diff(bg[..., 2] - bg[..., 1], axis=1)  # blue minus green, row to row
    assert np.all(np.abs(red_steps - 20) < 8) and np.all(np.abs(blue_steps - 20) < 8)
