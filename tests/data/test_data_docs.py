"""docs/data.md and the migration guide say what the readers do: LMDB is read (format: lmdb), BOM and GIF are fine."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_docs_no_longer_say_lmdb_is_not_read():
    for page in ("data.md", "migrating_from_chinese_clip.md"):
        text = (DOCS / page).read_text(encoding="utf-8")
        assert not re.search(r"LMDB is not read|not wired in yet", text), page
        assert "format: lmdb" in text, page


def test_the_format_the_docs_name_is_a_config_choice():
    from paddle_mm.config import load_config
    from tests.conftest import TINY

    cfg = load_config(TINY, ["DataLoader.Train.dataset.format=lmdb"])
    assert cfg["DataLoader"]["Train"]["dataset"]["format"] == "lmdb"
