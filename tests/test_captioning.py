"""Captioning (issue 15): the decoder learns, decoding is right, save/load and the exported graphs match eager."""

from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_mm.models import load_model, read_model_config, save_model
from paddle_mm.models.captioning import beam_search, build_caption_model, compact_vocabulary, greedy_search
from paddle_mm.text.tokenizer import tokenize, trim_padding

CAPTIONS = ["左边有一个红色的圆形", "右上方是一个蓝色的小三角形", "图中只有一个绿色的十字形", "两个黄色的正方形"]


def _model(max_length: int = 20, seed: int = 0):
    paddle.seed(seed)
    ids = tokenize(CAPTIONS, 52)
    arch = {"name": "CN-CLIP-Tiny", "caption": {"layers": 1, "dropout": 0.0, "max_length": max_length}}
    return build_caption_model(arch, compact_vocabulary(ids, 0)), paddle.to_tensor(trim_padding(ids, 0))


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 64, 64)).astype("float32")


def _loss(model, pixels, ids):
    _, labels = model.targets(ids)
    return F.cross_entropy(model(pixels, ids)["logits"], labels)


def test_fixed_batch_overfits_and_greedy_reads_the_captions_back():
    model, ids = _model()
    pixels = paddle.to_tensor(_pixels(len(CAPTIONS)))
    opt = paddle.optimizer.AdamW(3e-3, parameters=model.parameters(), weight_decay=0.0)
    model.train()
    first = float(_loss(model, pixels, ids))
    for _ in range(60):
        loss = _loss(model, pixels, ids)
        loss.backward()
        opt.step()
        opt.clear_grad()
    assert float(loss) < 0.05 * first, (first, float(loss))
    model.eval()
    seqs = greedy_search(model.step_fn(pixels), len(CAPTIONS), model.bos, model.eos, 20)
    from paddle_mm.tasks.captioning import ids_to_text

    assert [ids_to_text(s) for s in model.to_wordpiece(seqs)] == CAPTIONS


def _random_step(vocab: int = 7, seed: int = 3):
    """log-probs that depend on the whole prefix (a hash of it), so every path differs."""

    def step(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = []
        for prefix, r in zip(ids, rows):
            rng = np.random.default_rng([seed, int(r), *map(int, prefix)])
            logits = rng.normal(size=vocab) * 2
            out.append(logits - np.log(np.exp(logits).sum()))
        return np.asarray(out)

    return step


def test_beam_width_one_is_greedy():
    step = _random_step()
    for max_length in (3, 6, 12):
        assert beam_search(step, 20, 1, 2, max_length, beam=1) == greedy_search(step, 20, 1, 2, max_length)
    model, _ = _model(max_length=10)
    model.eval()
    s = model.step_fn(paddle.to_tensor(_pixels(3)))
    assert beam_search(s, 3, model.bos, model.eos, 10, 1) == greedy_search(s, 3, model.bos, model.eos, 10)


def test_beam_search_finds_a_better_sequence_than_greedy():
    step = _random_step(seed=5)
    greedy, beam = greedy_search(step, 50, 1, 2, 8), beam_search(step, 50, 1, 2, 8, beam=4)

    def logp(seq, row):
        ids, total = [1], 0.0
        for tok in [*seq, 2][:7]:
            total += step(np.asarray([ids]), np.asarray([row]))[0, tok]
            ids.append(tok)
        return total

    better = [logp(b, r) - logp(g, r) for r, (g, b) in enumerate(zip(greedy, beam))]
    assert min(better) > -1e-9 and max(better) > 0.1  # never worse, sometimes strictly better


def _table_step(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Vocabulary 0 pad, 1 [CLS], 2 [SEP], 3 A, 4 B. "A" then [SEP]: log 0.55 + log 0.5 = -1.29 (best raw score);
    "B B B" then [SEP]: log 0.45 + 3 log 0.8 = -1.47, better once divided by GNMT's length penalty (alpha 1)."""
    table = {
        (1,): {3: 0.55, 4: 0.45},
        (1, 3): {2: 0.5, 3: 0.25, 4: 0.25},
        (1, 4): {4: 0.8, 2: 0.1, 3: 0.1},
        (1, 4, 4): {4: 0.8, 2: 0.1, 3: 0.1},
        (1, 4, 4, 4): {2: 0.8, 3: 0.1, 4: 0.1},
    }
    out = []
    for prefix in ids:
        p = np.full(5, 1e-3)
        for tok, v in table.get(tuple(int(t) for t in prefix), {0: 0.2, 1: 0.2, 2: 0.2, 3: 0.2, 4: 0.2}).items():
            p[tok] = v
        out.append(np.log(p / p.sum()))
    return np.asarray(out)


def test_length_penalty_changes_the_choice():
    assert greedy_search(_table_step, 1, 1, 2, 10) == [[3]]
    assert beam_search(_table_step, 1, 1, 2, 10, beam=3, alpha=0.0) == [[3]]
    assert beam_search(_table_step, 1, 1, 2, 10, beam=3, alpha=1.0) == [[4, 4, 4]]
    assert math.isclose(np.exp(_table_step(np.asarray([[1, 4, 4, 4]]), np.zeros(1))[0, 2]), 0.8, rel_tol=1e-2)


def test_save_load_round_trip(tmp_path):
    model, ids = _model()
    model.eval()
    pixels = paddle.to_tensor(_pixels(2))
    save_model(model, tmp_path / "m")
    assert read_model_config(tmp_path / "m")["model_type"] == "captioning"
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded(pixels, ids[:2])["logits"].numpy(), model(pixels, ids[:2])["logits"].numpy())
    assert loaded.caption.output_ids == model.caption.output_ids


@pytest.mark.parametrize("backend", ["paddle_inference", "onnxruntime"])
def test_export_matches_eager(tmp_path, backend):
    from paddle_mm.export.captioning import check_parity, export_captioning

    model, _ = _model(max_length=8, seed=1)
    out = tmp_path / "export"
    if not out.exists():
        export_captioning(model, out, onnx=backend == "onnxruntime")
    report = check_parity(model, out, _pixels(3, seed=2), backend)
    assert report["encoder_max_abs_diff"] < 1e-4 and report["step_max_abs_diff"] < 1e-4, report
    assert report["greedy_identical"], report
