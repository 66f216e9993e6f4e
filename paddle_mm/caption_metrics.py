"""Captioning metrics for Chinese: BLEU-1..4, ROUGE-L, CIDEr-D (the COCO caption definitions) and chrF.

Our own implementation, written from the definitions the reference tools use and checked against them on the
same outputs (tests/test_caption_metrics.py): ``pycocoevalcap`` for BLEU (corpus level, "closest" reference
length, its 1e-15 / 1e-9 smoothing), ROUGE-L (LCS F-measure with beta 1.2 over the best precision and recall
among the references) and CIDEr-D (TF-IDF over the references of the evaluated set, clipped n-gram counts,
Gaussian length penalty with sigma 6, x10); ``sacrebleu`` for chrF (character 6-grams, beta 2, whitespace
removed, the best reference per sentence, corpus statistics summed). METEOR is not computed: the COCO METEOR is
a Java program with English resources, so chrF stands in for it.

Chinese has no spaces, so captions are segmented first: :func:`segment` with ``"char"`` (every character a
token) or ``"jieba"`` (jieba words). The COCO tools split on spaces, so a segmented caption is its tokens
joined by single spaces. Scores are in [0, 1] as pycocoevalcap returns them (CIDEr-D up to 10), chrF in
[0, 100] as sacrebleu does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

SEGMENTATIONS = ("char", "jieba")
_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's BLEU smoothing


def segment(text: str, how: str = "char") -> str:
    """A caption as space-separated tokens: characters (``char``) or jieba words (``jieba``); spaces dropped."""
    text = "".join(text.split())
    if how == "char":
        return " ".join(text)
    if how == "jieba":
        import jieba

        return " ".join(w for w in jieba.lcut(text) if w.strip())
    raise ValueError(f"segmentation {how!r}: choose one of {SEGMENTATIONS}")


def _ngrams(words: list[str], n: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n of tokenised hypotheses against their references (pycocoevalcap ``Bleu``)."""
    testlen = reflen = 0
    guess, correct = [0] * n, [0] * n
    for hyp, rs in zip(hyps, refs, strict=True):
        words = hyp.split()
        maxcounts: dict[tuple[str, ...], int] = {}
        lengths = []
        for r in rs:
            r_words = r.split()
            lengths.append(len(r_words))
            for gram, c in _ngrams(r_words, n).items():
                maxcounts[gram] = max(maxcounts.get(gram, 0), c)
        testlen += len(words)
        reflen += min((abs(length - len(words)), length) for length in lengths)[1]  # the closest length
        for k in range(n):
            guess[k] += max(0, len(words) - k)
        for gram, c in _ngrams(words, n).items():
            correct[len(gram) - 1] += min(maxcounts.get(gram, 0), c)
    scores, product = [], 1.0
    for k in range(n):
        product *= float(correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean over captions of the ROUGE-L F-measure (pycocoevalcap ``Rouge``)."""
    total = 0.0
    for hyp, rs in zip(hyps, refs, strict=True):
        h = hyp.split(" ")
        lcs = [_lcs(r.split(" "), h) for r in rs]
        prec = max(c / len(h) for c in lcs)
        rec = max(c / len(r.split(" ")) for c, r in zip(lcs, rs))
        if prec != 0 and rec != 0:
            total += (1 + beta**2) * prec * rec / (rec + beta**2 * prec)
    return total / len(hyps)


def cider_d(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Mean CIDEr-D over captions (pycocoevalcap ``Cider``): document frequencies from the references given."""
    import numpy as np

    ref_counts = [[_ngrams(r.split(), n) for r in rs] for rs in refs]
    df: dict[tuple[str, ...], float] = defaultdict(float)
    for rs in ref_counts:
        for gram in {g for r in rs for g in r}:
            df[gram] += 1
    log_n = np.log(float(len(ref_counts)))

    def vector(counts):
        vec = [defaultdict(float) for _ in range(n)]
        norm, length = [0.0] * n, 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vec[k][gram] = float(tf) * (log_n - np.log(max(1.0, df[gram])))
            norm[k] += pow(vec[k][gram], 2)
            if k == 1:  # sic: pycocoevalcap measures length in bigrams
                length += tf
        return vec, [np.sqrt(v) for v in norm], length

    scores = []
    for hyp, rs in zip(hyps, ref_counts, strict=True):
        vec, norm, length = vector(_ngrams(hyp.split(), n))
        total = np.array([0.0] * n)
        for r in rs:
            vec_r, norm_r, length_r = vector(r)
            val = np.array([0.0] * n)
            for k in range(n):
                for gram in vec[k]:
                    val[k] += min(vec[k][gram], vec_r[k][gram]) * vec_r[k][gram]
                if norm[k] != 0 and norm_r[k] != 0:
                    val[k] /= norm[k] * norm_r[k]
                val[k] *= np.e ** (-(float(length - length_r) ** 2) / (2 * sigma**2))
            total += val
        scores.append(float(np.mean(total)) / len(rs) * 10.0)
    return float(np.mean(scores))


def _char_ngrams(text: str, order: int) -> list[dict[str, int]]:
    text = "".join(text.split())
    out = []
    for k in range(1, order + 1):
        counts: dict[str, int] = defaultdict(int)
        for i in range(len(text) - k + 1):
            counts[text[i : i + k]] += 1
        out.append(counts)
    return out


def _chrf_from_stats(stats: list[int], order: int, beta: float) -> float:
    factor = beta**2
    avg_prec = avg_rec = 0.0
    effective = 0
    for i in range(order):
        n_hyp, n_ref, n_match = stats[3 * i : 3 * i + 3]
        if n_hyp > 0 and n_ref > 0:
            avg_prec += n_match / n_hyp
            avg_rec += n_match / n_ref
            effective += 1
    if effective == 0:
        return 0.0
    avg_prec, avg_rec = avg_prec / effective, avg_rec / effective
    if avg_prec + avg_rec == 0:
        return 0.0
    return 100 * (1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)


def chrf(hyps: Sequence[str], refs: Sequence[Sequence[str]], order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF of raw (unsegmented) captions (sacrebleu ``CHRF()`` defaults)."""
    total = [0] * (3 * order)
    for hyp, rs in zip(hyps, refs, strict=True):
        h = _char_ngrams(hyp, order)
        best, best_f = None, -1.0
        for r in rs:
            stats = []
            for hk, rk in zip(h, _char_ngrams(r, order)):
                match = sum(min(c, rk[g]) for g, c in hk.items() if g in rk)
                stats += [sum(hk.values()) if rk else 0, sum(rk.values()), match]
            f = _chrf_from_stats(stats, order, beta)
            if f > best_f:
                best, best_f = stats, f
        total = [a + b for a, b in zip(total, best)]
    return _chrf_from_stats(total, order, beta)


def caption_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], how: str = "char") -> dict[str, float]:
    """All metrics of raw Chinese captions, segmented by ``how``: Bleu_1..4, ROUGE_L, CIDEr (COCO names), chrF."""
    if not hyps or len(hyps) != len(refs) or any(not rs for rs in refs):
        raise ValueError(f"{len(hyps)} hypotheses, {len(refs)} reference lists: give one non-empty list per caption")
    h = [segment(x, how) for x in hyps]
    r = [[segment(x, how) for x in rs] for rs in refs]
    b = bleu(h, r)
    return {**{f"Bleu_{k + 1}": b[k] for k in range(4)}, "ROUGE_L": rouge_l(h, r), "CIDEr": cider_d(h, r),
            "chrF": chrf(hyps, refs)}  # fmt: skip
