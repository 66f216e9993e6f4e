"""Convert a paddle_mm model directory to GGUF for the C++ board runtime (hardware/runtime).

The GGUF file is self-contained: the fp32 weights of both Chinese-CLIP towers (ViT image tower, BERT text
tower, the two projections and the logit scale), the architecture, the image pre-processing parameters and
the whole tokenizer. The tokenizer part is the vocabulary plus two character tables computed here from
Python's own ``unicodedata``, so that the C++ tokenizer needs no Unicode database and gives the ids of
``paddle_mm.text.WordPieceTokenizer``:

- ``pmm.tokenizer.char_ranges``: run-length (first codepoint, class bits) pairs over all of Unicode;
  bits: 1 separator (splits words), 2 CJK ideograph (a word of its own), 4 removed (BERT's _clean_text
  deletes it), 8 punctuation (split off as a piece), 16 cased and 32 case-ignorable (for str.lower's
  context rule: a capital sigma at the end of a word lower-cases to a final sigma);
- ``pmm.tokenizer.fold_from`` / ``fold_to``: every codepoint whose lower-cased, NFD-decomposed form without
  combining marks (Mn) differs from itself, and that form as UTF-8 (empty for marks).

Weights keep the ggml layout the runtime multiplies with: a Linear weight is stored (out, in), i.e. the
transpose of Paddle's [in, out]; the patch convolution is flattened to (width, 3 * patch * patch).
Only ViT image towers are converted (RN50's ResNet tower is not implemented in the runtime).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from ..io import load_safetensors
from ..text.tokenizer import _CJK, _SEPARATORS, _is_punctuation, _is_removed, load_vocab
from ..vision.transforms import CLIP_MEAN, CLIP_STD

__all__ = ["ARCH", "GGUF_VERSION", "char_tables", "convert_model_dir"]

ARCH = "pmm-chinese-clip"
GGUF_VERSION = 1  # bumped when the runtime must refuse older files (pmm.format_version)

_SEP, _CJK_BIT, _REMOVED, _PUNCT, _CASED, _CASE_IGNORABLE = 1, 2, 4, 8, 16, 32


def _in_class(pattern: str) -> set[int]:
    """Codepoints of a regex character-class body such as _CJK ("a-z..." with ranges)."""
    out: set[int] = set()
    i = 0
    while i < len(pattern):
        if i + 2 < len(pattern) and pattern[i + 1] == "-":
            out.update(range(ord(pattern[i]), ord(pattern[i + 2]) + 1))
            i += 3
        else:
            out.add(ord(pattern[i]))
            i += 1
    return out


def _fold(char: str) -> str:
    """What the tokenizer's non-ASCII path turns one character into: lower, NFD, drop Mn marks."""
    return "".join(c for c in unicodedata.normalize("NFD", char.lower()) if unicodedata.category(c) != "Mn")


def _sigma_bits(char: str) -> int:
    """Cased / case-ignorable as str.lower's Final_Sigma rule sees them, read off str.lower itself.

    After "aΣ", an ignorable character is skipped (end of string: final sigma), a cased one is not;
    before a trailing "a", an ignorable character is skipped again (so not final). Only the combination
    the rule can observe is recorded: "cased" for characters that are not case-ignorable."""
    alone = ("a\u03a3" + char).lower()[1]
    followed = ("a\u03a3" + char + "a").lower()[1]
    if alone == "\u03c2" and followed == "\u03c3":
        return _CASE_IGNORABLE
    return _CASED if alone == "\u03c3" else 0


def char_tables() -> tuple[list[int], list[int], list[str]]:
    """(run-length class ranges as [cp0, bits0, cp1, bits1, ...], fold_from, fold_to) over all of Unicode."""
    separators, cjk = _in_class(_SEPARATORS), _in_class(_CJK)
    ranges: list[int] = []
    fold_from: list[int] = []
    fold_to: list[str] = []
    previous = -1
    for cp in range(0x110000):
        char = chr(cp)
        bits = (
            (_SEP if cp in separators else 0)
            | (_CJK_BIT if cp in cjk else 0)
            | (_REMOVED if cp not in separators and _is_removed(char) else 0)
            | (_PUNCT if _is_punctuation(char) else 0)
            | (_sigma_bits(char) if not 0xD800 <= cp <= 0xDFFF else 0)
        )
        if bits != previous:
            ranges += [cp, bits]
            previous = bits
        if not 0xD800 <= cp <= 0xDFFF:
            folded = _fold(char)
            if folded != char:
                fold_from.append(cp)
                fold_to.append(folded)
    return ranges, fold_from, fold_to


