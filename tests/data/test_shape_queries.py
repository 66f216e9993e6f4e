"""Checking searches on the built-in data: query parsing, per-attribute truth, attribute precision@k, marks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from caption_checker import caption_holds

from paddle_mm.demo.shape_queries import (
    attribute_hits,
    attribute_precision,
    check_results,
    load_scenes,
    mark,
    parse_query,
    satisfies,
    scene_objects,
    search_attribute_precision,
)
from paddle_mm.demo.shapes import Obj, generate_scenes, make_dataset, make_texts


def objs(*specs: str) -> tuple[Obj, ...]:
    """'r,c colour shape size' per object, e.g. objs('0,0 red circle large')."""
    out = []
    for spec in specs:
        cell, colour, shape, size = spec.split()
        out.append(Obj(tuple(int(v) for v in cell.split(",")), colour, shape, size))
    return tuple(sorted(out))


# Hand-made scenes: the query 「左上角有一个红色的圆形」 is true of 1 only.
SCENES = {
    1: objs("0,0 red circle large", "1,1 blue triangle small"),
    2: objs("0,0 red diamond large", "2,2 green square small"),  # right colour and cell, wrong shape
    3: objs("0,0 blue circle small", "1,1 blue circle small"),  # right shape and cell, wrong colour
    4: objs("2,2 red circle large"),  # red circle, wrong cell
}
RED_CIRCLE_TOP_LEFT = "左上角有一个红色的圆形"
TWO_BLUE_CIRCLES = "图中有两个蓝色的圆形"


@pytest.fixture(scope="module")
def world():
    scenes = generate_scenes(300, np.random.default_rng(3))
    return scenes, make_texts(scenes, np.random.default_rng(4))


def test_every_generated_caption_parses_back_to_its_clauses(world):
    _, texts = world
    assert [parse_query(t.text) for t in texts] == [tuple(t.claim) for t in texts]


@pytest.mark.parametrize(
    "text", ["一只猫", "红色的圆形", "左上角有一个红色的圆形，一只猫", "左上角有一个粉色的圆形", ""]
)
def test_text_outside_the_language_is_not_checked(text):
    assert parse_query(text) is None
    assert check_results(text, [1, 2], SCENES) is None
    assert mark(None) == " "


def test_satisfies_agrees_with_the_independent_checker_and_the_generator(world):
    scenes, texts = world
    records = {s.image_id: s.to_json() for s in scenes}
    for t in texts[::20]:
        claim = parse_query(t.text)
        ours = sorted(s.image_id for s in scenes if satisfies(claim, s.objects))
        theirs = sorted(i for i, r in records.items() if caption_holds(t.text, r))
        assert ours == theirs == t.image_ids, t.text


def test_attribute_hits_name_what_a_wrong_image_lacks():
    claim = parse_query(RED_CIRCLE_TOP_LEFT)
    assert attribute_hits(claim, SCENES[1]) == {"all": True, "colour": True, "shape": True, "position": True}
    assert attribute_hits(claim, SCENES[2]) == {"all": False, "colour": True, "shape": False, "position": True}
    assert attribute_hits(claim, SCENES[3]) == {"all": False, "colour": False, "shape": True, "position": True}
    # every attribute present, but the red circle is not in the named cell: only "all" fails
    assert attribute_hits(claim, SCENES[4]) == {"all": False, "colour": True, "shape": True, "position": False}
    count = parse_query(TWO_BLUE_CIRCLES)
    assert attribute_hits(count, SCENES[3]) == {"all": True, "colour": True, "shape": True, "count": True}
    assert attribute_hits(count, SCENES[1]) == {"all": False, "colour": True, "shape": True, "count": False}
    sized = parse_query("右下角有一个大的绿色正方形")
    # a small green square there, and a large object elsewhere: each attribute is present, not together
    assert attribute_hits(sized, SCENES[2]) == {
        "all": False,
        "colour": True,
        "shape": True,
        "size": True,
        "position": True,
    }
    assert attribute_hits(sized, SCENES[3]) == {
        "all": False,
        "colour": False,
        "shape": False,
        "size": False,
        "position": False,
    }
    assert attribute_hits(parse_query("图中一共有两个图形"), SCENES[4]) == {"all": False, "count": False}
    # a sized count counts objects of that size: one small and one large blue circle are not two small ones
    mixed = objs("0,0 blue circle small", "0,1 blue circle large")
    small_two = parse_query("图中有两个小的蓝色圆形")
    assert attribute_hits(small_two, mixed) == {
        "all": False,
        "colour": True,
        "shape": True,
        "size": True,
        "count": False,
    }
    assert attribute_hits(parse_query(TWO_BLUE_CIRCLES), mixed)["count"]


def test_attribute_precision_values_by_hand():
    claims = [parse_query(RED_CIRCLE_TOP_LEFT), parse_query(TWO_BLUE_CIRCLES)]
    ranked = [[1, 2, 3], [3, 4]]
    r = attribute_precision(claims, ranked, SCENES, k=2)
    # query 1, top-2 = images 1, 2: all 1/2, colour 2/2, shape 1/2, position 2/2
    # query 2, top-2 = images 3, 4: all 1/2 (3), colour 1/2, shape 2/2, count 1/2
    assert r["precision"] == pytest.approx({"all": 50.0, "colour": 75.0, "shape": 75.0, "position": 100.0, "count": 50})
    # chance over the 4 images: q1 all 1/4, colour 3/4, shape 3/4, position 3/4; q2 all 1/4, colour 2/4,
    # shape 3/4, count (a group of exactly two) 1/4
    assert r["chance"] == pytest.approx({"all": 25.0, "colour": 62.5, "shape": 75.0, "position": 75.0, "count": 25.0})
    assert r["queries"] == {"all": 2, "colour": 2, "shape": 2, "position": 1, "count": 1}
    assert (r["k"], r["n_queries"]) == (2, 2)
    # a gallery smaller than k: the share is of the images returned
    assert attribute_precision(claims[:1], [[1]], SCENES, k=5)["precision"]["all"] == 100.0


def test_a_flipped_colour_is_caught():
    claim = parse_query(RED_CIRCLE_TOP_LEFT)
    before = attribute_precision([claim], [[1]], SCENES, k=1)["precision"]
    flipped = {**SCENES, 1: objs("0,0 green circle large", "1,1 blue triangle small")}
    after = attribute_precision([claim], [[1]], flipped, k=1)["precision"]
    assert (before["all"], before["colour"]) == (100.0, 100.0)
    assert (after["all"], after["colour"], after["shape"], after["position"]) == (0.0, 0.0, 100.0, 100.0)


def test_check_marks():
    checks = check_results(RED_CIRCLE_TOP_LEFT, [1, 2, 3, 4, 99], SCENES)
    assert [mark(c) for c in checks] == ["✓", "✗ (no shape)", "✗ (no colour)", "✗ (no position)", " "]
    assert checks[0] == {"satisfies": True, "missing": []}
    two = check_results("红色的圆形只有一个，图中一共有两个图形", [1, 4], SCENES)
    assert [mark(c) for c in two] == ["✓", "✗ (no count)"]
    # a red triangle somewhere and a blue circle elsewhere: each attribute, not the same object
    apart = {5: objs("0,0 red triangle large", "1,1 blue circle small")}
    assert [mark(c) for c in check_results(RED_CIRCLE_TOP_LEFT, [5], apart)] == ["✗ (each attribute, not together)"]


def test_search_attribute_precision_on_written_data(tmp_path):
    """The split's scene records and captions as written; a ranking by a perfect 'model' scores all = 100."""
    make_dataset(tmp_path, {"valid": 60}, seed=5, image_size=24)
    scenes = load_scenes(tmp_path / "valid_scenes.jsonl")
    first = json.loads((tmp_path / "valid_scenes.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert scenes[first["image_id"]] == scene_objects(first)
    lines = (tmp_path / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [SimpleNamespace(**json.loads(line)) for line in lines]
    image_ids = sorted(scenes)
    # one-hot features: text t points at its first image, so that image ranks first
    image_features = np.eye(len(image_ids), dtype=np.float32)
    text_features = np.stack([image_features[image_ids.index(t.image_ids[0])] for t in texts])
    r = search_attribute_precision(tmp_path, "valid", image_ids, image_features, texts, text_features, k=1)
    assert r["precision"]["all"] == 100.0 and r["unchecked"] == 0 and r["n_queries"] == len(texts)
    assert search_attribute_precision(tmp_path, "test", image_ids, image_features, texts, text_features) is None


def test_position_is_row_then_column():
    """右上角 is row 0, column 2: an object in the bottom-left cell (row 2, column 0) must not count."""
    claim = parse_query("右上角有一个红色的圆形")
    top_right = objs("0,2 red circle large")
    bottom_left = objs("2,0 red circle large")
    assert attribute_hits(claim, top_right) == {"all": True, "colour": True, "shape": True, "position": True}
    assert attribute_hits(claim, bottom_left) == {"all": False, "colour": True, "shape": True, "position": False}
