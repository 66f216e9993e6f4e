"""Gallery search (``tools/infer.py``): text -> top-k images and image -> top-k captions over a corpus, with a
checkpoint's eager model or a :class:`~paddle_mm.inference.Predictor` over an export or a verified package.

    encoders = predictor_encoders(predictor)          # or eager_encoders(checkpoint, batch_size)
    results = search_gallery(corpus, encoders, queries, query_images, k)
    print("\\n".join(result_lines(results)))

Imports numpy only: an ONNX Runtime deployment need not have paddle (the eager encoders import it when built).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..metrics import search

SCALE_NOTE = (
    "scores are cosine similarities of L2-normalized features, in [-1, 1]; only their order matters: the model "
    "compares them after multiplying by its logit scale (up to 100), so a gap of 0.01 is a real preference"
)


class Encoders(NamedTuple):
    """What a search needs of a model; every feature row is L2-normalised."""

    gallery: Callable  # corpus -> (image_ids, image_features [n_images, D], text_features [n_texts, D])
    texts: Callable  # list[str] -> [n, D]
    images: Callable  # list of image paths -> [n, D]


class EmptyGalleryError(ValueError):
    """No image of the gallery could be read."""


def eager_encoders(checkpoint: str | Path, batch_size: int, progress: bool = False) -> Encoders:
    """The encoders of a checkpoint's eager model, as ``tools/eval.py`` runs it."""
    import paddle
    import paddle.nn.functional as F

    from ..models import load_model
    from ..tasks.loaders import build_tokenizer
    from ..tasks.retrieval import encode_corpus, encode_texts
    from ..vision.transforms import ImageTransform

    model = load_model(checkpoint)
    tokenizer = build_tokenizer(model.config.context_length)
    transform = ImageTransform(size=model.config.image_resolution)

    def gallery(corpus):
        enc = encode_corpus(model, corpus, transform, tokenizer, batch_size, progress=progress)
        return enc.image_ids, enc.image_features, enc.text_features

    def images(paths):
        with paddle.no_grad():
            pixels = paddle.to_tensor(np.stack([transform(p) for p in paths]))
            return F.normalize(model.encode_image(pixels), axis=-1).numpy()

    return Encoders(gallery, lambda texts: encode_texts(model, texts, tokenizer, batch_size, progress=False), images)


def predictor_encoders(predictor) -> Encoders:
    """The encoders of a CLIP export (a fusion export scores pairs and cannot search: ValueError)."""
    from .evaluate import encode_split

    if predictor.is_fusion:
        raise ValueError(
            "the export of a fusion model scores image-question pairs, it does not search: "
            "use tools/predict.py --model <export dir> --image ... --question ..."
        )
    return Encoders(lambda corpus: encode_split(predictor, corpus), predictor.encode_texts, predictor.encode_images)


def search_gallery(
    corpus, encoders: Encoders, queries: list[str], query_images: list[str], k: int, scenes: dict | None = None
) -> dict[str, Any]:
    """Encode the gallery and run every query: ``{"scores", "text_to_image", "image_to_text",
    "skipped_query_images"}`` (unreadable query images are skipped and listed, as training skips bad images).

    ``scenes`` (built-in data: image_id -> its objects, :func:`paddle_mm.demo.shape_queries.load_scenes`): every
    text -> image result gets a ``check`` (does its scene satisfy the query, and if not, what it lacks)."""
    from ..demo.shape_queries import check_results
    from ..vision.transforms import split_readable

    image_ids, image_features, text_features = encoders.gallery(corpus)
    if not len(image_ids):
        raise EmptyGalleryError("no readable image")
    by_image: dict = {}
    for t in corpus.texts:
        for i in t.image_ids:
            by_image.setdefault(i, t.text)
    results: dict[str, Any] = {"scores": SCALE_NOTE, "text_to_image": [], "image_to_text": []}
    for query, hits in zip(queries, search(encoders.texts(queries), image_features, k) if queries else []):
        rows = [{"image_id": image_ids[c], "score": s, "caption": by_image.get(image_ids[c], "")} for c, s in hits]
        checks = check_results(query, [r["image_id"] for r in rows], scenes)
        for r, check in zip(rows, checks or [None] * len(rows)):
            r["check"] = check
        results["text_to_image"].append({"query": query, "results": rows, "checked": scenes is not None})
    paths, results["skipped_query_images"] = split_readable(query_images)
    for path, hits in zip(paths, search(encoders.images(paths), text_features, k) if paths else []):
        rows = [{"text_id": corpus.texts[c].text_id, "score": s, "caption": corpus.texts[c].text} for c, s in hits]
        results["image_to_text"].append({"query": path, "results": rows})
    return results


def result_lines(results: dict[str, Any]) -> list[str]:
    """What ``tools/infer.py`` prints for :func:`search_gallery`'s results."""
    from ..demo.shape_queries import mark

    lines = []
    for q in results["text_to_image"]:
        rows, checked = q["results"], [r for r in q["results"] if r["check"] is not None]
        if checked:
            note = f"  ({sum(r['check']['satisfies'] for r in checked)} of {len(rows)} satisfy it)"
        else:
            note = "  (not checked: outside the built-in caption language)" if q["checked"] else ""
        lines += ["", f"[text -> image] {q['query']}{note}"]
        lines += [
            f"  {mark(r['check'])} {r['score']:.4f}  image {r['image_id']}  (its caption: {r['caption']})" for r in rows
        ]
    for q in results["image_to_text"]:
        lines += ["", f"[image -> text] {q['query']}"]
        lines += [f"  {r['score']:.4f}  {r['caption']}" for r in q["results"]]
    return lines + ["", f"({SCALE_NOTE})"]


def draw_grid(path: Path, corpus, text_results: list[dict]) -> tuple[dict, str]:
    """``path`` (a PNG): each text query and its top-k gallery images with their cosines; (the grid's
    description, the line to print)."""
    from ..data.datasets import ImageReadError
    from .grid import save_grid

    def image(image_id):
        try:
            return corpus.read_image_bytes(image_id)
        except ImageReadError:
            return b""  # drawn as an unreadable cell

    def satisfies(result: dict) -> bool | None:
        return None if result["check"] is None else result["check"]["satisfies"]

    rows = [
        (q["query"], [(image(r["image_id"]), r["score"], satisfies(r)) for r in q["results"]]) for q in text_results
    ]
    grid = save_grid(path, rows)
    labelled = [f"{label} = {q['query']}" for label, q in zip(grid["labels"], text_results) if label != q["query"]]
    note = f" (no CJK font found, set PADDLE_MM_FONT; {'; '.join(labelled)})" if labelled else ""
    return grid, f"wrote {path}{note}"
