"""Long context (issue 19): 128-token texts through the tokenizer, the eager model, the export and the Predictor.

Chinese-CLIP pretrained with 52 tokens; its text towers hold 512 position embeddings, so context_length may go up
to 512. Nothing may silently cut a long text back to 52 along the way."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_mm import tokenize
from paddle_mm.models import create_model
from paddle_mm.vision.transforms import ImageTransform

LENGTH = 128
# a caption of 120 characters: one word piece each, so [CLS] + 120 + [SEP] = 122 tokens
LONG = ("一只红色的圆形位于画面的左上角，旁边有一个蓝色的三角形和绿色的正方形。" * 5)[:120]
TEXTS = [LONG, LONG[:60] + "最后几个字不一样的句子" + LONG[71:], "一个短句"]


@pytest.fixture(scope="module")
def long_model():
    paddle.seed(5)
    model = create_model(
        "CN-CLIP-Tiny",
        image_resolution=32,
        vision_layers=1,
        text_num_hidden_layers=1,
        embed_dim=32,
        context_length=LENGTH,
        text_max_position_embeddings=512,
    )
    model.eval()
    return model


def test_tokenizer_keeps_128_tokens():
    ids = tokenize(TEXTS, context_length=LENGTH)
    assert ids.shape == (3, LENGTH)
    assert (ids[0] != 0).sum() == 122 and ids[0, 121] == 102 and ids[0, 0] == 101
    short = tokenize(TEXTS, context_length=52)
    assert (short[0] != 0).sum() == 52 and short[0, 51] == 102  # 52 cuts it: the tail would be lost
    # the two long texts differ only after token 60: equal at 52 tokens, different at 128
    assert np.array_equal(short[0], short[1]) and not np.array_equal(ids[0], ids[1])


def test_export_and_predictor_keep_the_long_context(long_model, tmp_path):
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.inference import Predictor

    ids = tokenize(TEXTS, context_length=LENGTH)
    with paddle.no_grad():
        eager = long_model.encode_text(paddle.to_tensor(ids)).numpy()
    eager /= np.linalg.norm(eager, axis=1, keepdims=True)
    # the tail (tokens 61-121) reaches the feature, by 10x the parity tolerance below (random 1-layer tower)
    assert np.abs(eager[0] - eager[1]).max() > 2e-4
    out = tmp_path / "export"
    opts = ExportOptions(graphs=("text",), int8=False, verify_batches=(1, 3))
    export_model(long_model, out, ImageTransform(32), "CN-CLIP-Tiny", opts, log=lambda _m: None)
    for backend in ("paddle_inference", "onnxruntime"):
        predictor = Predictor(out, backend=backend, device="cpu")
        assert predictor.tokenizer.context_length == LENGTH
        np.testing.assert_array_equal(predictor.tokenizer.encode_batch(TEXTS), ids)
        np.testing.assert_allclose(predictor.encode_texts(TEXTS), eager, atol=2e-5, err_msg=backend)


def test_a_context_beyond_the_position_embeddings_is_refused():
    with pytest.raises(ValueError, match="context_length 600 exceeds text_max_position_embeddings 512"):
        create_model("CN-CLIP-Tiny", context_length=600, text_max_position_embeddings=512)
