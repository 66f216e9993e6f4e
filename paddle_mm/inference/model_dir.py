"""``inference.yml``: everything a predictor needs to use an exported directory, and nothing else.

An export directory holds, per graph (``image``, ``text``, ``clip``), a Paddle inference model
(``<graph>.json`` + ``<graph>.pdiparams``), an ONNX file (``<graph>.onnx``) and for the towers an INT8
ONNX file (``<graph>.int8.onnx``); ``vocab.txt``; and ``inference.yml``::

    Model:       name, embed_dim, image_resolution, context_length, pad_id
    PreProcess:  image: {size, mean, std, interpolation}   text: {vocab_file, context_length, pad_id}
    PostProcess: {l2_normalize: true}   (tower graphs return unnormalized features, as CLIP.encode_*)
    Graphs:      <graph>: {inputs, outputs, files: {<precision>: {<backend>: [file, ...]}}}
    Export:      id, versions, opset, INT8 method, the parity the export measured, and ``digests``: the
                 SHA-256 of every file above, checked by :meth:`ExportInfo.check_files` before a runtime
                 or the tokenizer reads one (exports written before digests existed are not checked)

This module reads and writes that file and checks it; it imports neither paddle nor onnxruntime.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..io import DigestMismatch, atomic_write, check_digests, file_digests

INFERENCE_YML = "inference.yml"
BACKENDS = ("paddle_inference", "onnxruntime")
PRECISIONS = ("fp32", "int8")
_SECTIONS = ("Model", "PreProcess", "PostProcess", "Graphs", "Export")


class ExportDirError(ValueError):
    """An export directory is incomplete or its inference.yml is malformed; the message names the fix."""


@dataclass
class GraphInfo:
    """One exported graph: its tensors and, per precision and backend, its files (relative names)."""

    name: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    files: dict[str, dict[str, list[str]]]

    def variants(self) -> list[tuple[str, str]]:
        """(backend, precision) pairs this graph was exported for."""
        return [(b, p) for p, by_backend in self.files.items() for b in by_backend]

    def input_names(self) -> list[str]:
        return [t["name"] for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t["name"] for t in self.outputs]


@dataclass
class ExportInfo:
    """A parsed ``inference.yml`` plus the directory it was read from."""

    directory: Path
    model: dict[str, Any]
    preprocess: dict[str, Any]
    postprocess: dict[str, Any]
    graphs: dict[str, GraphInfo]
    export: dict[str, Any] = field(default_factory=dict)

    def graph(self, name: str) -> GraphInfo:
        if name not in self.graphs:
            raise ExportDirError(
                f"{self.directory} has no {name!r} graph (it has {sorted(self.graphs)}); re-export with that graph"
            )
        return self.graphs[name]

    def files(self, graph: str, backend: str, precision: str) -> list[Path]:
        """Absolute paths of one graph variant; ExportDirError naming what exists when it is absent."""
        return [self.directory / n for n in self.file_names(graph, backend, precision)]

    def file_names(self, graph: str, backend: str, precision: str) -> list[str]:
        """Names (relative to the directory) of one graph variant's files, main file first."""
        info = self.graph(graph)
        names = info.files.get(precision, {}).get(backend)
        if names is None:
            raise ExportDirError(
                f"{self.directory}: graph {graph!r} has no {precision} {backend} model; exported variants: "
                f"{[f'{b}/{p}' for b, p in info.variants()]}"
            )
        return list(names)

    def check_files(self, names: list[str]) -> None:
        """Raise ExportDirError naming the first of ``names`` whose SHA-256 differs from ``Export.digests``."""
        try:
            check_digests(self.directory, self.export.get("digests", {}), names)
        except DigestMismatch as err:
            raise ExportDirError(str(err)) from None

    def to_dict(self) -> dict[str, Any]:
        graphs = {g.name: {"inputs": g.inputs, "outputs": g.outputs, "files": g.files} for g in self.graphs.values()}
        return {
            "Model": self.model,
            "PreProcess": self.preprocess,
            "PostProcess": self.postprocess,
            "Graphs": graphs,
            "Export": self.export,
        }


