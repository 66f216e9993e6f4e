"""Is a retrieved image right? Queries in the built-in caption language, checked against the scene records.

The built-in world (:mod:`paddle_mm.demo.shapes`) writes every image's objects to ``{split}_scenes.jsonl``
(cell, colour, shape, size per object), and its captions are a small language of clauses. So a search on the
built-in data can be checked attribute by attribute:

- :func:`parse_query` reads a caption of that language (「左上角有一个红色的圆形」) back into its clauses; a
  text outside the language gives None (a user's own wording cannot be checked);
- :func:`satisfies` says whether a scene makes every clause true (every attribute the query names, bound to
  the same object: a red circle *in the top-left cell*, exactly two *blue triangles*);
- :func:`attribute_hits` says, per attribute the query names, whether the scene has it at all: a red object
  anywhere for 红色, a circle for 圆形, an object of that size for 大/小, an object in the named cell for
  左上角, exactly n objects of one colour and shape (or n objects in all) for a count. This is what tells
  which attribute a wrong result misses: a red diamond for 「左上角有一个红色的圆形」 has the colour and
  the position but not the shape;
- :func:`attribute_precision` is the share of the top-k images that satisfy the whole query (``all``) and
  each attribute, averaged over the queries naming it, with the chance level of each (the share of the
  gallery that satisfies it: what a random ranking scores).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..metrics import topk_indices
from .shapes import (
    COLOURS,
    COUNT_ONE_TEMPLATES,
    COUNT_TEMPLATES,
    NUMBERS,
    POSITION_TEMPLATES,
    POSITIONS,
    SHAPES,
    SIZES,
    TOTAL_TEMPLATES,
    Clause,
    Obj,
    scene_facts,
    split_paths,
)

ATTRIBUTES = ("colour", "shape", "size", "position", "count")

# ----------------------------------------------------------------------------- reading a query


def _alt(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))  # longest first: 正上方 before 上方


@lru_cache(maxsize=1)
def _clause_patterns() -> list[tuple[str, re.Pattern]]:
    colour, shape, size = _alt(c for c, _ in COLOURS.values()), _alt(SHAPES.values()), _alt(SIZES.values())
    noun = (
        f"(?:(?P<z1>{size})的(?P<c1>{colour})(?P<s1>{shape})"
        f"|(?P<c2>{colour})的(?P<z2>{size})(?P<s2>{shape})"
        f"|(?P<c3>{colour})的(?P<s3>{shape}))"
    )
    fields = {
        "p": f"(?P<p>{_alt(w for names in POSITIONS.values() for w in names)})",
        "np": noun,
        "n": f"(?P<n>{_alt(NUMBERS.values())})",
    }
    patterns = [("total1", re.compile("图中只有一个图形"))]
    for kind, templates in (
        ("pos", POSITION_TEMPLATES),  # the follow-up phrasings are a subset of these
        ("count", COUNT_TEMPLATES),
        ("count1", COUNT_ONE_TEMPLATES),
        ("total", TOTAL_TEMPLATES),
    ):
        for t in templates:
            parts = re.split(r"(\{p\}|\{np\}|\{n\})", t)
            regex = "".join(fields[p[1:-1]] if p in ("{p}", "{np}", "{n}") else re.escape(p) for p in parts)
            patterns.append((kind, re.compile(regex)))
    return patterns


def _lookup(table: Mapping, chinese: str | None):
    if chinese is None:
        return None
    return next(k for k, v in table.items() if (v[0] if isinstance(v, tuple) else v) == chinese)


def _parse_clause(text: str) -> Clause | None:
    for kind, pattern in _clause_patterns():
        m = pattern.fullmatch(text)
        if m is None:
            continue
        if kind == "total1":
            return ("total", 1)
        g = m.groupdict()
        n = next((k for k, v in NUMBERS.items() if v == g.get("n")), 1)
        if kind == "total":
            return ("total", n)
        which = next(i for i in "123" if g[f"c{i}"])
        colour, shape = _lookup(COLOURS, g[f"c{which}"]), _lookup(SHAPES, g[f"s{which}"])
        size = _lookup(SIZES, g.get(f"z{which}"))
        if kind == "pos":
            row, col = next(cell for cell, names in POSITIONS.items() if g["p"] in names)
            return ("pos", row, col, colour, shape, size)
        return ("count", colour, shape, size, n)
    return None


def parse_query(text: str) -> tuple[Clause, ...] | None:
    """The clauses of a caption in the built-in language (clauses joined by ，), or None if any part is not."""
    clauses = [_parse_clause(part.strip()) for part in text.strip().rstrip("。").split("，")]
    return None if not clauses or any(c is None for c in clauses) else tuple(clauses)


def named_attributes(claim: Sequence[Clause]) -> tuple[str, ...]:
    """The attributes a query names, in ATTRIBUTES order."""
    named = set()
    for clause in claim:
        if clause[0] == "pos":
            named |= {"position", "colour", "shape"} | ({"size"} if clause[5] is not None else set())
        elif clause[0] == "count":
            named |= {"count", "colour", "shape"} | ({"size"} if clause[3] is not None else set())
        else:
            named.add("count")
    return tuple(a for a in ATTRIBUTES if a in named)


# ----------------------------------------------------------------------------- checking a scene


def scene_objects(record: Mapping) -> tuple[Obj, ...]:
    """The objects of one ``{split}_scenes.jsonl`` record."""
    return tuple(Obj(tuple(o["cell"]), o["colour"], o["shape"], o["size"]) for o in record["objects"])


def load_scenes(path: str | Path) -> dict[int, tuple[Obj, ...]]:
    """image_id -> objects, from a ``{split}_scenes.jsonl`` file."""
    scenes = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                scenes[int(record["image_id"])] = scene_objects(record)
    return scenes


def satisfies(claim: Sequence[Clause], objects: Sequence[Obj]) -> bool:
    """Every clause of ``claim`` is true of a scene with ``objects`` (the generator's own truth)."""
    facts = scene_facts(objects)
    return all(clause in facts for clause in claim)


def _condition(clause: Clause, attribute: str) -> tuple | None:
    """What ``clause`` says about ``attribute`` alone, as a key of :func:`scene_conditions`; None: nothing."""
    kind = clause[0]
    if kind == "total":
        return ("total", clause[1]) if attribute == "count" else None
    if kind == "pos":
        _, row, col, colour, shape, size = clause
    else:
        _, colour, shape, size, n = clause
    if attribute == "colour":
        return ("colour", colour)
    if attribute == "shape":
        return ("shape", shape)
    if attribute == "size":
        return None if size is None else ("size", size)
    if attribute == "position":
        return ("cell", row, col) if kind == "pos" else None
    if attribute == "count":
        return ("group", size is not None, n) if kind == "count" else None
    raise ValueError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")


def scene_conditions(objects: Sequence[Obj]) -> set[tuple]:
    """Every single-attribute condition true of a scene, plus its facts (whole clauses, for ``all``).

    ("colour", c) / ("shape", s) / ("size", z): some object has it; ("cell", row, col): the cell holds an
    object; ("group", sized, n): some colour+shape (+size when ``sized``) group has exactly n objects;
    ("total", n): n objects in all.
    """
    conditions = {("fact", f) for f in scene_facts(objects)} | {("total", len(objects))}
    for o in objects:
        conditions |= {("colour", o.colour), ("shape", o.shape), ("size", o.size), ("cell", *o.cell)}
    for sized in (False, True):
        groups = Counter((o.colour, o.shape) + ((o.size,) if sized else ()) for o in objects)
        conditions |= {("group", sized, n) for n in groups.values()}
    return conditions


def _claim_conditions(claim: Sequence[Clause]) -> dict[str, list[tuple]]:
    """``all`` and each named attribute -> the conditions a scene must meet for it."""
    out = {"all": [("fact", c) for c in claim]}
    for attribute in named_attributes(claim):
        out[attribute] = [k for c in claim if (k := _condition(c, attribute)) is not None]
    return out


def attribute_hits(claim: Sequence[Clause], objects: Sequence[Obj]) -> dict[str, bool]:
    """``all`` (:func:`satisfies`) and, for each attribute the query names, whether the scene has it."""
    conditions = scene_conditions(objects)
    return {a: all(k in conditions for k in keys) for a, keys in _claim_conditions(claim).items()}


# ----------------------------------------------------------------------------- the metric


def attribute_precision(
    claims: Sequence[Sequence[Clause]],
    ranked: Sequence[Sequence[int]],
    scenes: Mapping[int, Sequence[Obj]],
    k: int = 5,
) -> dict:
    """Attribute precision@k (x100) of a text -> image search.

    ``claims[q]`` is query q's clauses, ``ranked[q]`` its retrieved image ids best first (the first ``k``
    count), ``scenes`` image_id -> objects for the whole gallery. Returns ``{"k", "n_queries", "precision":
    {"all", "colour", ...}, "chance": {...}, "queries": {attribute: n}}``: for ``all`` and each attribute, the
    mean over the queries naming it of the share of their top-k satisfying it; ``chance`` is the same mean of
    the share of the gallery that satisfies it.
    """
    if len(claims) != len(ranked):
        raise ValueError(f"{len(claims)} queries but {len(ranked)} rankings")
    conditions = {i: scene_conditions(objects) for i, objects in scenes.items()}
    holders: dict[tuple, set[int]] = {}  # condition -> gallery images meeting it, for the chance level
    for i, held in conditions.items():
        for key in held:
            holders.setdefault(key, set()).add(i)
    shares: dict[str, list[float]] = {}
    chance: dict[str, list[float]] = {}
    for claim, ids in zip(claims, ranked):
        top = list(ids)[:k]
        if not top:
            raise ValueError(f"query {claim!r} retrieved no image; a ranking needs at least one")
        for attribute, keys in _claim_conditions(claim).items():
            hits = sum(all(key in conditions[i] for key in keys) for i in top)
            shares.setdefault(attribute, []).append(hits / len(top))
            meeting = set.intersection(*(holders.get(key, set()) for key in keys)) if keys else conditions.keys()
            chance.setdefault(attribute, []).append(len(meeting) / len(conditions))
    order = [a for a in ("all", *ATTRIBUTES) if a in shares]
    return {
        "k": k,
        "n_queries": len(claims),
        "precision": {a: 100 * sum(shares[a]) / len(shares[a]) for a in order},
        "chance": {a: 100 * sum(chance[a]) / len(chance[a]) for a in order},
        "queries": {a: len(shares[a]) for a in order},
    }


def format_attribute_precision(result: dict) -> str:
    """Two lines: the precision and the chance level of ``all`` and each attribute."""
    names = list(result["precision"])
    head = f"attribute precision@{result['k']} ({result['n_queries']} queries): "
    line = ", ".join(f"{a}: {result['precision'][a]:.1f}" for a in names)
    chance = ", ".join(f"{a}: {result['chance'][a]:.1f}" for a in names)
    return f"{head}{line}\n{' ' * (len(head) - 9)}(chance: {chance})"


# ----------------------------------------------------------------------------- a search on built-in data


def scenes_file(root: str | Path, split: str) -> Path | None:
    """The split's scene records (``{split}_scenes.jsonl`` or ``{split}/scenes.jsonl``), None if it has none."""
    for fmt in ("tsv", "folder"):
        path = split_paths(Path(root), split, fmt)["scenes"]
        if path.is_file():
            return path
    return None


def search_attribute_precision(
    root: str | Path,
    split: str,
    image_ids: Sequence[int],
    image_features: np.ndarray,
    texts: Sequence,
    text_features: np.ndarray,
    k: int = 5,
) -> dict | None:
    """:func:`attribute_precision` of the text -> image search over an encoded split of built-in data.

    ``image_features`` (n_images, D) and ``text_features`` (n_texts, D) are L2-normalized; ``texts`` have a
    ``.text``. The gallery is the encoded images that have a scene record; captions outside the language are
    left out and counted (``unchecked``). None when the split has no scene records (not built-in data).
    """
    path = scenes_file(root, split)
    if path is None:
        return None
    scenes = load_scenes(path)
    columns = [c for c, i in enumerate(image_ids) if i in scenes]
    claims = [parse_query(t.text) for t in texts]
    rows = [q for q, claim in enumerate(claims) if claim is not None]
    if not rows or not columns:
        return None
    sim = text_features[rows] @ image_features[columns].T  # (n_checked_texts, n_gallery)
    ranked = [[image_ids[columns[c]] for c in top] for top in topk_indices(sim, k)]
    gallery = {image_ids[c]: scenes[image_ids[c]] for c in columns}
    result = attribute_precision([claims[q] for q in rows], ranked, gallery, k)
    result["unchecked"] = len(texts) - len(rows)
    return result


def check_results(query: str, image_ids: Sequence[int], scenes: Mapping[int, Sequence[Obj]] | None) -> list | None:
    """Per retrieved image, ``{"satisfies": bool, "missing": [attributes the image lacks]}`` (None for an image
    without a scene record); None when ``query`` is outside the built-in language or there are no scenes."""
    claim = parse_query(query) if scenes else None
    if claim is None:
        return None
    out = []
    for image_id in image_ids:
        if image_id not in scenes:
            out.append(None)
            continue
        hits = attribute_hits(claim, scenes[image_id])
        out.append({"satisfies": hits.pop("all"), "missing": [a for a, ok in hits.items() if not ok]})
    return out


def mark(check: dict | None) -> str:
    """✓ for a result that satisfies the query, ✗ and what it lacks otherwise (✗ alone: it has every attribute,
    but not on the same object, or not in the named count); blank when it cannot be checked."""
    if check is None:
        return " "
    if check["satisfies"]:
        return "✓"
    return "✗" + (f" (no {', '.join(check['missing'])})" if check["missing"] else " (each attribute, not together)")
