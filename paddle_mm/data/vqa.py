"""Built-in Chinese VQA data on the synthetic shapes world (no downloads), and its reader.

Every image carries exactly one question of one of five types (equal shares):

- ``count``: 「图中有几个蓝色的三角形？」 -> 0, 1, 2 or 3;
- ``colour``: 「左上角的图形是什么颜色？」 -> one of 8 colours;
- ``shape``: 「中间的图形是什么形状？」 or 「红色的图形是什么形状？」 (half each; the only red one) -> 6 shapes;
- ``position``: 「红色的圆形在哪里？」 -> one of 9 cells (the only such object in the image);
- ``exist``: 「图中有绿色的菱形吗？」 -> 是 / 否.

Why a text-only model cannot do well: a question is made by drawing its type, then its answer uniformly from
the type's answers, then the words of the question (colour, shape, cell, phrasing) independently of the answer;
only then is the scene built to make that answer true. The question therefore carries no information about the
answer beyond its type, and the best a text-only model can do is the per-type prior (about 23 % overall).

Why colour alone is not enough: a count or existence scene holds 3-4 (count) or 2-3 (existence) objects of the
asked colour whatever the answer, the rest of them in other shapes, so how many objects of that colour the image
shows says nothing about the answer (a colour-only answerer is at chance); 87.5 % of these scenes hold a
same-colour object of another shape, every 否 existence scene does. Position questions and shape questions at a
named cell come with 1-2 objects of the same colour in other shapes 80 % of the time. (The first version left the
asked colour's other objects to chance: only 15 % of 否 existence and 18 % of count questions had one, and every
fusion learned to answer them from colour alone; docs/fusion.md.)

Files under ``out`` (``{split}`` in train / valid / test; ``valid`` as the caption generator names it):

- ``{split}_imgs.tsv``: ``image_id<TAB>base64(PNG)``, as the caption data;
- ``{split}_questions.jsonl``: ``{"question_id", "image_id", "question", "question_type", "answer", "answers"}``
  where ``answers`` is the VQA-style list of 10 annotator answers (all equal here: the world is exact);
- ``{split}_scenes.jsonl``: the objects of each image (the training split's are the targets of CellLoss and
  AttendLoss: :func:`read_cell_labels`, :func:`referenced_cells`; the others serve debugging and analysis);
- ``answers.json``: the answer vocabulary in class-index order; ``vqa_info.json``: how the data was made.

Scenes come from the caption world (``synthetic.py``) with three changes aimed at shape and position questions:
every object is large (``VQA_SIZE``) and centred in its cell (no jitter), and each cell of the 3x3 board is lit
with its own faint colour cast (``render_vqa_scene``) so that a patch shows where it is. Colour, tint and
background still vary. A small shape drawn off-centre at 48 px is hard to tell from its neighbours even for a
template matcher; a large centred one is read off the pixels exactly (``tests/fusion/test_vqa_data.py``).
docs/fusion.md gives the measurements behind each change.

Images are 48 px by default: a ViT with 16-px patches then sees exactly one cell of the 3x3 grid per patch, which
lets the tiny towers of ``configs/fusion/`` learn the task in minutes on a CPU.

Same seed, same bytes; each split draws from its own generator, so changing one split's size leaves the others.
The validation split was called ``val`` until it was renamed ``valid``: its bytes are unchanged (same generator
key, same ids), ``val`` is still accepted wherever a split is named, and data written as ``val_*`` is still read.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..demo.shapes import (
    CELLS,
    COLOURS,
    POSITIONS,
    SHAPES,
    Obj,
    Scene,
    Style,
    encode_png,
    random_objects,
    random_style,
    render_scene,
)
from .writers import atomic_open, write_imgs_tsv

QUESTION_TYPES: tuple[str, ...] = ("count", "colour", "shape", "position", "exist")
COUNT_ANSWERS: tuple[str, ...] = ("0", "1", "2", "3")
YES, NO = "是", "否"
ANSWERS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "count": COUNT_ANSWERS,
    "colour": tuple(zh for zh, _ in COLOURS.values()),
    "shape": tuple(SHAPES.values()),
    "position": tuple(POSITIONS[c][0] for c in CELLS),
    "exist": (YES, NO),
}
# Class index order of the answer head: fixed, so a model trained on one generated copy reads another.
ANSWERS: tuple[str, ...] = tuple(a for t in QUESTION_TYPES for a in ANSWERS_BY_TYPE[t])
N_ANNOTATORS = 10  # VQA v2 keeps 10 human answers per question; soft accuracy is computed over them
VQA_SPLITS: tuple[str, ...] = ("train", "valid", "test")
VQA_DEFAULT_SIZES: dict[str, int] = {"train": 30000, "valid": 500, "test": 1000}
VQA_ID_BASE: dict[str, int] = {"train": 10_000_000, "valid": 20_000_000, "test": 30_000_000}
OLD_SPLIT_NAMES: dict[str, str] = {"val": "valid"}  # old name -> name; the data of a split is unchanged
_GENERATOR_KEY: dict[str, str] = {"valid": "val"}  # seeds the split's generator as before the rename
MAX_VQA_OBJECTS = 6
VQA_SIZE = "large"  # every VQA object is drawn large and centred in its cell: see the module docstring
BOARD_STEP = 20  # colour cast per grid step: red grows left to right, blue top to bottom (see render_vqa_scene)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "count": ("图中有几个{cs}？", "{cs}有几个？", "图片里一共有多少个{cs}？"),
    "colour": ("{pos}的图形是什么颜色？", "位于{pos}的图形是什么颜色的？"),
    "shape": ("{pos}的图形是什么形状？", "位于{pos}的是什么图形？"),
    "position": ("{cs}在哪里？", "{cs}位于图片的什么位置？"),
    "exist": ("图中有{cs}吗？", "图片里有没有{cs}？"),
}
# Shape questions that name the object by its colour (the only object of that colour in the image) instead of
# its cell: half of them, so that shape is also asked through the feature the model reads best.
_SHAPE_BY_COLOUR_TEMPLATES: tuple[str, ...] = ("{c}的图形是什么形状？", "图中{c}的是什么图形？")

# How many objects of the asked colour a count / existence scene holds, drawn independently of the answer: the
# number of objects of that colour then says nothing about the answer, so a model that sees colours but not
# shapes stays at chance (25 % on count, 50 % on existence), and most of these scenes hold a same-colour object
# of another shape (87.5 % of each type, 100 % of the 否 existence questions).
SAME_COLOUR_COUNT: dict[str, tuple[int, ...]] = {"count": (3, 4), "exist": (2, 3)}
DISTRACTOR_SHARE = 0.8  # position / shape questions: share with 1-2 same-colour objects of other shapes

# What each cell of the 3x3 board holds, as the per-cell auxiliary loss (paddle_mm.losses.CellLoss) names it:
# nothing, or one colour-and-shape pair. Index order is fixed (like ANSWERS), so a model's cell head reads any copy.
CELL_EMPTY = "empty"
CELL_CLASSES: tuple[str, ...] = (CELL_EMPTY, *(f"{c} {s}" for c in COLOURS for s in SHAPES))
CELL_GRID = 3  # cells per side; labels are row-major, as a ViT orders its patch tokens


@dataclass(frozen=True)
class Question:
    question_id: int
    image_id: int
    question: str
    question_type: str
    answer: str
    params: dict  # what the question mentions: colour / shape names (English keys) and cell [row, col]

    def to_json(self) -> dict:
        """One ``{split}_questions.jsonl`` record."""
        return {
            "question_id": self.question_id,
            "image_id": self.image_id,
            "question": self.question,
            "question_type": self.question_type,
            "answer": self.answer,
            "answers": [self.answer] * N_ANNOTATORS,
            "params": self.params,
        }


# ----------------------------------------------------------------------------- generation


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _colour_shape(colour: str, shape: str) -> str:
    return f"{COLOURS[colour][0]}的{SHAPES[shape]}"


def _free_cells(objects: list[Obj], rng: np.random.Generator) -> list[tuple[int, int]]:
    used = {o.cell for o in objects}
    free = [c for c in CELLS if c not in used]
    return [free[int(i)] for i in rng.permutation(len(free))]


def _other_shapes(shape: str, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` shapes other than ``shape`` (repeats allowed)."""
    others = [s for s in SHAPES if s != shape]
    return [_pick(rng, others) for _ in range(n)]


