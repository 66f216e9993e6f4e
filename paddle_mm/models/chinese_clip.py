"""Chinese-CLIP in Paddle.

Chinese-CLIP (Yang et al., 2022, "Chinese CLIP: Contrastive Vision-Language Pretraining in Chinese")
pairs a CLIP image tower (a ViT, or for RN50 OpenAI CLIP's ModifiedResNet with attention pooling) with a
BERT / RoBERTa-wwm text tower pooled at [CLS]. Parameter and buffer names follow cn_clip's state dict
(``visual.transformer.resblocks.0.attn.in_proj_weight``, ``visual.layer1.0.bn1.running_mean``,
``bert.encoder.layer.0.attention.self.query.weight``, ...) so official checkpoints map one to one; the only
layout difference is that Paddle stores Linear weights as [in, out] (torch: [out, in]).

Training-only switches from the config: ``grad_checkpointing`` (recompute each transformer block in backward
instead of keeping its activations) and ``mask_ratio`` (FLIP: drop that share of the ViT's patch tokens at
random). Neither changes anything in eval mode. ``attention`` picks how the ViT and BERT blocks compute attention
(``eager`` matmul + softmax, or ``sdpa``: Paddle's fused ``scaled_dot_product_attention``, Chinese-CLIP's
``--use-flash-attention``); the weights and the outputs are the same either way. :class:`BatchNorm` can take the
statistics of all processes' batches (``sync``, set by :func:`~paddle_mm.models.sync_bn.sync_batch_norm`,
``--use-bn-sync``).

Read top to bottom: activations and attention, the ResNet image tower, the ViT image tower, the BERT text
tower, then CLIP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .linear import Linear, linear

# cn_clip masks padded keys with an additive -10000 (BERT's original convention), not -inf.
_BERT_MASK_VALUE = -10000.0
# How attention is computed (CLIPConfig.attention): eager matmul + softmax, or Paddle's fused kernel, which itself
# picks flash / memory-efficient attention on GPUs that have them and a math path elsewhere.
ATTENTION_IMPLS = ("eager", "sdpa")


@dataclass
class CLIPConfig:
    """The architecture, with cn_clip's field names (see ``model_configs/*.json``).

    ``vision_layers`` picks the image tower as in cn_clip: an int is the depth of a ViT; a list of four
    ints is the number of bottleneck blocks per stage of a ModifiedResNet (RN50: ``[3, 4, 6, 3]``, with
    ``vision_patch_size`` null).
    """

    embed_dim: int
    image_resolution: int
    vision_layers: int | list[int]
    vision_width: int
    vision_patch_size: int | None
    vocab_size: int
    text_hidden_size: int
    text_num_hidden_layers: int
    text_num_attention_heads: int
    text_intermediate_size: int
    text_max_position_embeddings: int
    text_type_vocab_size: int = 2
    text_hidden_act: str = "gelu"
    text_hidden_dropout_prob: float = 0.1
    text_attention_probs_dropout_prob: float = 0.1
    text_initializer_range: float = 0.02
    vision_head_width: int = 64
    # No default on purpose in spirit: these two must match the tokenizer (cn_clip: [PAD] = 0, 52 tokens).
    context_length: int = 52
    pad_id: int = 0
    # Training-time switches (eval outputs do not depend on them).
    grad_checkpointing: bool = False  # recompute transformer blocks in backward: less memory, one more forward
    mask_ratio: float = 0.0  # FLIP patch dropout for ViT towers: share of patch tokens dropped per image
    attention: str = "eager"  # eager (matmul + softmax) or sdpa (paddle.nn.functional.scaled_dot_product_attention)

    @property
    def is_resnet(self) -> bool:
        return isinstance(self.vision_layers, (list, tuple))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CLIPConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        cfg = cls(**d)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ``ValueError`` naming the field when the combination cannot be built."""
        if self.is_resnet:
            if len(self.vision_layers) != 4 or not all(isinstance(n, int) and n > 0 for n in self.vision_layers):
                raise ValueError(
                    f"vision_layers {self.vision_layers!r}: a ResNet needs four positive block counts "
                    "(RN50: [3, 4, 6, 3])"
                )
            if self.image_resolution % 32:
                raise ValueError(f"image_resolution {self.image_resolution} must be a multiple of 32 for a ResNet")
            if self.mask_ratio:
                raise ValueError(
                    f"mask_ratio {self.mask_ratio} applies to ViT image towers only (as in cn_clip); "
                    "set it to 0 for a ResNet"
                )
        elif self.vision_patch_size is None:
            raise ValueError("vision_patch_size is null but vision_layers is an int (a ViT): give the patch size")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio {self.mask_ratio} must be in [0, 1)")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention {self.attention!r} is not one of {list(ATTENTION_IMPLS)}")


