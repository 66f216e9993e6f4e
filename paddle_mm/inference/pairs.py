"""Every image against every text (``tools/predict.py``): a CLIP export ranks the texts of each image by cosine;
a fusion export answers each question (VQA), names the class (classification) or gives the match probability
(matching) for each image and text.

    rows = score_pairs(predictor, images, texts)      # [{"image", "texts" | "results"}, ...]
    print("\\n".join(pair_lines(rows)))
"""

from __future__ import annotations

from typing import Any

from .predictor import Predictor


def score_pairs(predictor: Predictor, images: list[str], texts: list[str]) -> list[dict[str, Any]]:
    """One row per image: ``texts`` best first with their cosines (CLIP), or ``results`` per text (fusion)."""
    if not predictor.is_fusion:
        sim = predictor.encode_images(images) @ predictor.encode_texts(texts).T  # (n_images, n_texts) cosine
        return [
            {"image": path, "texts": [{"text": texts[j], "cosine": float(scores[j])} for j in scores.argsort()[::-1]]}
            for path, scores in zip(images, sim)
        ]
    rows = []
    for path in images:
        if predictor.info.model.get("matching"):
            found = [{"text": t, "match": float(p)} for t, p in zip(texts, predictor.match([path], texts))]
        else:
            pred = predictor.answer([path], texts)
            found = [{"text": t, "answer": a, "score": float(p)} for t, a, p in zip(texts, pred.labels, pred.scores)]
        rows.append({"image": path, "results": found})
    return rows


def pair_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What ``tools/predict.py`` prints for :func:`score_pairs`' rows."""
    lines = []
    for row in rows:
        lines += ["", row["image"]]
        for r in row.get("texts", []):
            lines.append(f"  {r['cosine']:.4f}  {r['text']}")
        for r in row.get("results", []):
            lines.append(
                f"  {r['match']:.4f}  {r['text']}"
                if "match" in r
                else f"  {r['text']} -> {r['answer']}  ({r['score']:.4f})"
            )
    return lines


def auto_lines(predictor: Predictor) -> list[str]:
    """What ``backend="auto"`` chose per graph, and whether it measured or reused the cached timings."""
    lines = []
    for graph, choice in predictor.choices.items():
        timings = ", ".join(f"{k} {v:.1f} ms" for k, v in choice.timings_ms.items())
        lines.append(f"[auto] {graph}: {choice.backend} ({'cached' if choice.cached else 'measured'}: {timings})")
    return lines