def _other_colour(colours: set[str], rng: np.random.Generator) -> str:
    return _pick(rng, [c for c in COLOURS if c not in colours])


def _place(
    keep: list[Obj], new: list[tuple[str, str]], rng: np.random.Generator, fixed: tuple[Obj, ...] = ()
) -> list[Obj]:
    """``keep`` (minus random objects to make room) plus one object per (colour, shape) of ``new`` on free cells;
    ``fixed`` objects are placed first, on their own cells, and never removed."""
    fixed_cells = {o.cell for o in fixed}
    keep = [o for o in keep if o.cell not in fixed_cells]
    while keep and len(keep) + len(fixed) + len(new) > MAX_VQA_OBJECTS:
        keep.pop(int(rng.integers(len(keep))))
    placed = keep + list(fixed)
    cells = _free_cells(placed, rng)
    return placed + [Obj(cells[k], colour, shape, VQA_SIZE) for k, (colour, shape) in enumerate(new)]


def _group_scene(
    objects: list[Obj], colour: str, shape: str, n_target: int, n_colour: int, rng: np.random.Generator
) -> list[Obj]:
    """``n_target`` (colour, shape) objects and ``n_colour - n_target`` same-colour objects of other shapes; the
    scene's objects of other colours stay where there is room."""
    rest = [o for o in objects if o.colour != colour]
    new = [(colour, shape)] * n_target + [(colour, s) for s in _other_shapes(shape, n_colour - n_target, rng)]
    return _place(rest, new, rng)


