"""Our caption metrics equal the reference implementations (pycocoevalcap, sacrebleu) on the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.caption_metrics import bleu, caption_scores, chrf, cider_d, rouge_l, segment

pytest.importorskip("pycocoevalcap", reason="pip install pycocoevalcap==1.2 (requirements/lock.txt)")

WORDS = list("红绿蓝黄紫白黑色的圆形方块三角星在左右上下中间有一个两大小")


def _captions(seed: int, n: int = 40, refs: int = 3):
    """Random Chinese captions: hypotheses are noisy copies of a reference, so every n-gram order matters."""
    rng = np.random.default_rng(seed)
    hyps, all_refs = [], []
    for _ in range(n):
        rs = ["".join(rng.choice(WORDS, rng.integers(4, 14))) for _ in range(refs)]
        h = list(rs[int(rng.integers(refs))])  # a copy of any reference: the best reference varies
        for _ in range(rng.integers(0, 4)):
            i = int(rng.integers(len(h)))
            h[i] = str(rng.choice(WORDS)) if rng.random() < 0.7 else ""
        hyps.append("".join(h) or "红")
        all_refs.append(rs)
    hyps.append("左上角有一个红色的圆形")  # an exact match, and one with nothing in common
    all_refs.append(["左上角有一个红色的圆形", "红色圆形在左上角", "一个红圆"])
    hyps.append("黑")
    all_refs.append(["白色的方块", "右下角有白方块", "方块"])
    return hyps, all_refs


@pytest.mark.parametrize("how", ["char", "jieba"])
@pytest.mark.parametrize("seed", [0, 1])
def test_coco_metrics_equal_pycocoevalcap(how, seed):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    hyps, refs = _captions(seed)
    h = [segment(x, how) for x in hyps]
    r = [[segment(x, how) for x in rs] for rs in refs]
    gts = {i: rs for i, rs in enumerate(r)}
    res = {i: [x] for i, x in enumerate(h)}
    ref_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert bleu(h, r) == pytest.approx(ref_bleu, abs=1e-9)
    assert rouge_l(h, r) == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-9)
    assert cider_d(h, r) == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-9)
    assert 0 < ref_bleu[3] < ref_bleu[0] < 1  # the data exercises every order


@pytest.mark.parametrize("seed", [0, 1])
def test_chrf_equals_sacrebleu(seed):
    from sacrebleu.metrics import CHRF

    hyps, refs = _captions(seed)
    streams = [list(s) for s in zip(*refs)]  # sacrebleu: one stream per reference position
    assert chrf(hyps, refs) == pytest.approx(CHRF().corpus_score(hyps, streams).score, abs=1e-9)


def test_caption_scores_names_and_segmentation():
    hyps, refs = _captions(2, n=5)
    s = caption_scores(hyps, refs, "jieba")
    assert set(s) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr", "chrF"}
    assert segment("左上角 有一个", "char") == "左 上 角 有 一 个"
    with pytest.raises(ValueError, match="choose one of"):
        segment("红", "pkuseg")
    with pytest.raises(ValueError, match="reference lists"):
        caption_scores(["红"], [])
