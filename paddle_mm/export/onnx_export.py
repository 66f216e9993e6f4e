"""Paddle inference model -> ONNX through paddle2onnx, cleaned so ONNX Runtime can optimize and quantize it.

paddle2onnx 2.1 writes every weight as a ``Constant`` node. ONNX Runtime's ``quantize_dynamic`` only
quantizes MatMul / Gather nodes whose weights are *initializers*, so on the raw export it silently does
nothing. :func:`clean_onnx` therefore turns constants into initializers, drops ``Identity`` nodes, and
gives inputs, outputs and dynamic dimensions the names the export spec declares. :func:`paddle_to_onnx` then
fuses each self-attention block into ONNX Runtime's ``Attention`` op (:mod:`.ort_fusion`) unless told not to.
"""

from __future__ import annotations

from pathlib import Path

from .graphs import GraphSpec
from .onnx_graph import (
    constants_to_initializers,
    name_dynamic_dims,
    prune_unused_initializers,
    remove_identities,
    rename_value,
)
from .ort_fusion import FusionReport, fuse_attention

DEFAULT_OPSET = 17


def paddle_to_onnx(
    model_file: str | Path, params_file: str | Path, spec: GraphSpec, opset: int = DEFAULT_OPSET, fuse: bool = True
):
    """Convert a ``.json`` + ``.pdiparams`` pair in memory; return the cleaned ``onnx.ModelProto`` and what
    the attention fusion did (``fuse=False``: a plain-ONNX graph any runtime can load, nothing fused)."""
    import onnx
    import paddle2onnx

    raw = paddle2onnx.export(
        str(model_file), str(params_file), None, opset_version=opset, auto_upgrade_opset=False, enable_onnx_checker=True
    )
    model = onnx.load_from_string(raw)
    clean_onnx(model, spec)
    report = fuse_attention(model) if fuse else FusionReport()
    onnx.checker.check_model(model)
    return model, report


# protobuf cannot serialize a message over 2 GiB; bigger graphs keep their weights in a side file.
_INLINE_LIMIT = 1_800_000_000


def save_onnx(model, path: Path) -> list[str]:
    """Save ``model`` to ``path``; return the written file names (plus ``<name>.data`` for > 1.8 GB graphs)."""
    import onnx

    path = Path(path)
    if model.ByteSize() < _INLINE_LIMIT:
        onnx.save(model, str(path))
        return [path.name]
    data = f"{path.name}.data"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    return [path.name, data]


def clean_onnx(model, spec: GraphSpec) -> None:
    """In place: constants -> initializers, Identity nodes removed, spec names on inputs/outputs/dims."""
    graph = model.graph
    if len(graph.input) != len(spec.inputs) or len(graph.output) != len(spec.outputs):
        raise ValueError(
            f"graph {spec.name!r}: paddle2onnx produced {len(graph.input)} inputs / {len(graph.output)} outputs, "
            f"the export spec declares {len(spec.inputs)} / {len(spec.outputs)}; re-export with a matching spec"
        )
    constants_to_initializers(graph)
    remove_identities(graph)
    prune_unused_initializers(graph)
    for value, info in zip(list(graph.input) + list(graph.output), spec.inputs + spec.outputs):
        rename_value(graph, value.name, info.name)
        name_dynamic_dims(value, info)
