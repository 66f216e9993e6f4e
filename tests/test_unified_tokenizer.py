"""paddle_mm.tokenizer.UnifiedTokenizer: construction, calling, save/load round trip."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import paddle_mm
from paddle_mm.text.tokenizer import DEFAULT_VOCAB_FILE, WordPieceTokenizer, tokenize
from paddle_mm.tokenizer import MODEL_CONFIG_DIR, UnifiedTokenizer
from paddle_mm.vision.transforms import ImageDecodeError, ImageTransform


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40 + 7 * i, 50 + 5 * i, 3), dtype=np.uint8) for i in range(3)]


def test_from_model_name_reads_model_config():
    for name in ("ViT-B-16", "CN-CLIP-Tiny"):
        config = json.loads((MODEL_CONFIG_DIR / f"{name}.json").read_text())
        tok = UnifiedTokenizer.from_pretrained(name)
        assert tok.image.size == config["image_resolution"]
        assert tok.text.context_length == config["context_length"]
        assert tok.text.vocab_file == DEFAULT_VOCAB_FILE


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(KeyError, match="ViT-B-16") as info:
        UnifiedTokenizer.from_pretrained("ViT-Q-99")
    assert "ViT-Q-99" in str(info.value)


def test_top_level_lazy_exports():
    assert paddle_mm.UnifiedTokenizer is UnifiedTokenizer
    assert paddle_mm.tokenize is tokenize


def test_text_and_images_together(images):
    tok = UnifiedTokenizer.from_pretrained("CN-CLIP-Tiny")
    out = tok(text=["一只猫", "a dog", "海边的日落"], image=images)
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids", "pixel_values"}
    np.testing.assert_array_equal(out["input_ids"], tokenize(["一只猫", "a dog", "海边的日落"]))
    np.testing.assert_array_equal(out["attention_mask"], (out["input_ids"] != 0).astype(np.int64))
    assert out["pixel_values"].shape == (3, 3, 64, 64) and out["pixel_values"].dtype == np.float32
    transform = ImageTransform(64)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(out["pixel_values"][i], transform(image))


def test_single_inputs_make_batches_of_one(images):
    tok = UnifiedTokenizer.from_pretrained("CN-CLIP-Tiny")
    assert tok(text="一只猫")["input_ids"].shape == (1, 52)
    assert tok(image=images[0])["pixel_values"].shape == (1, 3, 64, 64)
    stacked = np.stack([images[0], images[0]])  # uint8 [N, H, W, 3]
    assert tok(image=stacked)["pixel_values"].shape == (2, 3, 64, 64)
    assert set(tok(text="x")) == {"input_ids", "attention_mask", "token_type_ids"}
    assert set(tok(image=images[1])) == {"pixel_values"}


def test_bad_calls_say_what_to_do(images):
    text_only = UnifiedTokenizer(text=WordPieceTokenizer())
    with pytest.raises(ValueError, match="no image transform"):
        text_only(image=images[0])
    image_only = UnifiedTokenizer(image=ImageTransform(32))
    with pytest.raises(ValueError, match="no text tokenizer"):
        image_only(text="猫")
    with pytest.raises(ValueError, match="return_tensors='pt'"):
        text_only(text="猫", return_tensors="pt")
    with pytest.raises(ValueError, match="text=..., image=..."):
        text_only()
    with pytest.raises(ImageDecodeError, match="bytes"):
        image_only(image=[images[0], b"not an image"])


def test_save_and_load_round_trip(tmp_path, images):
    original = UnifiedTokenizer(
        WordPieceTokenizer(context_length=16),
        ImageTransform(96, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="cv2_bicubic"),
    )
    written = original.save_pretrained(tmp_path / "tok")
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["tokenizer_config.json", "vocab.txt"]
    assert (tmp_path / "tok" / "vocab.txt").read_bytes() == Path(DEFAULT_VOCAB_FILE).read_bytes()
    loaded = UnifiedTokenizer.from_pretrained(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text()) == {
        "context_length": 16,
        "image_size": 96,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.25, 0.25],
        "interpolation": "cv2_bicubic",
    }
    texts = ["一只可爱的小猫趴在沙发上睡觉，旁边还有一只小狗", "café"]
    a, b = original(text=texts, image=images), loaded(text=texts, image=images)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["input_ids"].shape == (2, 16)


def test_directory_defaults_and_errors(tmp_path):
    only_vocab = tmp_path / "only_vocab"
    WordPieceTokenizer().save_vocabulary(only_vocab)
    tok = UnifiedTokenizer.from_pretrained(only_vocab)
    assert (tok.text.context_length, tok.image.size, tok.image.interpolation) == (52, 224, "pil_bicubic")
    (only_vocab / "tokenizer_config.json").write_text('{"image_sise": 336}')
    with pytest.raises(KeyError, match="did you mean 'image_size'"):
        UnifiedTokenizer.from_pretrained(only_vocab)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        UnifiedTokenizer.from_pretrained(empty)


@pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle not installed")
def test_return_paddle_tensors(images):
    tok = UnifiedTokenizer.from_pretrained("CN-CLIP-Tiny")
    out = tok(text=["一只猫"], image=images[:1], return_tensors="pd")
    import paddle

    assert all(isinstance(v, paddle.Tensor) for v in out.values())
    assert out["input_ids"].dtype == paddle.int64 and out["pixel_values"].dtype == paddle.float32
    np.testing.assert_array_equal(out["input_ids"].numpy(), tokenize(["一只猫"]))


def test_numpy_call_does_not_import_paddle(images):
    code = (
        "import sys, numpy as np; from paddle_mm import UnifiedTokenizer; "
        "t = UnifiedTokenizer.from_pretrained('CN-CLIP-Tiny'); t(text='猫', image=np.zeros((8, 8, 3), np.uint8)); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'torch')))"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