def _distractors(colour: str, shape: str, rng: np.random.Generator) -> list[tuple[str, str]]:
    """With probability DISTRACTOR_SHARE, 1-2 objects of ``colour`` in other shapes; else none."""
    if rng.random() >= DISTRACTOR_SHARE:
        return []
    return [(colour, s) for s in _other_shapes(shape, int(rng.integers(1, 3)), rng)]


def vqa_scene_objects(rng: np.random.Generator) -> list[Obj]:
    """A random start scene of the caption world, every object drawn large (see VQA_SIZE)."""
    return [Obj(o.cell, o.colour, o.shape, VQA_SIZE) for o in random_objects(rng)]


def render_vqa_scene(scene: Scene, image_size: int) -> np.ndarray:
    """The scene as a BGR uint8 image, each grid cell lit with its own faint colour cast: red + BOARD_STEP * (col - 1),
    blue + BOARD_STEP * (row - 1). The cast writes each cell's coordinates into its pixels (CoordConv's idea, Liu et
    al. 2018, done in the data), so a model can tell where a patch is from what it shows."""
    img = render_scene(scene, image_size).astype(np.int16)
    edges = np.rint(np.arange(4) * image_size / 3).astype(int)
    for row, col in CELLS:
        cast = np.array([BOARD_STEP * (row - 1), 0, BOARD_STEP * (col - 1)], dtype=np.int16)  # B, G, R
        img[edges[row] : edges[row + 1], edges[col] : edges[col + 1]] += cast
    return np.clip(img, 0, 255).astype(np.uint8)


def vqa_style(rng: np.random.Generator) -> Style:
    """The caption world's random background, texture and tints, with every object centred in its cell."""
    return replace(random_style(rng), offsets=((0, 0),) * len(CELLS))


