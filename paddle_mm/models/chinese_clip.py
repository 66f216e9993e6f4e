"""Chinese-CLIP in Paddle.

Chinese-CLIP (Yang et al., 2022, "Chinese CLIP: Contrastive Vision-Language Pretraining in Chinese")
pairs a CLIP ViT image tower with a BERT / RoBERTa-wwm text tower pooled at [CLS]. Parameter names
follow cn_clip's state dict (``visual.transformer.resblocks.0.attn.in_proj_weight``,
``bert.encoder.layer.0.attention.self.query.weight``, ...) so official checkpoints map one to one;
the only layout difference is that Paddle stores Linear weights as [in, out] (torch: [out, in]).

Read top to bottom: activations and attention, the vision tower, the BERT text tower, then CLIP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# cn_clip masks padded keys with an additive -10000 (BERT's original convention), not -inf.
_BERT_MASK_VALUE = -10000.0


@dataclass
class CLIPConfig:
    """The architecture, with cn_clip's field names (see ``model_configs/*.json``)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
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

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


# ----------------------------------------------------------------------------- shared layers


class QuickGELU(nn.Layer):
    """OpenAI CLIP's sigmoid approximation of GELU, used by the vision tower."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * F.sigmoid(1.702 * x)


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
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        B, L, D = x.shape
        qkv = paddle.matmul(x, self.in_proj_weight) + self.in_proj_bias  # (B, L, 3D)
        qkv = qkv.reshape([B, L, 3, self.n_head, self.head_dim]).transpose([2, 0, 3, 1, 4])  # (3, B, nh, L, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.softmax(paddle.matmul(q, k, transpose_y=True) * (self.head_dim**-0.5), axis=-1)  # (B, nh, L, L)
        out = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([B, L, D])  # (B, L, D)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Layer):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.attn = MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model, epsilon=1e-5)
        self.mlp = nn.Sequential(
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        )
        self.ln_2 = nn.LayerNorm(d_model, epsilon=1e-5)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Layer):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.resblocks(x)


# ----------------------------------------------------------------------------- vision tower


class VisualTransformer(nn.Layer):
    """ViT: patchify, prepend a class token, transformer, LayerNorm on the class token, project."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int):
        super().__init__()
        if input_resolution % patch_size:
            raise ValueError(
                f"image_resolution {input_resolution} is not a multiple of vision_patch_size {patch_size}; "
                "choose sizes that divide evenly"
            )
        self.input_resolution = input_resolution
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
        x = self.ln_pre(x + self.positional_embedding)
        x = self.transformer(x)
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
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.dropout = nn.Dropout(cfg.text_attention_probs_dropout_prob)

    def _heads(self, x: paddle.Tensor) -> paddle.Tensor:
        B, L, _ = x.shape
        return x.reshape([B, L, self.n_head, self.head_dim]).transpose([0, 2, 1, 3])  # (B, nh, L, hd)

    def forward(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = paddle.matmul(q, k, transpose_y=True) / math.sqrt(self.head_dim) + mask_bias  # (B, nh, L, L)
        probs = self.dropout(F.softmax(scores, axis=-1))
        B, _, L, _ = probs.shape
        return paddle.matmul(probs, v).transpose([0, 2, 1, 3]).reshape([B, L, -1])  # (B, L, h)


class BertSelfOutput(nn.Layer):
    def __init__(self, cfg: CLIPConfig, in_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, cfg.text_hidden_size)
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
        self.dense = nn.Linear(cfg.text_hidden_size, cfg.text_intermediate_size)

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
        self.layer = nn.LayerList([BertLayer(cfg) for _ in range(cfg.text_num_hidden_layers)])

    def forward(self, x: paddle.Tensor, mask_bias: paddle.Tensor) -> paddle.Tensor:
        for layer in self.layer:
            x = layer(x, mask_bias)
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
    """Dual encoder. ``forward`` returns a dict: normalized features, logits and the logit scale."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.config = cfg
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
        )
        self.bert = BertModel(cfg)
        self.text_projection = self.create_parameter(
            [cfg.text_hidden_size, cfg.embed_dim],
            default_initializer=nn.initializer.Normal(std=cfg.text_hidden_size**-0.5),
        )
        self.logit_scale = self.create_parameter([], default_initializer=nn.initializer.Constant(math.log(1 / 0.07)))
        self._init_weights()

    def _init_weights(self) -> None:
        """BERT's normal(0.02) init for the text tower; open_clip's depth-scaled init for the ViT."""
        cfg = self.config
        normal = nn.initializer.Normal
        for layer in self.bert.sublayers():
            if isinstance(layer, (nn.Linear, nn.Embedding)):
                normal(std=cfg.text_initializer_range)(layer.weight)
            if isinstance(layer, nn.Linear) and layer.bias is not None:
                nn.initializer.Constant(0.0)(layer.bias)
        width, depth = cfg.vision_width, cfg.vision_layers
        proj_std = width**-0.5 * (2 * depth) ** -0.5
        for block in self.visual.transformer.resblocks:
            normal(std=width**-0.5)(block.attn.in_proj_weight)
            nn.initializer.Constant(0.0)(block.attn.in_proj_bias)
            normal(std=proj_std)(block.attn.out_proj.weight)
            normal(std=(2 * width) ** -0.5)(block.mlp.c_fc.weight)
            normal(std=proj_std)(block.mlp.c_proj.weight)

    def encode_image(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        """[B, 3, S, S] normalized pixels -> [B, embed_dim] unnormalized features (like cn_clip)."""
        return self.visual(pixel_values)

    def encode_text(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        """[B, L] token ids -> [B, embed_dim] unnormalized features: [CLS] hidden state @ text_projection."""
        attention_mask = input_ids != self.config.pad_id
        hidden = self.bert(input_ids, attention_mask)  # (B, L, h)
        return paddle.matmul(hidden[:, 0, :], self.text_projection)

    def forward(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> dict[str, paddle.Tensor]:
        image_features = F.normalize(self.encode_image(pixel_values), axis=-1)
        text_features = F.normalize(self.encode_text(input_ids), axis=-1)
        logit_scale = self.logit_scale.exp()
        logits_per_image = logit_scale * paddle.matmul(image_features, text_features, transpose_y=True)
        return {
            "image_features": image_features,
            "text_features": text_features,
            "logit_scale": logit_scale,
            "logits_per_image": logits_per_image,
            "logits_per_text": logits_per_image.t(),
        }
