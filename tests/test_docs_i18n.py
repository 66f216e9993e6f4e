"""The Chinese pages (``X_ch.md``) stay in step with their English twins (``X.md``).

Translations drift silently: someone adds a flag to a command in ``docs/export.md`` and the Chinese page
keeps the old command, which then fails for the reader who trusted it. These checks compare what must not
be translated, for every English page that has a ``_ch`` twin:

- the code in fenced blocks, line by line as a multiset, with comments removed (comments may be
  translated; shell continuations are joined so a command wrapped differently still compares equal);
- the config keys, flags and dotted names shown in code (fenced or inline) as sets;
- the figures: every number in the Chinese page appears in the English one (nothing invented), and every
  decimal figure of the English page appears in the Chinese one (nothing dropped);
- the same sections (heading levels in order) and the same number of rows in each table;
- both pages open with the language switch linking the other, and Chinese paragraphs are not hard-wrapped;
- every relative link of a Chinese page resolves to an existing file (and heading, for ``#anchors``),
  and points to the Chinese twin of a page when there is one.

When one of these fails after you edited an English page, change its ``_ch`` twin the same way.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Pages a Chinese reader starts from: each must have its twin.
REQUIRED_TWINS = [
    "README.md",
    "docs/training.md",
    "docs/data.md",
    "docs/model_package.md",
    "docs/export.md",
    "docs/zero_shot.md",
    "docs/migrating_from_chinese_clip.md",
]


def _pairs() -> list[tuple[Path, Path]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pairs = [(p, p.with_name(p.stem + "_ch.md")) for p in pages if not p.stem.endswith("_ch")]
    return [(en, ch) for en, ch in pairs if ch.exists()]


PAIRS = _pairs()
PAIR_IDS = [str(en.relative_to(ROOT)) for en, _ in PAIRS]

FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.M | re.S
)
INLINE = re.compile(r"(`+)([^`]+?)\1")  # may wrap across lines, as in a paragraph
# Config keys and dotted names (Global.pretrained_model, DataLoader.Train.dataset.root, Predictor.from_package)
# and command-line flags (--model_dir, --no-int8).
DOTTED = re.compile(r"(?<![\w.])[A-Z][A-Za-z0-9]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][A-Za-z0-9_-]*")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    return [(m["lang"].strip().lower(), m["body"]) for m in FENCE.finditer(text)]


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def _strip_comment(line: str) -> str:
    """Drop a ``#`` comment (a ``#`` at the start or after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
        elif ch == "/" and line[i : i + 2] == "//" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]  # a // comment in a JSON/C-like snippet
    return line


def code_blocks(text: str) -> list[list[str]]:
    """The code lines of each fenced block in order, comments removed, continuations joined."""
    blocks: list[list[str]] = []
    for _lang, body in _fenced_blocks(text):
        lines: list[str] = []
        pending = ""
        for raw in body.splitlines():
            line = _strip_comment(raw).rstrip()
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            line = " ".join((pending + line.strip()).split())
            pending = ""
            if line:
                lines.append(line)
        if pending.strip():
            lines.append(" ".join(pending.split()))
        blocks.append(lines)
    return blocks


def code_lines(text: str) -> Counter:
    """Every non-empty code line of every fenced block (see ``code_blocks``), as a multiset."""
    return Counter(line for block in code_blocks(text) for line in block)


def _code_spans(text: str) -> list[str]:
    spans = [body for _lang, body in _fenced_blocks(text)]
    spans += [m[2] for m in INLINE.finditer(_prose(text))]
    return spans


def code_names(text: str) -> set[str]:
    """Config keys, dotted names and flags shown in code, fenced or inline."""
    names: set[str] = set()
    for span in _code_spans(text):
        names.update(m.rstrip(".") for m in DOTTED.findall(span))
        names.update(FLAG.findall(span))
    return names


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(_prose(text)))


def _diff(a: Counter, b: Counter) -> str:
    only_a = sorted((a - b).elements())
    only_b = sorted((b - a).elements())
    en = "\n    ".join(only_a or ["-"])
    ch = "\n    ".join(only_b or ["-"])
    return f"\n  only in English: {en}\n  only in Chinese: {ch}"


@pytest.mark.parametrize("page", REQUIRED_TWINS)
def test_twin_exists(page: str) -> None:
    en = ROOT / page
    ch = en.with_name(en.stem + "_ch.md")
    assert en.exists(), f"{page} is listed in REQUIRED_TWINS but does not exist"
    assert ch.exists(), f"{page} has no Chinese twin: write {ch.relative_to(ROOT)}"


def test_every_chinese_page_has_an_english_twin() -> None:
    pages = [ROOT / "README_ch.md", *(ROOT / "docs").glob("*_ch.md")]
    orphans = [str(p.relative_to(ROOT)) for p in pages if p.exists() and not p.with_name(p.stem[:-3] + ".md").exists()]
    assert not orphans, f"Chinese pages without an English page: {orphans}"


@pytest.mark.parametrize(("en", "ch"), PAIRS, ids=PAIR_IDS)
def test_same_code_blocks(en: Path, ch: Path) -> None:
    text_en, text_ch = en.read_text(encoding="utf-8"), ch.read_text(encoding="utf-8")
    a, b = code_lines(text_en), code_lines(text_ch)
    assert a == b, f"fenced code of {ch.name} differs from {en.name} (comments aside):{_diff(a, b)}"
    # Same lines, so only the order can differ: blocks moved, or lines moved between blocks.
    assert code_blocks(text_en) == code_blocks(text_ch), f"{ch.name} orders its code blocks unlike {en.name}"