def make_question(objects: list[Obj], qtype: str, rng: np.random.Generator) -> tuple[str, str, dict, list[Obj]]:
    """Draw a ``qtype`` question and its answer independently of each other, then edit ``objects`` so the answer
    is true. Returns (question text, answer, what the question mentions, edited objects)."""
    if qtype not in ANSWERS_BY_TYPE:
        raise ValueError(f"unknown question type {qtype!r}; expected one of {QUESTION_TYPES}")
    answer = _pick(rng, ANSWERS_BY_TYPE[qtype])
    colour, shape, cell = _pick(rng, tuple(COLOURS)), _pick(rng, tuple(SHAPES)), _pick(rng, CELLS)
    by_colour = qtype == "shape" and rng.random() < 0.5
    template = _pick(rng, _SHAPE_BY_COLOUR_TEMPLATES if by_colour else _TEMPLATES[qtype])
    if qtype in ("count", "exist"):
        n_colour = _pick(rng, SAME_COLOUR_COUNT[qtype])
        if qtype == "count":
            n_target = int(answer)
        else:
            n_target = int(rng.integers(1, min(2, n_colour) + 1)) if answer == YES else 0
        objects = _group_scene(objects, colour, shape, n_target, n_colour, rng)
    elif qtype == "position":
        cell = CELLS[ANSWERS_BY_TYPE["position"].index(answer)]
        rest = [o for o in objects if (o.colour, o.shape) != (colour, shape)]
        objects = _place(rest, _distractors(colour, shape, rng), rng, fixed=(Obj(cell, colour, shape, VQA_SIZE),))
    elif qtype == "colour":
        colour = next(c for c, (zh, _) in COLOURS.items() if zh == answer)
        objects = _place(objects, [], rng, fixed=(Obj(cell, colour, _pick(rng, tuple(SHAPES)), VQA_SIZE),))
    elif by_colour:  # the only object of its colour; 1-2 others of other colours and shapes beside it
        shape = next(s for s, zh in SHAPES.items() if zh == answer)
        rest = [o for o in objects if o.colour != colour]
        new = []
        if rng.random() < DISTRACTOR_SHARE:
            new = [(_other_colour({colour}, rng), s) for s in _other_shapes(shape, int(rng.integers(1, 3)), rng)]
        objects = _place(rest, new, rng, fixed=(Obj(cell, colour, shape, VQA_SIZE),))
    else:  # shape at a named cell, usually beside same-colour objects of other shapes
        shape = next(s for s, zh in SHAPES.items() if zh == answer)
        objects = _place(objects, _distractors(colour, shape, rng), rng, fixed=(Obj(cell, colour, shape, VQA_SIZE),))
    assert objects, "every question type places at least one object"
    text = template.format(cs=_colour_shape(colour, shape), c=COLOURS[colour][0], pos=_pick(rng, POSITIONS[cell]))
    if qtype == "colour" or (qtype == "shape" and not by_colour):
        params = {"cell": list(cell)}
    elif by_colour:
        params = {"colour": colour}
    else:
        params = {"colour": colour, "shape": shape}
    return text, answer, params, sorted(objects)


def check_answer(objects: list[Obj], qtype: str, params: dict, answer: str) -> bool:
    """Whether ``answer`` is true of ``objects`` for a question with ``params`` (tests verify the generator)."""
    colour, shape = params.get("colour"), params.get("shape")
    cell = tuple(params["cell"]) if "cell" in params else None
    if qtype == "count":
        return sum((o.colour, o.shape) == (colour, shape) for o in objects) == int(answer)
    if qtype == "exist":
        return any((o.colour, o.shape) == (colour, shape) for o in objects) == (answer == YES)
    if qtype == "position":
        cells = [o.cell for o in objects if (o.colour, o.shape) == (colour, shape)]
        return len(cells) == 1 and POSITIONS[cells[0]][0] == answer
    at = [o for o in objects if (o.cell == cell if cell is not None else o.colour == colour)]
    if qtype == "colour":
        return len(at) == 1 and COLOURS[at[0].colour][0] == answer
    return len(at) == 1 and SHAPES[at[0].shape] == answer


def same_colour_distractor(objects: list[Obj], qtype: str, params: dict) -> bool:
    """Whether the scene holds an object of the asked colour in another shape than the one asked about (count,
    existence and position questions) or than the object at the asked cell (colour and shape questions at a cell).
    A shape question that names a colour names the only object of that colour: False."""
    if "cell" in params:
        target = next(o for o in objects if o.cell == tuple(params["cell"]))
        colour, shape = target.colour, target.shape
    elif qtype == "shape":
        return False
    else:
        colour, shape = params["colour"], params["shape"]
    return any(o.colour == colour and o.shape != shape for o in objects)


def generate_split(n: int, rng: np.random.Generator, first_id: int) -> list[tuple[Scene, Question]]:
    """``n`` (scene, question) pairs; question types cycle in a shuffled order so every type gets n / 5."""
    types = [QUESTION_TYPES[i % len(QUESTION_TYPES)] for i in range(n)]
    types = [types[int(i)] for i in rng.permutation(n)]
    out = []
    for k, qtype in enumerate(types):
        text, answer, params, objects = make_question(vqa_scene_objects(rng), qtype, rng)
        scene = Scene(first_id + k, k, "vqa", tuple(objects), vqa_style(rng))
        out.append((scene, Question(first_id + k, first_id + k, text, qtype, answer, params)))
    return out


@dataclass
class VQASplitStats:
    split: str
    n: int
    per_type: dict[str, int]
    answers: dict[str, int]