def record_digests(info: ExportInfo) -> dict[str, str]:
    """Store the SHA-256 of every file ``info`` refers to in ``info.export["digests"]`` and return them."""
    info.export["digests"] = file_digests(info.directory, referenced_files(info))
    return info.export["digests"]


def write_inference_yml(info: ExportInfo) -> Path:
    """Write ``info`` as ``<directory>/inference.yml`` (atomically) and return its path."""
    path = info.directory / INFERENCE_YML
    return atomic_write(path, yaml.safe_dump(info.to_dict(), allow_unicode=True, sort_keys=False))


def read_inference_yml(directory: str | Path) -> ExportInfo:
    """Parse and check ``<directory>/inference.yml``; every file it names must exist."""
    directory = Path(directory)
    path = directory / INFERENCE_YML
    if not path.is_file():
        raise ExportDirError(
            f"{path} not found: pass a directory written by tools/export_model.py "
            "(-o Global.save_inference_dir=...), which writes inference.yml last, after verifying the export"
        )
    info = parse_inference_yml(path.read_text(encoding="utf-8"), directory)
    _check_files(info, lambda name: (directory / name).is_file())
    return info


def parse_inference_yml(text: str, directory: Path, where: str | None = None) -> ExportInfo:
    """Parse and check the text of an ``inference.yml`` that belongs to ``directory`` (files are not checked).

    ``where`` names the file in messages (default ``<directory>/inference.yml``)."""
    where = where or str(directory / INFERENCE_YML)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ExportDirError(f"{where}: expected a mapping with sections {list(_SECTIONS)}, got {type(data).__name__}")
    _check_keys(data, _SECTIONS, where)
    graphs = {name: _graph(name, g, where) for name, g in data["Graphs"].items()}
    return ExportInfo(directory, data["Model"], data["PreProcess"], data["PostProcess"], graphs, data["Export"])


def referenced_files(info: ExportInfo) -> list[str]:
    """Every file name ``inference.yml`` refers to: the vocabulary and every graph variant's files."""
    vocab = info.preprocess.get("text", {}).get("vocab_file")
    names = [vocab] if vocab else []
    for g in info.graphs.values():
        names += [n for by_backend in g.files.values() for files in by_backend.values() for n in files]
    return names


def _graph(name: str, data: dict[str, Any], path: str) -> GraphInfo:
    _check_keys(data, ("inputs", "outputs", "files"), f"{path}: Graphs.{name}")
    for precision, by_backend in data["files"].items():
        if precision not in PRECISIONS:
            raise ExportDirError(f"{path}: Graphs.{name}.files: unknown precision {precision!r}; known: {PRECISIONS}")
        for backend in by_backend:
            if backend not in BACKENDS:
                raise ExportDirError(
                    f"{path}: Graphs.{name}.files.{precision}: unknown backend {backend!r}; known: {BACKENDS}"
                )
    return GraphInfo(name, data["inputs"], data["outputs"], data["files"])


def _check_keys(data: dict[str, Any], required: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in required:
            hint = difflib.get_close_matches(key, required, n=1)
            raise ExportDirError(
                f"{where}: unknown key {key!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                f"expected {list(required)}"
            )
    missing = [k for k in required if k not in data]
    if missing:
        raise ExportDirError(f"{where}: missing {missing}; re-export the model with tools/export_model.py")


def _check_files(info: ExportInfo, exists: Callable[[str], bool]) -> None:
    missing = [n for n in referenced_files(info) if not exists(n)]
    if missing:
        raise ExportDirError(
            f"{info.directory}: files named in {INFERENCE_YML} are missing: {missing}; "
            "copy the whole export directory or re-export"
        )
