"""An independent reader of the synthetic captions: Chinese text -> clauses -> truth on a scene record.

It shares no code or tables with paddle_mm.demo.shapes: its vocabulary is written out here, and scenes
are the plain JSON records of {split}_scenes.jsonl.
"""

from __future__ import annotations

import re

SHAPE_WORDS = {
    "圆形": "circle",
    "正方形": "square",
    "三角形": "triangle",
    "菱形": "diamond",
    "五角星": "star",
    "十字形": "cross",
}
COLOUR_WORDS = {
    "红色": "red",
    "绿色": "green",
    "蓝色": "blue",
    "黄色": "yellow",
    "紫色": "purple",
    "橙色": "orange",
    "黑色": "black",
    "白色": "white",
}
PLACE_WORDS = {
    "左上角": (0, 0),
    "左上方": (0, 0),
    "正上方": (0, 1),
    "上方": (0, 1),
    "右上角": (0, 2),
    "右上方": (0, 2),
    "左侧": (1, 0),
    "左边": (1, 0),
    "中间": (1, 1),
    "中央": (1, 1),
    "正中间": (1, 1),
    "右侧": (1, 2),
    "右边": (1, 2),
    "左下角": (2, 0),
    "左下方": (2, 0),
    "正下方": (2, 1),
    "下方": (2, 1),
    "右下角": (2, 2),
    "右下方": (2, 2),
}
NUMBER_WORDS = {"一": 1, "两": 2, "三": 3, "四": 4, "五": 5}
_PLACE_RE = re.compile("|".join(sorted(PLACE_WORDS, key=len, reverse=True)))
_NUMBER_RE = re.compile("([一两三四五])个")


def _words(table: dict, clause: str) -> list[str]:
    # longest first, and a word inside a longer match (正方形 in ...?) is not counted twice
    found, rest = [], clause
    for word in sorted(table, key=len, reverse=True):
        if word in rest:
            found.append(table[word])
            rest = rest.replace(word, "|")
    return found


def parse_clause(clause: str) -> tuple:
    places = _PLACE_RE.findall(clause)
    colours, shapes = _words(COLOUR_WORDS, clause), _words(SHAPE_WORDS, clause)
    numbers = [NUMBER_WORDS[n] for n in _NUMBER_RE.findall(clause)]
    size = "large" if "大" in clause else "small" if "小" in clause else None
    if places:
        assert len(places) == 1 and len(colours) == 1 and len(shapes) == 1 and numbers == [1], clause
        return ("pos", PLACE_WORDS[places[0]], colours[0], shapes[0], size)
    if colours:
        assert len(colours) == 1 and len(shapes) == 1 and len(numbers) == 1, clause
        return ("count", colours[0], shapes[0], size, numbers[0])
    assert "图形" in clause and len(numbers) == 1 and size is None and not shapes, clause
    return ("total", numbers[0])


def parse_caption(text: str) -> list[tuple]:
    return [parse_clause(part) for part in text.split("，")]


def clause_holds(clause: tuple, scene: dict) -> bool:
    objects = scene["objects"]
    if clause[0] == "pos":
        _, cell, colour, shape, size = clause
        return any(
            tuple(o["cell"]) == cell and o["colour"] == colour and o["shape"] == shape and size in (None, o["size"])
            for o in objects
        )
    if clause[0] == "count":
        _, colour, shape, size, n = clause
        return sum(o["colour"] == colour and o["shape"] == shape and size in (None, o["size"]) for o in objects) == n
    return len(objects) == clause[1]


def caption_holds(text: str, scene: dict) -> bool:
    return all(clause_holds(c, scene) for c in parse_caption(text))


def one_attribute_difference(a: dict, b: dict) -> str | None:
    """ "colour", "shape", "size", "position" or "count" if scenes a and b differ in exactly that one way."""
    A = {tuple(o["cell"]): (o["colour"], o["shape"], o["size"]) for o in a["objects"]}
    B = {tuple(o["cell"]): (o["colour"], o["shape"], o["size"]) for o in b["objects"]}
    if len(A) == len(B):
        cells = [c for c in A.keys() | B.keys() if A.get(c) != B.get(c)]
        if len(cells) == 1:
            changed = [name for name, x, y in zip(("colour", "shape", "size"), A[cells[0]], B[cells[0]]) if x != y]
            return changed[0] if len(changed) == 1 else None
        if len(cells) == 2:
            only_a = [c for c in cells if c in A and c not in B]
            only_b = [c for c in cells if c in B and c not in A]
            if len(only_a) == 1 and len(only_b) == 1 and A[only_a[0]] == B[only_b[0]]:
                return "position"
        return None
    big, small = (A, B) if len(A) > len(B) else (B, A)
    if len(big) - len(small) != 1 or any(big.get(c) != v for c, v in small.items()):
        return None
    (extra,) = [v for c, v in big.items() if c not in small]
    return "count" if any(v[:2] == extra[:2] for v in small.values()) else None
