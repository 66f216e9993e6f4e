"""In-place edits of an ONNX graph, shared by the export clean-up (:mod:`.onnx_export`) and the attention
fusion (:mod:`.ort_fusion`): constants to initializers, Identity nodes bypassed, unused initializers dropped,
values renamed, dynamic dimensions named. ``onnx`` is imported only inside the functions that need it.
"""

from __future__ import annotations

import numpy as np

from .graphs import TensorInfo


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
