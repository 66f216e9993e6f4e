"""Multimodal fusion over the Chinese-CLIP towers: a tower pair, one fusion module, one task head.

A model is built from a plain dict (the ``Arch`` config section with a ``fusion`` sub-section)::

    build_fusion_model({"name": "CN-CLIP-Tiny", "fusion": {"name": "cross_attention", "layers": 2}}, n_outputs=29)

Fusions (``FUSIONS``), each mapping tower outputs to ``n_outputs`` logits:

- ``concat``: early fusion; the pooled image and text embeddings concatenated, then an MLP (MMF's concat_bert).
- ``late``: one head per modality, their logits averaged (MMF's late fusion). Additive, so it cannot model
  questions whose answer depends on both inputs jointly.
- ``attention``: both embeddings projected to one width, mixed with per-sample softmax modality weights from a
  gate on both; the weights are returned as ``modality_weights``.
- ``cross_attention``: text tokens attend over image patch tokens (with text self-attention) in stacked
  pre-norm layers; the [CLS] position feeds the head (ViLBERT / LXMERT's text stream, one direction).
- ``filip``: FILIP's token-wise late interaction (Yao et al., 2021): every text token picks its most similar
  patch; the mean of those maxima is the retrieval score (``token_similarity``), and the token / matched-patch
  pairs, pooled, feed the head.
- ``mfb``: Multi-modal Factorized Bilinear pooling (Yu et al., 2017), with question-guided MFB attention over
  the patches (``attend: true``, the paper's MFB+CoAtt without its second glimpse) or on pooled features.
- ``text_only`` / ``image_only``: unimodal baselines (an MLP on one pooled embedding).

``forward(pixel_values, input_ids)`` returns a dict with ``logits`` ([B, n_outputs]) and, where a fusion has
them, ``modality_weights`` / ``token_similarity``; the task losses in :mod:`paddle_mm.losses` read these keys.
A model built with a cell head (``cell_classes``, for the per-cell auxiliary loss ``CellLoss``) adds
``cell_logits`` [B, cells, cell_classes] in training mode only: what the image tower's patch tokens say each cell of
the board holds. Evaluation, export and the Predictor never run the head. In training mode, the fusions that attend
from the question over the patches (``cross_attention``, ``mfb`` with ``attend``) also return ``image_attention``
[B, N], where the question looks, which ``AttendLoss`` supervises.
Token-level fusions need a ViT image tower (patch tokens); an RN50 tower is rejected with that explanation.
"""

from __future__ import annotations

from typing import Any

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .linear import Linear

# Defaults of every Arch.fusion key; config_schema.FUSION documents them.
FUSION_DEFAULTS: dict[str, Any] = {
    "hidden": 128,  # width of the fusion layers and of the head's hidden layer
    "dropout": 0.1,
    "layers": 2,  # cross_attention: stacked layers
    "heads": 4,  # cross_attention: attention heads
    "image_positions": False,  # cross_attention: a learned embedding per image token position
    "factor": 5,  # mfb: k, the rank of the factorized bilinear map
    "attend": True,  # mfb: question-guided attention over patches (False: pooled image embedding)
    "towers": "full",  # full | partial | frozen
    "train_layers": 1,  # partial: the last this many blocks of each tower are trained
    "clip_weights": None,  # directory with a CLIP model.safetensors to start the towers from
}
TOWER_MODES = ("full", "partial", "frozen")
TOKEN_FUSIONS = ("cross_attention", "filip", "mfb")


# ----------------------------------------------------------------------------- tower outputs


def vit_tokens(visual: nn.Layer, pixel_values: paddle.Tensor) -> paddle.Tensor:
    """All output tokens of a CLIP ViT tower, LayerNorm'd: [B, 1 + grid*grid, width] ([CLS] first).

    Runs the tower's own layers as ``VisualTransformer.forward`` does, without patch dropout and keeping every
    token; ``tokens[:, 0] @ visual.proj`` equals ``encode_image`` in eval mode.
    """
    x = visual.conv1(pixel_values)  # (B, width, grid, grid)
    B, W = x.shape[0], x.shape[1]
    x = x.reshape([B, W, -1]).transpose([0, 2, 1])  # (B, grid*grid, width)
    cls = visual.class_embedding.reshape([1, 1, W]).expand([B, 1, W])
    x = paddle.concat([cls.astype(x.dtype), x], axis=1) + visual.positional_embedding  # (B, 1+grid*grid, width)
    return visual.ln_post(visual.transformer(visual.ln_pre(x)))


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), Linear(hidden, d_out))