def make_vqa_split(
    out: str | Path, split: str, n: int, seed: int = 0, image_size: int = 48, progress: Callable[[int], None] = None
) -> VQASplitStats:
    """Generate and write one split; ``progress(k)`` is called as images are rendered."""
    split = OLD_SPLIT_NAMES.get(split, split)
    if split not in VQA_ID_BASE:
        raise ValueError(f"unknown VQA split {split!r}; expected one of {VQA_SPLITS}")
    if image_size < 24:
        raise ValueError(f"image_size {image_size} is too small to draw 3x3 cells of shapes; use 24 or more")
    key = _GENERATOR_KEY.get(split, split)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8")), 7])
    pairs = generate_split(n, rng, VQA_ID_BASE[split])
    out = Path(out)
    images = []
    for k, (scene, _) in enumerate(pairs):
        images.append((scene.image_id, encode_png(render_vqa_scene(scene, image_size))))
        if progress is not None and (k % 100 == 99 or k == n - 1):
            progress(k % 100 + 1)
    write_imgs_tsv(out / f"{split}_imgs.tsv", images)
    with atomic_open(out / f"{split}_questions.jsonl") as f:
        for _, q in pairs:
            f.write(json.dumps(q.to_json(), ensure_ascii=False) + "\n")
    with atomic_open(out / f"{split}_scenes.jsonl") as f:
        for scene, _ in pairs:
            f.write(json.dumps({"image_id": scene.image_id, "objects": scene.to_json()["objects"]}) + "\n")
    return VQASplitStats(
        split,
        n,
        dict(Counter(q.question_type for _, q in pairs)),
        dict(sorted(Counter(q.answer for _, q in pairs).items())),
    )


def make_vqa_dataset(
    out: str | Path,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    image_size: int = 48,
    progress: Callable[[int], None] | None = None,
) -> list[VQASplitStats]:
    """Generate every split in ``sizes`` (default VQA_DEFAULT_SIZES; 0 skips a split) under ``out``."""
    sizes = {OLD_SPLIT_NAMES.get(s, s): n for s, n in (VQA_DEFAULT_SIZES if sizes is None else sizes).items()}
    stats = [make_vqa_split(out, s, n, seed, image_size, progress) for s, n in sizes.items() if n > 0]
    out = Path(out)
    with atomic_open(out / "answers.json") as f:
        f.write(json.dumps(list(ANSWERS), ensure_ascii=False, indent=1) + "\n")
    info = {"generator": "paddle_mm.data.vqa", "seed": seed, "image_size": image_size, "sizes": sizes}
    with atomic_open(out / "vqa_info.json") as f:
        f.write(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return stats


# ----------------------------------------------------------------------------- reading


@dataclass
class VQASplit:
    """One split in memory: decoded RGB images and the question records.

    ``images`` is uint8 [N_images, S, S, 3]; ``image_index[q]`` is the row of question q's image.
    """

    images: np.ndarray
    image_index: np.ndarray
    questions: list[dict]
    answers: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.questions)

    def answer_scores(self) -> np.ndarray:
        """[N, n_answers] VQA soft scores: min(1, annotators who gave the answer / 3) per class."""
        scores = np.zeros((len(self.questions), len(self.answers)), dtype=np.float32)
        col = {a: i for i, a in enumerate(self.answers)}
        for q, rec in enumerate(self.questions):
            for a, k in Counter(rec["answers"]).items():
                if a in col:
                    scores[q, col[a]] = min(1.0, k / 3)
        return scores


def read_answers(root: str | Path) -> tuple[str, ...]:
    path = Path(root) / "answers.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; generate the data with tools/make_vqa_data.py --out {root}")
    return tuple(json.loads(path.read_text(encoding="utf-8")))


