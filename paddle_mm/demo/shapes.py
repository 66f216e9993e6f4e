"""A deterministic synthetic Chinese image-caption dataset: shapes on a 3x3 grid, with near-duplicate distractors.

The world: up to five objects on a 3x3 grid (one object per cell). Each object has a shape (圆形, 正方形, 三角形,
菱形, 五角星, 十字形), a colour (红色, 绿色, 蓝色, 黄色, 紫色, 橙色, 黑色, 白色) and a size (大/小). The background is
a neutral grey tone, plain or lightly textured (noise or gradient), and is never described.

Images come in families: a random base scene plus 1-4 variants that each differ from the base in exactly one
attribute (the colour, shape, size or cell of one object, or the count of one colour+shape group), with the same
background, jitter and tint. Retrieval therefore has to read every attribute.

Captions are conjunctions of 1-3 clauses of a small language whose truth is computed from the scene:

- position: 「左上角有一个红色的圆形」, 「一个大的绿色正方形位于图片右下角」 (the cell holds such an object);
- count: 「图中有两个蓝色的三角形」, 「红色的圆形只有一个」 (exactly that many, optionally of one size);
- total: 「图中一共有三个图形」 (exactly that many objects).

Each caption lists every image of its split it is true for (``image_ids``), and clauses are added greedily until
the caption singles out its image or can narrow the set no further, so a caption is always true for all of its
images and identifies its image as far as the language allows.

Same seed, same numpy and OpenCV: same bytes. Scene, caption and corruption choices use separate numpy
Generator streams per split, so changing ``--train`` does not change the valid or test split.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data.writers import atomic_open, encode_image_field, write_image_file, write_imgs_tsv, write_texts_jsonl

# ----------------------------------------------------------------------------- the world

SHAPES: dict[str, str] = {
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "diamond": "菱形",
    "star": "五角星",
    "cross": "十字形",
}
# name -> (Chinese, RGB)
COLOURS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "red": ("红色", (220, 40, 40)),
    "green": ("绿色", (40, 170, 60)),
    "blue": ("蓝色", (40, 80, 225)),
    "yellow": ("黄色", (245, 215, 30)),
    "purple": ("紫色", (145, 60, 190)),
    "orange": ("橙色", (250, 135, 25)),
    "black": ("黑色", (25, 25, 25)),
    "white": ("白色", (245, 245, 245)),
}
SIZES: dict[str, str] = {"large": "大", "small": "小"}
# (row, col) -> Chinese names, the first is the most common
POSITIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("左上角", "左上方"),
    (0, 1): ("正上方", "上方"),
    (0, 2): ("右上角", "右上方"),
    (1, 0): ("左侧", "左边"),
    (1, 1): ("中间", "中央", "正中间"),
    (1, 2): ("右侧", "右边"),
    (2, 0): ("左下角", "左下方"),
    (2, 1): ("正下方", "下方"),
    (2, 2): ("右下角", "右下方"),
}
NUMBERS: dict[int, str] = {1: "一", 2: "两", 3: "三", 4: "四", 5: "五"}
CELLS: tuple[tuple[int, int], ...] = tuple(sorted(POSITIONS))
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((128, 128, 128), (140, 132, 118), (116, 124, 140), (104, 104, 104))
TEXTURES = ("plain", "noise", "gradient")
VARIANT_KINDS = ("colour", "shape", "size", "position", "count")
MAX_OBJECTS = 5
MAX_CLAUSES = 3
MAX_CAPTION_CHARS = 50  # cn_clip context 52 = [CLS] + 50 characters + [SEP]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_SIZES: dict[str, int] = {"train": 6000, "valid": 500, "test": 500}
ID_BASE: dict[str, int] = {"train": 1_000_000, "valid": 2_000_000, "test": 3_000_000}
CORRUPT_KINDS = {
    "tsv": ("truncated", "garbage", "bad_base64", "empty", "missing"),
    "folder": ("truncated", "garbage", "empty", "missing"),
}


@dataclass(frozen=True, order=True)
class Obj:
    """One object; a scene holds at most one object per cell."""

    cell: tuple[int, int]  # (row, col)
    colour: str
    shape: str
    size: str


@dataclass(frozen=True)
class Style:
    """Rendering details shared by a family and never described by captions."""

    background: tuple[int, int, int]  # RGB
    texture: str
    texture_seed: int
    offsets: tuple[tuple[int, int], ...]  # per cell, (dx, dy) in percent of a cell
    tints: tuple[tuple[int, int, int], ...]  # per cell, added to the object colour


@dataclass(frozen=True)
class Scene:
    image_id: int
    family: int
    variant: str  # "base" or one of VARIANT_KINDS
    objects: tuple[Obj, ...]  # sorted by cell
    style: Style

    def to_json(self) -> dict:
        """The record written to ``{split}_scenes.jsonl``."""
        return {
            "image_id": self.image_id,
            "family": self.family,
            "variant": self.variant,
            "objects": [
                {"cell": list(o.cell), "colour": o.colour, "shape": o.shape, "size": o.size} for o in self.objects
            ],
            "style": {
                "background": list(self.style.background),
                "texture": self.style.texture,
                "texture_seed": self.style.texture_seed,
                "offsets": [list(v) for v in self.style.offsets],
                "tints": [list(v) for v in self.style.tints],
            },
        }


# ----------------------------------------------------------------------------- scenes


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def random_objects(rng: np.random.Generator) -> tuple[Obj, ...]:
    """1-3 colour+shape groups of 1-3 objects each, at most MAX_OBJECTS, on distinct cells."""
    n_groups = _pick(rng, (1, 1, 1, 2, 2, 2, 2, 3, 3, 3))
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    groups = [kinds[int(i)] for i in rng.permutation(len(kinds))[:n_groups]]
    counts = [_pick(rng, (1, 1, 1, 1, 2, 2, 3)) for _ in groups]
    while sum(counts) > MAX_OBJECTS:
        counts[counts.index(max(counts))] -= 1
    cells = [CELLS[int(i)] for i in rng.permutation(len(CELLS))[: sum(counts)]]
    objects = []
    for (colour, shape), count in zip(groups, counts):
        for _ in range(count):
            objects.append(Obj(cells.pop(), colour, shape, _pick(rng, tuple(SIZES))))
    return tuple(sorted(objects))


def random_style(rng: np.random.Generator) -> Style:
    return Style(
        background=_pick(rng, BACKGROUNDS),
        texture=_pick(rng, TEXTURES),
        texture_seed=int(rng.integers(2**31)),
        offsets=tuple(tuple(int(v) for v in row) for row in rng.integers(-7, 8, size=(9, 2))),
        tints=tuple(tuple(int(v) for v in row) for row in rng.integers(-12, 13, size=(9, 3))),
    )


def _replace(objects: tuple[Obj, ...], i: int, new: Obj | None) -> tuple[Obj, ...]:
    rest = objects[:i] + objects[i + 1 :]
    return tuple(sorted(rest + ((new,) if new else ())))


def edit_scene(objects: tuple[Obj, ...], kind: str, rng: np.random.Generator) -> tuple[Obj, ...] | None:
    """``objects`` changed in exactly one attribute of kind ``kind``; None when the edit does not apply."""
    i = int(rng.integers(len(objects)))
    obj = objects[i]
    free = [c for c in CELLS if c not in {o.cell for o in objects}]
    if kind == "colour":
        return _replace(
            objects, i, Obj(obj.cell, _pick(rng, [c for c in COLOURS if c != obj.colour]), obj.shape, obj.size)
        )
    if kind == "shape":
        return _replace(
            objects, i, Obj(obj.cell, obj.colour, _pick(rng, [s for s in SHAPES if s != obj.shape]), obj.size)
        )
    if kind == "size":
        return _replace(objects, i, Obj(obj.cell, obj.colour, obj.shape, "small" if obj.size == "large" else "large"))
    if kind == "position":
        return _replace(objects, i, Obj(_pick(rng, free), obj.colour, obj.shape, obj.size)) if free else None
    if kind == "count":
        return _edit_count(objects, free, rng)
    raise ValueError(f"unknown edit kind {kind!r}; expected one of {VARIANT_KINDS}")


def _edit_count(objects: tuple[Obj, ...], free: list, rng: np.random.Generator) -> tuple[Obj, ...] | None:
    """Add a copy of an object on a free cell, or remove one object of a group that has two or more."""
    group_size = Counter((o.colour, o.shape) for o in objects)
    removable = [i for i, o in enumerate(objects) if group_size[(o.colour, o.shape)] >= 2]
    add = bool(free) and len(objects) < MAX_OBJECTS and (not removable or rng.integers(2) == 0)
    if add:
        src = objects[int(rng.integers(len(objects)))]
        return tuple(sorted(objects + (Obj(_pick(rng, free), src.colour, src.shape, src.size),)))
    if removable:
        return _replace(objects, removable[int(rng.integers(len(removable)))], None)
    return None


def generate_scenes(n_images: int, rng: np.random.Generator, first_id: int = 0) -> list[Scene]:
    """``n_images`` scenes in families of a base plus 1-4 one-attribute variants (the last family may be cut).

    No two scenes of a split have the same objects, so every image can be told apart by some caption.
    """
    scenes: list[Scene] = []
    used: set[tuple[Obj, ...]] = set()
    family = 0
    while len(scenes) < n_images:
        base, style = random_objects(rng), random_style(rng)
        if base in used:
            continue
        members = [(base, "base")]
        used.add(base)
        n_variants = int(rng.integers(1, 5))
        for kind in [VARIANT_KINDS[int(k)] for k in rng.permutation(len(VARIANT_KINDS))]:
            if len(members) > n_variants:
                break
            variant = edit_scene(base, kind, rng)
            if variant is not None and variant not in used:
                members.append((variant, kind))
                used.add(variant)
        for objects, kind in members[: n_images - len(scenes)]:
            scenes.append(Scene(first_id + len(scenes), family, kind, objects, style))
        family += 1
    return scenes


# ----------------------------------------------------------------------------- rendering


def _polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices (x, y) of a filled polygon of roughly radius ``r`` centred on (cx, cy)."""
    if shape == "square":
        h = 0.85 * r
        pts = [(-h, -h), (h, -h), (h, h), (-h, h)]
    elif shape == "triangle":  # pointing up, centroid at the centre
        pts = [(0.0, -1.15 * r), (1.0 * r, 0.58 * r), (-1.0 * r, 0.58 * r)]
    elif shape == "diamond":  # taller than wide, so it never looks like a square
        pts = [(0.0, -1.1 * r), (0.72 * r, 0.0), (0.0, 1.1 * r), (-0.72 * r, 0.0)]
    elif shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.12 * r, 0.46 * r)
        pts = list(zip(radii * np.cos(angles), radii * np.sin(angles)))
    elif shape == "cross":
        a, t = 1.0 * r, 0.36 * r
        pts = [
            (-t, -a),
            (t, -a),
            (t, -t),
            (a, -t),
            (a, t),
            (t, t),
            (t, a),
            (-t, a),
            (-t, t),
            (-a, t),
            (-a, -t),
            (-t, -t),
        ]
    else:
        raise ValueError(f"no polygon for shape {shape!r}; shapes: {sorted(SHAPES)}")
    return np.array([(cx + x, cy + y) for x, y in pts], dtype=np.float64)


