"""Zero-shot classification: shipped data, the folder reader, accuracy against a direct computation, the cache."""

from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from paddle_mm.data.zeroshot import (
    check_templates,
    imagenet_classnames,
    load_templates,
    load_zero_shot_folder,
    template_sets,
)
from paddle_mm.demo.shapes_zero_shot import make_shapes_zero_shot
from paddle_mm.models import create_model
from paddle_mm.text.tokenizer import tokenize
from paddle_mm.vision.transforms import ImageTransform
from paddle_mm.zero_shot import accuracy, class_prompts, preprocess_text, zero_shot_classifier, zero_shot_evaluate
from tests.conftest import TINY_ARCH, TINY_NAME, run_tool


@pytest.fixture(scope="module")
def shapes_zs(tmp_path_factory):
    """6 classes (3 colours x 2 shapes), 4 images each, 32 px."""
    out = tmp_path_factory.mktemp("shapes_zs")
    make_shapes_zero_shot(
        out, per_class=4, seed=5, image_size=32, colours=["red", "blue", "green"], shapes=["circle", "triangle"]
    )
    return out


@pytest.fixture(scope="module")
def model():
    paddle.seed(11)
    m = create_model(TINY_NAME, **TINY_ARCH)
    m.eval()
    return m


def test_shipped_imagenet_names_and_templates_match_cn_clip():
    names = imagenet_classnames()
    assert len(names) == 1000
    assert (names[0], names[1], names[999]) == ("丁鲷", "金鱼", "卫生纸")
    assert names[836] == names[837] == "太阳镜"  # cn_clip's list has this duplicate (sunglass / sunglasses)
    sets = template_sets()
    assert len(sets["openai"]) == 183 and len(sets["imagenet"]) == 80
    assert sets["openai"][0] == "{}的照片" and sets["imagenet"][0] == "{}的照片。"
    for name, templates in sets.items():
        check_templates(templates, name)


def test_template_files_and_errors(tmp_path):
    (tmp_path / "t.txt").write_text("一张{}的照片\n\n{}的画\n", encoding="utf-8")
    assert load_templates(str(tmp_path / "t.txt")) == ["一张{}的照片", "{}的画"]
    (tmp_path / "t.json").write_text(json.dumps(["{}"]), encoding="utf-8")
    assert load_templates(str(tmp_path / "t.json")) == ["{}"]
    (tmp_path / "bad.txt").write_text("没有占位符\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must contain '\\{\\}' exactly once"):
        load_templates(str(tmp_path / "bad.txt"))
    with pytest.raises(KeyError, match="unknown template set 'nope'"):
        load_templates("nope")


def test_prompts_are_class_major_and_preprocessed_like_cn_clip():
    assert preprocess_text("“Logo”的照片") == '"logo"的照片'
    assert class_prompts(["猫", "狗"], ["{}的照片", "一张{}"]) == ["猫的照片", "一张猫", "狗的照片", "一张狗"]


def test_folder_reader_orders_classes_and_checks_the_label_file(shapes_zs, tmp_path):
    data = load_zero_shot_folder(shapes_zs)
    assert data.classnames == ["红色的圆形", "红色的三角形", "蓝色的圆形", "蓝色的三角形", "绿色的圆形", "绿色的三角形"]
    assert data.class_folders == ["000", "001", "002", "003", "004", "005"]
    assert data.labels == [k for k in range(6) for _ in range(4)]
    assert all(p.parent.name == f"{label:03d}" for p, label in zip(data.images, data.labels))
    (tmp_path / "test" / "000").mkdir(parents=True)
    (tmp_path / "label_cn.txt").write_text("猫\n狗\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has 1 class folders but .* names 2 classes"):
        load_zero_shot_folder(tmp_path)
    (tmp_path / "label_cn.txt").write_text("猫\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no image"):
        load_zero_shot_folder(tmp_path)


def direct_predictions(model, data, templates) -> tuple[np.ndarray, np.ndarray]:
    """Transcription of cn_clip's zero_shot_classifier + run: one class at a time, full 52-token rows."""
    weights = []
    for name in data.classnames:
        ids = tokenize([preprocess_text(t.format(name)) for t in templates], context_length=52)
        emb = model.encode_text(paddle.to_tensor(ids)).numpy().astype(np.float64)
        emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
        mean = emb.mean(axis=0)
        weights.append(mean / np.linalg.norm(mean))
    classifier = np.stack(weights, axis=1)  # (D, C), as cn_clip stacks them
    transform = ImageTransform(32)
    logits = []
    for path in data.images:
        feat = model.encode_image(paddle.to_tensor(transform(path.read_bytes())[None])).numpy().astype(np.float64)
        feat /= np.linalg.norm(feat, axis=-1, keepdims=True)
        z = 100.0 * feat @ classifier
        logits.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())  # softmax, as cn_clip
    return np.concatenate(logits), classifier.T


