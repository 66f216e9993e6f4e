"""Fuse the self-attention blocks of a cleaned paddle2onnx graph into ONNX Runtime's ``com.microsoft::Attention``.

ONNX Runtime's own transformer optimizer does not recognise the attention that paddle2onnx writes (its
``optimize_model(model_type="vit"/"bert")`` fuses only LayerNorm here), so each block stays ~20 small nodes:
MatMul, Split, Reshape, Transposes, two batched MatMuls, Softmax... This pass
rewrites each block into one ``Attention`` node with packed q/k/v weights. That node runs the q/k/v
projection as one GEMM and the per-head attention in one kernel, and ``quantize_dynamic`` turns it into
``QAttention`` (one dynamic quantization of the block input instead of one per projection).

The two shapes of block we export (anything else is left unchanged and counted as skipped)::

    image (ViT, packed qkv):  X @ W[h, 3h] + b -> Split (last axis) q, k, v
                              -> each Reshape [B, S, H, D] -> Transpose (0, 2, 1, 3)
    text (BERT, separate):    X @ Wq + bq -> Reshape [B, S, H, D] -> Transpose (0, 2, 1, 3)   (same for k, v)
    then both:                q @ Transpose(k, (0, 1, 3, 2)) * scale [+ mask] -> Softmax -> @ v
                              -> Transpose (0, 2, 1, 3) -> Reshape [B, S, h]

The text mask is ``(1 - (input_ids != pad)) * c`` broadcast to [B, 1, 1, L]; ``Attention`` computes exactly
that from the 0/1 int32 mask [B, L] and ``mask_filter_value = c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .onnx_graph import prune_unused_initializers

MS_DOMAIN = "com.microsoft"


@dataclass
class FusionReport:
    """What :func:`fuse_attention` did: blocks fused, and Softmax nodes it could not match (with why)."""

    fused: int = 0
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"attention_fused": self.fused, "attention_skipped": len(self.skipped)}


class _NoMatch(Exception):
    """The nodes around a Softmax are not one of the attention shapes this pass knows."""


def fuse_attention(model) -> FusionReport:
    """In place: replace every recognised self-attention block of ``model`` by ``com.microsoft::Attention``."""
    graph = _Graph(model.graph)
    report = FusionReport()
    for softmax in [n for n in model.graph.node if n.op_type == "Softmax"]:
        try:
            block = graph.match_block(softmax)
        except _NoMatch as why:
            report.skipped.append(f"{softmax.output[0]}: {why}")
            continue
        graph.replace_block(block)
        report.fused += 1
    if report.fused:
        graph.finish(model)
    return report


@dataclass
class _Block:
    """One matched attention block: its input, packed weights, the node whose output it replaces."""

    x: str
    weight: np.ndarray  # [hidden_in, 3 * H * D], columns q | k | v
    bias: np.ndarray  # [3 * H * D]
    num_heads: int
    scale: float
    mask_keep: str | None  # bool [B, L], True = attend
    mask_filter_value: float | None
    output_node: object  # the final Reshape; Attention takes over its output name


class _Graph:
    """Producer / consumer look-ups and constant folding of small shape tensors over one ONNX graph."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {t.name: t for t in graph.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._to_array = numpy_helper.to_array
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.new_nodes: dict[str, list] = {}  # output of the node to insert before -> nodes
        self.new_inits: list = []
        self.mask_casts: dict[str, str] = {}  # bool keep mask -> its int32 cast
        self.replaced: set[str] = set()  # outputs of the final Reshapes that Attention nodes now produce
        self.value_info: list = []

    # ---- constants ----
    def const(self, name: str) -> np.ndarray | None:
        if name not in self.inits:
            return None
        if name not in self._arrays:
            self._arrays[name] = self._to_array(self.inits[name])
        return self._arrays[name]

    def scalar(self, name: str) -> float | None:
        value = self.const(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def shape_ints(self, name: str) -> list[int | None]:
        """The values of a 1-D shape tensor; None for entries computed at run time (the batch, a length)."""
        value = self.folded(name)
        if value is None:
            raise _NoMatch(f"shape {name!r} is not built from constants")
        return value

    def folded(self, name: str) -> list[int | None] | None:
        """Constant-fold the Concat / Unsqueeze / Reshape chains paddle2onnx builds shapes with.

        A run-time scalar that is unsqueezed into a Concat becomes one None entry; None overall when the
        value is not such a chain.
        """
        value = self.const(name)
        if value is not None:
            return [int(v) for v in value.reshape(-1)]
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type in ("Unsqueeze", "Reshape", "Squeeze", "Cast"):
            return self.folded(node.input[0])
        if node.op_type == "Concat":
            parts = []
            for i in node.input:
                part = self.folded(i)
                if part is None and getattr(self.producer.get(i), "op_type", "") != "Unsqueeze":
                    return None
                parts += [None] if part is None else part
            return parts
        return None

    # ---- matching helpers ----
    def node_of(self, name: str, op_type: str):
        node = self.producer.get(name)
        if node is None or node.op_type != op_type:
            found = "graph input / initializer" if node is None else node.op_type
            raise _NoMatch(f"expected {op_type} producing {name!r}, found {found}")
        return node

    def perm(self, node) -> list[int]:
        return [list(a.ints) for a in node.attribute if a.name == "perm"][0]

    def transpose_input(self, name: str, perm: list[int]) -> str:
        node = self.node_of(name, "Transpose")
        if self.perm(node) != perm:
            raise _NoMatch(f"Transpose {node.output[0]!r} has perm {self.perm(node)}, expected {perm}")
        return node.input[0]

    def skip_add_zero(self, name: str) -> str:
        """Step over ``x + 0`` nodes paddle2onnx writes after every scale."""
        node = self.producer.get(name)
        while node is not None and node.op_type == "Add" and self.scalar(node.input[1]) == 0.0:
            name = node.input[0]
            node = self.producer.get(name)
        return name

    def linear(self, name: str) -> tuple[str, np.ndarray, np.ndarray]:
        """``X @ W + b`` with constant W [in, out] and b [out] -> (X, W, b)."""
        add = self.node_of(name, "Add")
        matmul_out, bias = (add.input[0], add.input[1]) if self.const(add.input[1]) is not None else add.input[::-1]
        b = self.const(bias)
        mm = self.node_of(matmul_out, "MatMul")
        w = self.const(mm.input[1])
        if b is None or w is None or w.ndim != 2 or b.shape != (w.shape[1],):
            raise _NoMatch(f"{name!r} is not X @ W + b with constant W [in, out] and b [out]")
        return mm.input[0], w, b

    # ---- the block ----
    def match_block(self, softmax) -> _Block:
        if [a.i for a in softmax.attribute if a.name == "axis"] not in ([-1], [3]):
            raise _NoMatch("Softmax is not over the last axis")
        q, k, scale, keep, filter_value = self.scores(softmax.input[0])
        output_node, v = self.context(softmax.output[0])
        x, weight, bias, num_heads = self.projections(q, k, v)
        return _Block(x, weight, bias, num_heads, scale, keep, filter_value, output_node)

    def scores(self, name: str):
        """softmax input -> (q, k, scale, mask keep tensor or None, mask filter value or None)."""
        name = self.skip_add_zero(name)
        node = self.producer.get(name)
        keep = filter_value = None
        if node is not None and node.op_type == "Add" and self.const(node.input[1]) is None:
            for scores, mask in (node.input, node.input[::-1]):
                try:
                    keep, filter_value = self.mask(mask)
                except _NoMatch:
                    continue
                name = self.skip_add_zero(scores)
                break
            else:
                raise _NoMatch(f"{node.output[0]!r} adds a tensor that is not the pad mask")
        mul = self.node_of(name, "Mul")
        scale = self.scalar(mul.input[1])
        if scale is None:
            raise _NoMatch(f"{mul.output[0]!r} does not scale by a constant")
        qk = self.node_of(self.skip_add_zero(mul.input[0]), "MatMul")
        return qk.input[0], self.transpose_input(qk.input[1], [0, 1, 3, 2]), scale, keep, filter_value

    def mask(self, name: str) -> tuple[str, float]:
        """``Unsqueeze(1 - Cast(keep), [1, 2]) * c`` -> (keep, c)."""
        mul = self.node_of(self.skip_add_zero(name), "Mul")
        filter_value = self.scalar(mul.input[1])
        unsqueeze = self.node_of(mul.input[0], "Unsqueeze")
        if filter_value is None or self.shape_ints(unsqueeze.input[1]) != [1, 2]:
            raise _NoMatch(f"{name!r} is not a [B, 1, 1, L] mask times a constant")
        one_minus = self.node_of(unsqueeze.input[0], "Add")
        negate = self.node_of(one_minus.input[0], "Mul")
        if self.scalar(one_minus.input[1]) != 1.0 or self.scalar(negate.input[1]) != -1.0:
            raise _NoMatch(f"{name!r} is not (1 - keep) * c")
        return self.node_of(negate.input[0], "Cast").input[0], filter_value

    def context(self, probs: str) -> tuple[object, str]:
        """softmax output -> (final Reshape node [B, S, h], v)."""
        users = [n for n in self.consumers.get(probs, []) if n.op_type != "Shape"]  # Shape: for the merge Reshape
        if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != probs:
            raise _NoMatch("Softmax output is not only the left input of one MatMul")
        pv = users[0]
        users = self.consumers.get(pv.output[0], [])
        if len(users) != 1 or users[0].op_type != "Transpose" or self.perm(users[0]) != [0, 2, 1, 3]:
            raise _NoMatch("attention @ v is not followed by Transpose (0, 2, 1, 3)")
        users = self.consumers.get(users[0].output[0], [])
        if len(users) != 1 or users[0].op_type != "Reshape" or len(self.shape_ints(users[0].input[1])) != 3:
            raise _NoMatch("heads are not merged by one Reshape to [B, S, hidden]")
        return users[0], pv.input[1]

    def projections(self, q: str, k: str, v: str) -> tuple[str, np.ndarray, np.ndarray, int]:
        """(q, k, v) per-head tensors -> (block input X, packed W, packed b, num_heads).

        Each is ``Reshape [B, S, H, D] -> Transpose (0, 2, 1, 3)`` of its own projection (text) or of one third
        of a packed projection split on its last axis (image).
        """
        parts, shapes = [], []
        for name in (q, k, v):
            reshape = self.node_of(self.transpose_input(name, [0, 2, 1, 3]), "Reshape")
            parts.append(reshape.input[0])
            shapes.append(self.shape_ints(reshape.input[1]))
        split = self.producer.get(parts[0])
        if split is not None and split.op_type == "Split":
            x, weight, bias = self.packed_projection(split, parts)
        else:
            (x, wq, bq), (xk, wk, bk), (xv, wv, bv) = (self.linear(part) for part in parts)
            if not x == xk == xv:
                raise _NoMatch("q, k and v are projections of different tensors (not self-attention)")
            if not wq.shape == wk.shape == wv.shape:
                raise _NoMatch("q, k and v projections differ in size")
            weight, bias = np.concatenate([wq, wk, wv], axis=1), np.concatenate([bq, bk, bv])
        if not shapes[0] == shapes[1] == shapes[2]:
            raise _NoMatch(f"q, k and v are split into heads differently: {shapes}")
        return x, weight, bias, self.head_count(shapes[0], weight.shape[1] // 3)

    def packed_projection(self, split, parts: list[str]) -> tuple[str, np.ndarray, np.ndarray]:
        """``X @ W[h, 3h] + b`` split in three equal parts on its last axis, q, k, v in order -> (X, W, b)."""
        if list(split.output) != parts:
            raise _NoMatch(f"q, k and v are not the three outputs, in order, of Split {split.output[0]!r}")
        x, weight, bias = self.linear(split.input[0])
        axis = ([a.i for a in split.attribute if a.name == "axis"] or [0])[0]
        third = weight.shape[1] // 3
        sizes = self.shape_ints(split.input[1]) if len(split.input) > 1 and split.input[1] else [third] * 3
        if axis not in (-1, 2) or sizes != [third] * 3 or 3 * third != weight.shape[1]:
            raise _NoMatch(f"Split {split.output[0]!r} (axis {axis}, sizes {sizes}) is not q | k | v of [B, S, 3h]")
        return x, weight, bias

    @staticmethod
    def head_count(shape: list[int | None], hidden: int) -> int:
        heads, head_size = shape[-2], shape[-1]
        if heads is None or head_size is None or heads * head_size != hidden or heads < 1:
            raise _NoMatch(f"head reshape {shape} does not split {hidden} into heads x head size")
        return heads

    # ---- rewriting ----
    def replace_block(self, block: _Block) -> None:
        from onnx import TensorProto, helper, numpy_helper

        base = f"fused_attention.{len(self.replaced)}"
        weight, bias = f"{base}.qkv_weight", f"{base}.qkv_bias"
        self.new_inits += [
            numpy_helper.from_array(block.weight.astype(np.float32), weight),
            numpy_helper.from_array(block.bias.astype(np.float32), bias),
        ]
        inputs = [block.x, weight, bias]
        attrs = {"num_heads": block.num_heads, "scale": block.scale}
        out = block.output_node.output[0]
        before = self.new_nodes.setdefault(out, [])
        if block.mask_keep is not None:
            if block.mask_keep not in self.mask_casts:
                cast = f"{block.mask_keep}.int32"
                self.mask_casts[block.mask_keep] = cast
                before.append(helper.make_node("Cast", [block.mask_keep], [cast], f"{cast}.cast", to=TensorProto.INT32))
            inputs.append(self.mask_casts[block.mask_keep])
            attrs["mask_filter_value"] = block.mask_filter_value
        before.append(helper.make_node("Attention", inputs, [out], base, domain=MS_DOMAIN, **attrs))
        # ONNX shape inference does not know contrib ops; quantize_dynamic needs the type of what follows
        self.value_info.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None, None]))
        self.replaced.add(out)

    def finish(self, model) -> None:
        """Splice the new nodes in (each before the Reshape it replaces), drop dead nodes, declare the domain."""
        from onnx import helper

        nodes = []
        for node in self.graph.node:
            key = node.output[0] if node.output else ""
            nodes.extend(self.new_nodes.get(key, []))
            if key not in self.replaced:
                nodes.append(node)
        needed = {o.name for o in self.graph.output}
        live = []
        for node in reversed(nodes):  # nodes are in topological order, so one backward sweep finds the dead
            if any(o in needed for o in node.output):
                live.append(node)
                needed.update(node.input)
        del self.graph.node[:]
        self.graph.node.extend(reversed(live))
        self.graph.initializer.extend(self.new_inits)
        kept = [v for v in self.graph.value_info if v.name not in {i.name for i in self.value_info}]
        del self.graph.value_info[:]
        self.graph.value_info.extend(kept + self.value_info)
        prune_unused_initializers(self.graph)
        if not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