# ----------------------------------------------------------------------------- shared layers


def _recompute(layer: nn.Layer, *args: paddle.Tensor) -> paddle.Tensor:
    """Run ``layer`` without storing its activations; backward runs it again (gradient checkpointing)."""
    from paddle.distributed.fleet.utils import recompute  # imported on first use: the import costs seconds

    return recompute(layer, *args)


QUICK_GELU_ALPHA = 1.702


class QuickGELU(nn.Layer):
    """OpenAI CLIP's sigmoid approximation of GELU, used by the vision tower."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * F.sigmoid(QUICK_GELU_ALPHA * x)


class MultiheadAttention(nn.Layer):
    """torch.nn.MultiheadAttention's parameters (packed q/k/v), batch-first.

    ``in_proj_weight`` is [d, 3d] (Paddle layout; torch stores [3d, d]).
    """

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.head_dim = d_model // n_head
        self.in_proj_weight = self.create_parameter([d_model, 3 * d_model])
        self.in_proj_bias = self.create_parameter([3 * d_model], is_bias=True)
        self.out_proj = Linear(d_model, d_model)
        self.sdpa = False  # CLIPConfig.attention == "sdpa", set by CLIP

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # Reshapes say 0 for "this dimension as it is" (batch, length): an exported graph then holds no shape
        # arithmetic, and oneDNN keeps the projections that follow as BF16 inner products (docs/performance.md).
        D = self.n_head * self.head_dim
        qkv = linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3D)
        if self.sdpa and paddle.in_dynamic_mode():  # export traces the eager math: portable graphs on any runtime
            qkv = qkv.reshape([0, 0, 3, self.n_head, self.head_dim])  # (B, L, 3, nh, hd): sdpa's layout per part
            out = F.scaled_dot_product_attention(*qkv.unbind(2), training=self.training)
            return self.out_proj(out.reshape([0, 0, D]))  # (B, L, D)
        # q, k, v split before the heads: three 4-D transposes, not one 5-D transpose of the packed tensor (which
        # oneDNN runs in fp32, 5x slower; its gradient is a concat, not a full-size zero-fill per index).
        q, k, v = (self._heads(t) for t in qkv.split(3, axis=-1))  # each (B, nh, L, hd)
        attn = F.softmax(paddle.matmul(q, k, transpose_y=True) * (self.head_dim**-0.5), axis=-1)  # (B, nh, L, L)
        out = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([0, 0, D])  # (B, L, D)
        return self.out_proj(out)

    def _heads(self, x: paddle.Tensor) -> paddle.Tensor:
        return x.reshape([0, 0, self.n_head, self.head_dim]).transpose([0, 2, 1, 3])  # (B, L, D) -> (B, nh, L, hd)


class ResidualAttentionBlock(nn.Layer):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.attn = MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model, epsilon=1e-5)
        self.mlp = nn.Sequential(
            ("c_fc", Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", Linear(d_model * 4, d_model)),
        )
        self.ln_2 = nn.LayerNorm(d_model, epsilon=1e-5)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@contextmanager
def quick_gelu_as_swish(layer: nn.Layer) -> Iterator[None]:
    """Within: every ViT MLP under ``layer`` computes QuickGELU as ``swish``, its 1.702 folded into the weights.

    For export. ``x * sigmoid(a x) = swish(a x) / a``, so c_fc's weight and bias are multiplied by a, c_proj's
    weight divided by a, and the activation is ``swish``, which oneDNN runs inside c_fc's kernel and ONNX Runtime
    as its QuickGelu. Traced as written, QuickGELU is three element-wise passes (scale, sigmoid, multiply) that
    Paddle Inference runs in fp32 around a BF16 c_fc: a quarter of a BF16 ViT-B/16 image run. The weights and
    the activation are restored exactly on leaving.
    """
    mlps = [b.mlp for b in layer.sublayers(include_self=True) if isinstance(b, ResidualAttentionBlock)]
    mlps = [m for m in mlps if isinstance(m.gelu, QuickGELU)]
    params = [p for m in mlps for p in (m.c_fc.weight, m.c_fc.bias, m.c_proj.weight)]
    saved, activations = [p.numpy().copy() for p in params], [m.gelu for m in mlps]
    for m in mlps:
        with paddle.no_grad():
            m.c_fc.weight.set_value(m.c_fc.weight * QUICK_GELU_ALPHA)
            m.c_fc.bias.set_value(m.c_fc.bias * QUICK_GELU_ALPHA)
            m.c_proj.weight.set_value(m.c_proj.weight / QUICK_GELU_ALPHA)
        m.gelu = nn.Swish()
    try:
        yield
    finally:
        for p, value in zip(params, saved):
            p.set_value(value)
        for m, activation in zip(mlps, activations):
            m.gelu = activation


class Transformer(nn.Layer):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.grad_checkpointing = False
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.grad_checkpointing and self.training:
            for block in self.resblocks:
                x = _recompute(block, x)
            return x
        return self.resblocks(x)


# ----------------------------------------------------------------------------- ResNet image tower (RN50)


def _world_size() -> int:
    from ..distributed import world_size  # imported on first use: building a model needs no paddle.distributed

    return world_size()


class BatchNorm(nn.Layer):
    """2-D batch norm with torch's names (``running_mean``, ``running_var``, ``num_batches_tracked``).

    Paddle's BatchNorm2D calls its statistics ``_mean`` / ``_variance``; these names let ResNet checkpoints
    map one to one. Same defaults as torch (eps 1e-5, momentum 0.1 on the new batch).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.sync = False  # statistics over all processes' batches (sync_batch_norm, Global.sync_bn)
        self.weight = self.create_parameter([num_features], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([num_features], is_bias=True)
        self.register_buffer("running_mean", paddle.zeros([num_features]))
        self.register_buffer("running_var", paddle.ones([num_features]))
        self.register_buffer("num_batches_tracked", paddle.zeros([], dtype="int64"))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not self.training:
            return self._batch_norm(x, self.running_mean, self.running_var)
        if self.sync and _world_size() > 1:
            return self._synced(x)
        # The kernel updates the statistics it is given in place, and backward checks that tensors it saved were not
        # modified since: hand it copies, then write the buffers.
        old_var = self.running_var.clone()
        mean, var = self.running_mean.clone(), self.running_var.clone()
        out = self._batch_norm(x, mean, var)
        with paddle.no_grad():
            # Paddle updates running_var with the biased batch variance, torch with the unbiased one: rescale the
            # batch part, (1 - m) * old + m * var * n / (n - 1), so running statistics evolve as in cn_clip.
            n = math.prod(x.shape) // x.shape[1]  # values per channel
            if n > 1:
                decayed = (1.0 - self.momentum) * old_var
                var = decayed + (var - decayed) * (n / (n - 1))
            paddle.assign(mean, self.running_mean)
            paddle.assign(var, self.running_var)
            paddle.assign(self.num_batches_tracked + 1, self.num_batches_tracked)
        return out

    def _synced(self, x: paddle.Tensor) -> paddle.Tensor:
        """Training-mode batch norm with the statistics of all processes' batches (:mod:`.sync_bn`); running
        statistics as torch keeps them (the unbiased variance of the global batch)."""
        from .sync_bn import global_batch_stats, normalize  # paddle.distributed only when a run syncs

        mean, var, n = global_batch_stats(x)
        with paddle.no_grad():
            m = self.momentum
            paddle.assign((1.0 - m) * self.running_mean + m * mean, self.running_mean)
            paddle.assign((1.0 - m) * self.running_var + m * var * (n / max(n - 1.0, 1.0)), self.running_var)
            paddle.assign(self.num_batches_tracked + 1, self.num_batches_tracked)
        return normalize(x, mean, var, self.weight, self.bias, self.eps)

    def _batch_norm(self, x: paddle.Tensor, mean: paddle.Tensor, var: paddle.Tensor) -> paddle.Tensor:
        # Paddle's momentum weights the running statistic, torch's the batch statistic.
        return F.batch_norm(
            x,
            mean,
            var,
            self.weight,
            self.bias,
            training=self.training,
            momentum=1.0 - self.momentum,
            epsilon=self.eps,
        )


class Bottleneck(nn.Layer):
    """ResNet bottleneck with anti-aliased downsampling: an average pool before strided paths."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2D(inplanes, planes, 1, bias_attr=False)
        self.bn1 = BatchNorm(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, padding=1, bias_attr=False)
        self.bn2 = BatchNorm(planes)
        self.avgpool = nn.AvgPool2D(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2D(planes, planes * self.expansion, 1, bias_attr=False)
        self.bn3 = BatchNorm(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                ("-1", nn.AvgPool2D(stride)),  # the names "-1", "0", "1" are cn_clip's
                ("0", nn.Conv2D(inplanes, planes * self.expansion, 1, bias_attr=False)),
                ("1", BatchNorm(planes * self.expansion)),
            )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class AttentionPool2d(nn.Layer):
    """Pool a feature map with one multi-head attention query: the mean token, attending over all positions."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"ResNet feature width {embed_dim} is not divisible by {num_heads} attention heads")
        self.positional_embedding = self.create_parameter(
            [spacial_dim**2 + 1, embed_dim], default_initializer=nn.initializer.Normal(std=embed_dim**-0.5)
        )
        self.k_proj = Linear(embed_dim, embed_dim)
        self.q_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.c_proj = Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        B, C, H, W = x.shape
        nh, hd = self.num_heads, C // self.num_heads
        x = x.reshape([B, C, H * W]).transpose([0, 2, 1])  # (B, HW, C)
        x = paddle.concat([x.mean(axis=1, keepdim=True), x], axis=1) + self.positional_embedding  # (B, 1+HW, C)
        # cn_clip attends from every position and keeps position 0; computing only that query gives the same.
        q = self.q_proj(x[:, :1]).reshape([B, 1, nh, hd]).transpose([0, 2, 1, 3])  # (B, nh, 1, hd)
        k = self.k_proj(x).reshape([B, -1, nh, hd]).transpose([0, 2, 1, 3])  # (B, nh, 1+HW, hd)
        v = self.v_proj(x).reshape([B, -1, nh, hd]).transpose([0, 2, 1, 3])  # (B, nh, 1+HW, hd)
        attn = F.softmax(paddle.matmul(q * hd**-0.5, k, transpose_y=True), axis=-1)  # (B, nh, 1, 1+HW)
        out = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([B, C])  # (B, C)
        return self.c_proj(out)


class ModifiedResNet(nn.Layer):
    """OpenAI CLIP's ResNet: a 3-conv stem with an average pool, anti-aliased strided blocks, attention pooling."""

    def __init__(self, layers: list[int], output_dim: int, heads: int, input_resolution: int, width: int):
        super().__init__()
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2D(3, width // 2, kernel_size=3, stride=2, padding=1, bias_attr=False)
        self.bn1 = BatchNorm(width // 2)
        self.conv2 = nn.Conv2D(width // 2, width // 2, kernel_size=3, padding=1, bias_attr=False)
        self.bn2 = BatchNorm(width // 2)
        self.conv3 = nn.Conv2D(width // 2, width, kernel_size=3, padding=1, bias_attr=False)
        self.bn3 = BatchNorm(width)
        self.avgpool = nn.AvgPool2D(2)
        self.relu = nn.ReLU()
        self._inplanes = width  # grows as _make_layer adds stages
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)  # (B, width, S/4, S/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 32 * width, S/32, S/32)
        return self.attnpool(x)  # (B, output_dim)


# ----------------------------------------------------------------------------- ViT image tower


def random_masking(x: paddle.Tensor, mask_ratio: float) -> paddle.Tensor:
    """FLIP patch dropout (cn_clip's ``random_masking``): keep the class token and a random
    ``int((L - 1) * (1 - mask_ratio))`` of the L - 1 patch tokens, chosen per image."""
    B, L, D = x.shape
    keep = int((L - 1) * (1 - mask_ratio))
    ids_keep = paddle.argsort(paddle.rand([B, L - 1]), axis=1)[:, :keep] + 1  # (B, keep) patch positions
    patches = paddle.take_along_axis(x, ids_keep.unsqueeze(-1).expand([B, keep, D]), axis=1)  # (B, keep, D)
    return paddle.concat([x[:, :1, :], patches], axis=1)  # (B, 1 + keep, D)


class VisualTransformer(nn.Layer):
    """ViT: patchify, prepend a class token, transformer, LayerNorm on the class token, project.

    With ``mask_ratio`` > 0, training drops that share of the patch tokens (after the position embedding).
    """

    def __init__(
        self,
        input_resolution: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        mask_ratio: float = 0.0,
    ):
        super().__init__()
        if input_resolution % patch_size:
            raise ValueError(
                f"image_resolution {input_resolution} is not a multiple of vision_patch_size {patch_size}; "
                "choose sizes that divide evenly"
            )
        self.input_resolution = input_resolution
        self.mask_ratio = mask_ratio
        self.conv1 = nn.Conv2D(3, width, kernel_size=patch_size, stride=patch_size, bias_attr=False)
        scale = width**-0.5
        n_patches = (input_resolution // patch_size) ** 2
        self.class_embedding = self.create_parameter([width], default_initializer=nn.initializer.Normal(std=scale))
        self.positional_embedding = self.create_parameter(
            [n_patches + 1, width], default_initializer=nn.initializer.Normal(std=scale)
        )
        self.ln_pre = nn.LayerNorm(width, epsilon=1e-5)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width, epsilon=1e-5)
        self.proj = self.create_parameter([width, output_dim], default_initializer=nn.initializer.Normal(std=scale))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1(x)  # (B, width, grid, grid)
        B, W = x.shape[0], x.shape[1]
        x = x.reshape([B, W, -1]).transpose([0, 2, 1])  # (B, grid*grid, width)
        cls = self.class_embedding.reshape([1, 1, W]).expand([B, 1, W])
        x = paddle.concat([cls.astype(x.dtype), x], axis=1)  # (B, 1 + grid*grid, width)
        x = x + self.positional_embedding
        if self.training and self.mask_ratio > 0:
            x = random_masking(x, self.mask_ratio)  # (B, 1 + kept patches, width)
        x = self.transformer(self.ln_pre(x))
        return paddle.matmul(self.ln_post(x[:, 0, :]), self.proj)  # (B, output_dim)


# ----------------------------------------------------------------------------- text tower (BERT)


class BertEmbeddings(nn.Layer):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        h = cfg.text_hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, h)
        self.position_embeddings = nn.Embedding(cfg.text_max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(cfg.text_type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, epsilon=1e-12)
        self.dropout = nn.Dropout(cfg.text_hidden_dropout_prob)

    def forward(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        L = input_ids.shape[1]
        position_ids = paddle.arange(L, dtype="int64").unsqueeze(0)  # (1, L)
        # cn_clip feeds no token_type_ids, so every position uses type 0.
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        x = x + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Layer):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        h = cfg.text_hidden_size
        if h % cfg.text_num_attention_heads:
            raise ValueError(
                f"text_hidden_size {h} is not divisible by text_num_attention_heads {cfg.text_num_attention_heads}"
            )
        self.n_head = cfg.text_num_attention_heads
        self.head_dim = h // self.n_head
        self.query = Linear(h, h)
        self.key = Linear(h, h)
        self.value = Linear(h, h)
        self.dropout = nn.Dropout(cfg.text_attention_probs_dropout_prob)
        self.sdpa = cfg.attention == "sdpa"

    def _heads(self, x: paddle.Tensor) -> paddle.Tensor:
        # 0: this dimension as it is (see MultiheadAttention.forward)
        return x.reshape([0, 0, self.n_head, self.head_dim]).transpose([0, 2, 1, 3])  # (B, nh, L, hd)

    def forward(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        if self.sdpa and paddle.in_dynamic_mode():  # export traces the eager math: portable graphs on any runtime
            return self._fused(x, mask_bias)
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = paddle.matmul(q, k, transpose_y=True) / math.sqrt(self.head_dim) + mask_bias  # (B, nh, L, L)
        probs = self.dropout(F.softmax(scores, axis=-1))
        return paddle.matmul(probs, v).transpose([0, 2, 1, 3]).reshape([0, 0, self.n_head * self.head_dim])  # (B, L, h)

    def _fused(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        """The same attention through ``scaled_dot_product_attention`` (layout (B, L, nh, hd), no transposes)."""
        B, L, _ = x.shape
        q, k, v = (t(x).reshape([B, L, self.n_head, self.head_dim]) for t in (self.query, self.key, self.value))
        drop = self.dropout.p if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask_bias.astype(q.dtype), dropout_p=drop, training=self.training
        )  # (B, L, nh, hd)
        return out.reshape([B, L, -1])  # (B, L, h)


class BertSelfOutput(nn.Layer):
    def __init__(self, cfg: CLIPConfig, in_size: int):
        super().__init__()
        self.dense = Linear(in_size, cfg.text_hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.text_hidden_size, epsilon=1e-12)
        self.dropout = nn.Dropout(cfg.text_hidden_dropout_prob)

    def forward(self, hidden: paddle.Tensor, residual: paddle.Tensor) -> paddle.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Layer):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.text_hidden_size)

    def forward(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        return self.output(self.self(x, mask_bias), x)


class BertIntermediate(nn.Layer):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        if cfg.text_hidden_act != "gelu":
            raise ValueError(f"text_hidden_act {cfg.text_hidden_act!r} is not supported; Chinese-CLIP uses 'gelu'")
        self.dense = Linear(cfg.text_hidden_size, cfg.text_intermediate_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as in cn_clip's BERT


class BertLayer(nn.Layer):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.text_intermediate_size)

    def forward(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        x = self.attention(x, mask_bias)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Layer):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.grad_checkpointing = False
        self.layer = nn.LayerList([BertLayer(cfg) for _ in range(cfg.text_num_hidden_layers)])

    def forward(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        for layer in self.layer:
            x = _recompute(layer, x, mask_bias) if self.grad_checkpointing and self.training else layer(x, mask_bias)
        return x


class BertModel(nn.Layer):
    """The text tower's body. cn_clip's BertModel also has a pooler that CLIP never uses; we omit it and
    the weight converter drops ``bert.pooler.*``."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        if cfg.context_length > cfg.text_max_position_embeddings:
            raise ValueError(
                f"context_length {cfg.context_length} exceeds text_max_position_embeddings "
                f"{cfg.text_max_position_embeddings}; lower context_length or raise the embeddings size"
            )
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)

    def forward(self, input_ids: paddle.Tensor, attention_mask: paddle.Tensor) -> paddle.Tensor:
        mask_bias = (1.0 - attention_mask.astype("float32"))[:, None, None, :] * _BERT_MASK_VALUE  # (B, 1, 1, L)
        return self.encoder(self.embeddings(input_ids), mask_bias)  # (B, L, h)


# ----------------------------------------------------------------------------- CLIP


class CLIP(nn.Layer):
    """Dual encoder. ``forward`` returns a dict: normalized features, logits and the logit scale.

    The image tower is a ModifiedResNet when ``cfg.vision_layers`` is a list (RN50), else a ViT.
    ``grad_checkpointing`` covers the ViT and BERT blocks; like cn_clip it leaves a ResNet tower alone (recomputing
    a block would update its BatchNorm statistics twice).
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        cfg.check()
        self.config = cfg
        if cfg.is_resnet:
            # cn_clip: the attention pool works on 32 * width channels, split into heads of vision_head_width.
            self.visual = ModifiedResNet(
                layers=list(cfg.vision_layers),
                output_dim=cfg.embed_dim,
                heads=cfg.vision_width * 32 // cfg.vision_head_width,
                input_resolution=cfg.image_resolution,
                width=cfg.vision_width,
            )
        else:
            if cfg.vision_width % cfg.vision_head_width:
                raise ValueError(
                    f"vision_width {cfg.vision_width} is not divisible by vision_head_width {cfg.vision_head_width}"
                )
            self.visual = VisualTransformer(
                input_resolution=cfg.image_resolution,
                patch_size=cfg.vision_patch_size,
                width=cfg.vision_width,
                layers=cfg.vision_layers,
                heads=cfg.vision_width // cfg.vision_head_width,
                output_dim=cfg.embed_dim,
                mask_ratio=cfg.mask_ratio,
            )
            self.visual.transformer.grad_checkpointing = cfg.grad_checkpointing
            for block in self.visual.transformer.resblocks:
                block.attn.sdpa = cfg.attention == "sdpa"
        self.bert = BertModel(cfg)
        self.bert.encoder.grad_checkpointing = cfg.grad_checkpointing
        self.text_projection = self.create_parameter(
            [cfg.text_hidden_size, cfg.embed_dim],
            default_initializer=nn.initializer.Normal(std=cfg.text_hidden_size**-0.5),
        )
        self.logit_scale = self.create_parameter([], default_initializer=nn.initializer.Constant(math.log(1 / 0.07)))
        self._init_weights()

    def _init_weights(self) -> None:
        """BERT's normal(0.02) init for the text tower; open_clip's depth-scaled init for the ViT; cn_clip's
        init for the ResNet (attention pool ~ N(0, 1/width), last BatchNorm of each block zero)."""
        cfg = self.config
        normal = nn.initializer.Normal
        for layer in self.bert.sublayers():
            if isinstance(layer, (nn.Linear, nn.Embedding)):
                normal(std=cfg.text_initializer_range)(layer.weight)
            if isinstance(layer, nn.Linear) and layer.bias is not None:
                nn.initializer.Constant(0.0)(layer.bias)
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                normal(std=pool.c_proj.weight.shape[0] ** -0.5)(linear.weight)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for block in stage:
                    nn.initializer.Constant(0.0)(block.bn3.weight)  # each residual branch starts as identity
            return
        width, depth = cfg.vision_width, cfg.vision_layers
        proj_std = width**-0.5 * (2 * depth) ** -0.5
        for block in self.visual.transformer.resblocks:
            normal(std=width**-0.5)(block.attn.in_proj_weight)
            nn.initializer.Constant(0.0)(block.attn.in_proj_bias)
            normal(std=proj_std)(block.attn.out_proj.weight)
            normal(std=(2 * width) ** -0.5)(block.mlp.c_fc.weight)
            normal(std=proj_std)(block.mlp.c_proj.weight)

    def _check_resolution(self, pixel_values: paddle.Tensor) -> None:
        size = self.config.image_resolution
        got = [d for d in pixel_values.shape[-2:] if isinstance(d, int) and d > 0]  # -1: a dynamic dim in to_static
        if got and got != [size, size][: len(got)]:
            raise ValueError(
                f"pixel_values are {'x'.join(map(str, pixel_values.shape[-2:]))} px but this model takes "
                f"{size}x{size} (image_resolution); preprocess with ImageTransform({size}), or "
                "UnifiedTokenizer.from_pretrained(<this model's directory>)"
            )

    def lock_image_tower(self) -> None:
        """Freeze the image tower (LiT stage 1, cn_clip ``--freeze-vision``): no gradients reach it, and its
        BatchNorm layers (RN50) keep their running statistics even while the model trains."""
        for p in self.visual.parameters():
            p.stop_gradient = True
        self._image_tower_locked = True
        if self.training:
            self.train()

    def train(self):
        super().train()
        if getattr(self, "_image_tower_locked", False):
            for layer in self.visual.sublayers():
                if isinstance(layer, BatchNorm):
                    layer.eval()
        return self

    def encode_image(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        """[B, 3, S, S] normalized pixels -> [B, embed_dim] unnormalized features (like cn_clip)."""
        self._check_resolution(pixel_values)
        return self.visual(pixel_values)

    def encode_text(self, input_ids: paddle.Tensor, attention_mask: paddle.Tensor | None = None) -> paddle.Tensor:
        """[B, L] token ids -> [B, embed_dim] unnormalized features: [CLS] hidden state @ text_projection.

        ``attention_mask`` (1 = attend, as the tokenizer returns it) defaults to ``input_ids != pad_id``."""
        attention_mask = input_ids != self.config.pad_id if attention_mask is None else attention_mask
        hidden = self.bert(input_ids, attention_mask)  # (B, L, h)
        return paddle.matmul(hidden[:, 0, :], self.text_projection)

    def forward(
        self,
        pixel_values: paddle.Tensor,
        input_ids: paddle.Tensor,
        attention_mask: paddle.Tensor | None = None,
        token_type_ids: paddle.Tensor | None = None,
    ) -> dict[str, paddle.Tensor]:
        """Features and logits; takes ``model(**tokenizer(text=..., image=..., return_tensors="pd"))``.

        ``token_type_ids`` are accepted for that call and must be 0: Chinese-CLIP encodes one segment."""
        pixel_values, input_ids, attention_mask, token_type_ids = (
            paddle.to_tensor(x) if isinstance(x, np.ndarray) else x
            for x in (pixel_values, input_ids, attention_mask, token_type_ids)
        )
        if token_type_ids is not None and bool((token_type_ids != 0).any()):
            raise ValueError("token_type_ids must all be 0: Chinese-CLIP encodes one text segment (as cn_clip)")
        image_features = F.normalize(self.encode_image(pixel_values), axis=-1)
        text_features = F.normalize(self.encode_text(input_ids, attention_mask), axis=-1)
        logit_scale = self.logit_scale.exp()
        logits_per_image = logit_scale * paddle.matmul(image_features, text_features, transpose_y=True)
        return {
            "image_features": image_features,
            "text_features": text_features,
            "logit_scale": logit_scale,
            "logits_per_image": logits_per_image,
            "logits_per_text": logits_per_image.t(),
        }