def _linear(w: np.ndarray) -> np.ndarray:
    """Paddle Linear weight [in, out] -> ggml layout (out, in)."""
    return np.ascontiguousarray(w.T, dtype=np.float32)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _vision_tensors(state: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    conv = state["visual.conv1.weight"]  # (width, 3, p, p)
    out = {
        "v.patch_embd": _f32(conv.reshape(conv.shape[0], -1)),  # (width, 3*p*p), index c*p*p + ky*p + kx
        "v.class_embd": _f32(state["visual.class_embedding"]),
        "v.pos_embd": _f32(state["visual.positional_embedding"]),  # (1 + grid*grid, width)
        "v.ln_pre.w": _f32(state["visual.ln_pre.weight"]),
        "v.ln_pre.b": _f32(state["visual.ln_pre.bias"]),
        "v.ln_post.w": _f32(state["visual.ln_post.weight"]),
        "v.ln_post.b": _f32(state["visual.ln_post.bias"]),
        "v.proj": _linear(state["visual.proj"]),  # (embed, width)
    }
    for i in range(layers):
        p = f"visual.transformer.resblocks.{i}."
        out.update(
            {
                f"v.{i}.ln1.w": _f32(state[p + "ln_1.weight"]),
                f"v.{i}.ln1.b": _f32(state[p + "ln_1.bias"]),
                f"v.{i}.qkv.w": _linear(state[p + "attn.in_proj_weight"]),  # (3d, d): q rows, k rows, v rows
                f"v.{i}.qkv.b": _f32(state[p + "attn.in_proj_bias"]),
                f"v.{i}.out.w": _linear(state[p + "attn.out_proj.weight"]),
                f"v.{i}.out.b": _f32(state[p + "attn.out_proj.bias"]),
                f"v.{i}.ln2.w": _f32(state[p + "ln_2.weight"]),
                f"v.{i}.ln2.b": _f32(state[p + "ln_2.bias"]),
                f"v.{i}.fc.w": _linear(state[p + "mlp.c_fc.weight"]),
                f"v.{i}.fc.b": _f32(state[p + "mlp.c_fc.bias"]),
                f"v.{i}.proj.w": _linear(state[p + "mlp.c_proj.weight"]),
                f"v.{i}.proj.b": _f32(state[p + "mlp.c_proj.bias"]),
            }
        )
    return out


def _text_tensors(state: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    e = "bert.embeddings."
    out = {
        "t.tok_embd": _f32(state[e + "word_embeddings.weight"]),  # (vocab, h)
        "t.pos_embd": _f32(state[e + "position_embeddings.weight"]),
        "t.type_embd": _f32(state[e + "token_type_embeddings.weight"][0]),  # cn_clip: every token is type 0
        "t.ln_embd.w": _f32(state[e + "LayerNorm.weight"]),
        "t.ln_embd.b": _f32(state[e + "LayerNorm.bias"]),
        "t.proj": _linear(state["text_projection"]),  # (embed, h)
    }
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        qkv_w = np.concatenate([state[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")], axis=1)
        qkv_b = np.concatenate([state[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        out.update(
            {
                f"t.{i}.qkv.w": _linear(qkv_w),  # (3h, h)
                f"t.{i}.qkv.b": _f32(qkv_b),
                f"t.{i}.out.w": _linear(state[p + "attention.output.dense.weight"]),
                f"t.{i}.out.b": _f32(state[p + "attention.output.dense.bias"]),
                f"t.{i}.ln1.w": _f32(state[p + "attention.output.LayerNorm.weight"]),
                f"t.{i}.ln1.b": _f32(state[p + "attention.output.LayerNorm.bias"]),
                f"t.{i}.fc.w": _linear(state[p + "intermediate.dense.weight"]),
                f"t.{i}.fc.b": _f32(state[p + "intermediate.dense.bias"]),
                f"t.{i}.proj.w": _linear(state[p + "output.dense.weight"]),
                f"t.{i}.proj.b": _f32(state[p + "output.dense.bias"]),
                f"t.{i}.ln2.w": _f32(state[p + "output.LayerNorm.weight"]),
                f"t.{i}.ln2.b": _f32(state[p + "output.LayerNorm.bias"]),
            }
        )
    return out


def _read_vocab(path: Path) -> list[str]:
    """Tokens by id, as WordPieceTokenizer sees them (line.strip(), a later duplicate wins its id)."""
    vocab = load_vocab(path)
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    return tokens


def _preprocess(model_dir: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Image pre-processing of the model: inference.yml's PreProcess.image when present, else cn_clip's."""
    pre = {"size": cfg["image_resolution"], "mean": list(CLIP_MEAN), "std": list(CLIP_STD)}
    pre["interpolation"] = "pil_bicubic"
    yml = model_dir / "inference.yml"
    if yml.is_file():
        import yaml

        image = (yaml.safe_load(yml.read_text(encoding="utf-8")).get("PreProcess") or {}).get("image") or {}
        pre.update({k: image[k] for k in pre if k in image})
    if pre["interpolation"] not in ("pil_bicubic", "pil12_bicubic"):
        raise ValueError(
            f"interpolation {pre['interpolation']!r} in {yml}: the board runtime implements pil_bicubic and "
            "pil12_bicubic only; re-export with one of those"
        )
    return pre


def convert_model_dir(model_dir: str | Path, out_file: str | Path) -> Path:
    """Write `out_file` (.gguf) from a directory holding model_config.json, model.safetensors and vocab.txt."""
    import gguf

    model_dir, out_file = Path(model_dir), Path(out_file)
    for name in ("model_config.json", "model.safetensors"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(
                f"{model_dir / name} not found: pass a model directory written by save_model or training "
                "(model_config.json, model.safetensors, vocab.txt)"
            )
    cfg = json.loads((model_dir / "model_config.json").read_text(encoding="utf-8"))
    if cfg.get("model_type", "clip") != "clip":
        raise ValueError(f"{model_dir}: a {cfg['model_type']} model; the board runtime runs CLIP towers only")
    if isinstance(cfg["vision_layers"], list):
        raise ValueError(f"{model_dir}: a ResNet image tower (RN50); the board runtime runs ViT models only")
    vocab_file = model_dir / "vocab.txt"
    if not vocab_file.is_file():
        from ..text.tokenizer import DEFAULT_VOCAB_FILE

        vocab_file = Path(DEFAULT_VOCAB_FILE)
    state = load_safetensors(model_dir / "model.safetensors")
    pre = _preprocess(model_dir, cfg)
    tokens = _read_vocab(vocab_file)
    vocab = {t: i for i, t in enumerate(tokens)}

    writer = gguf.GGUFWriter(str(out_file), ARCH)
    u32 = writer.add_uint32
    u32("pmm.format_version", GGUF_VERSION)
    for key in ("embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_head_width",
                "vision_patch_size", "text_hidden_size", "text_num_hidden_layers", "text_num_attention_heads",
                "text_intermediate_size", "context_length", "pad_id"):  # fmt: skip
        u32(f"pmm.{key}", int(cfg[key]))
    writer.add_float32("pmm.logit_scale", float(np.asarray(state["logit_scale"]).reshape(())))
    writer.add_uint32("pmm.image.size", int(pre["size"]))
    writer.add_array("pmm.image.mean", [float(m) for m in pre["mean"]])
    writer.add_array("pmm.image.std", [float(s) for s in pre["std"]])
    writer.add_string("pmm.image.interpolation", pre["interpolation"])
    writer.add_array("pmm.tokenizer.tokens", tokens)
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        u32(f"pmm.tokenizer.{special[1:-1].lower()}_id", vocab[special])
    ranges, fold_from, fold_to = char_tables()
    writer.add_array("pmm.tokenizer.char_ranges", ranges)
    writer.add_array("pmm.tokenizer.fold_from", fold_from)
    writer.add_array("pmm.tokenizer.fold_to", fold_to)
    tensors = _vision_tensors(state, int(cfg["vision_layers"]))
    tensors.update(_text_tensors(state, int(cfg["text_num_hidden_layers"])))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file
