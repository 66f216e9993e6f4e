"""Paddle inference model -> ONNX through paddle2onnx, cleaned so ONNX Runtime can optimize and quantize it.

paddle2onnx 2.1 writes every weight as a ``Constant`` node. ONNX Runtime's ``quantize_dynamic`` only
quantizes MatMul / Gather nodes whose weights are *initializers*, so on the raw export it silently does
nothing. :func:`clean_onnx` therefore turns constants into initializers, drops ``Identity`` nodes, and
gives inputs, outputs and dynamic dimensions the names the export spec declares. :func:`paddle_to_onnx` then
fuses each self-attention block into ONNX Runtime's ``Attention`` op (:mod:`.ort_fusion`) unless told not to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .graphs import GraphSpec, TensorInfo
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


def constants_to_initializers(graph) -> int:
    """Move every ``Constant`` node's tensor into ``graph.initializer``; return how many were moved."""
    from onnx import helper, numpy_helper

    kept, moved = [], 0
    for node in graph.node:
        if node.op_type != "Constant" or len(node.attribute) != 1:
            kept.append(node)
            continue
        array = np.asarray(helper.get_attribute_value(node.attribute[0]))
        if node.attribute[0].name == "value":
            array = numpy_helper.to_array(node.attribute[0].t)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        moved += 1
    del graph.node[:]
    graph.node.extend(kept)
    return moved


def remove_identities(graph) -> int:
    """Bypass ``Identity`` nodes whose output is not a graph output; return how many were removed."""
    outputs = {o.name for o in graph.output}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)
    return len(alias)


def prune_unused_initializers(graph) -> int:
    """Drop initializers no node reads (paddle2onnx leaves a few); return how many were dropped."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    dropped = len(graph.initializer) - len(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return dropped


def rename_value(graph, old: str, new: str) -> None:
    """Rename a value everywhere it appears (node inputs/outputs, graph inputs/outputs, initializers)."""
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        if value.name == old:
            value.name = new


def name_dynamic_dims(value, info: TensorInfo) -> None:
    """Set symbolic dimension names (``image_batch``...) and check the static ones match the spec."""
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(info.shape):
        raise ValueError(f"{info.name}: ONNX rank {len(dims)} differs from the spec's shape {list(info.shape)}")
    for dim, want in zip(dims, info.shape):
        if isinstance(want, str):
            dim.dim_param = want
        elif dim.HasField("dim_value") and dim.dim_value != want:
            raise ValueError(f"{info.name}: ONNX dimension {dim.dim_value} differs from the spec's {want}")
        else:
            dim.dim_value = want
