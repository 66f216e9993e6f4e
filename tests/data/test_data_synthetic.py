"""The synthetic shapes dataset: determinism, true and identifying captions, distractors, rendering, corruption."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from caption_checker import COLOUR_WORDS, caption_holds, one_attribute_difference, parse_caption

from paddle_mm.demo.shapes import COLOURS, make_dataset

SIZES = {"train": 60, "valid": 30, "test": 20}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_tsv_images(path: Path) -> dict[int, np.ndarray]:
    out = {}
    for line in path.read_text(encoding="ascii").splitlines():
        image_id, b64 = line.split("\t")
        out[int(image_id)] = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    return out


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["tsv", "folder"])
def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, fmt):
    a = all_files(_make(tmp_path / "a", fmt, seed=7))
    b = all_files(_make(tmp_path / "b", fmt, seed=7))
    c = all_files(_make(tmp_path / "c", fmt, seed=8))
    assert a == b
    assert len(a) >= 7 and all(len(v) > 0 for v in a.values())
    texts = "valid_texts.jsonl" if fmt == "tsv" else "valid/texts.jsonl"
    assert a[texts] != c[texts]
    differing = [name for name in a if name in c and a[name] != c[name]]
    assert len(differing) >= 0.9 * (len(a) - 1)  # every image and text file, only synthetic_info.json's seed aside


def _make(root: Path, fmt: str, seed: int) -> Path:
    make_dataset(root, SIZES, fmt, seed=seed)
    return root


def test_a_split_does_not_depend_on_the_size_of_the_others(tmp_path):
    make_dataset(tmp_path / "a", {"train": 40, "valid": 30}, seed=1)
    make_dataset(tmp_path / "b", {"train": 90, "valid": 30}, seed=1)
    for name in ("valid_imgs.tsv", "valid_texts.jsonl", "valid_scenes.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_every_caption_is_true_for_exactly_the_images_it_lists(shapes_tsv):
    root, _ = shapes_tsv
    for split in ("train", "valid"):
        scenes = {s["image_id"]: s for s in read_jsonl(root / f"{split}_scenes.jsonl")}
        texts = read_jsonl(root / f"{split}_texts.jsonl")
        assert texts and len({t["text_id"] for t in texts}) == len(texts)
        for t in texts:
            truth = {i for i, scene in scenes.items() if caption_holds(t["text"], scene)}
            assert truth == set(t["image_ids"]), t
            assert t["image_ids"] == sorted(t["image_ids"])
            assert 1 <= len(parse_caption(t["text"])) <= 3 and len(t["text"]) <= 50, t


def test_captions_cover_every_image_and_mostly_identify_it(shapes_tsv):
    root, _ = shapes_tsv
    scenes = read_jsonl(root / "train_scenes.jsonl")
    texts = read_jsonl(root / "train_texts.jsonl")
    covered = Counter(i for t in texts for i in t["image_ids"])
    assert set(covered) == {s["image_id"] for s in scenes}
    best = {}  # image -> size of the most specific caption listing it
    for t in texts:
        for i in t["image_ids"]:
            best[i] = min(best.get(i, 10**9), len(t["image_ids"]))
    identified = sum(n == 1 for n in best.values())
    assert identified >= 0.95 * len(scenes), Counter(best.values())
    assert len({len(parse_caption(t["text"])) for t in texts}) >= 2  # one- and multi-clause captions
    phrasings = {t["text"][:2] for t in texts}
    assert len(phrasings) >= 10  # several phrasings, not one template


def test_no_two_images_of_a_split_show_the_same_objects(shapes_tsv):
    root, _ = shapes_tsv
    keys = [json.dumps(s["objects"], sort_keys=True) for s in read_jsonl(root / "train_scenes.jsonl")]
    assert len(set(keys)) == len(keys)


def test_many_image_pairs_differ_in_exactly_one_attribute(shapes_tsv):
    root, _ = shapes_tsv
    scenes = read_jsonl(root / "train_scenes.jsonl")
    kinds = Counter()
    for a, b in itertools.combinations(scenes, 2):
        kind = one_attribute_difference(a, b)
        if kind:
            kinds[kind] += 1
    n_variants = sum(s["variant"] != "base" for s in scenes)
    assert sum(kinds.values()) >= n_variants >= 0.5 * len(scenes)
    assert set(kinds) == {"colour", "shape", "size", "position", "count"}
    assert min(kinds.values()) >= 0.1 * n_variants, kinds
    # each variant differs from its family's base in exactly the attribute it is labelled with
    bases = {s["family"]: s for s in scenes if s["variant"] == "base"}
    for s in scenes:
        if s["variant"] != "base" and s["family"] in bases:
            assert one_attribute_difference(bases[s["family"]], s) == s["variant"], s


def _cell_patch(img: np.ndarray, cell: tuple[int, int], margin: int = 0) -> np.ndarray:
    side = img.shape[0] / 3
    r, c = cell
    rows = slice(int(r * side) + margin, int((r + 1) * side) - margin)
    cols = slice(int(c * side) + margin, int((c + 1) * side) - margin)
    return img[rows, cols]


def _ink(img: np.ndarray, scene: dict, cell: tuple[int, int], margin: int = 0) -> int:
    """Pixels of a cell far from the background colour (texture moves a pixel by at most 24)."""
    background = np.array(scene["style"]["background"][::-1], float)  # BGR
    return int((np.abs(_cell_patch(img, cell, margin) - background).max(axis=2) > 40).sum())


def test_rendered_pixels_show_the_described_objects(shapes_tsv):
    root, _ = shapes_tsv
    images = {i: img.astype(float) for i, img in read_tsv_images(root / "train_imgs.tsv").items()}
    palette = {name: np.array(rgb[::-1], float) for name, (_, rgb) in COLOURS.items()}  # BGR
    assert set(palette) == set(COLOUR_WORDS.values())
    scenes = read_jsonl(root / "train_scenes.jsonl")
    for scene in scenes:
        img = images[scene["image_id"]]
        occupied = {tuple(o["cell"]): o for o in scene["objects"]}
        for cell in itertools.product(range(3), range(3)):
            if cell not in occupied:
                assert _ink(img, scene, cell, margin=2) == 0, (scene["image_id"], cell)
                continue
            obj = occupied[cell]
            centre = img[int((cell[0] + 0.5) * 64 / 3), int((cell[1] + 0.5) * 64 / 3)]
            nearest = min(palette, key=lambda name: np.abs(palette[name] - centre).sum())
            assert nearest == obj["colour"], (scene["image_id"], obj, centre)
            low, high = (100, 300) if obj["size"] == "large" else (30, 110)
            assert low <= _ink(img, scene, cell) <= high, (scene["image_id"], obj)
    # a size variant changes the drawn area of one object by a factor of two or more
    bases = {s["family"]: s for s in scenes if s["variant"] == "base"}
    n_checked = 0
    for s in scenes:
        if s["variant"] == "size" and s["family"] in bases:
            base = bases[s["family"]]
            (cell,) = [tuple(o["cell"]) for o in s["objects"] if o not in base["objects"]]
            areas = sorted([_ink(images[s["image_id"]], s, cell), _ink(images[base["image_id"]], base, cell)])
            assert areas[1] >= 2 * areas[0], (s["image_id"], areas)
            n_checked += 1
    assert n_checked >= 10


def test_corrupt_option_replaces_the_recorded_images(tmp_path):
    stats = make_dataset(tmp_path, {"train": 50, "valid": 10}, "tsv", seed=0, corrupt=5)
    train = {s.split: s for s in stats}["train"]
    assert sorted(Counter(train.corrupt.values()).items()) == [
        ("bad_base64", 1),
        ("empty", 1),
        ("garbage", 1),
        ("missing", 1),
        ("truncated", 1),
    ]
    scenes = {s["image_id"]: s for s in read_jsonl(tmp_path / "train_scenes.jsonl")}
    assert {i: s["corrupt"] for i, s in scenes.items() if "corrupt" in s} == train.corrupt
    lines = dict(line.split("\t") for line in (tmp_path / "train_imgs.tsv").read_text().splitlines())
    for image_id, kind in train.corrupt.items():
        if kind == "missing":
            assert str(image_id) not in lines
            assert any(image_id in t["image_ids"] for t in read_jsonl(tmp_path / "train_texts.jsonl"))
            continue
        field = lines[str(image_id)]
        if kind == "bad_base64":
            with pytest.raises(ValueError):
                base64.b64decode(field, validate=True)
        else:
            data = base64.b64decode(field)
            assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None if data else data == b""
    good = [v for k, v in lines.items() if int(k) not in train.corrupt]
    assert len(good) == 45
    assert all(cv2.imdecode(np.frombuffer(base64.b64decode(v), np.uint8), 1).shape == (64, 64, 3) for v in good)
    assert "corrupt" not in (tmp_path / "valid_scenes.jsonl").read_text()


def test_image_size_is_configurable(tmp_path):
    make_dataset(tmp_path, {"valid": 5}, "tsv", seed=0, image_size=96)
    assert {img.shape for img in read_tsv_images(tmp_path / "valid_imgs.tsv").values()} == {(96, 96, 3)}
    with pytest.raises(ValueError, match="image_size 8"):
        make_dataset(tmp_path, {"valid": 5}, "tsv", seed=0, image_size=8)