def _background(style: Style, size: int) -> np.ndarray:
    """RGB float image of the background."""
    img = np.empty((size, size, 3), dtype=np.float64)
    img[:] = style.background
    if style.texture == "noise":
        noise = np.random.default_rng(style.texture_seed).integers(-10, 11, size=(size, size, 1))
        img += noise
    elif style.texture == "gradient":
        ramp = np.linspace(-14.0, 14.0, size)
        direction = style.texture_seed % 4
        ramp = ramp if direction < 2 else ramp[::-1]
        img += ramp[:, None, None] if direction % 2 == 0 else ramp[None, :, None]
    return img


def render_scene(scene: Scene, image_size: int = 64) -> np.ndarray:
    """The scene as an (H, W, 3) uint8 BGR image (OpenCV's channel order)."""
    img = np.clip(np.rint(_background(scene.style, image_size)), 0, 255).astype(np.uint8)
    cell = image_size / 3.0
    for obj in scene.objects:
        k = CELLS.index(obj.cell)
        dx, dy = scene.style.offsets[k]
        cx = (obj.cell[1] + 0.5 + dx / 100.0) * cell
        cy = (obj.cell[0] + 0.5 + dy / 100.0) * cell
        r = (0.36 if obj.size == "large" else 0.2) * cell
        rgb = np.clip(np.array(COLOURS[obj.colour][1]) + scene.style.tints[k], 0, 255)
        bgr = tuple(int(v) for v in rgb[::-1])
        if obj.shape == "circle":
            centre = (int(np.rint(cx * 16)), int(np.rint(cy * 16)))
            cv2.circle(img, centre, int(np.rint(r * 16)), bgr, -1, cv2.LINE_AA, 4)
        else:
            pts = np.rint(_polygon(obj.shape, cx, cy, r) * 16).astype(np.int32)
            cv2.fillPoly(img, [pts], bgr, cv2.LINE_AA, 4)
    return img


