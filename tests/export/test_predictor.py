"""Predictor: pre-processing from inference.yml, features equal to eager, batching, INT8, auto and its cache."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from paddle_mm.inference import ExportDirError, Predictor, auto
from paddle_mm.inference.auto import CACHE_FILE

TEXTS = ["左上角有一个红色的圆形", "图中有两个蓝色的三角形", "右下角有一个大的绿色正方形", "一只猫", "黄色"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("images")
    paths = []
    for i, (h, w) in enumerate([(40, 56), (32, 32), (97, 61), (20, 80), (64, 64)]):
        path = out / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(str(path))
    return paths


def eager_features(model, images, texts):
    import paddle
    import paddle.nn.functional as F

    from paddle_mm.text.tokenizer import tokenize
    from paddle_mm.vision.transforms import ImageTransform

    transform = ImageTransform(model.config.image_resolution)
    with paddle.no_grad():
        img = model.encode_image(paddle.to_tensor(np.stack([transform(p) for p in images])))
        txt = model.encode_text(paddle.to_tensor(tokenize(texts)))
    return F.normalize(img, axis=-1).numpy(), F.normalize(txt, axis=-1).numpy(), float(model.logit_scale.exp())


@pytest.mark.parametrize("backend", ["paddle_inference", "onnxruntime"])
def test_features_equal_eager_from_inference_yml_alone(export_dir, tiny_model, images, backend, tmp_path):
    predictor = Predictor(export_dir, backend=backend, threads=1, batch_size=2, cache_dir=tmp_path)
    img, txt, scale = eager_features(tiny_model, images, TEXTS)
    np.testing.assert_allclose(predictor.encode_images(images), img, atol=1e-5)
    np.testing.assert_allclose(predictor.encode_texts(TEXTS), txt, atol=1e-5)
    np.testing.assert_allclose(predictor.score(images[:3], TEXTS), scale * img[:3] @ txt.T, atol=1e-4 * scale)


def test_batch_size_does_not_change_results(export_dir, images, tmp_path):
    one = Predictor(export_dir, backend="onnxruntime", threads=1, batch_size=1, cache_dir=tmp_path)
    many = Predictor(export_dir, backend="onnxruntime", threads=1, batch_size=8, cache_dir=tmp_path)
    np.testing.assert_allclose(one.encode_images(images), many.encode_images(images), atol=1e-6)
    np.testing.assert_allclose(one.encode_texts(TEXTS), many.encode_texts(TEXTS), atol=1e-6)
    assert one.encode_texts([]).shape == (0, 32)


def test_int8_features_stay_close_to_fp32(export_dir, images, tmp_path):
    fp32 = Predictor(export_dir, backend="onnxruntime", threads=1, cache_dir=tmp_path)
    int8 = Predictor(export_dir, backend="auto", precision="int8", threads=1, cache_dir=tmp_path)
    for a, b in (
        (fp32.encode_images(images), int8.encode_images(images)),
        (fp32.encode_texts(TEXTS), int8.encode_texts(TEXTS)),
    ):
        cosine = (a * b).sum(-1)
        assert cosine.min() >= 0.99 and cosine.min() < 1.0  # quantized: close, not identical
    assert int8.choices["image"].backend == "onnxruntime"  # the only int8 runtime


def test_unexported_variants_are_refused_with_the_alternatives(export_dir, tmp_path):
    with pytest.raises(ExportDirError, match="no int8 paddle_inference model; exported variants"):
        Predictor(export_dir, backend="paddle_inference", precision="int8", cache_dir=tmp_path).encode_texts(["a"])
    with pytest.raises(ExportDirError, match="combined graph is exported in fp32 only"):
        Predictor(export_dir, precision="int8", cache_dir=tmp_path).score([], ["a"])
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        Predictor(export_dir, backend="tensorrt")


def test_auto_measures_once_then_uses_the_cache(export_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "MIN_MARGIN", float("-inf"))  # caching, not noise or load, is tested here
    monkeypatch.setattr(auto, "BUSY_CORES", float("inf"))
    first = Predictor(export_dir, backend="auto", threads=1, batch_size=2, cache_dir=tmp_path)
    first.runner("image")
    measured = first.choices["image"]
    assert not measured.cached
    assert set(measured.timings_ms) == {"paddle_inference", "onnxruntime"}
    assert measured.backend == min(measured.timings_ms, key=measured.timings_ms.get)

    second = Predictor(export_dir, backend="auto", threads=1, batch_size=2, cache_dir=tmp_path)
    second.runner("image")
    assert second.choices["image"].cached and second.choices["image"].backend == measured.backend

    other = Predictor(export_dir, backend="auto", threads=2, batch_size=2, cache_dir=tmp_path)
    other.runner("image")
    assert not other.choices["image"].cached  # another thread count is another measurement
    entries = json.loads((tmp_path / CACHE_FILE).read_text(encoding="utf-8"))
    assert len(entries) == 2 and all(e["key"]["graph"] == "image" for e in entries.values())


def test_a_corrupt_cache_costs_only_a_new_measurement(export_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "MIN_MARGIN", float("-inf"))  # caching, not noise or load, is tested here
    monkeypatch.setattr(auto, "BUSY_CORES", float("inf"))
    (tmp_path / CACHE_FILE).write_text("{not json", encoding="utf-8")
    predictor = Predictor(export_dir, backend="auto", threads=1, batch_size=2, cache_dir=tmp_path)
    predictor.runner("text")
    assert not predictor.choices["text"].cached
    assert len(json.loads((tmp_path / CACHE_FILE).read_text(encoding="utf-8"))) == 1


def test_auto_skips_a_backend_that_cannot_be_built_and_says_why(tmp_path):
    from paddle_mm.inference.auto import choose

    class Fast:
        def run(self, feeds):
            return []

    def broken():
        raise RuntimeError("no provider for npu:0")

    backend, choice = choose({"paddle_inference": broken, "onnxruntime": Fast}, {}, {"k": "v"}, directory=tmp_path)
    assert isinstance(backend, Fast) and choice.backend == "onnxruntime"
    assert choice.failed == {"paddle_inference": "RuntimeError: no provider for npu:0"}
    with pytest.raises(RuntimeError, match="no backend could be built.*no provider for npu:0"):
        choose({"paddle_inference": broken}, {}, {"k": "other"}, directory=tmp_path)


def test_importing_the_predictor_loads_no_runtime():
    import subprocess
    import sys

    code = (
        "import sys, paddle_mm.inference; "
        "print(sorted(m for m in ('paddle', 'onnxruntime', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("backend, multiple", [("paddle_inference", 8), ("onnxruntime", 1)])
def test_text_reaches_each_runtime_at_the_lengths_it_compiles_for_with_the_same_features(export_dir, backend, multiple):
    """Paddle Inference compiles per input shape, so its text is padded to multiples of 8 (exact: pad keys are
    masked); ONNX Runtime gets the trimmed length."""
    predictor = Predictor(export_dir, backend=backend, threads=1, batch_size=4)
    runner = predictor.runner("text")
    lengths, run = [], runner.run

    def spy(feeds):
        lengths.append(feeds["input_ids"].shape[1])
        return run(feeds)

    runner.run = spy
    ids = predictor.tokenizer.encode_batch(TEXTS)
    got = predictor.encode_ids(ids)
    used = [int((ids[i : i + 4] != predictor.pad_id).any(axis=0).nonzero()[0][-1]) + 1 for i in (0, 4)]
    assert lengths == [min(-(-n // multiple) * multiple, ids.shape[1]) for n in used]
    assert any(n % 8 for n in used)  # the check is not vacuous: some batch's own length is not a multiple of 8
    whole = np.concatenate([run({"input_ids": ids[i : i + 4]})[0] for i in (0, 4)])  # the full 52 columns
    whole /= np.linalg.norm(whole, axis=-1, keepdims=True)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-5)


def test_precision_auto_adds_bf16_only_where_the_cpu_has_it_and_only_within_the_cosine_bound(export_dir, tmp_path):
    from hardware.cpu import cpu_has_bf16
    from paddle_mm.inference.predictor import BF16_CANDIDATE, BF16_MIN_COSINE

    predictor = Predictor(export_dir, backend="auto", precision="auto", threads=1, batch_size=2, cache_dir=tmp_path)
    got = predictor.encode_texts(TEXTS)
    choice = predictor.choices["text"]
    fp32 = Predictor(export_dir, backend="onnxruntime", threads=1, batch_size=2).encode_texts(TEXTS)
    assert (got * fp32).sum(-1).min() >= BF16_MIN_COSINE  # whichever won, it is fp32 or close to it
    if cpu_has_bf16():  # here: BF16 was measured against fp32 and competed or was refused with its cosine
        assert BF16_CANDIDATE in choice.cosines
        assert (BF16_CANDIDATE in choice.timings_ms) == (choice.cosines[BF16_CANDIDATE] >= BF16_MIN_COSINE)
    else:  # no BF16 kernels: never a candidate
        assert choice.cosines == {} and BF16_CANDIDATE not in choice.timings_ms
    only = Predictor(export_dir, backend="onnxruntime", precision="auto", threads=1, cache_dir=tmp_path / "o")
    only.encode_texts(TEXTS[:1])
    assert only.choices["text"].backend == "onnxruntime" and only.choices["text"].cosines == {}


def test_varying_shapes_leaves_out_a_per_shape_compiler_where_its_shape_cache_cannot_hold_them(export_dir, tmp_path):
    from hardware.cpu import cpu_has_bf16
    from hardware.inference import MKLDNN_SHAPE_CACHE
    from paddle_mm.inference.predictor import BF16_CANDIDATE

    # text at batch 3: 3 batch sizes x 7 lengths (52 tokens in steps of 8) = 21 shapes > 16 cached
    assert MKLDNN_SHAPE_CACHE < 21
    varying = Predictor(
        export_dir, backend="auto", precision="auto", threads=1, batch_size=3, cache_dir=tmp_path, varying_shapes=True
    )
    got = varying.encode_texts(TEXTS)
    choice = varying.choices["text"]
    assert choice.backend == "onnxruntime" and set(choice.timings_ms) <= {"onnxruntime"}  # one left: not timed
    assert "21 shapes > 16 cached" in choice.failed["paddle_inference"]
    assert (BF16_CANDIDATE in choice.failed) == cpu_has_bf16()  # BF16 runs on Paddle Inference only
    fp32 = Predictor(export_dir, backend="onnxruntime", threads=1, batch_size=3).encode_texts(TEXTS)
    np.testing.assert_array_equal(got, fp32)
    # images at batch 3: 3 shapes, each compiled once and kept: Paddle Inference competes
    varying.encode_pixels(varying.sample_feeds("image")["pixel_values"])
    assert "paddle_inference" in varying.choices["image"].timings_ms
    assert "paddle_inference" not in varying.choices["image"].failed
    # the same predictor for fixed shapes measures both runtimes on text (cached under its own key)
    fixed = Predictor(export_dir, backend="auto", threads=1, batch_size=3, cache_dir=tmp_path)
    fixed.encode_texts(TEXTS[:1])
    assert set(fixed.choices["text"].timings_ms) == {"paddle_inference", "onnxruntime"}
    # where Paddle Inference is all there is, it runs: a compile per new shape beats no model
    only = Predictor(export_dir, backend="paddle_inference", precision="auto", threads=1, varying_shapes=True)
    only.encode_texts(TEXTS[:1])
    assert only.choices["text"].backend in ("paddle_inference", BF16_CANDIDATE)
