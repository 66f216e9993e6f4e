"""An export checks itself: every exported graph variant against the eager model, at several batch sizes.

fp32 variants (Paddle Inference, ONNX Runtime) must match eager outputs to ``atol`` times the output's scale (max(1,
max |eager|)); INT8 towers must keep each feature row's cosine to the eager feature at least ``int8_min_cosine``; an
INT8 fusion graph must keep its answer probabilities (softmax of the logits, sigmoid for a matching score) within
``int8_max_prob_diff`` of eager's. All graphs run on the same inputs; text batches hold captions of different
lengths, trimmed to the longest, so the dynamic text length is exercised too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle

from hardware import DeviceSpec

from ..inference.backends import build_backend
from ..inference.model_dir import ExportInfo
from .graphs import GraphSpec


class ExportVerificationError(RuntimeError):
    """An exported graph disagrees with the eager model; the message lists every failing check."""


def verification_feeds(
    spec: GraphSpec, batch: int, image_size: int, vocab_size: int, context_length: int, pad_id: int, seed: int
) -> dict[str, np.ndarray]:
    """Deterministic random inputs for one graph: normal pixels; texts of random lengths, padded, trimmed."""
    rng = np.random.default_rng([seed, batch])
    feeds = {}
    for t in spec.inputs:
        if t.name == "pixel_values":
            feeds[t.name] = rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32)
            continue
        lengths = rng.integers(3, context_length + 1, batch)
        ids = np.full((batch, context_length), pad_id, np.int64)
        for row, n in enumerate(lengths):
            ids[row, :n] = rng.integers(pad_id + 1, vocab_size, n)
        feeds[t.name] = ids[:, : int(lengths.max())]
    return feeds


@paddle.no_grad()
def eager_outputs(layer: paddle.nn.Layer, spec: GraphSpec, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    out = layer(*[paddle.to_tensor(feeds[t.name]) for t in spec.inputs])
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def probabilities(logits: np.ndarray, kind: str) -> np.ndarray:
    """softmax over the last axis, or the elementwise sigmoid (``kind``: ``softmax`` | ``sigmoid``)."""
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def compare(
    variant: list[np.ndarray], eager: list[np.ndarray], precision: str, int8_check: str = "cosine"
) -> tuple[float, float]:
    """(measured, scale): max abs diff and output scale for fp32; for int8 the min row cosine (towers) or the
    max abs difference of the probabilities (fusion logits, ``int8_check`` softmax / sigmoid), and 1.0."""
    if precision == "int8" and int8_check != "cosine":
        return float(np.abs(probabilities(variant[0], int8_check) - probabilities(eager[0], int8_check)).max()), 1.0
    if precision == "int8":
        a, b = variant[0], eager[0]
        cosine = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        return float(cosine.min()), 1.0
    diff = max(float(np.abs(v - e).max()) for v, e in zip(variant, eager))
    scale = max(1.0, *(float(np.abs(e).max()) for e in eager))
    return diff, scale


def check_against_eager(
    model: paddle.nn.Layer,
    info: ExportInfo,
    specs: dict[str, GraphSpec],
    batches: tuple[int, ...],
    atol: float,
    int8_min_cosine: float,
    device: DeviceSpec,
    threads: int | None = None,
    seed: int = 0,
    int8_max_prob_diff: float = 0.05,
) -> dict[str, Any]:
    """Run every variant of every graph at every batch size; return the measurements or raise naming failures.

    Returns ``{graph: {"<backend>/<precision>": {batch: value}}}`` where value is the max abs diff (fp32),
    the min cosine (int8 towers) or the max probability difference (int8 fusion graph).
    """
    cfg = model.config
    report: dict[str, Any] = {}
    failures: list[str] = []
    for name, graph in info.graphs.items():
        spec = specs[name]
        layer = spec.layer(model)
        layer.eval()
        feeds = {
            b: verification_feeds(spec, b, cfg.image_resolution, cfg.vocab_size, cfg.context_length, cfg.pad_id, seed)
            for b in batches
        }
        eager = {b: eager_outputs(layer, spec, f) for b, f in feeds.items()}
        report[name] = {}
        for backend, precision in graph.variants():
            runner = build_backend(backend, info.files(name, backend, precision), device, threads)
            row = report[name][f"{backend}/{precision}"] = {}
            for b in batches:
                value, scale = compare(runner.run(feeds[b]), eager[b], precision, spec.int8_check)
                row[b] = value
                if precision == "int8" and spec.int8_check != "cosine":
                    if not value <= int8_max_prob_diff:
                        failures.append(
                            f"{name} {backend}/int8 batch {b}: max {spec.int8_check} probability diff {value:.4f} "
                            f"> {int8_max_prob_diff}"
                        )
                elif precision == "int8" and not value >= int8_min_cosine:
                    failures.append(f"{name} {backend}/int8 batch {b}: min cosine {value:.5f} < {int8_min_cosine}")
                elif precision != "int8" and not value <= atol * scale:
                    failures.append(
                        f"{name} {backend}/{precision} batch {b}: max abs diff {value:.3g} > {atol} x scale {scale:.3g}"
                    )
    if failures:
        hint = ""
        if all("/int8 " in f for f in failures):  # the fp32 graphs are right; only quantization lost too much
            hint = (
                " (only INT8 graphs fail: export without them, tools/export_model.py --no-int8, or accept a larger "
                "difference, --int8-min-cosine / --int8-max-prob-diff)"
            )
        raise ExportVerificationError("exported graphs disagree with the eager model: " + "; ".join(failures) + hint)
    return report