@pytest.mark.parametrize(("en", "ch"), PAIRS, ids=PAIR_IDS)
def test_same_config_keys_and_flags(en: Path, ch: Path) -> None:
    a, b = code_names(en.read_text(encoding="utf-8")), code_names(ch.read_text(encoding="utf-8"))
    assert a == b, (
        f"config keys / flags shown in code differ: only in {en.name}: {sorted(a - b)}; "
        f"only in {ch.name}: {sorted(b - a)}"
    )


@pytest.mark.parametrize(("en", "ch"), PAIRS, ids=PAIR_IDS)
def test_figures_copied_not_invented(en: Path, ch: Path) -> None:
    a, b = numbers(en.read_text(encoding="utf-8")), numbers(ch.read_text(encoding="utf-8"))
    invented = sorted(b - a)
    assert not invented, f"{ch.name} quotes numbers that {en.name} does not: {invented}"
    dropped = sorted(n for n in a - b if "." in n)
    assert not dropped, f"{ch.name} lacks figures that {en.name} quotes: {dropped}"


def structure(text: str) -> tuple[list[int], list[int]]:
    """Heading levels in order, and the number of rows of each table (prose inside them may be translated)."""
    prose = _prose(text)
    levels = [len(m[1]) for m in re.finditer(r"^(#{1,6})\s", prose, re.M)]
    rows, count = [], 0
    for line in [*prose.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            count += 1
        elif count:
            rows.append(count)
            count = 0
    return levels, rows


@pytest.mark.parametrize(("en", "ch"), PAIRS, ids=PAIR_IDS)
def test_same_sections_and_table_rows(en: Path, ch: Path) -> None:
    (h_en, t_en), (h_ch, t_ch) = structure(en.read_text(encoding="utf-8")), structure(ch.read_text(encoding="utf-8"))
    assert h_en == h_ch, f"heading levels differ (a section added or removed?): {en.name} {h_en}, {ch.name} {h_ch}"
    assert t_en == t_ch, f"table rows differ (a row added or removed?): {en.name} {t_en}, {ch.name} {t_ch}"


@pytest.mark.parametrize(("en", "ch"), PAIRS, ids=PAIR_IDS)
def test_language_switch(en: Path, ch: Path) -> None:
    for page, other in ((en, ch), (ch, en)):
        head = "\n".join(page.read_text(encoding="utf-8").splitlines()[:5])
        assert "English" in head and "简体中文" in head and f"]({other.name})" in head, (
            f"{page.relative_to(ROOT)} must open with the switch line linking {other.name}, e.g. "
            f"'English | [简体中文]({ch.name})' / '[English]({en.name}) | 简体中文'"
        )


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower-case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`|\*\*|\*|_(?=\W)|(?<=\W)_", "", heading.strip()).lower()
    kept = "".join(c for c in heading if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _prose(page.read_text(encoding="utf-8"))
    return {github_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|<a href=\"([^\"]+)\"")


@pytest.mark.parametrize("ch", [ch for _en, ch in PAIRS], ids=[str(ch.relative_to(ROOT)) for _en, ch in PAIRS])
def test_chinese_links_resolve(ch: Path) -> None:
    problems = []
    for m in LINK.finditer(_prose(ch.read_text(encoding="utf-8"))):
        target = m[1] or m[2]
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        dest = (ch.parent / path).resolve() if path else ch
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        twin = dest.with_name(dest.stem + "_ch.md")
        own_twin = dest == ch.with_name(ch.stem[:-3] + ".md")  # the language switch links it on purpose
        if dest.suffix == ".md" and not dest.stem.endswith("_ch") and twin.exists() and not own_twin:
            problems.append(f"{target}: link the Chinese twin {twin.name}")
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            problems.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not problems, f"{ch.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


@pytest.mark.parametrize("ch", [ch for _en, ch in PAIRS], ids=[str(ch.relative_to(ROOT)) for _en, ch in PAIRS])
def test_chinese_paragraphs_not_hard_wrapped(ch: Path) -> None:
    """A line break inside a Chinese sentence renders as a stray space: one paragraph, one line."""
    lines = _prose(ch.read_text(encoding="utf-8")).splitlines()
    block = re.compile(r"^\s*([-*+>|#<]|\d+\.\s)")
    wrapped = [
        f"line {i + 1}: ...{a.rstrip()[-12:]} / {b.strip()[:12]}..."
        for i, (a, b) in enumerate(zip(lines, lines[1:]))
        if a.strip() and b.strip() and not block.match(b) and not a.lstrip().startswith(("|", "#"))
        and (_wide(a.rstrip()[-1]) or _wide(b.strip()[0]))
    ]
    assert not wrapped, f"{ch.name}: join these soft-wrapped lines:\n  " + "\n  ".join(wrapped)


def test_readme_links_chinese_readme() -> None:
    assert "](README_ch.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_comment_stripping_keeps_quoted_hashes() -> None:
    assert _strip_comment("python x.py -o \"a=' # '\"  # note") == "python x.py -o \"a=' # '\"  "
    assert code_lines("```bash\npython a.py \\\n    -o X.y=1   # 注释\n```\n") == Counter(["python a.py -o X.y=1"])