def encode_png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} {img.dtype} image as PNG")
    return buf.tobytes()


# ----------------------------------------------------------------------------- the caption language

# A clause is a hashable tuple:
#   ("pos", row, col, colour, shape, size | None)   the cell holds such an object
#   ("count", colour, shape, size | None, n)         exactly n such objects
#   ("total", n)                                     exactly n objects
Clause = tuple


def scene_facts(objects: Iterable[Obj]) -> set[Clause]:
    """Every clause of the language that is true for a scene with ``objects``."""
    objects = list(objects)
    facts: set[Clause] = {("total", len(objects))}
    for o in objects:
        facts.add(("pos", *o.cell, o.colour, o.shape, o.size))
        facts.add(("pos", *o.cell, o.colour, o.shape, None))
    for (colour, shape), n in Counter((o.colour, o.shape) for o in objects).items():
        facts.add(("count", colour, shape, None, n))
    for (colour, shape, size), n in Counter((o.colour, o.shape, o.size) for o in objects).items():
        facts.add(("count", colour, shape, size, n))
    return facts


def _sort_key(clause: Clause) -> tuple:
    return tuple("" if v is None else str(v) for v in clause)


def _subject(clause: Clause) -> tuple:
    """Clauses with the same subject are alternatives: a caption keeps at most one of them."""
    return clause[:3] if clause[0] in ("pos", "count") else clause[:1]


