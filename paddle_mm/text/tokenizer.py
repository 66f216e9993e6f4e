"""BERT WordPiece tokenizer that gives exactly the ids of ``cn_clip.clip.tokenize``.

Chinese-CLIP tokenizes with Google's BERT ``FullTokenizer`` (cn_clip/clip/bert_tokenizer.py):

1. clean: drop U+0000, U+FFFD and control/format characters (Unicode Cc, Cf; tab, newline and
   carriage return count as whitespace), turn whitespace into spaces;
2. put spaces around CJK ideographs, split on whitespace;
3. per word: lower-case, strip accents (NFD, then drop Mn marks), split off punctuation (all
   non-alphanumeric ASCII plus Unicode P*);
4. greedy longest-match-first WordPiece; a word longer than 200 characters or with no match is [UNK].

``tokenize(texts, context_length=52)`` then returns [CLS] + the first ``context_length - 2`` pieces +
[SEP], padded with [PAD] (0), as int64 ``[N, context_length]``.

This module computes the same thing faster: whitespace splitting and CJK splitting happen in one
compiled regex, and everything after it is done once per distinct word and memoized, so common
words and every CJK character cost one dict lookup. No paddle import here: importing this module
costs milliseconds and the vocabulary is read on first use.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import chain, islice

import numpy as np

__all__ = [
    "DEFAULT_VOCAB_FILE",
    "ChineseClipTextTokenizer",
    "WordPieceTokenizer",
    "preprocess_caption",
    "tokenize",
    "trim_padding",
]

DEFAULT_VOCAB_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab.txt")
DEFAULT_CONTEXT_LENGTH = 52  # Chinese-CLIP's context length for every released model

TextInput = str | bytes

# CJK ideograph blocks, exactly the ranges of BERT's _is_chinese_char.
_CJK = (
    "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f"
)
# Characters that str.split() treats as whitespace, minus the ones BERT deletes first because they
# are control characters (\x0b \x0c \x1c-\x1f \x85 are Cc): "a\x0bb" is one word, "ab".
# tests/text/test_tokenizer.py checks this list against str.isspace over all of Unicode.
_SEPARATORS = "\t\n\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# One match per word of BERT's basic tokenizer before lower-casing: a CJK ideograph, or a run of
# anything that is neither a separator nor CJK (control characters are removed inside the run).
_WORD_RE = re.compile(f"[{_CJK}]|[^{_SEPARATORS}{_CJK}]+")

# ASCII words: delete C0 controls and DEL (U+0000 included); every other non-alphanumeric
# printable ASCII character is punctuation to BERT.
_ASCII_CONTROLS = {i: None for i in (*range(0x20), 0x7F)}
_ASCII_PIECE_RE = re.compile(r"[a-z0-9]+|[^a-z0-9]")


def _is_removed(char: str) -> bool:
    """True for the characters BERT's _clean_text deletes (inside a word, so never \\t\\n\\r)."""
    return char == "\x00" or char == "\ufffd" or unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """BERT's _is_punctuation: non-alphanumeric printable ASCII, or any Unicode P* category."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _split_word(word: str) -> list[str]:
    """Lower-case, strip accents and split off punctuation: the basic tokenizer's per-word steps."""
    if word.isascii():
        return _ASCII_PIECE_RE.findall(word.translate(_ASCII_CONTROLS).lower())
    text = "".join(c for c in word if not _is_removed(c)).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    pieces: list[str] = []
    current: list[str] = []
    for char in text:
        if _is_punctuation(char):
            if current:
                pieces.append("".join(current))
                current = []
            pieces.append(char)
        else:
            current.append(char)
    if current:
        pieces.append("".join(current))
    # BERT re-splits on whitespace after these steps; keep that for exotic characters.
    return " ".join(pieces).split()


