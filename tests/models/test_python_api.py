"""The calls a Chinese-CLIP or Hugging Face user reaches for: model(**tokenizer(...)), from_pretrained on checkpoints
and exports, a one-line resolution error, load_from_name, and dir(paddle_mm)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

import paddle_mm
from paddle_mm import UnifiedTokenizer
from paddle_mm.models import create_model, save_model
from tests.conftest import TINY_ARCH, TINY_NAME

PARITY = Path(__file__).parent / "golden" / "parity"
IMAGES = [np.full((40, 48, 3), v, np.uint8) for v in (30, 220)]
TEXTS = ["一只猫", "左上角有一个红色的圆形"]


@pytest.fixture(scope="module")
def model():
    paddle.seed(2)
    return create_model(TINY_NAME, **TINY_ARCH).eval()


def test_model_takes_the_tokenizers_output(model, tmp_path):
    tokenizer = UnifiedTokenizer.from_pretrained(save_model(model, tmp_path))
    batch = tokenizer(text=TEXTS, image=IMAGES, return_tensors="pd")
    assert {"attention_mask", "token_type_ids"} <= set(batch)
    with paddle.no_grad():
        out = model(**batch)["logits_per_image"].numpy()
        want = model(batch["pixel_values"], batch["input_ids"])["logits_per_image"].numpy()
        from_numpy = model(**tokenizer(text=TEXTS, image=IMAGES))["logits_per_image"].numpy()
    np.testing.assert_allclose(out, want, rtol=1e-6)
    np.testing.assert_allclose(from_numpy, want, rtol=1e-6)


def test_the_attention_mask_is_used(model):
    tokenizer = UnifiedTokenizer.from_pretrained("CN-CLIP-Tiny")
    batch = tokenizer(text=["一只猫咪在沙发上睡觉"])
    ids, mask = batch["input_ids"], batch["attention_mask"].copy()
    last = int(mask.sum()) - 2  # the last text token before [SEP]
    mask[0, last] = 0
    padded = ids.copy()
    padded[0, last] = model.config.pad_id  # the key the mask hides, hidden by the default pad mask instead
    with paddle.no_grad():
        got = model.encode_text(paddle.to_tensor(ids), paddle.to_tensor(mask)).numpy()
        want = model.encode_text(paddle.to_tensor(padded)).numpy()
        full = model.encode_text(paddle.to_tensor(ids)).numpy()
        pixels = np.zeros((1, 3, 32, 32), np.float32)
        forward = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)["text_features"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(forward, got / np.linalg.norm(got, axis=-1, keepdims=True), atol=1e-5)
    assert np.abs(got - full).max() > 1e-3


def test_a_checkpoint_and_an_export_carry_their_tokenizer(model, tmp_path):
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.vision.transforms import ImageTransform

    checkpoint = save_model(model, tmp_path / "ckpt")
    assert (checkpoint / "vocab.txt").is_file()
    options = ExportOptions(graphs=("image",), onnx=False, int8=False, verify_batches=(1,), threads=1)
    export = export_model(model, tmp_path / "export", ImageTransform(32), "CN-CLIP-Tiny", options, lambda _m: None)
    for directory in (checkpoint, export.directory):
        tokenizer = UnifiedTokenizer.from_pretrained(directory)
        assert tokenizer.image.size == 32 and tokenizer.text.context_length == model.config.context_length
        assert tokenizer(text=TEXTS)["input_ids"].tolist() == paddle_mm.tokenize(TEXTS).tolist()


def test_an_old_checkpoint_without_vocab_gets_the_vocabulary_it_was_trained_on(model, tmp_path):
    checkpoint = save_model(model, tmp_path)
    for name in ("vocab.txt", "tokenizer_config.json"):
        (checkpoint / name).unlink()
    tokenizer = UnifiedTokenizer.from_pretrained(checkpoint)
    assert tokenizer.image.size == 32
    assert tokenizer(text=TEXTS)["input_ids"].tolist() == paddle_mm.tokenize(TEXTS).tolist()


def test_images_of_another_resolution_are_one_line_naming_both_sizes(model):
    pixels = paddle.zeros([1, 3, 224, 224])
    with pytest.raises(ValueError) as err:
        model.encode_image(pixels)
    message = str(err.value)
    assert "\n" not in message and "224x224 px but this model takes 32x32" in message
    assert "ImageTransform(32)" in message


def test_load_from_name_converts_a_cn_clip_pt_in_memory():
    golden = np.load(PARITY / "ViT-B-16.npz")
    model, preprocess = paddle_mm.load_from_name(PARITY / "ViT-B-16.pt", **json.loads(str(golden["overrides"])))
    with paddle.no_grad():
        image = model.encode_image(paddle.to_tensor(golden["pixel_values"])).numpy()
        text = model.encode_text(paddle.to_tensor(golden["input_ids"])).numpy()
    np.testing.assert_allclose(image, golden["cn_clip/encode_image"], atol=1e-4)
    np.testing.assert_allclose(text, golden["cn_clip/encode_text"], atol=1e-4)
    size = model.config.image_resolution
    assert not model.training and preprocess(IMAGES[0]).shape == (3, size, size)


def test_a_released_name_loads_the_pt_cn_clip_saved_in_download_root(tmp_path):
    golden = np.load(PARITY / "ViT-B-16.npz")
    (tmp_path / "clip_cn_vit-b-16.pt").write_bytes((PARITY / "ViT-B-16.pt").read_bytes())
    config = json.loads(str(golden["config"]))  # the golden file is a shrunken ViT-B-16: its sizes override
    model, _ = paddle_mm.load_from_name("ViT-B-16", download_root=tmp_path, **config)
    with paddle.no_grad():
        image = model.encode_image(paddle.to_tensor(golden["pixel_values"])).numpy()
    np.testing.assert_allclose(image, golden["cn_clip/encode_image"], atol=1e-4)


def test_load_from_name_on_a_model_directory_and_a_released_name(model, tmp_path):
    loaded, preprocess = paddle_mm.load_from_name(save_model(model, tmp_path / "m"))
    assert preprocess.size == 32 and loaded.config == model.config
    with pytest.raises(FileNotFoundError) as err:
        paddle_mm.load_from_name("ViT-B-16", download_root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and f"{tmp_path / 'clip_cn_vit-b-16.pt'} not found" in message
    assert "downloads nothing" in message


def test_dir_lists_the_public_api_and_import_stays_light():
    code = "import sys, paddle_mm; print(' '.join(dir(paddle_mm))); print('paddle' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names, heavy = out.split("\n")[:2]
    public = {n for n in names.split() if not n.startswith("_")}
    assert {"load_from_name", "UnifiedTokenizer", "create_model", "load_model", "Predictor", "export_model"} <= public
    assert "import_module" not in public and heavy == "False"