class CaptionPlanner:
    """Chooses claims (tuples of clauses) for the scenes of one split, using an index clause -> image ids."""

    def __init__(self, scenes: Sequence[Scene]):
        self.facts = {s.image_id: scene_facts(s.objects) for s in scenes}
        self.index: dict[Clause, set[int]] = {}
        for image_id, facts in self.facts.items():
            for clause in facts:
                self.index.setdefault(clause, set()).add(image_id)

    def matches(self, claim: Sequence[Clause]) -> set[int]:
        """Images of the split for which every clause of ``claim`` is true."""
        sets = sorted((self.index.get(c, set()) for c in claim), key=len)
        return set.intersection(*sets) if sets else set()

    def claims_for(self, image_id: int, n: int, rng: np.random.Generator) -> list[tuple[Clause, ...]]:
        """Up to ``n`` different claims true for ``image_id``, each as specific as MAX_CLAUSES allows."""
        facts = sorted(self.facts[image_id], key=_sort_key)
        floor = len(self.matches(facts))  # images that no claim can tell apart from this one
        primaries = [c for c in facts if c[0] != "total"]
        claims: list[tuple[Clause, ...]] = []
        for k in rng.permutation(len(primaries)):
            claim = self._refine([primaries[int(k)]], facts, floor, rng)
            if claim not in claims:
                claims.append(claim)
            if len(claims) == n:
                break
        return claims

    def _refine(self, claim: list[Clause], facts: list[Clause], floor: int, rng) -> tuple[Clause, ...]:
        """Greedily add (or sharpen) clauses while that shrinks the set of matching images."""
        best = len(self.matches(claim))
        while best > floor:
            order = rng.permutation(len(facts))
            options = []
            for rank, k in enumerate(order):
                candidate = _with_clause(claim, facts[int(k)])
                if candidate is not None and len(candidate) <= MAX_CLAUSES:
                    n_match = len(self.matches(candidate))
                    options.append((n_match, len(candidate), _n_sized(candidate), rank, candidate))
            if not options or min(options)[0] >= best:
                break
            best, *_, claim = min(options)
        return tuple(claim)


