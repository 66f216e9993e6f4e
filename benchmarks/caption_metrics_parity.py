"""Our caption metrics next to pycocoevalcap's and sacrebleu's on the same captions (a table per segmentation).

    python benchmarks/caption_metrics_parity.py [--n 200 --seed 0]

Hypotheses are noisy copies of one of three references (random Chinese captions), so every n-gram order and
the choice of the best reference matter. Prints ours, the reference value and |difference|.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import numpy as np

from paddle_mm.caption_metrics import caption_scores, segment

WORDS = list("红绿蓝黄紫白黑色的圆形方块三角星在左右上下中间有一个两大小")


def captions(n: int, seed: int, refs: int = 3):
    rng = np.random.default_rng(seed)
    hyps, all_refs = [], []
    for _ in range(n):
        rs = ["".join(rng.choice(WORDS, rng.integers(4, 14))) for _ in range(refs)]
        h = list(rs[int(rng.integers(refs))])
        for _ in range(rng.integers(0, 4)):
            h[int(rng.integers(len(h)))] = str(rng.choice(WORDS)) if rng.random() < 0.7 else ""
        hyps.append("".join(h) or "红")
        all_refs.append(rs)
    return hyps, all_refs


def reference_scores(hyps, refs, how: str) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from sacrebleu.metrics import CHRF

    gts = {i: [segment(r, how) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [segment(h, how)] for i, h in enumerate(hyps)}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"Bleu_{k + 1}": b[k] for k in range(4)}
    out["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    out["chrF"] = CHRF().corpus_score(hyps, [list(s) for s in zip(*refs)]).score
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    hyps, refs = captions(args.n, args.seed)
    for how in ("char", "jieba"):
        ours, theirs = caption_scores(hyps, refs, how), reference_scores(hyps, refs, how)
        print(f"\n{how} segmentation, {len(hyps)} captions x 3 references")
        print("| metric | ours | reference | abs diff |\n|---|---|---|---|")
        for k in ours:
            print(f"| {k} | {ours[k]:.6f} | {theirs[k]:.6f} | {abs(ours[k] - theirs[k]):.1e} |")


if __name__ == "__main__":
    main()
