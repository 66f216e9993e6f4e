"""Batching that drops bad samples and still lets the main process count them.

Datasets in :mod:`paddle_mm.data.datasets` return ``{"bad": reason, "index": i}`` for an image they cannot
read. With DataLoader workers those items live in other processes, so the count travels inside the batch:

    loader = paddle.io.DataLoader(dataset, batch_size=64, num_workers=2, collate_fn=collate_skip_bad)
    counter = BadSampleCounter()
    for batch in loader:
        counter.update(batch)
        if batch["n_good"] == 0:
            continue
        ...
    print(counter.summary())   # "skipped 3 of 6000 samples: 2 undecodable images, 1 missing image; first: ..."
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .datasets import BAD_KINDS, reason_kind


def collate_skip_bad(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack the good samples of ``batch`` into numpy arrays, one per key, and report the bad ones.

    Returns the stacked keys of the good samples (e.g. pixel_values [B, C, H, W] float32, input_ids [B, L]
    int64, index [B] int64) plus ``n_good`` and ``n_bad`` (ints), ``bad_reasons`` (list of str) and
    ``bad_index`` (list of int). When every sample is bad only ``index`` is present among the arrays, empty:
    check ``n_good`` before using the data.
    """
    good = [s for s in batch if "bad" not in s]
    bad = [s for s in batch if "bad" in s]
    out: dict[str, Any] = _stack(good) if good else {"index": np.zeros((0,), dtype=np.int64)}
    out["n_good"] = len(good)
    out["n_bad"] = len(bad)
    out["bad_reasons"] = [str(s["bad"]) for s in bad]
    out["bad_index"] = [int(s["index"]) for s in bad]
    return out


def _stack(samples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    keys = list(samples[0])
    for s in samples[1:]:
        if list(s) != keys:
            raise ValueError(
                f"samples in one batch have different keys: {keys} vs {list(s)}; a dataset must "
                "return the same keys for every good sample"
            )
    stacked = {}
    for key in keys:
        values = [np.asarray(s[key]) for s in samples]
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise ValueError(
                f"cannot stack {key!r}: shapes {sorted(shapes)} differ within the batch; the transform "
                "or tokenizer must give one shape (fixed image size, padded context length)"
            )
        stacked[key] = np.stack(values)
    return stacked


class BadSampleCounter:
    """Accumulates ``n_good`` / ``n_bad`` / ``bad_reasons`` of collated batches over an epoch."""

    def __init__(self, max_examples: int = 3):
        self.max_examples = max_examples
        self.reset()

    def reset(self) -> None:
        self.n_seen = 0
        self.n_bad = 0
        self.by_kind: Counter = Counter()
        self.examples: list[str] = []

    def update(self, batch: Mapping[str, Any]) -> None:
        """Count one batch made by :func:`collate_skip_bad` (numpy or paddle tensors inside do not matter)."""
        n_good, n_bad = int(batch["n_good"]), int(batch["n_bad"])
        reasons = list(batch["bad_reasons"])
        if len(reasons) != n_bad:
            raise ValueError(
                f"batch says n_bad={n_bad} but lists {len(reasons)} bad_reasons; was it made by collate_skip_bad?"
            )
        self.n_seen += n_good + n_bad
        self.n_bad += n_bad
        self.by_kind.update(reason_kind(r) for r in reasons)
        for reason in reasons:  # an image listed by several texts gives the same reason more than once
            if len(self.examples) < self.max_examples and reason not in self.examples:
                self.examples.append(reason)

    def summary(self) -> str:
        """E.g. "skipped 3 of 6000 samples: 2 undecodable images, 1 missing image; first: undecodable: ..."."""
        line = f"skipped {self.n_bad} of {self.n_seen} samples"
        if not self.n_bad:
            return line
        parts = []
        for kind, n in sorted(self.by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
            singular, plural = BAD_KINDS.get(kind, ("other bad sample", "other bad samples"))
            parts.append(f"{n} {singular if n == 1 else plural}")
        return f"{line}: {', '.join(parts)}; first: " + " | ".join(self.examples)