def load_vocab(vocab_file: str | os.PathLike) -> dict[str, int]:
    """Read a BERT vocab file: one token per line, id = line number, token = line.strip().

    Lines are read with readline() like BERT's load_vocab (it splits on "\\n" only, not on U+2028
    which this vocabulary contains), and a later duplicate overrides an earlier one.
    """
    vocab: dict[str, int] = {}
    with open(vocab_file, encoding="utf-8") as reader:
        for index, line in enumerate(iter(reader.readline, "")):
            vocab[line.strip()] = index
    return vocab


class _WordCache(dict):
    """word -> tuple of piece ids; computes misses and forgets everything when it gets too big."""

    def __init__(self, compute, max_size: int):
        super().__init__()
        self._compute = compute
        self._max_size = max_size

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = self._compute(word)
        if len(self) >= self._max_size:
            self.clear()  # cheaper than LRU bookkeeping; caption vocabularies refill it quickly
        self[word] = ids
        return ids


class WordPieceTokenizer:
    """Chinese-CLIP's text tokenizer: BERT basic tokenizer + WordPiece, ids equal to cn_clip's.

    Args:
        vocab_file: BERT vocabulary, one token per line; default: the bundled Chinese-CLIP vocab
            (21128 entries, the bert-base-chinese / RoBERTa-wwm-ext vocabulary).
        context_length: length of every encoded row, [CLS] and [SEP] included (52 for Chinese-CLIP).
        max_input_chars_per_word: longer words become [UNK] (BERT's 200).
        cache_size: number of distinct words whose pieces are memoized.
    """

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        max_input_chars_per_word: int = 200,
        cache_size: int = 1 << 17,
    ):
        if context_length < 2:
            raise ValueError(f"context_length={context_length} leaves no room for [CLS] and [SEP]; use >= 2 (52)")
        self.vocab_file = os.fspath(vocab_file) if vocab_file is not None else DEFAULT_VOCAB_FILE
        self.vocab = load_vocab(self.vocab_file)
        self.context_length = context_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.pad_id = self._special_id("[PAD]")
        self.unk_id = self._special_id("[UNK]")
        self.cls_id = self._special_id("[CLS]")
        self.sep_id = self._special_id("[SEP]")
        self._inv_vocab = {i: t for t, i in self.vocab.items()}
        self._max_piece_len = max(map(len, self.vocab))  # no longer substring can match
        self._cache = _WordCache(self._word_ids, cache_size)

    def _special_id(self, token: str) -> int:
        if token not in self.vocab:
            raise ValueError(f"vocab file {self.vocab_file!r} has no {token} token; use a BERT vocabulary")
        return self.vocab[token]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # -- pieces of one word ---------------------------------------------------------------------
    def _wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece ids of one punctuation-free word."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_id]
        vocab, ids, start, n = self.vocab, [], 0, len(word)
        while start < n:
            end = min(n, start + self._max_piece_len)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    ids.append(vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk_id]
            start = end
        return ids

    def _word_ids(self, word: str) -> tuple[int, ...]:
        return tuple(chain.from_iterable(self._wordpiece(p) for p in _split_word(word)))

    # -- public API -----------------------------------------------------------------------------
    def piece_ids(self, text: TextInput, limit: int | None = None) -> list[int]:
        """All WordPiece ids of `text` without [CLS]/[SEP]; only the first `limit` if given."""
        if not isinstance(text, str):
            text = _as_str(text)
        ids = chain.from_iterable(map(self._cache.__getitem__, _WORD_RE.findall(text)))
        return list(ids if limit is None else islice(ids, limit))

    def tokenize(self, text: TextInput) -> list[str]:
        """Word pieces of `text` as strings (cn_clip's FullTokenizer.tokenize), not truncated."""
        return [self._inv_vocab[i] for i in self.piece_ids(text)]

    def encode(self, text: TextInput) -> list[int]:
        """[CLS] + first context_length - 2 piece ids + [SEP], unpadded."""
        return [self.cls_id, *self.piece_ids(text, self.context_length - 2), self.sep_id]

    def encode_batch(self, texts: TextInput | Iterable[TextInput]) -> np.ndarray:
        """int64 [N, context_length] ids padded with [PAD]; equals cn_clip.clip.tokenize(texts)."""
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        limit = self.context_length - 2
        pieces = [self.piece_ids(text, limit) for text in texts]
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        flat = np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=int(lengths.sum()))
        ids = np.full((len(pieces), self.context_length), self.pad_id, dtype=np.int64)
        ids[:, 0] = self.cls_id
        # row i holds its pieces in columns 1 .. lengths[i], then [SEP]
        ids[:, 1:][np.arange(limit + 1) < lengths[:, None]] = flat
        ids[np.arange(len(pieces)), lengths + 1] = self.sep_id
        return ids

    def __call__(self, texts: TextInput | Iterable[TextInput]) -> dict[str, np.ndarray]:
        """PaddleNLP/HF-style batch: input_ids, attention_mask (ids != [PAD]), token_type_ids (0)."""
        input_ids = self.encode_batch(texts)
        return {
            "input_ids": input_ids,
            "attention_mask": (input_ids != self.pad_id).astype(np.int64),
            "token_type_ids": np.zeros_like(input_ids),
        }

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Vocabulary strings of `ids` (for debugging and round-trip checks)."""
        return [self._inv_vocab[int(i)] for i in ids]

    def save_vocabulary(self, directory: str | os.PathLike) -> str:
        """Copy the vocabulary file byte for byte to `directory`/vocab.txt and return that path."""
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, "vocab.txt")
        with open(self.vocab_file, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        return target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_file={self.vocab_file!r}, vocab_size={self.vocab_size}, "
            f"context_length={self.context_length})"
        )


# Chinese-CLIP's name for the same tokenizer.
ChineseClipTextTokenizer = WordPieceTokenizer


def _as_str(text: object) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")  # what cn_clip's convert_to_unicode does
    raise TypeError(f"expected a str (or utf-8 bytes) to tokenize, got {type(text).__name__}: {text!r:.80}")


@cache
def _default_tokenizer(context_length: int) -> WordPieceTokenizer:
    return WordPieceTokenizer(context_length=context_length)


def tokenize(texts: TextInput | Sequence[TextInput], context_length: int = DEFAULT_CONTEXT_LENGTH) -> np.ndarray:
    """Chinese-CLIP ids of `texts` as int64 ``[N, context_length]``, equal to ``cn_clip.clip.tokenize``.

    Each row is [CLS]=101, the first ``context_length - 2`` word pieces, [SEP]=102, then [PAD]=0.
    A single string gives one row. The attention mask, if needed, is ``ids != 0``.
    """
    return _default_tokenizer(context_length).encode_batch(texts)


def trim_padding(input_ids: np.ndarray, pad_id: int, multiple: int = 1) -> np.ndarray:
    """Drop trailing columns that are padding in every row; a C-contiguous copy (what ONNX Runtime wants).

    Exact, not an approximation: padded keys are masked with -10000 before the softmax (exp underflows to
    0 in fp32) and features are read at [CLS], so the result does not depend on trailing pad columns.
    Short captions in a 52-token context then cost a fraction of the compute. ``multiple``: keep a length
    that is a multiple of it (or the full width), for runtimes that compile per input shape.
    """
    used = np.flatnonzero((input_ids != pad_id).any(axis=0))
    length = used[-1] + 1 if used.size else 1
    return np.ascontiguousarray(input_ids[:, : -(-length // multiple) * multiple])  # a slice stops at the width


def preprocess_caption(text: str) -> str:
    """cn_clip's ``_preprocess_text``, applied by its training and evaluation datasets before ``tokenize``:
    lower-case and curly quotes to ``"`` (the vocabulary has no “ ”, which would otherwise become [UNK])."""
    return text.lower().replace("\u201c", '"').replace("\u201d", '"')