def _with_clause(claim: list[Clause], clause: Clause) -> list[Clause] | None:
    """``claim`` plus ``clause``, replacing a clause with the same subject; None if nothing changes."""
    if clause in claim:
        return None
    same = [i for i, c in enumerate(claim) if _subject(c) == _subject(clause)]
    if same:
        return claim[: same[0]] + [clause] + claim[same[0] + 1 :]
    return claim + [clause]


def _n_sized(claim: Sequence[Clause]) -> int:
    return sum(1 for c in claim if c[0] in ("pos", "count") and c[-1 if c[0] == "pos" else -2] is not None)


# ----------------------------------------------------------------------------- Chinese text


def _noun_phrase(colour: str, shape: str, size: str | None, rng: np.random.Generator) -> str:
    c, s = COLOURS[colour][0], SHAPES[shape]
    if size is None:
        return f"{c}的{s}"
    z = SIZES[size]
    return _pick(rng, (f"{z}的{c}{s}", f"{c}的{z}{s}"))


POSITION_TEMPLATES = (
    "{p}有一个{np}",
    "{p}是一个{np}",
    "在{p}有一个{np}",
    "图片{p}有一个{np}",
    "一个{np}位于图片{p}",
    "{p}画着一个{np}",
)
FOLLOW_POSITION_TEMPLATES = ("{p}有一个{np}", "{p}是一个{np}", "在{p}有一个{np}")
COUNT_TEMPLATES = ("图中有{n}个{np}", "画面里有{n}个{np}", "这张图片中有{n}个{np}", "{np}一共有{n}个")
COUNT_ONE_TEMPLATES = ("图中只有一个{np}", "画面里只有一个{np}", "{np}只有一个")
TOTAL_TEMPLATES = ("图中一共有{n}个图形", "画面里共有{n}个图形", "图片里总共有{n}个图形")


def clause_text(clause: Clause, rng: np.random.Generator, follow: bool = False) -> str:
    """One clause in Chinese; ``follow`` selects the shorter phrasings used after the first clause."""
    if clause[0] == "pos":
        _, row, col, colour, shape, size = clause
        templates = FOLLOW_POSITION_TEMPLATES if follow else POSITION_TEMPLATES
        return _pick(rng, templates).format(
            p=_pick(rng, POSITIONS[(row, col)]), np=_noun_phrase(colour, shape, size, rng)
        )
    if clause[0] == "count":
        _, colour, shape, size, n = clause
        templates = COUNT_ONE_TEMPLATES if n == 1 else COUNT_TEMPLATES
        return _pick(rng, templates).format(n=NUMBERS[n], np=_noun_phrase(colour, shape, size, rng))
    if clause[0] == "total":
        n = clause[1]
        return "图中只有一个图形" if n == 1 else _pick(rng, TOTAL_TEMPLATES).format(n=NUMBERS[n])
    raise ValueError(f"unknown clause {clause!r}")