def load_vqa_split(root: str | Path, split: str, image_size: int | None = None) -> VQASplit:
    """Read ``{split}_imgs.tsv`` + ``{split}_questions.jsonl`` under ``root``; images are resized (bicubic) to
    ``image_size`` when given and different."""
    root = Path(root)
    imgs, qs = _split_files(root, split)
    for path in (imgs, qs):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; generate the data with tools/make_vqa_data.py --out {root} (splits: {VQA_SPLITS})"
            )
    ids, arrays = [], []
    with open(imgs, encoding="utf-8-sig") as f:  # -sig: a BOM is not part of the first id
        for line in f:
            image_id, b64 = line.rstrip("\n").split("\t", 1)
            bgr = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{imgs}: image {image_id} cannot be decoded; regenerate the data")
            if image_size is not None and bgr.shape[0] != image_size:
                bgr = cv2.resize(bgr, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
            ids.append(int(image_id))
            arrays.append(bgr[:, :, ::-1])
    row = {image_id: k for k, image_id in enumerate(ids)}
    questions = [json.loads(line) for line in qs.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    missing = [q["image_id"] for q in questions if q["image_id"] not in row]
    if missing:
        raise KeyError(f"{qs}: questions refer to images missing from {imgs}: {missing[:5]}")
    index = np.array([row[q["image_id"]] for q in questions], dtype=np.int64)
    return VQASplit(np.stack(arrays), index, questions, read_answers(root))


def read_cell_labels(root: str | Path, split: str, image_ids: list[int]) -> np.ndarray:
    """[len(image_ids), CELL_GRID**2] int64 indices into :data:`CELL_CLASSES`: what each cell of each image holds,
    row-major, from the generator's ``{split}_scenes.jsonl``. Only training reads these (CellLoss's targets);
    evaluation never does, so a held-out split's scenes cannot reach a model."""
    path = _scenes_file(Path(root), split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: Loss.Train CellLoss reads the scene records that tools/make_vqa_data.py writes; "
            f"regenerate the data (tools/make_vqa_data.py --out {root}) or remove CellLoss"
        )
    col = {name: i for i, name in enumerate(CELL_CLASSES)}
    by_image: dict[int, np.ndarray] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        cells = np.zeros(CELL_GRID * CELL_GRID, dtype=np.int64)  # 0: CELL_EMPTY
        for obj in rec["objects"]:
            row, c = obj["cell"]
            cells[row * CELL_GRID + c] = col[f"{obj['colour']} {obj['shape']}"]
        by_image[int(rec["image_id"])] = cells
    missing = sorted({i for i in image_ids if i not in by_image})
    if missing:
        raise KeyError(
            f"{path}: no scene record for images {missing[:5]}; regenerate the data with tools/make_vqa_data.py"
        )
    return np.stack([by_image[i] for i in image_ids]) if image_ids else np.zeros((0, CELL_GRID**2), np.int64)


def referenced_cells(questions: list[dict], cell_labels: np.ndarray) -> np.ndarray:
    """[N, CELL_GRID**2] float32: 1 on the cells each question refers to, from its ``params`` and its image's
    ``cell_labels`` (:func:`read_cell_labels`): the cell it names; else the objects of its colour (and shape, when
    it names one). A question about nothing present (existence 否, count 0) refers to no cell. AttendLoss's
    targets, so training only."""
    out = np.zeros(cell_labels.shape, np.float32)
    colours, shapes = zip(*(name.split(" ") for name in CELL_CLASSES[1:]))
    colour_of = np.array(("", *colours))  # per CELL_CLASSES index; "" for CELL_EMPTY
    shape_of = np.array(("", *shapes))
    for i, q in enumerate(questions):
        p = q["params"]
        if "cell" in p:
            row, col = p["cell"]
            out[i, row * CELL_GRID + col] = 1.0
            continue
        hit = colour_of[cell_labels[i]] == p["colour"]
        if "shape" in p:
            hit &= shape_of[cell_labels[i]] == p["shape"]
        out[i, hit] = 1.0
    return out


def _scenes_file(root: Path, split: str) -> Path:
    """``{split}_scenes.jsonl`` beside the split's images (``valid`` / ``val`` as :func:`_split_files`)."""
    imgs, _ = _split_files(root, split)
    return imgs.with_name(imgs.name.replace("_imgs.tsv", "_scenes.jsonl"))


def _split_files(root: Path, split: str) -> tuple[Path, Path]:
    """``{split}_imgs.tsv`` and ``{split}_questions.jsonl``; ``valid`` and its old name ``val`` each find the other's
    files when only those exist (data generated before the rename, or a config written before it)."""
    old_names = [old for old, new in OLD_SPLIT_NAMES.items() if new == split]
    names = [split, *old_names, *([OLD_SPLIT_NAMES[split]] if split in OLD_SPLIT_NAMES else [])]
    for name in names:
        files = root / f"{name}_imgs.tsv", root / f"{name}_questions.jsonl"
        if all(p.is_file() for p in files):
            return files
    return root / f"{split}_imgs.tsv", root / f"{split}_questions.jsonl"