@paddle.no_grad()
def test_accuracy_equals_a_direct_computation(model, shapes_zs):
    data = load_zero_shot_folder(shapes_zs)
    templates = load_templates("openai")[:6]
    probs, classifier = direct_predictions(model, data, templates)
    labels = np.array(data.labels)
    order = np.argsort(-probs, axis=1, kind="stable")
    expected = {f"top{k}": 100.0 * np.mean([labels[i] in order[i, :k] for i in range(len(labels))]) for k in (1, 5)}
    ours_classifier = zero_shot_classifier(model, data.classnames, templates, batch_size=4)
    np.testing.assert_allclose(ours_classifier, classifier, atol=2e-6)
    result = zero_shot_evaluate(model, data, templates, batch_size=5, text_batch_size=4)
    assert result["top1"] == pytest.approx(expected["top1"]) and result["top5"] == pytest.approx(expected["top5"])
    assert result["n_images"] == 24 and result["n_classes"] == 6 and result["n_templates"] == 6
    assert 0 < expected["top5"] < 100 and expected["top1"] < expected["top5"]  # neither trivial nor perfect


def test_accuracy_counts_a_hit_within_k():
    top = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2]])
    assert accuracy(top, np.array([2, 2, 2]), ks=(1, 2, 3)) == {
        "top1": pytest.approx(100 / 3),
        "top2": pytest.approx(200 / 3),
        "top3": 100.0,
    }


def test_cache_hits_the_second_time_and_misses_on_other_prompts_or_weights(model, shapes_zs, tmp_path, monkeypatch):
    data = load_zero_shot_folder(shapes_zs)
    templates = ["{}的照片", "一张{}的图片"]
    calls = []
    encode = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda ids: calls.append(ids.shape[0]) or encode(ids))
    first = zero_shot_classifier(model, data.classnames, templates, cache_dir=tmp_path)
    assert sum(calls) == 12 and len(list(tmp_path.glob("zs_*.npy"))) == 1
    calls.clear()
    second = zero_shot_classifier(model, data.classnames, templates, cache_dir=tmp_path)
    assert calls == [] and np.array_equal(first, second)
    zero_shot_classifier(model, data.classnames, templates[:1], cache_dir=tmp_path)  # other prompts: a miss
    assert sum(calls) == 6 and len(list(tmp_path.glob("zs_*.npy"))) == 2
    calls.clear()
    with paddle.no_grad():
        model.logit_scale.set_value(model.logit_scale + 1.0)  # any weight change: a miss
    try:
        zero_shot_classifier(model, data.classnames, templates, cache_dir=tmp_path)
    finally:
        with paddle.no_grad():
            model.logit_scale.set_value(model.logit_scale - 1.0)
    assert sum(calls) == 12 and len(list(tmp_path.glob("zs_*.npy"))) == 3


def test_tool_runs_end_to_end_on_a_trained_checkpoint(tiny_run, shapes_zs, tmp_path):
    ckpt = tiny_run / "CN-CLIP-Tiny" / "best_model"
    args = ["--model", str(ckpt), "--data", str(shapes_zs), "--templates", "imagenet", "--cache-dir", str(tmp_path)]
    proc = run_tool("zero_shot.py", *args, "--out", str(tmp_path / "r1.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((tmp_path / "r1.json").read_text(encoding="utf-8"))
    assert first["n_images"] == 24 and first["n_classes"] == 6 and first["n_templates"] == 80
    assert 0 <= first["top1"] <= first["top5"] <= 100
    assert f"top-1 {first['top1']:.2f}%" in proc.stdout
    cached = list(tmp_path.glob("zs_*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    proc = run_tool("zero_shot.py", *args, "--out", str(tmp_path / "r2.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads((tmp_path / "r2.json").read_text(encoding="utf-8"))
    assert second == {**first} and cached[0].stat().st_mtime_ns == stamp  # read, not rewritten


def test_tool_reports_a_bad_dataset(tiny_run, tmp_path):
    proc = run_tool("zero_shot.py", "--model", str(tiny_run / "CN-CLIP-Tiny" / "best_model"), "--data", str(tmp_path))
    assert proc.returncode == 3 and "label_cn.txt not found" in proc.stderr  # a data error (docs/export.md)