def claim_text(claim: Sequence[Clause], rng: np.random.Generator) -> str:
    """The clauses joined with "，"; phrasing is re-drawn (at most 20 times) if longer than MAX_CAPTION_CHARS."""
    for _ in range(20):
        text = "，".join(clause_text(c, rng, follow=i > 0) for i, c in enumerate(claim))
        if len(text) <= MAX_CAPTION_CHARS:
            return text
    raise AssertionError(f"no phrasing of {claim} fits in {MAX_CAPTION_CHARS} characters")


@dataclass
class TextEntry:
    text_id: int
    text: str
    image_ids: list[int]
    claim: tuple[Clause, ...] = field(repr=False)


def make_texts(scenes: Sequence[Scene], rng: np.random.Generator, first_text_id: int = 0) -> list[TextEntry]:
    """1-3 captions per image; a claim chosen for several images is written once, listing all its images."""
    planner = CaptionPlanner(scenes)
    texts: list[TextEntry] = []
    seen: set[frozenset] = set()
    for scene in scenes:
        n = int(rng.integers(1, 4))
        for claim in planner.claims_for(scene.image_id, n, rng):
            if frozenset(claim) in seen:
                continue
            seen.add(frozenset(claim))
            image_ids = sorted(planner.matches(claim))
            texts.append(TextEntry(first_text_id + len(texts), claim_text(claim, rng), image_ids, claim))
    return texts


# ----------------------------------------------------------------------------- corruption