def _masked_mean(x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
    """Mean over axis 1 of [B, L, D] where ``mask`` [B, L] is 1."""
    m = mask.astype(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * m).sum(axis=1) / m.sum(axis=1).clip(min=1.0)


# ----------------------------------------------------------------------------- pooled-feature fusions


class ConcatFusion(nn.Layer):
    """Early fusion: MLP over [image embedding ; text embedding]."""

    def __init__(self, dims: dict[str, int], n_outputs: int, hidden: int, dropout: float, **_: Any):
        super().__init__()
        self.mlp = _mlp(2 * dims["embed"], hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        return {"logits": self.mlp(paddle.concat([f["image_embed"], f["text_embed"]], axis=-1))}


class LateFusion(nn.Layer):
    """MMF-style late fusion: an MLP head per modality; the two logit vectors are averaged."""

    def __init__(self, dims: dict[str, int], n_outputs: int, hidden: int, dropout: float, **_: Any):
        super().__init__()
        self.image_head = _mlp(dims["embed"], hidden, n_outputs, dropout)
        self.text_head = _mlp(dims["embed"], hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        return {"logits": (self.image_head(f["image_embed"]) + self.text_head(f["text_embed"])) / 2}


class AttentionFusion(nn.Layer):
    """Per-sample modality weights: h_m = tanh(W_m x_m); w = softmax(gate([h_i; h_t])); fused = 2 sum_m w_m h_m.

    The gate's last layer starts at zero, so training starts from equal weights (fused = h_i + h_t, a sum
    fusion) and learns to move away from them; with a random start the gate tends to settle on the text, which
    alone already reaches the answer prior, and the image is never learned (measured: docs/fusion.md).
    """

    def __init__(self, dims: dict[str, int], n_outputs: int, hidden: int, dropout: float, **_: Any):
        super().__init__()
        self.image_proj = Linear(dims["embed"], hidden)
        self.text_proj = Linear(dims["embed"], hidden)
        zero = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))
        self.gate = nn.Sequential(
            Linear(2 * hidden, hidden), nn.Tanh(), Linear(hidden, 2, weight_attr=zero, bias_attr=zero)
        )
        self.head = _mlp(hidden, hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        h = paddle.stack(
            [paddle.tanh(self.image_proj(f["image_embed"])), paddle.tanh(self.text_proj(f["text_embed"]))], 1
        )
        weights = F.softmax(self.gate(h.reshape([h.shape[0], -1])), axis=-1)  # (B, 2): image, text
        fused = 2.0 * (h * weights.unsqueeze(-1)).sum(axis=1)  # (B, hidden); equal weights give h_i + h_t
        return {"logits": self.head(fused), "modality_weights": weights}


class UnimodalHead(nn.Layer):
    """Baseline: an MLP on one modality's pooled embedding; the other input is ignored."""

    def __init__(self, dims: dict[str, int], n_outputs: int, hidden: int, dropout: float, *, key: str, **_: Any):
        super().__init__()
        self.key = key
        self.mlp = _mlp(dims["embed"], hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        return {"logits": self.mlp(f[self.key])}


# ----------------------------------------------------------------------------- token-level fusions


class CrossAttention(nn.Layer):
    """Multi-head attention from ``x`` [B, Lq, D] over ``memory`` [B, Lk, D]; ``bias`` [B, 1, 1, Lk] masks keys."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        if d % heads:
            raise ValueError(f"Arch.fusion.hidden {d} is not divisible by Arch.fusion.heads {heads}")
        self.heads, self.head_dim = heads, d // heads
        self.q, self.k, self.v, self.out = Linear(d, d), Linear(d, d), Linear(d, d), Linear(d, d)

    def _split(self, x: paddle.Tensor) -> paddle.Tensor:
        B, L, _ = x.shape
        return x.reshape([B, L, self.heads, self.head_dim]).transpose([0, 2, 1, 3])  # (B, nh, L, hd)

    def forward(
        self, x: paddle.Tensor, memory: paddle.Tensor, bias: paddle.Tensor | None = None
    ) -> tuple[paddle.Tensor, paddle.Tensor]:
        """(output [B, Lq, D], attention weights [B, nh, Lq, Lk])."""
        q, k, v = self._split(self.q(x)), self._split(self.k(memory)), self._split(self.v(memory))
        scores = paddle.matmul(q, k, transpose_y=True) * self.head_dim**-0.5  # (B, nh, Lq, Lk)
        if bias is not None:
            scores = scores + bias
        weights = F.softmax(scores, axis=-1)
        out = paddle.matmul(weights, v).transpose([0, 2, 1, 3])  # (B, Lq, nh, hd)
        return self.out(out.reshape([x.shape[0], x.shape[1], -1])), weights  # (B, Lq, D)


class CrossAttentionLayer(nn.Layer):
    """Pre-norm: text self-attention, text-over-image cross-attention, MLP; each with a residual."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.ln_self, self.ln_cross, self.ln_img, self.ln_mlp = (nn.LayerNorm(d) for _ in range(4))
        self.self_attn = CrossAttention(d, heads)
        self.cross_attn = CrossAttention(d, heads)
        self.mlp = nn.Sequential(Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), Linear(4 * d, d))

    def forward(
        self, x: paddle.Tensor, image: paddle.Tensor, text_bias: paddle.Tensor
    ) -> tuple[paddle.Tensor, paddle.Tensor]:
        """(text stream [B, L, D], text-over-image attention [B, nh, L, 1+N])."""
        h = self.ln_self(x)
        x = x + self.self_attn(h, h, text_bias)[0]
        attended, weights = self.cross_attn(self.ln_cross(x), self.ln_img(image))
        x = x + attended
        return x + self.mlp(self.ln_mlp(x)), weights


class CrossAttentionFusion(nn.Layer):
    """Text tokens (queries) over image patch tokens, ``layers`` deep; the [CLS] position feeds the head."""

    def __init__(
        self,
        dims: dict[str, int],
        n_outputs: int,
        hidden: int,
        dropout: float,
        layers: int,
        heads: int,
        image_positions: bool = False,
        **_,
    ):
        super().__init__()
        self.text_in = Linear(dims["text_width"], hidden)
        self.image_in = Linear(dims["image_width"], hidden)
        # where each patch is, as a key and value feature (LXMERT adds its boxes' coordinates to the region features)
        self.image_pos = (
            self.create_parameter([1, dims["image_tokens"], hidden], default_initializer=nn.initializer.Normal(0, 0.02))
            if image_positions
            else None
        )
        self.layers = nn.LayerList([CrossAttentionLayer(hidden, heads, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(hidden)
        self.head = _mlp(hidden, hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        x, image = self.text_in(f["text_tokens"]), self.image_in(f["image_tokens"])  # (B, L, H), (B, 1+N, H)
        if self.image_pos is not None:
            image = image + self.image_pos
        bias = (1.0 - f["text_mask"].astype(x.dtype))[:, None, None, :] * -1e4  # (B, 1, 1, L): padded keys off
        for layer in self.layers:
            x, weights = layer(x, image, bias)
        out = {"logits": self.head(self.ln(x[:, 0]))}
        if self.training:  # what AttendLoss supervises: where the [CLS] query of the last layer looks
            out["image_attention"] = weights[:, :, 0, 1:].mean(axis=1)  # (B, N) over the patches, heads averaged
        return out


class FILIPFusion(nn.Layer):
    """Token-wise late interaction: cosine similarities of text tokens and patches, max over patches per token.

    ``token_similarity`` [B] is FILIP's text-to-image score (masked mean over text tokens of the per-token max).
    For classification, each text token is paired with its best patch ([t; p; t*p]), mapped by an MLP and
    averaged over the text tokens.
    """

    def __init__(self, dims: dict[str, int], n_outputs: int, hidden: int, dropout: float, **_: Any):
        super().__init__()
        self.text_in = Linear(dims["text_width"], hidden)
        self.image_in = Linear(dims["image_width"], hidden)
        self.pair = nn.Sequential(Linear(3 * hidden, hidden), nn.GELU())
        self.head = _mlp(hidden, hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        t = F.normalize(self.text_in(f["text_tokens"]), axis=-1)  # (B, L, H)
        p = F.normalize(self.image_in(f["image_tokens"][:, 1:]), axis=-1)  # (B, N, H) patches only
        sim = paddle.matmul(t, p, transpose_y=True)  # (B, L, N)
        best = sim.argmax(axis=-1)  # (B, L)
        matched = paddle.take_along_axis(p, best.unsqueeze(-1).expand([-1, -1, p.shape[-1]]), axis=1)  # (B, L, H)
        mask = f["text_mask"]
        pooled = _masked_mean(self.pair(paddle.concat([t, matched, t * matched], axis=-1)), mask)  # (B, H)
        return {
            "logits": self.head(pooled),
            "token_similarity": _masked_mean(sim.max(axis=-1, keepdim=True), mask)[:, 0],
        }


class MFB(nn.Layer):
    """z = SumPool_k(U x * V y) over ``factor`` k, then signed square root and L2 normalisation: [B, out]."""

    def __init__(self, d_x: int, d_y: int, out: int, factor: int, dropout: float):
        super().__init__()
        self.out, self.factor = out, factor
        self.u, self.v = Linear(d_x, out * factor), Linear(d_y, out * factor)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
        z = self.dropout(self.u(x) * self.v(y))  # (..., out * k)
        z = z.reshape([*z.shape[:-1], self.out, self.factor]).sum(axis=-1)  # (..., out)
        z = paddle.sign(z) * paddle.sqrt(paddle.abs(z) + 1e-8)
        return F.normalize(z, axis=-1)


class MFBFusion(nn.Layer):
    """MFB between the question embedding and the image: attended patches (``attend``) or the pooled embedding."""

    def __init__(
        self, dims: dict[str, int], n_outputs: int, hidden: int, dropout: float, factor: int, attend: bool, **_: Any
    ):
        super().__init__()
        self.attend = attend
        image_dim = dims["image_width"] if attend else dims["embed"]
        if attend:
            self.att_mfb = MFB(image_dim, dims["embed"], hidden, factor, dropout)
            self.att_logit = Linear(hidden, 1)
        self.mfb = MFB(image_dim, dims["embed"], hidden, factor, dropout)
        self.head = _mlp(hidden, hidden, n_outputs, dropout)

    def forward(self, f: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        q = f["text_embed"]  # (B, D)
        if self.attend:
            patches = f["image_tokens"][:, 1:]  # (B, N, W)
            q_tiled = q.unsqueeze(1).expand([-1, patches.shape[1], -1])  # (B, N, D)
            att = F.softmax(self.att_logit(self.att_mfb(patches, q_tiled)), axis=1)  # (B, N, 1)
            image = (att * patches).sum(axis=1)  # (B, W)
        else:
            image = f["image_embed"]
        out = {"logits": self.head(self.mfb(image, q))}
        if self.attend and self.training:  # what AttendLoss supervises
            out["image_attention"] = att[:, :, 0]  # (B, N)
        return out


FUSIONS: dict[str, type] = {
    "concat": ConcatFusion,
    "late": LateFusion,
    "attention": AttentionFusion,
    "cross_attention": CrossAttentionFusion,
    "filip": FILIPFusion,
    "mfb": MFBFusion,
    "text_only": UnimodalHead,
    "image_only": UnimodalHead,
}


# ----------------------------------------------------------------------------- the model


class FusionModel(nn.Layer):
    """CLIP towers + a fusion. ``forward(pixel_values, input_ids)`` -> dict with ``logits`` [B, n_outputs].

    ``labels`` names the head's outputs in order (the answers of a VQA model, the classes of a classifier;
    None for matching): saved with the model, so an export answers in words."""

    def __init__(
        self,
        clip: nn.Layer,
        fusion_name: str,
        fusion_cfg: dict[str, Any],
        n_outputs: int,
        matching: bool = False,
        labels: list[str] | None = None,
        cell_classes: int = 0,
        cell_grid: int = 3,
    ):
        super().__init__()
        if labels is not None and len(labels) != n_outputs:
            raise ValueError(f"{len(labels)} labels for a head of {n_outputs} outputs; give one label per output")
        self.clip = clip
        self.config = clip.config  # image_resolution, context_length, pad_id: what the data pipeline reads
        self.fusion_name = fusion_name
        self.fusion_cfg = dict(fusion_cfg)
        self.n_outputs = n_outputs
        self.matching = matching
        self.labels = None if labels is None else [str(a) for a in labels]
        self.needs_tokens = fusion_name in TOKEN_FUSIONS and not (fusion_name == "mfb" and not fusion_cfg["attend"])
        if self.needs_tokens and clip.config.is_resnet:
            raise ValueError(
                f"fusion {fusion_name!r} reads image patch tokens, which only a ViT image tower has; "
                "use a ViT model (e.g. Arch.name: CN-CLIP-Tiny) or a pooled fusion (concat, late, attention)"
            )
        grid = 0 if clip.config.is_resnet else clip.config.image_resolution // clip.config.vision_patch_size
        dims = {
            "embed": clip.config.embed_dim,
            "image_width": clip.config.vision_width,
            "text_width": clip.config.text_hidden_size,
            "image_tokens": 1 + grid * grid,  # [CLS] and the patches
        }
        self.uses_image, self.uses_text = fusion_name != "text_only", fusion_name != "image_only"
        extra = {"key": "text_embed" if fusion_name == "text_only" else "image_embed"}
        self.fusion = FUSIONS[fusion_name](dims, n_outputs, **fusion_cfg, **extra)
        self.cell_classes, self.cell_grid = int(cell_classes), int(cell_grid)
        self.cell_head = self._build_cell_head(clip.config) if self.cell_classes else None

    def _build_cell_head(self, config) -> nn.Linear:
        """A linear map from each cell's pooled patch tokens to ``cell_classes`` logits (CellLoss's grounding
        supervision): one cell is one patch when the patch grid equals ``cell_grid`` (the shipped configs: 48 px,
        16-px patches), the mean of a block of patches when it is a multiple, and of the patches that overlap the
        cell otherwise (adaptive pooling: tiny test images still train, with blurred cell boundaries)."""
        if config.is_resnet or not self.uses_image or self.matching:
            what = "an RN50 tower" if config.is_resnet else ("matching" if self.matching else f"{self.fusion_name!r}")
            raise ValueError(
                f"a cell head (Loss.Train CellLoss) reads the ViT image tower's patch tokens; {what} has none to "
                "supervise: use a ViT tower and a VQA fusion that sees the image, or remove CellLoss"
            )
        return Linear(config.vision_width, self.cell_classes)

    def cell_logits(self, image_tokens: paddle.Tensor) -> paddle.Tensor:
        """[B, 1+g*g, width] ViT tokens -> [B, cell_grid**2, cell_classes] logits, cells row-major."""
        patches = image_tokens[:, 1:]  # (B, g*g, width)
        B, N, W = patches.shape
        g = int(round(N**0.5))
        x = patches.transpose([0, 2, 1]).reshape([B, W, g, g])  # (B, width, g, g)
        x = F.adaptive_avg_pool2d(x, self.cell_grid)  # (B, width, c, c): the patches over each cell averaged
        x = x.reshape([B, W, -1]).transpose([0, 2, 1])  # (B, c*c, width)
        return self.cell_head(x)

    def describe(self) -> dict[str, Any]:
        """The ``fusion`` section of ``model_config.json``: what :func:`fusion_from_config` rebuilds this from."""
        desc = {
            "name": self.fusion_name,
            **self.fusion_cfg,
            "n_outputs": self.n_outputs,
            "matching": self.matching,
            "labels": self.labels,
        }
        if self.cell_head is not None:  # left out otherwise: model_config.json stays as it was without CellLoss
            desc |= {"cell_classes": self.cell_classes, "cell_grid": self.cell_grid}
        return desc

    def features(self, pixel_values: paddle.Tensor | None, input_ids: paddle.Tensor | None) -> dict[str, paddle.Tensor]:
        """Tower outputs the fusion reads: ``image_embed`` [B, D] and, for token fusions, ``image_tokens``
        [B, 1+N, width]; ``text_embed`` [B, D], ``text_tokens`` [B, L, h] and ``text_mask`` [B, L]. A baseline
        runs only its own tower (the other input may be None)."""
        f: dict[str, paddle.Tensor] = {}
        if self.uses_text:
            mask = input_ids != self.config.pad_id
            f["text_tokens"] = self.clip.bert(input_ids, mask)  # (B, L, h)
            f["text_mask"] = mask
            f["text_embed"] = paddle.matmul(f["text_tokens"][:, 0], self.clip.text_projection)
        if self.uses_image and (self.needs_tokens or self._runs_cell_head()):
            f["image_tokens"] = vit_tokens(self.clip.visual, pixel_values)
            f["image_embed"] = paddle.matmul(f["image_tokens"][:, 0], self.clip.visual.proj)
        elif self.uses_image:
            f["image_embed"] = self.clip.encode_image(pixel_values)
        return f

    def encode_image(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        """The image tower's pooled embedding [B, D] (unnormalized), as ``CLIP.encode_image``."""
        return self.clip.encode_image(pixel_values)

    def encode_text(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return self.clip.encode_text(input_ids)

    def forward(
        self, pixel_values: paddle.Tensor | None = None, input_ids: paddle.Tensor | None = None
    ) -> dict[str, paddle.Tensor]:
        """Fusion outputs for the given pairs (``logits`` [B, n_outputs]); a matching model (``matching=True``)
        adds the in-batch hard-negative pairs and the contrastive features (see :meth:`matching_outputs`)."""
        f = self.features(pixel_values, input_ids)
        if self.matching:
            return self.matching_outputs(f, input_ids)
        out = self.fusion(f)
        if self._runs_cell_head():
            out["cell_logits"] = self.cell_logits(f["image_tokens"])
        return out

    def _runs_cell_head(self) -> bool:
        """The cell head is training-only supervision: in eval mode (evaluation, export) the model computes exactly
        what it would without one (a pooled fusion then reads ``encode_image``, not the ViT tokens)."""
        return self.cell_head is not None and self.training

    def matching_outputs(self, f: dict[str, paddle.Tensor], input_ids: paddle.Tensor) -> dict[str, paddle.Tensor]:
        """Image-text matching on a batch of B matching pairs (ALBEF-style): besides the B positives, each image is
        paired with its hardest in-batch text and each text with its hardest in-batch image (highest cosine of the
        pooled embeddings, rows with an identical caption excluded), giving ``match_logits`` [3B] and
        ``match_labels`` [3B] (1, then 0). ``image_features`` / ``text_features`` / ``logit_scale`` feed ClipLoss,
        which trains the embeddings the negatives are mined with."""
        B = input_ids.shape[0]
        img = F.normalize(f["image_embed"], axis=-1)
        txt = F.normalize(f["text_embed"], axis=-1)
        with paddle.no_grad():
            sim = paddle.matmul(img, txt, transpose_y=True)  # (B images, B texts)
            same = (input_ids.unsqueeze(1) == input_ids.unsqueeze(0)).all(axis=-1)  # (B, B) identical captions
            sim = paddle.where(same, paddle.full_like(sim, -1e4), sim)
            hard_text = sim.argmax(axis=1)  # (B,) for each image
            hard_image = sim.argmax(axis=0)  # (B,) for each text
        own = paddle.arange(B, dtype="int64")
        image_rows = paddle.concat([own, own, hard_image])  # (3B,)
        text_rows = paddle.concat([own, hard_text, own])
        pairs = {k: paddle.gather(v, image_rows if k.startswith("image") else text_rows) for k, v in f.items()}
        logits = self.fusion(pairs)["logits"][:, 0]  # (3B,)
        labels = paddle.concat([paddle.ones([B]), paddle.zeros([2 * B])])
        return {
            "logits": logits[:B].unsqueeze(-1),
            "match_logits": logits,
            "match_labels": labels,
            "image_features": img,
            "text_features": txt,
            "logit_scale": self.clip.logit_scale.exp(),
        }


# ----------------------------------------------------------------------------- export


class FusionLogits(nn.Layer):
    """``model``'s logits [B, n_outputs] as a layer of named inputs (what an export traces); a matching model
    scores the given pairs only (no in-batch negatives)."""

    def __init__(self, model: FusionModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> paddle.Tensor:
        return self.model.fusion(self.model.features(pixel_values, input_ids))["logits"]


class ImageFusionLogits(FusionLogits):
    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        return self.model.fusion(self.model.features(pixel_values, None))["logits"]


class TextFusionLogits(FusionLogits):
    def forward(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return self.model.fusion(self.model.features(None, input_ids))["logits"]


def fusion_input_names(model: FusionModel) -> list[str]:
    """The inputs ``model``'s logits read, in order: a baseline reads only its own."""
    return [n for n, used in (("pixel_values", model.uses_image), ("input_ids", model.uses_text)) if used]


def fusion_logits_layer(model: FusionModel) -> FusionLogits:
    """The :class:`FusionLogits` layer taking exactly :func:`fusion_input_names` of ``model``."""
    names = fusion_input_names(model)
    return {2: FusionLogits, 1: ImageFusionLogits if model.uses_image else TextFusionLogits}[len(names)](model)


def export_fusion_model(model: FusionModel, path: str) -> list[str]:
    """``paddle.jit.save`` the logits graph at ``path`` (prefix; writes ``.json`` + ``.pdiparams``) with a dynamic
    batch and text length. Returns the graph's input names in order: a baseline takes only its own input.
    (``paddle_mm.export.export_model`` writes the full, verified export of a fusion model.)"""
    from paddle.static import InputSpec

    S = model.config.image_resolution
    specs = {
        "pixel_values": InputSpec([None, 3, S, S], "float32", "pixel_values"),
        "input_ids": InputSpec([None, None], "int64", "input_ids"),
    }
    names = fusion_input_names(model)
    wrapper = fusion_logits_layer(model)
    wrapper.eval()
    static = paddle.jit.to_static(wrapper, input_spec=[specs[n] for n in names], full_graph=True)
    paddle.jit.save(static, path)
    return names


def _set_tower_training(clip: nn.Layer, mode: str, train_layers: int) -> None:
    """full: everything trains; frozen: no tower parameter does; partial: the last ``train_layers`` blocks of
    each tower plus its output LayerNorm / projection. ``logit_scale`` never trains (no contrastive loss)."""
    if mode not in TOWER_MODES:
        raise ValueError(f"Arch.fusion.towers {mode!r}: expected one of {TOWER_MODES}")
    for p in clip.parameters():
        p.stop_gradient = mode != "full"
    clip.logit_scale.stop_gradient = True
    if mode != "partial":
        return
    trained: list[nn.Layer] = list(clip.bert.encoder.layer)[-train_layers:]
    if clip.config.is_resnet:
        trained += [clip.visual.layer4, clip.visual.attnpool]
    else:
        trained += list(clip.visual.transformer.resblocks)[-train_layers:] + [clip.visual.ln_post]
        clip.visual.proj.stop_gradient = False
    clip.text_projection.stop_gradient = False
    for layer in trained:
        for p in layer.parameters():
            p.stop_gradient = False


def fusion_from_config(clip: nn.Layer, desc: dict[str, Any]) -> FusionModel:
    """The fusion model a saved ``model_config.json``'s ``fusion`` section describes (:meth:`FusionModel.describe`),
    on the towers ``clip`` (random weights: ``load_model`` loads them after)."""
    desc = dict(desc)
    name = desc.pop("name", None)
    if name not in FUSIONS:
        raise KeyError(f"model_config.json: unknown fusion {name!r}; available: {sorted(FUSIONS)}")
    head = {k: desc.pop(k) for k in ("n_outputs", "matching", "labels", "cell_classes", "cell_grid") if k in desc}
    known = set(FUSION_DEFAULTS) - {"towers", "train_layers", "clip_weights"}
    unknown = sorted(set(desc) - known)
    if unknown or "n_outputs" not in head:
        raise KeyError(
            f"model_config.json: fusion keys {unknown or 'n_outputs missing'} do not describe a fusion model; "
            f"expected name, n_outputs, matching, labels and {sorted(known)}"
        )
    cfg = {k: FUSION_DEFAULTS[k] for k in known} | desc
    cells = {k: int(head[k]) for k in ("cell_classes", "cell_grid") if k in head}
    return FusionModel(clip, name, cfg, int(head["n_outputs"]), bool(head.get("matching")), head.get("labels"), **cells)


def build_fusion_model(
    arch: dict[str, Any],
    n_outputs: int,
    matching: bool = False,
    labels: list[str] | None = None,
    cell_classes: int = 0,
    cell_grid: int = 3,
) -> FusionModel:
    """Build from an ``Arch`` section whose ``fusion`` sub-dict names the fusion (other Arch keys shape the towers).

    ``n_outputs`` is the head size (the task's number of answers or classes; 1 for matching); ``labels`` names
    its outputs (the answers or classes, saved with the model); ``cell_classes`` > 0 adds the training-only cell
    head that ``CellLoss`` supervises (``cell_grid`` cells per side). Missing fusion keys
    take ``FUSION_DEFAULTS``; unknown ones are an error. ``matching`` makes ``forward`` return the image-text
    matching outputs with in-batch hard negatives (and lets ``logit_scale`` train for the contrastive term).
    """
    from .registry import create_model

    arch = {k: v for k, v in arch.items() if v is not None}
    fusion = dict(arch.pop("fusion"))
    name = fusion.pop("name", None)
    if name not in FUSIONS:
        raise KeyError(f"unknown fusion {name!r} in Arch.fusion.name; available: {sorted(FUSIONS)}")
    unknown = sorted(set(fusion) - set(FUSION_DEFAULTS))
    if unknown:
        raise KeyError(f"unknown Arch.fusion keys {unknown}; known: {sorted(FUSION_DEFAULTS)}")
    cfg = {**FUSION_DEFAULTS, **{k: v for k, v in fusion.items() if v is not None}}
    arch.pop("freeze_vision", None)  # tower training is Arch.fusion.towers for fusion models
    clip = create_model(arch.pop("name"), **arch)
    if cfg["clip_weights"]:
        load_tower_weights(clip, cfg["clip_weights"], "Arch.fusion.clip_weights")
    _set_tower_training(clip, cfg.pop("towers"), cfg.pop("train_layers"))
    cfg.pop("clip_weights")
    if matching:
        if name in ("text_only", "image_only"):
            raise ValueError(f"fusion {name!r} sees one modality and cannot score image-text pairs; pick a fusion")
        clip.logit_scale.stop_gradient = False
    return FusionModel(clip, name, cfg, n_outputs, matching, labels, cell_classes, cell_grid)


def load_tower_weights(clip, directory: str, key: str) -> None:
    """Start ``clip``'s towers from a trained CLIP's ``model.safetensors`` (``key`` names the config setting)."""
    from pathlib import Path

    from ..config import ConfigError
    from ..io import load_state_into

    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(
            f"{key}={directory!r} holds no model.safetensors; train the towers first "
            f"(python tools/train.py -c configs/fusion/towers_clip.yml) or set {key}=null to train them from scratch"
        )
    load_state_into(clip, weights)
