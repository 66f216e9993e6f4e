"""paddle_mm.text.tokenizer must give exactly cn_clip.clip.tokenize's ids (golden file from the reference)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from paddle_mm.text import tokenizer as tok_mod
from paddle_mm.text.tokenizer import ChineseClipTextTokenizer, WordPieceTokenizer, tokenize

GOLDEN = Path(__file__).parent / "golden" / "cn_clip_tokenize.json"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def golden() -> list[dict]:
    return json.loads(GOLDEN.read_text(encoding="ascii"))["cases"]


@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer()


def _padded(ids: list[int], length: int) -> list[int]:
    return ids + [0] * (length - len(ids))


def test_golden_file_is_big_and_varied(golden):
    texts = {c["text"] for c in golden}
    assert len(texts) >= 300
    assert "" in texts and "\u3000" in texts
    assert any(len(c["ids"]) == c["context_length"] == 52 for c in golden)  # truncated cases exist
    assert any(100 in c["ids"] for c in golden)  # [UNK] cases exist


def test_golden_ids_equal_cn_clip(golden):
    mismatches = []
    for case in golden:
        got = tokenize(case["text"], context_length=case["context_length"])
        assert got.shape == (1, case["context_length"]) and got.dtype == np.int64
        if got[0].tolist() != _padded(case["ids"], case["context_length"]):
            mismatches.append(case["text"])
    assert not mismatches, f"{len(mismatches)}/{len(golden)} differ, e.g. {mismatches[:3]!r}"


def test_golden_batch_equals_rows(golden):
    cases = [c for c in golden if c["context_length"] == 52]
    batch = tokenize([c["text"] for c in cases])
    expected = np.array([_padded(c["ids"], 52) for c in cases], dtype=np.int64)
    np.testing.assert_array_equal(batch, expected)


def test_golden_pieces(golden, tok):
    for case in golden:
        assert tok.tokenize(case["text"]) == case["pieces"], case["text"]


def test_call_returns_paddlenlp_fields(tok):
    out = tok(["一只猫", "a photo of a dog on the grass", ""])
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    ids = out["input_ids"]
    assert ids.shape == (3, 52) and all(v.dtype == np.int64 for v in out.values())
    np.testing.assert_array_equal(out["attention_mask"], (ids != 0).astype(np.int64))
    assert not out["token_type_ids"].any()
    assert ids[2, :3].tolist() == [101, 102, 0]
    assert ids[0, :5].tolist() == [101, 671, 1372, 4344, 102]


def test_encode_and_special_ids(tok):
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.unk_id) == (101, 102, 0, 100)
    assert tok.vocab_size == 21128
    assert tok.encode("") == [101, 102]
    assert len(tok.encode("一" * 100)) == 52
    assert tok.encode("😀") == [101, 100, 102]
    assert tok.convert_ids_to_tokens(tok.encode("café")) == ["[CLS]", "cafe", "[SEP]"]
    assert ChineseClipTextTokenizer is WordPieceTokenizer


def test_single_string_bytes_and_empty_batch():
    np.testing.assert_array_equal(tokenize("猫"), tokenize(["猫"]))
    np.testing.assert_array_equal(tokenize("猫".encode()), tokenize(["猫"]))
    assert tokenize([]).shape == (0, 52)
    assert tokenize(["abc"], context_length=5).tolist() == [[101, 8425, 102, 0, 0]]  # cn_clip: abc = 8425


def test_bad_input_names_the_value():
    with pytest.raises(TypeError, match="int"):
        tokenize(["ok", 5])
    with pytest.raises(ValueError, match="context_length=1"):
        WordPieceTokenizer(context_length=1)


def test_vocab_lines_split_on_newline_only(tok):
    # the vocab holds U+2028 at line 343: ids must follow line numbers, not str.splitlines()
    assert tok.vocab["[CLS]"] == 101 and tok.vocab["##"] == 13502 and tok.vocab[""] == 343


def test_tiny_cache_gives_same_ids(golden):
    small = WordPieceTokenizer(cache_size=3)
    for case in [c for c in golden if c["context_length"] == 52][:150]:
        assert small.encode(case["text"]) == case["ids"]
    assert len(small._cache) <= 3


def test_separator_table_matches_unicode():
    """The hard-coded separator class must be str.isspace minus the Cc characters BERT deletes."""
    expected = {
        c for c in map(chr, range(0x110000)) if c.isspace() and (unicodedata.category(c) != "Cc" or c in "\t\n\r")
    }
    got = {c for c in map(chr, range(0x110000)) if tok_mod._WORD_RE.fullmatch(c) is None}
    assert got == expected
    # no format character is whitespace, so deleting Cf inside a word is the same as deleting it first
    assert not [c for c in map(chr, range(0x110000)) if c.isspace() and unicodedata.category(c) == "Cf"]


# -- differential test against a plain transcription of BERT's basic + WordPiece tokenizer ----------
def _bert_reference(text: str, vocab: dict[str, int]) -> list[int]:
    def control(c):
        return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf")

    def punct(c):
        cp = ord(c)
        return (
            33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(c)[0] == "P"
        )

    def cjk(cp):
        ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F)]
        ranges += [(0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
        return any(a <= cp <= b for a, b in ranges)

    out = []
    for c in text:
        if ord(c) in (0, 0xFFFD) or control(c):
            continue
        ws = c in " \t\n\r" or unicodedata.category(c) == "Zs"
        out.append(" " if ws else f" {c} " if cjk(ord(c)) else c)
    words = []
    for token in "".join(out).split():
        token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for c in token:
            if punct(c):
                words += [current, c]
                current = ""
            else:
                current += c
        words.append(current)
    ids = []
    for word in " ".join(words).split():
        if len(word) > 200:
            ids.append(vocab["[UNK]"])
            continue
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start and ("##" * (start > 0) + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab["##" * (start > 0) + word[start:end]])
            start = end
        ids += pieces
    return ids


def test_transcription_agrees_with_golden(golden, tok):
    for case in golden:
        if case["context_length"] == 52:
            assert [101, *_bert_reference(case["text"], tok.vocab)[:50], 102] == case["ids"], case["text"]


def test_random_strings_agree_with_transcription(tok):
    rng = random.Random(1234)
    pools = [range(0x80), range(0x80, 0x3000), range(0x3000, 0x3100), range(0x4E00, 0x4F00), range(0xFE00, 0x10000)]
    pools += [range(0x1F300, 0x1F400), range(0x2000, 0x2070), range(0x110000)]
    for _ in range(3000):
        text = "".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 25)))
        assert tok.piece_ids(text) == _bert_reference(text, tok.vocab), repr(text)


def test_import_does_not_load_paddle():
    code = (
        "import sys, time; t = time.perf_counter(); import paddle_mm.text.tokenizer; "
        "dt = time.perf_counter() - t; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'torch', 'cn_clip', 'cv2')); "
        "print(bad, dt)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    bad, seconds = out.stdout.rsplit(" ", 1)
    assert bad == "[]", f"importing the tokenizer pulled in {bad}"
    assert float(seconds) < 1.0  # numpy dominates; paddle alone would take seconds


def test_trim_padding_keeps_up_to_the_last_used_column():
    ids = np.array([[101, 7, 102, 0, 0, 0], [101, 102, 0, 0, 0, 0]], dtype=np.int64)
    out = tok_mod.trim_padding(ids[:, ::1], pad_id=0)
    np.testing.assert_array_equal(out, ids[:, :3])
    assert out.flags["C_CONTIGUOUS"]
    assert tok_mod.trim_padding(np.zeros((2, 5), np.int64), pad_id=0).shape == (2, 1)  # all padding: one column


def test_trim_padding_to_a_multiple_keeps_whole_blocks_and_never_exceeds_the_width():
    ids = np.zeros((2, 20), np.int64)
    ids[0, :11] = 5  # 11 used columns
    np.testing.assert_array_equal(tok_mod.trim_padding(ids, pad_id=0, multiple=8), ids[:, :16])
    assert tok_mod.trim_padding(ids, pad_id=0, multiple=11).shape == (2, 11)  # already a multiple
    assert tok_mod.trim_padding(ids, pad_id=0, multiple=16).shape == (2, 16)
    assert tok_mod.trim_padding(ids, pad_id=0, multiple=32).shape == (2, 20)  # capped at the width it has
