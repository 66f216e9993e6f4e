"""Chinese captioning: a small Transformer decoder cross-attending over a Chinese-CLIP ViT's patch tokens.

The image tower (any CLIP ViT, e.g. CN-CLIP-Tiny, optionally started from a towers checkpoint) gives its
LayerNorm'd output tokens [B, 1 + grid*grid, width] (:func:`~paddle_mm.models.fusion.vit_tokens`); a linear map
makes them the decoder's memory. The decoder (pre-LN ``TransformerDecoderLayer`` blocks: causal self-attention,
cross-attention over the memory, MLP) predicts the next WordPiece of the Chinese-CLIP vocabulary, starting from
``[CLS]`` and ending at ``[SEP]`` as ``tokenize`` frames a caption. Its embedding and (tied) output layer cover
``output_ids``: the WordPiece ids of the training captions plus the special tokens, so a 21128-way softmax is
not paid for the few hundred characters a caption set uses; ids are mapped to that compact range and back.

Decoding (:func:`greedy_search`, :func:`beam_search`) is plain numpy over a ``step(ids, rows)`` function that
returns next-token log-probabilities, so the same loops run over the eager model and over the exported step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .fusion import vit_tokens
from .linear import Linear

CAPTION_DEFAULTS: dict[str, Any] = {
    "width": 128,
    "layers": 2,
    "heads": 4,
    "dropout": 0.1,
    "max_length": 32,  # tokens decoded, [CLS] and [SEP] included
    "freeze_image": False,
    "clip_weights": None,
    "beam_size": 1,  # evaluation: 1 = greedy
    "length_penalty": 0.0,  # GNMT alpha: score / ((5 + length) / 6) ** alpha
}
StepFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ids [n, t] compact, image rows [n]) -> log-probs [n, V]


@dataclass
class CaptionConfig:
    width: int
    layers: int
    heads: int
    dropout: float
    max_length: int
    output_ids: list[int]  # WordPiece id of every compact id (0: [PAD], then [CLS], [SEP], [UNK], the rest)
    beam_size: int = 1
    length_penalty: float = 0.0
    freeze_image: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class CaptionModel(nn.Layer):
    """Image tower + caption decoder. ``forward(pixel_values, input_ids)`` returns ``logits`` [M, V] of the M
    non-padding next-token targets (so ``ClassificationLoss`` against :meth:`targets` trains it)."""

    model_type = "captioning"

    def __init__(self, clip: nn.Layer, cfg: CaptionConfig, special: dict[str, int]):
        super().__init__()
        if clip.config.is_resnet:
            raise ValueError("captioning cross-attends over ViT patch tokens; pick a ViT Arch.name (e.g. CN-CLIP-Tiny)")
        self.config, self.caption = clip.config, cfg  # config: the CLIP fields (image_resolution, pad_id, ...)
        self.visual = clip.visual
        lookup = np.full([clip.config.vocab_size], cfg.output_ids.index(special["unk"]), "int64")
        lookup[np.asarray(cfg.output_ids)] = np.arange(len(cfg.output_ids))
        self.register_buffer("lookup", paddle.to_tensor(lookup), persistable=False)  # WordPiece id -> compact id
        self.bos, self.eos = cfg.output_ids.index(special["cls"]), cfg.output_ids.index(special["sep"])
        self.pad = cfg.output_ids.index(clip.config.pad_id)
        d = cfg.width
        self.image_in = nn.Sequential(Linear(clip.visual.conv1.weight.shape[0], d), nn.LayerNorm(d))
        self.embed = nn.Embedding(len(cfg.output_ids), d)
        init = nn.initializer.Normal(std=0.02)
        self.pos = self.create_parameter([clip.config.context_length, d], default_initializer=init)
        self.blocks = nn.LayerList(
            [
                nn.TransformerDecoderLayer(d, cfg.heads, 4 * d, cfg.dropout, "gelu", normalize_before=True)
                for _ in range(cfg.layers)
            ]
        )
        self.ln_f = nn.LayerNorm(d)
        if cfg.freeze_image:
            for p in self.visual.parameters():
                p.stop_gradient = True

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self.caption).items() if k != "extra"}

    def to_compact(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return paddle.gather(self.lookup, input_ids.reshape([-1])).reshape(input_ids.shape)

    def encode(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        """The decoder's memory [B, 1 + grid*grid, width]."""
        if self.caption.freeze_image:
            with paddle.no_grad():
                tokens = vit_tokens(self.visual, pixel_values)
        else:
            tokens = vit_tokens(self.visual, pixel_values)
        return self.image_in(tokens)

    def decode(self, memory: paddle.Tensor, ids: paddle.Tensor) -> paddle.Tensor:
        """Logits [B, T, V] of the next compact token after every prefix of ``ids`` [B, T] (compact)."""
        T = paddle.shape(ids)[1]  # a tensor, so the exported step takes any prefix length
        x = self.embed(ids) + self.pos[:T]  # (B, T, d)
        causal = paddle.triu(paddle.full([T, T], -1e9, x.dtype), diagonal=1)  # (T, T) additive
        for block in self.blocks:
            x = block(x, memory, tgt_mask=causal)
        return paddle.matmul(self.ln_f(x), self.embed.weight, transpose_y=True)  # tied output layer

    def step(self, memory: paddle.Tensor, ids: paddle.Tensor) -> paddle.Tensor:
        """Next-token log-probabilities [B, V] after the prefixes ``ids`` [B, t] (compact ids)."""
        return F.log_softmax(self.decode(memory, ids)[:, -1], axis=-1)

    def targets(self, input_ids: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """(decoder inputs [B, T-1], the flattened non-padding next-token labels [M]) of WordPiece ``input_ids``."""
        ids = self.to_compact(input_ids)
        nxt = ids[:, 1:]
        return ids[:, :-1], paddle.masked_select(nxt, nxt != self.pad)

    def forward(self, pixel_values: paddle.Tensor, input_ids: paddle.Tensor) -> dict[str, paddle.Tensor]:
        inputs, _ = self.targets(input_ids)
        nxt = self.to_compact(input_ids)[:, 1:]
        logits = self.decode(self.encode(pixel_values), inputs)  # (B, T-1, V)
        keep = (nxt != self.pad).reshape([-1])
        return {"logits": paddle.gather(logits.reshape([-1, logits.shape[-1]]), paddle.nonzero(keep).reshape([-1]))}

    @paddle.no_grad()
    def step_fn(self, pixel_values: paddle.Tensor) -> StepFn:
        """A ``step(ids, rows)`` for the search functions over these images (their memory computed once)."""
        memory = self.encode(pixel_values)

        def step(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
            with paddle.no_grad():
                m = paddle.gather(memory, paddle.to_tensor(rows))
                return self.step(m, paddle.to_tensor(ids)).numpy()

        return step

    def to_wordpiece(self, seqs: list[list[int]]) -> list[list[int]]:
        """Compact token sequences (without [CLS]/[SEP]) -> WordPiece ids."""
        return [[self.caption.output_ids[t] for t in s] for s in seqs]


class EncoderGraph(nn.Layer):
    """Export wrapper: pixel_values [B, 3, S, S] -> memory [B, 1 + grid*grid, width]."""

    def __init__(self, model: CaptionModel):
        super().__init__()
        self.model = model

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.model.encode(x)


class StepGraph(nn.Layer):
    """Export wrapper: (memory [B, P, width], ids [B, t] compact int64) -> next-token log-probabilities [B, V]."""

    def __init__(self, model: CaptionModel):
        super().__init__()
        self.model = model

    def forward(self, memory: paddle.Tensor, ids: paddle.Tensor) -> paddle.Tensor:
        return self.model.step(memory, ids)


# ----------------------------------------------------------------------------- decoding (numpy over a step)


def greedy_search(step: StepFn, n: int, bos: int, eos: int, max_length: int) -> list[list[int]]:
    """The argmax token at every step until ``eos`` (not returned) or ``max_length`` tokens with [CLS]."""
    ids = np.full([n, 1], bos, "int64")
    done = np.zeros([n], bool)
    out: list[list[int]] = [[] for _ in range(n)]
    for _ in range(max_length - 1):
        live = np.flatnonzero(~done)
        if not len(live):
            break
        nxt = step(ids[live], live).argmax(axis=-1)
        column = np.full([n, 1], eos, "int64")
        column[live, 0] = nxt
        ids = np.concatenate([ids, column], axis=1)  # (n, t+1)
        for r, tok in zip(live, nxt):
            if tok == eos:
                done[r] = True
            else:
                out[r].append(int(tok))
    return out


def length_normalised(score: float, length: int, alpha: float) -> float:
    """GNMT's length penalty: ``score / ((5 + length) / 6) ** alpha`` (alpha 0: the plain log-probability)."""
    return score / ((5.0 + length) / 6.0) ** alpha


def beam_search(
    step: StepFn, n: int, bos: int, eos: int, max_length: int, beam: int, alpha: float = 0.0
) -> list[list[int]]:
    """Beam search with GNMT's length penalty; the finished hypothesis with the best normalised score wins.

    A hypothesis finishes when ``eos`` is among the ``2 * beam`` best extensions of the live ones; an image stops
    when ``beam`` hypotheses finished. With ``beam == 1`` this returns exactly :func:`greedy_search`'s tokens.
    """
    live: list[list[tuple[list[int], float]]] = [[([bos], 0.0)] for _ in range(n)]
    done: list[list[tuple[list[int], float]]] = [[] for _ in range(n)]
    for _ in range(max_length - 1):
        flat = [(i, toks, s) for i in range(n) for toks, s in live[i]]
        if not flat:
            break
        logp = step(np.asarray([t for _, t, _ in flat], "int64"), np.asarray([i for i, _, _ in flat]))
        V = logp.shape[1]
        for i in range(n):
            idx = [k for k, f in enumerate(flat) if f[0] == i]
            if not idx:
                continue
            cand = (np.asarray([flat[k][2] for k in idx])[:, None] + logp[idx]).ravel()  # (hyps * V,)
            new = []
            for c in np.argsort(-cand, kind="stable")[: 2 * beam]:
                h, tok = divmod(int(c), V)
                toks = flat[idx[h]][1] + [tok]
                if tok == eos:
                    done[i].append((toks[1:-1], length_normalised(float(cand[c]), len(toks) - 1, alpha)))
                else:
                    new.append((toks, float(cand[c])))
                if len(new) == beam:
                    break
            live[i] = [] if len(done[i]) >= beam else new
    for i in range(n):  # hypotheses cut at max_length count as finished
        done[i] += [(t[1:], length_normalised(s, len(t) - 1, alpha)) for t, s in live[i]]
    return [max(d, key=lambda x: x[1])[0] for d in done]


# ----------------------------------------------------------------------------- building


def caption_config(caption: dict[str, Any], output_ids: list[int]) -> CaptionConfig:
    keys = ("width", "layers", "heads", "dropout", "max_length", "beam_size", "length_penalty", "freeze_image")
    return CaptionConfig(output_ids=list(output_ids), **{k: caption[k] for k in keys})


def special_ids() -> dict[str, int]:
    from ..text.tokenizer import WordPieceTokenizer

    tok = WordPieceTokenizer()
    return {"cls": tok.cls_id, "sep": tok.sep_id, "unk": tok.vocab["[UNK]"], "pad": tok.pad_id}


def compact_vocabulary(train_ids: np.ndarray, pad_id: int) -> list[int]:
    """[PAD], [CLS], [SEP], [UNK], then every other WordPiece id in ``train_ids`` (sorted)."""
    sp = special_ids()
    head = [pad_id, sp["cls"], sp["sep"], sp["unk"]]
    return head + sorted(set(np.unique(train_ids).tolist()) - set(head))


def build_caption_model(arch: dict[str, Any], output_ids: list[int]) -> CaptionModel:
    """From an ``Arch`` section (CLIP tower name and overrides + ``caption`` sub-dict) and the compact vocabulary."""
    from .registry import create_model

    arch = {k: v for k, v in arch.items() if v is not None}
    caption = {**CAPTION_DEFAULTS, **{k: v for k, v in (arch.pop("caption", None) or {}).items() if v is not None}}
    unknown = sorted(set(caption) - set(CAPTION_DEFAULTS))
    if unknown:
        raise KeyError(f"unknown Arch.caption keys {unknown}; known: {sorted(CAPTION_DEFAULTS)}")
    for key in ("freeze_vision", "fusion", "grad_checkpointing", "mask_ratio"):
        arch.pop(key, None)
    clip = create_model(arch.pop("name"), **arch)
    if caption["clip_weights"]:
        from .fusion import load_tower_weights

        load_tower_weights(clip, caption["clip_weights"], "Arch.caption.clip_weights")
    return CaptionModel(clip, caption_config(caption, output_ids), special_ids())


def caption_from_config(clip: nn.Layer, desc: dict[str, Any]) -> CaptionModel:
    """The captioner a saved ``model_config.json``'s ``caption`` section describes, on the towers ``clip``."""
    return CaptionModel(clip, CaptionConfig(**desc), special_ids())
