"""Export a captioner (:class:`~paddle_mm.models.captioning.CaptionModel`) as two graphs, Paddle Inference and ONNX.

- ``encoder``: ``x`` (normalised pixels [B, 3, S, S]) -> memory [B, P, width];
- ``step``: ``memory`` [B, P, width], ``ids`` (compact token ids [B, t], int64) -> next-token log-probs [B, V].

``caption.json`` holds what a decoding loop needs beside them: the compact-to-WordPiece ``output_ids``, the
[CLS] / [SEP] compact ids, ``max_length`` and the image size. :class:`ExportedCaptioner` runs the encoder once
and :func:`~paddle_mm.models.captioning.greedy_search` / ``beam_search`` over the exported step (the step
recomputes the whole prefix: no key/value cache, so the graph has no state); :func:`check_parity` reports the
max abs difference of both graphs against eager and whether the greedy captions are identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from hardware import DEFAULT_DEVICE, DeviceSpec

from ..io import staged_directory
from .exporter import trace
from .onnx_export import prune_unused_initializers, remove_identities

GRAPHS = ("encoder", "step")


def _to_onnx(stage: Path, name: str, opset: int = 13) -> None:
    import onnx
    import paddle2onnx

    raw = paddle2onnx.export(
        str(stage / f"{name}.json"), str(stage / f"{name}.pdiparams"), None, opset_version=opset,
        enable_onnx_checker=True,
    )  # fmt: skip
    model = onnx.load_from_string(raw)
    remove_identities(model.graph)
    prune_unused_initializers(model.graph)
    onnx.checker.check_model(model)
    (stage / f"{name}.onnx").write_bytes(model.SerializeToString())


@paddle.no_grad()
def export_captioning(model, out_dir: str | Path, onnx: bool = True) -> Path:
    """Write ``encoder`` / ``step`` (.json + .pdiparams, and .onnx) and ``caption.json`` into ``out_dir``."""
    from ..models.captioning import EncoderGraph, StepGraph

    model.eval()
    size, width = model.config.image_resolution, model.caption.width
    specs = {
        "encoder": [paddle.static.InputSpec([None, 3, size, size], "float32", "x")],
        "step": [
            paddle.static.InputSpec([None, None, width], "float32", "memory"),
            paddle.static.InputSpec([None, None], "int64", "ids"),
        ],
    }
    meta = {
        "output_ids": model.caption.output_ids,
        "bos": model.bos,
        "eos": model.eos,
        "max_length": model.caption.max_length,
        "image_resolution": size,
    }
    with staged_directory(Path(out_dir)) as stage:
        for name, layer in (("encoder", EncoderGraph(model)), ("step", StepGraph(model))):
            layer.eval()
            trace(layer, specs[name], stage / name)
            if onnx:
                _to_onnx(stage, name)
        (stage / "caption.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


class ExportedCaptioner:
    """Greedy / beam captions from an exported directory on ``paddle_inference`` or ``onnxruntime``."""

    def __init__(self, directory: str | Path, backend: str = "paddle_inference", threads: int | None = None):
        from ..inference.backends import build_backend

        d = Path(directory)
        self.meta: dict[str, Any] = json.loads((d / "caption.json").read_text(encoding="utf-8"))
        ext = (".json", ".pdiparams") if backend == "paddle_inference" else (".onnx",)
        device = DeviceSpec(DEFAULT_DEVICE)
        self.encoder, self.step_graph = (
            build_backend(backend, [d / f"{g}{e}" for e in ext], device, threads) for g in GRAPHS
        )

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self.encoder.run({"x": np.asarray(pixels, "float32")})[0]

    def step(self, memory: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.step_graph.run({"memory": memory, "ids": np.asarray(ids, "int64")})[0]

    def generate(self, pixels: np.ndarray, beam: int = 1, alpha: float = 0.0) -> list[list[int]]:
        """WordPiece ids of the caption of every image (without [CLS] / [SEP])."""
        from ..models.captioning import beam_search, greedy_search

        memory, m = self.encode(pixels), self.meta

        def step(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return self.step(memory[rows], ids)

        if beam == 1:
            seqs = greedy_search(step, len(pixels), m["bos"], m["eos"], m["max_length"])
        else:
            seqs = beam_search(step, len(pixels), m["bos"], m["eos"], m["max_length"], beam, alpha)
        return [[m["output_ids"][t] for t in s] for s in seqs]


@paddle.no_grad()
def check_parity(model, directory: str | Path, pixels: np.ndarray, backend: str) -> dict[str, Any]:
    """Max abs differences of the exported encoder and step against eager on ``pixels``, and whether greedy
    decoding over the exported step gives eager's captions token for token."""
    from ..models.captioning import greedy_search

    model.eval()
    exported = ExportedCaptioner(directory, backend)
    memory = model.encode(paddle.to_tensor(pixels))
    ids = np.full([len(pixels), 1], model.bos, "int64")
    step = model.step_fn(paddle.to_tensor(pixels))
    eager = greedy_search(step, len(pixels), model.bos, model.eos, model.caption.max_length)
    prefix = np.asarray([[model.bos, *(s + [model.eos] * 4)[:4]] for s in eager], "int64")  # real 5-token prefixes
    eager_step = model.step(memory, paddle.to_tensor(prefix)).numpy()
    mem_np = memory.numpy()
    eager_ids = model.to_wordpiece(eager)
    return {
        "backend": backend,
        "encoder_max_abs_diff": float(np.abs(exported.encode(pixels) - mem_np).max()),
        "step_max_abs_diff": float(np.abs(exported.step(mem_np, prefix) - eager_step).max()),
        "first_step_max_abs_diff": float(
            np.abs(exported.step(mem_np, ids) - model.step(memory, paddle.to_tensor(ids)).numpy()).max()
        ),
        "greedy_identical": exported.generate(pixels) == eager_ids,
    }
