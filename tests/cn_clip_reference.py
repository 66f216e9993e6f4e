"""Chinese-CLIP's own evaluation code, restated for the tests that compare our metrics with it (not a test module)."""

from __future__ import annotations


def cn_clip_compute_score(predictions: dict[int, list[int]], reference: dict[int, list[int]]) -> list[float]:
    """cn_clip/eval/evaluation.py compute_score, on in-memory dicts: [mean_recall, r1, r5, r10] x100."""
    r1_stat, r5_stat, r10_stat = 0, 0, 0
    for qid in reference.keys():
        ground_truth_ids = set(reference[qid])
        top10_pred_ids = predictions[qid]
        if any([idx in top10_pred_ids[:1] for idx in ground_truth_ids]):
            r1_stat += 1
        if any([idx in top10_pred_ids[:5] for idx in ground_truth_ids]):
            r5_stat += 1
        if any([idx in top10_pred_ids[:10] for idx in ground_truth_ids]):
            r10_stat += 1
    r1, r5, r10 = r1_stat * 1.0 / len(reference), r5_stat * 1.0 / len(reference), r10_stat * 1.0 / len(reference)
    mean_recall = (r1 + r5 + r10) / 3.0
    return [score * 100 for score in [mean_recall, r1, r5, r10]]