def corrupt_payloads(
    images: dict[int, bytes], n: int, kinds: Sequence[str], rng: np.random.Generator
) -> dict[int, str]:
    """Replace ``n`` images (chosen by ``rng``) in place, cycling through ``kinds``; returns image_id -> kind.

    truncated: first half of the PNG; garbage: 200 random bytes; empty: zero bytes; bad_base64: a str
    payload that is not base64 (TSV only); missing: the image is dropped while captions still list it.
    """
    if n > len(images):
        raise ValueError(f"--corrupt {n} is more than the {len(images)} images of the split; pass at most that")
    ids = sorted(images)
    chosen = sorted(ids[int(i)] for i in rng.permutation(len(ids))[:n])
    done = {}
    for j, image_id in enumerate(chosen):
        kind = kinds[j % len(kinds)]
        data = images[image_id]
        if kind == "truncated":
            images[image_id] = data[: len(data) // 2]
        elif kind == "garbage":
            images[image_id] = rng.integers(0, 256, size=200, dtype=np.uint8).tobytes()
        elif kind == "empty":
            images[image_id] = b""
        elif kind == "bad_base64":
            images[image_id] = "@@not base64@@" + encode_image_field(data)[14:]
        elif kind == "missing":
            del images[image_id]
        else:
            raise ValueError(f"unknown corruption {kind!r}; expected one of {kinds}")
        done[image_id] = kind
    return done


# ----------------------------------------------------------------------------- writing a dataset


@dataclass
class SplitStats:
    """What :func:`make_split` wrote, for the CLI summary and the docs."""

    split: str
    n_images: int
    n_families: int
    variants: dict[str, int]
    n_texts: int
    n_pairs: int
    texts_single_image: int  # captions whose image_ids has exactly one image
    max_images_per_text: int
    corrupt: dict[int, str]


def _streams(seed: int, split: str) -> tuple[np.random.Generator, ...]:
    """Independent generators for scenes, captions and corruption of one split."""
    key = zlib.crc32(split.encode("utf-8"))
    return tuple(np.random.default_rng([seed, key, k]) for k in range(3))


def split_paths(out: Path, split: str, fmt: str) -> dict[str, Path]:
    """Where a split lives in each format (the same layout :func:`paddle_mm.data.datasets.load_corpus` reads)."""
    if fmt == "tsv":
        return {
            "imgs": out / f"{split}_imgs.tsv",
            "texts": out / f"{split}_texts.jsonl",
            "scenes": out / f"{split}_scenes.jsonl",
        }
    if fmt == "folder":
        return {
            "imgs": out / split / "images",
            "texts": out / split / "texts.jsonl",
            "scenes": out / split / "scenes.jsonl",
        }
    raise ValueError(f"unknown format {fmt!r}; use 'tsv' or 'folder'")


def make_split(
    out: str | Path,
    split: str,
    n_images: int,
    fmt: str = "tsv",
    seed: int = 0,
    image_size: int = 64,
    corrupt: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SplitStats:
    """Generate and write one split; ``progress(k)`` is called as images are rendered."""
    if split not in ID_BASE:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if image_size < 24:
        raise ValueError(f"image_size {image_size} is too small to draw 3x3 cells of shapes; use 24 or more")
    scene_rng, text_rng, corrupt_rng = _streams(seed, split)
    scenes = generate_scenes(n_images, scene_rng, first_id=ID_BASE[split])
    texts = make_texts(scenes, text_rng, first_text_id=ID_BASE[split])
    images: dict[int, bytes] = {}
    for k, scene in enumerate(scenes):
        images[scene.image_id] = encode_png(render_scene(scene, image_size))
        if progress is not None and (k % 100 == 99 or k == len(scenes) - 1):
            progress(k % 100 + 1)
    corrupted = corrupt_payloads(images, corrupt, CORRUPT_KINDS[fmt], corrupt_rng) if corrupt else {}
    paths = split_paths(Path(out), split, fmt)
    _write_images(paths["imgs"], images, fmt)
    write_texts_jsonl(paths["texts"], ((t.text_id, t.text, t.image_ids) for t in texts))
    with atomic_open(paths["scenes"]) as f:
        for scene in scenes:
            record = scene.to_json()
            if scene.image_id in corrupted:
                record["corrupt"] = corrupted[scene.image_id]
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return SplitStats(
        split,
        len(scenes),
        len({s.family for s in scenes}),
        dict(sorted(Counter(s.variant for s in scenes).items())),
        len(texts),
        sum(len(t.image_ids) for t in texts),
        sum(len(t.image_ids) == 1 for t in texts),
        max((len(t.image_ids) for t in texts), default=0),
        corrupted,
    )


def _write_images(path: Path, images: dict[int, bytes | str], fmt: str) -> None:
    if fmt == "tsv":
        write_imgs_tsv(path, sorted(images.items()))
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.png"):  # a re-run with fewer images must not leave old ones behind
        if stale.stem.isdigit() and int(stale.stem) not in images:
            stale.unlink()
    for image_id, data in sorted(images.items()):
        write_image_file(path, image_id, data, ".png")


def make_dataset(
    out: str | Path,
    sizes: dict[str, int] | None = None,
    fmt: str = "tsv",
    seed: int = 0,
    image_size: int = 64,
    corrupt: int = 0,
    corrupt_split: str = "train",
    progress: Callable[[int], None] | None = None,
) -> list[SplitStats]:
    """Generate every split in ``sizes`` (default DEFAULT_SIZES) under ``out``; returns per-split statistics.

    ``corrupt`` images of ``corrupt_split`` are replaced by undecodable data (see :func:`corrupt_payloads`).
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if corrupt and corrupt_split not in sizes:
        raise ValueError(f"--corrupt-split {corrupt_split!r} is not generated; choose one of {sorted(sizes)}")
    stats = [
        make_split(out, split, n, fmt, seed, image_size, corrupt if split == corrupt_split else 0, progress)
        for split, n in sizes.items()
        if n > 0
    ]
    info = {
        "generator": "paddle_mm.demo.shapes",
        "seed": seed,
        "format": fmt,
        "image_size": image_size,
        "sizes": sizes,
        "corrupt": {s.split: {str(k): v for k, v in s.corrupt.items()} for s in stats},
    }
    with atomic_open(Path(out) / "synthetic_info.json") as f:
        f.write(json.dumps(info, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    return stats
