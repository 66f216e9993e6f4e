"""Export a CLIP or fusion model for deployment: Paddle inference graphs, cleaned ONNX, INT8, inference.yml.

:func:`export_model` writes into ``out_dir`` (see :mod:`paddle_mm.inference.model_dir` for the layout),
verifies every written graph against the eager model at several batch sizes, and only then writes
``inference.yml``, which records the SHA-256 of every file it names. Everything is written into a staged
sibling directory that replaces ``out_dir`` only once verified, so a failed export leaves the previous good
export untouched (:func:`paddle_mm.io.staged_directory`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paddle

from hardware import DEFAULT_DEVICE, DeviceSpec

from ..inference.model_dir import (
    INFERENCE_YML,
    ExportDirError,
    ExportInfo,
    GraphInfo,
    record_digests,
    write_inference_yml,
)
from ..io import staged_directory
from ..models.chinese_clip import quick_gelu_as_swish
from ..text.tokenizer import WordPieceTokenizer
from ..vision.transforms import ImageTransform
from .graphs import FUSION_GRAPHS, GRAPHS, GraphSpec, is_fusion, model_graph_specs
from .onnx_export import DEFAULT_OPSET, paddle_to_onnx, save_onnx
from .quantize import quantize_int8
from .verify import check_against_eager

INT8_GRAPHS = ("image", "text", "fusion")  # graphs that get an INT8 variant (not the combined CLIP graph)


@dataclass
class ExportOptions:
    """What to write and how strictly to check it.

    graphs: for a CLIP any of ``image``, ``text``, ``clip``; for a fusion model any of ``fusion``, ``image``,
    ``text``; None: every CLIP graph, or a fusion model's ``fusion``. onnx: also write ONNX (needed for INT8).
    int8: quantized towers and fusion graph. verify_batches: batch sizes every variant is checked at. atol:
    allowed max abs diff of fp32 variants, relative to max(1, max |output|). int8_min_cosine: lowest allowed
    feature cosine of INT8 towers. int8_max_prob_diff: largest allowed difference of an INT8 fusion graph's
    answer probabilities (softmax; sigmoid for matching) from eager.
    fuse_attention: write ONNX graphs whose attention blocks are ONNX Runtime ``Attention`` ops (faster, and
    ``QAttention`` in INT8); False keeps plain ONNX for runtimes without Microsoft's contrib ops.
    """

    graphs: tuple[str, ...] | None = None
    onnx: bool = True
    int8: bool = True
    opset: int = DEFAULT_OPSET
    verify_batches: tuple[int, ...] = (1, 3, 8)
    atol: float = 1e-4
    int8_min_cosine: float = 0.99
    int8_max_prob_diff: float = 0.05
    threads: int | None = None
    fuse_attention: bool = True

    def check(self, available: tuple[str, ...] = GRAPHS) -> None:
        graphs = available if self.graphs is None else self.graphs
        unknown = [g for g in graphs if g not in available]
        if unknown or not graphs:
            raise ValueError(f"graphs {list(graphs)}: choose a non-empty subset of {list(available)} for this model")
        if self.int8 and not self.onnx:
            raise ValueError("int8=True needs onnx=True: INT8 towers are quantized from the ONNX export")
        if not self.verify_batches or min(self.verify_batches) < 1:
            raise ValueError(f"verify_batches {self.verify_batches}: give one or more positive batch sizes")


def export_model(
    model: paddle.nn.Layer,
    out_dir: str | Path,
    transform: ImageTransform,
    model_name: str = "",
    options: ExportOptions | None = None,
    log=print,
) -> ExportInfo:
    """Write, verify and describe the export of ``model`` (a CLIP or a fusion model) into ``out_dir``.

    ``transform`` is the image pre-processing the model was trained with (its size must equal the model's
    ``image_resolution``). Raises ExportVerificationError when a graph disagrees; ``out_dir`` (new, empty or an
    earlier export) is then left as it was.
    """
    options = options or ExportOptions()
    fusion = is_fusion(model)
    options.check(tuple(model_graph_specs(model)) if fusion else GRAPHS)
    if options.graphs is None:
        options = replace(options, graphs=FUSION_GRAPHS if fusion else GRAPHS)
    cfg = model.config
    if transform.size != cfg.image_resolution:
        raise ValueError(
            f"transform size {transform.size} differs from the model's image_resolution "
            f"{cfg.image_resolution}; export with ImageTransform(size={cfg.image_resolution})"
        )
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    model.eval()
    with staged_directory(out_dir) as staged:
        info = _export_into(model, staged, transform, model_name, options, log)
    info.directory = out_dir
    return info


def _check_replaceable(out_dir: Path) -> None:
    """``out_dir`` must be new, empty or an earlier export: the swap must not delete anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportDirError(f"{out_dir} is a file; export into a new or empty directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / INFERENCE_YML).is_file():
        raise ExportDirError(
            f"{out_dir} is not empty and holds no {INFERENCE_YML}, so it is not an earlier export that may be "
            "replaced; export into a new or empty directory"
        )


def _export_into(
    model: paddle.nn.Layer, out_dir: Path, transform: ImageTransform, model_name: str, options: ExportOptions, log
) -> ExportInfo:
    """Write, verify and describe the export in ``out_dir`` (the staged directory)."""
    cfg = model.config
    specs = model_graph_specs(model)
    export: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "opset": options.opset if options.onnx else None,
        "versions": _versions(),
    }
    graphs = {}
    for name in options.graphs:
        start = time.perf_counter()
        graphs[name], int8, fusion = _export_graph(model, specs[name], out_dir, options)
        if int8:
            export.setdefault("int8", {})[name] = int8
        if fusion:
            export.setdefault("onnx_fusion", {})[name] = fusion
        log(
            f"[export] {name}: {', '.join(f'{b}/{p}' for b, p in graphs[name].variants())} "
            f"({time.perf_counter() - start:.1f} s)"
        )
    postprocess: dict[str, Any] = {"l2_normalize": True}  # the tower graphs' features
    if is_fusion(model):
        postprocess["fusion"] = specs["fusion"].int8_check  # softmax | sigmoid: the fusion logits' probabilities
    info = ExportInfo(
        out_dir, _model_section(model, model_name), _preprocess(transform, cfg, out_dir), postprocess, graphs, export
    )
    start = time.perf_counter()
    export["verification"] = {
        "batches": list(options.verify_batches),
        "atol": options.atol,
        "int8_min_cosine": options.int8_min_cosine,
        "int8_max_prob_diff": options.int8_max_prob_diff,
        "results": check_against_eager(
            model,
            info,
            specs,
            options.verify_batches,
            options.atol,
            options.int8_min_cosine,
            DeviceSpec(DEFAULT_DEVICE),  # the host: every variant's runtime runs there
            options.threads,
            int8_max_prob_diff=options.int8_max_prob_diff,
        ),
    }
    log(
        f"[export] verified {len(graphs)} graphs at batch sizes {list(options.verify_batches)} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    record_digests(info)
    write_inference_yml(info)
    return info


def _export_graph(
    model: paddle.nn.Layer, spec: GraphSpec, out_dir: Path, options: ExportOptions
) -> tuple[GraphInfo, dict[str, Any] | None, dict[str, int] | None]:
    files: dict[str, dict[str, list[str]]] = {"fp32": {"paddle_inference": save_paddle(model, spec, out_dir)}}
    int8 = fusion = None
    if options.onnx:
        paddle_files = out_dir / f"{spec.name}.json", out_dir / f"{spec.name}.pdiparams"
        onnx_model, report = paddle_to_onnx(*paddle_files, spec, options.opset, options.fuse_attention)
        fusion = report.as_dict() if options.fuse_attention else None
        onnx_files = save_onnx(onnx_model, out_dir / f"{spec.name}.onnx")
        files["fp32"]["onnxruntime"] = onnx_files
        if options.int8 and spec.name in INT8_GRAPHS:
            int8_name = f"{spec.name}.int8.onnx"
            int8 = quantize_int8(out_dir / onnx_files[0], out_dir / int8_name, external_data=len(onnx_files) > 1)
            files["int8"] = {"onnxruntime": [int8_name]}
    inputs = [t.as_dict() for t in spec.inputs]
    outputs = [t.as_dict() for t in spec.outputs]
    return GraphInfo(spec.name, inputs, outputs, files), int8, fusion


def save_paddle(model: paddle.nn.Layer, spec: GraphSpec, out_dir: Path) -> list[str]:
    """``paddle.jit.save`` one graph with a dynamic batch; return the written file names (json, pdiparams)."""
    layer = spec.layer(model)
    layer.eval()
    trace(layer, spec.input_spec(), out_dir / spec.name)
    names = [f"{spec.name}.json", f"{spec.name}.pdiparams"]
    missing = [n for n in names if not (out_dir / n).is_file()]
    if missing:
        raise RuntimeError(f"paddle.jit.save did not write {missing} in {out_dir}; Paddle >= 3.0 (PIR) is required")
    return names


def trace(layer: paddle.nn.Layer, input_spec: list, prefix: Path) -> None:
    """``paddle.jit.save`` ``layer`` (in eval mode) at ``prefix`` in the form the runtimes run fast, with the same
    outputs: no identity dropouts, QuickGELU as one swish (docs/export.md, *How the graphs are traced*)."""
    with _without_dropout(layer), quick_gelu_as_swish(layer):
        paddle.jit.save(paddle.jit.to_static(layer, input_spec=input_spec, full_graph=True), str(prefix))


@contextmanager
def _without_dropout(layer: paddle.nn.Layer) -> Iterator[None]:
    """Trace ``layer`` with every identity-in-eval ``nn.Dropout`` at p = 0, which Paddle returns unchanged.

    In eval mode an ``upscale_in_train`` dropout is the identity, yet traced it stays in the graph as a
    ``dropout`` op that copies its input and, having no oneDNN kernel, moves BF16 activations back to fp32 and
    out of oneDNN's layout (37 of them in a BERT text tower). A ``downscale_in_infer`` dropout scales by 1 - p
    in eval and is left alone. The p values are restored after.
    """
    dropouts = [
        (d, d.p)
        for d in layer.sublayers(include_self=True)
        if isinstance(d, paddle.nn.Dropout) and d.mode == "upscale_in_train"
    ]
    for d, _ in dropouts:
        d.p = 0.0
    try:
        yield
    finally:
        for d, p in dropouts:
            d.p = p


def _model_section(model: paddle.nn.Layer, model_name: str) -> dict[str, Any]:
    cfg = model.config
    section = {
        "name": model_name,
        "type": "fusion" if is_fusion(model) else "clip",
        "embed_dim": cfg.embed_dim,
        "image_resolution": cfg.image_resolution,
        "context_length": cfg.context_length,
        "pad_id": cfg.pad_id,
    }
    if is_fusion(model):  # what the Predictor needs to answer in words: the head's size and labels
        section.update(fusion=model.fusion_name, n_outputs=model.n_outputs, matching=model.matching)
        section["labels"] = model.labels
    return section


def _preprocess(transform: ImageTransform, cfg, out_dir: Path) -> dict[str, Any]:
    tokenizer = WordPieceTokenizer(context_length=cfg.context_length)
    if tokenizer.pad_id != cfg.pad_id or tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(
            f"the bundled vocabulary (size {tokenizer.vocab_size}, [PAD] {tokenizer.pad_id}) does not fit "
            f"the model (vocab_size {cfg.vocab_size}, pad_id {cfg.pad_id})"
        )
    vocab = Path(tokenizer.save_vocabulary(out_dir)).name
    return {
        "image": {
            "size": transform.size,
            "mean": list(transform.mean),
            "std": list(transform.std),
            "interpolation": transform.interpolation,
            "layout": "NCHW RGB float32",
        },
        "text": {
            "tokenizer": "chinese_clip_wordpiece",
            "vocab_file": vocab,
            "context_length": cfg.context_length,
            "pad_id": cfg.pad_id,
        },
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for package in ("paddlepaddle", "paddle2onnx", "onnx", "onnxruntime"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found
