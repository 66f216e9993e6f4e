"""Duplicate captions inside a training batch (Chinese-CLIP issue #240).

InfoNCE treats every other text of the batch as a negative for an image. When two rows carry the same
caption (class names used as captions, or one caption listed for several images), the loss pushes an image
away from its own caption's twin: the target is contradictory and training degrades. Two tools:

- :func:`find_duplicate_captions` looks at a whole training set before training and says how often a random
  batch of a given size will hold a repeat;
- :class:`DuplicateCaptionGuard`, called by the trainer on each batch's token ids, finds rows that repeat an
  earlier row (:func:`duplicate_rows`), warns once with counts, and with ``drop=True`` returns only the first
  row of each caption so the repeats stay out of the loss.

Rows are compared by token ids, so captions that differ only in what the tokenizer ignores (case, spaces
between CJK characters) count as equal, as they are equal to the model. Only the local batch is checked:
with several ranks a caption can still repeat across ranks. No paddle import.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class DuplicateReport:
    """Caption statistics of a training set (one entry per training pair)."""

    n_rows: int
    n_distinct: int
    most_common: list[tuple[str, int]]  # repeated captions, most frequent first (at most ``top``)
    n_repeated_rows: int  # rows whose caption also appears on an earlier row
    _pair_share: float  # probability that two distinct random rows share a caption

    def expected_duplicate_pairs(self, batch_size: int) -> float:
        """Expected number of same-caption row pairs in a uniformly random batch of ``batch_size`` rows."""
        return batch_size * (batch_size - 1) / 2 * self._pair_share

    def batch_duplicate_chance(self, batch_size: int) -> float:
        """Approximate probability (Poisson) that a random batch holds at least one repeated caption."""
        return float(1.0 - np.exp(-self.expected_duplicate_pairs(batch_size)))

    def summary(self, batch_size: int | None = None) -> str:
        """One line for the log, e.g. "640 rows, 48 distinct captions (592 repeats; top: 红色的圆形 x14 ...)"."""
        line = f"{self.n_rows} rows, {self.n_distinct} distinct captions ({self.n_repeated_rows} repeats"
        if self.most_common:
            line += "; top: " + ", ".join(f"{text!r} x{n}" for text, n in self.most_common)
        line += ")"
        if batch_size:
            pairs, chance = self.expected_duplicate_pairs(batch_size), self.batch_duplicate_chance(batch_size)
            line += (
                f"; a random batch of {batch_size} holds {pairs:.2f} same-caption pairs on average, "
                f"at least one with probability {chance:.0%}"
            )
        return line


def find_duplicate_captions(texts: Iterable[str], top: int = 5) -> DuplicateReport:
    """Report how often captions repeat among ``texts`` (one per training row, e.g. every pair's caption).

    Texts are compared exactly (after stripping surrounding whitespace); see the module doc for batches.
    """
    counts = Counter(t.strip() for t in texts)
    n = sum(counts.values())
    same = sum(c * (c - 1) for c in counts.values())
    return DuplicateReport(
        n_rows=n,
        n_distinct=len(counts),
        most_common=[(t, c) for t, c in counts.most_common(top) if c > 1],
        n_repeated_rows=n - len(counts),
        _pair_share=same / (n * (n - 1)) if n > 1 else 0.0,
    )


def duplicate_rows(input_ids: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the rows of ``input_ids`` [B, L] that equal an earlier row; empty if none."""
    ids = np.ascontiguousarray(np.asarray(input_ids))
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, length], got shape {ids.shape}")
    _, first = np.unique(ids, axis=0, return_index=True)
    is_first = np.zeros(len(ids), dtype=bool)
    is_first[first] = True
    return np.flatnonzero(~is_first)


class DuplicateCaptionGuard:
    """Per-batch check for repeated captions, for the training loop.

    ``keep = guard(input_ids)`` returns the row indices to train on: every row (``drop=False``: the default,
    it only warns) or the first row of each distinct caption (``drop=True``). The first batch with repeats
    is reported through ``log`` (a ``logging`` method); :meth:`summary` gives totals for the end of an epoch.
    """

    def __init__(self, drop: bool = False, log: Callable[[str], None] | None = None):
        self.drop = drop
        self.log = log or logger.warning
        self.n_batches = 0
        self.n_batches_with_repeats = 0
        self.n_repeated_rows = 0
        self.n_rows = 0

    def __call__(self, input_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(input_ids)
        repeats = duplicate_rows(ids)
        self.n_batches += 1
        self.n_rows += len(ids)
        if repeats.size:
            self.n_batches_with_repeats += 1
            self.n_repeated_rows += int(repeats.size)
            if self.n_batches_with_repeats == 1:
                action = (
                    "they are left out of the loss (drop_duplicate_captions)"
                    if self.drop
                    else "InfoNCE treats them as negatives of each other (Chinese-CLIP #240); "
                    "set drop_duplicate_captions to leave them out of the loss"
                )
                self.log(f"{repeats.size} of {len(ids)} captions in a training batch repeat an earlier one: {action}")
        if self.drop and repeats.size:
            return np.setdiff1d(np.arange(len(ids)), repeats)
        return np.arange(len(ids))

    def summary(self) -> str:
        """E.g. "12 of 40 batches had repeated captions (30 of 2560 rows, dropped)"."""
        fate = "dropped" if self.drop else "kept"
        return (
            f"{self.n_batches_with_repeats} of {self.n_batches} batches had repeated captions "
            f"({self.n_repeated_rows} of {self.n_rows} rows, {fate})"
        )
