"""Every shipped fusion, end to end: train -> save -> load_model -> evaluate -> export -> Predictor.

Each config in configs/fusion/ trains for one epoch on tiny data (32 px, towers from scratch); the checkpoint
must load as the fusion model that was trained (its evaluation equals what training logged), export with every
variant verified against eager, and answer / classify / match through the Predictor exactly as the eager model.
The last test runs the same checkpoint through tools/eval.py, tools/export_model.py (with INT8) and
tools/predict.py, as a user would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_tool

CONFIGS = ROOT / "configs" / "fusion"
RUN = "CN-CLIP-Tiny"
TINY = [
    "Global.epochs=1",
    "Global.progress_bar=false",
    "Global.print_batch_step=100",
    "Arch.image_resolution=32",
    "Arch.fusion.clip_weights=null",
    "DataLoader.Train.sampler.batch_size=16",
    "DataLoader.Train.loader.num_workers=0",
    "Optimizer.lr.warmup_steps=1",
]


@pytest.fixture(scope="module")
def vqa_data(tmp_path_factory) -> Path:
    from paddle_mm.data.vqa import make_vqa_dataset

    out = tmp_path_factory.mktemp("vqa_lifecycle")
    make_vqa_dataset(out, {"train": 48, "valid": 20}, seed=11, image_size=32)
    return out


@pytest.fixture(scope="module")
def caption_data(tmp_path_factory) -> Path:
    from paddle_mm.demo.shapes import make_dataset

    out = tmp_path_factory.mktemp("captions_lifecycle")
    make_dataset(out, {"train": 48, "valid": 12}, seed=2, image_size=32)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """train(config, data, *overrides) -> the run folder; each distinct run is trained once per module."""
    import paddle_mm.engine.train as engine_train
    from paddle_mm.config import load_config

    mp = pytest.MonkeyPatch()
    mp.setattr(engine_train, "_plot", lambda _out_dir: None, raising=False)  # the curves are not tested here: 2 s each

    done: dict[tuple, Path] = {}

    def train(config: str, data: Path, *overrides: str) -> Path:
        key = (config, str(data), overrides)
        if key not in done:
            out = tmp_path_factory.mktemp(Path(config).stem)
            roots = [f"DataLoader.Train.dataset.root={data}", f"DataLoader.Eval.dataset.root={data}"]
            cfg = load_config(CONFIGS / config, [*TINY, *roots, f"Global.output_dir={out}", *overrides])
            engine_train.train(cfg)
            done[key] = out / RUN
        return done[key]

    yield train
    mp.undo()


def eager_logits(model, task, cfg) -> tuple[object, np.ndarray]:
    """The task's evaluation data and the eager model's logits on it (the pairs the task scores)."""
    from paddle_mm.tasks.vqa import predict_logits

    data = task.load_eval(cfg["DataLoader"]["Eval"]["dataset"], model.config)
    return data, predict_logits(model, data, 64)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def export(model, out: Path, int8: bool = False):
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.vision.transforms import ImageTransform

    options = ExportOptions(int8=int8, verify_batches=(3,), threads=1)
    info = export_model(model, out, ImageTransform(model.config.image_resolution), RUN, options, log=lambda _m: None)
    results = info.export["verification"]["results"]
    fp32 = [v for rows in results.values() for key, row in rows.items() if key.endswith("fp32") for v in row.values()]
    assert len(fp32) == 2 * len(results) and max(fp32) < 1e-4  # both fp32 variants of every graph agree with eager
    return info


def load_checked(run: Path, fusion: str):
    """load_model on the run's best checkpoint, with its config and task."""
    from paddle_mm.config import load_config
    from paddle_mm.models import load_model, read_model_config
    from paddle_mm.models.fusion import FusionModel
    from paddle_mm.tasks import build_task

    assert read_model_config(run / "best_model")["model_type"] == "fusion"
    model = load_model(run / "best_model")
    assert isinstance(model, FusionModel) and model.fusion_name == fusion and not model.training
    cfg = load_config(run / "config.yml")
    return model, cfg, build_task(cfg)


@pytest.mark.parametrize(
    "fusion, task, backend",
    [
        ("concat", "vqa", "onnxruntime"),
        ("late", "vqa", "paddle_inference"),
        ("attention", "vqa", "onnxruntime"),
        ("cross_attention", "vqa", "onnxruntime"),
        ("filip", "vqa", "onnxruntime"),
        ("mfb", "vqa", "onnxruntime"),
        ("concat", "classification", "onnxruntime"),
    ],
)
def test_answering_fusion_lifecycle(fusion, task, backend, vqa_data, runs, tmp_path):
    from paddle_mm.data.vqa import read_answers
    from paddle_mm.inference import Predictor

    extra = ("Global.task=classification", "Loss.Train=[{ClassificationLoss: {}}]") if task == "classification" else ()
    run = runs(f"{fusion}_vqa.yml", vqa_data, *extra)
    model, cfg, vqa = load_checked(run, fusion)
    assert model.labels == list(read_answers(vqa_data)) and not model.matching
    data, logits = eager_logits(model, vqa, cfg)
    logged = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["history"][-1]
    assert vqa.evaluate(model, data, 64)[vqa.main_metric] == pytest.approx(logged[vqa.main_metric])

    export(model, tmp_path / "inference")
    predictor = Predictor(tmp_path / "inference", backend=backend, threads=1, batch_size=8)
    assert predictor.is_fusion and predictor.labels == model.labels
    split = data.split
    images = [split.images[i] for i in split.image_index]  # uint8 RGB at the model's size, as the task reads them
    texts = [q["question"] for q in split.questions]
    got = (predictor.answer if task == "vqa" else predictor.classify)(images, texts)
    assert got.labels == [model.labels[j] for j in logits.argmax(axis=1)]
    np.testing.assert_allclose(got.probabilities, softmax(logits), atol=1e-5)
    np.testing.assert_allclose(got.scores, softmax(logits).max(axis=1), atol=1e-5)
    one_image = predictor.answer(images[:1], texts[:3])  # one image with several questions, and the reverse
    np.testing.assert_allclose(one_image.probabilities[0], got.probabilities[0], atol=1e-6)
    np.testing.assert_allclose(one_image.probabilities, predictor.answer(images[:1] * 3, texts[:3]).probabilities)
    one_text = predictor.answer(images[:3], texts[:1])
    np.testing.assert_allclose(one_text.probabilities, predictor.answer(images[:3], texts[:1] * 3).probabilities)
    with pytest.raises(ValueError, match="does not apply"):
        predictor.match(images, texts)


def test_matching_fusion_lifecycle(caption_data, runs, tmp_path):
    """cross_attention trained for matching: loads as a matching model, evaluates as logged, exports, matches."""
    from paddle_mm.inference import ExportDirError, Predictor

    run = runs("cross_attention_matching.yml", caption_data)
    model, cfg, task = load_checked(run, "cross_attention")
    assert model.matching and model.labels is None
    data = task.load_eval(cfg["DataLoader"]["Eval"]["dataset"], model.config)
    logged = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["history"][-1]
    assert task.evaluate(model, data, 64)["mean_recall"] == pytest.approx(logged["mean_recall"])

    export(model, tmp_path / "inference", int8=True)
    predictor = Predictor(tmp_path / "inference", backend="onnxruntime", threads=1)
    corpus, transform, tokenizer = data.corpus, data.transform, data.tokenizer
    texts = corpus.texts[:6]
    images = [corpus.read_image_bytes(t.image_ids[0]) for t in texts]
    captions = [t.text for t in texts]
    shuffled = captions[1:] + captions[:1]  # each image with another image's caption too
    import paddle

    from paddle_mm.text.tokenizer import trim_padding

    with paddle.no_grad():
        pixels = paddle.to_tensor(np.stack([transform(b) for b in images * 2]))
        ids = trim_padding(np.asarray(tokenizer(captions + shuffled)), model.config.pad_id)
        eager = model.fusion(model.features(pixels, paddle.to_tensor(ids)))["logits"].numpy()[:, 0]
    got = predictor.match(images * 2, captions + shuffled)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-eager)), atol=1e-5)
    with pytest.raises(ExportDirError, match="does not apply"):
        predictor.answer(images, captions)
    int8 = Predictor(tmp_path / "inference", backend="onnxruntime", precision="int8", threads=1)
    assert np.abs(int8.match(images, captions) - got[:6]).max() < 0.05

    # the same export signed as a package: verified, then run from the verified bytes
    from paddle_mm.package import LocalSigner, PrivateKey, TrustAnchor, TrustStore, sign_package

    key = PrivateKey.generate()
    sign_package(tmp_path / "inference", LocalSigner(key), model="fusion-match", version="1", sequence=1)
    trust = TrustStore([TrustAnchor(key.public_key)])
    packaged = Predictor.from_package(
        tmp_path / "inference", trust, model="fusion-match", state=None, backend="onnxruntime", threads=1
    )
    np.testing.assert_array_equal(packaged.match(images, captions), predictor.match(images, captions))


def test_tools_evaluate_export_and_answer_from_the_command_line(vqa_data, runs, tmp_path):
    """tools/eval.py, tools/export_model.py (INT8 included) and tools/predict.py on a trained VQA checkpoint."""
    from paddle_mm.data.vqa import load_vqa_split
    from paddle_mm.demo.shapes import encode_png
    from paddle_mm.models import load_model

    run = runs("cross_attention_vqa.yml", vqa_data)
    args = ["-c", str(run / "config.yml"), "-o", f"Global.pretrained_model={run / 'best_model'}"]
    proc = run_tool("eval.py", *args, f"Global.output_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    logged = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["history"][-1]
    written = json.loads((tmp_path / RUN / "eval_valid.json").read_text(encoding="utf-8"))["metrics"]
    assert written["vqa_acc"] == pytest.approx(logged["vqa_acc"]) and f"vqa_acc: {logged['vqa_acc']:.2f}" in proc.stdout

    from paddle_mm.models import create_model, save_model

    save_model(
        create_model("CN-CLIP-Tiny", image_resolution=32, vision_layers=1, text_num_hidden_layers=1), tmp_path / "clip"
    )
    proc = run_tool("eval.py", *args, f"Global.pretrained_model={tmp_path / 'clip'}", f"Global.output_dir={tmp_path}")
    assert proc.returncode == 2 and "Global.task=vqa evaluates a VQA / classification fusion checkpoint" in proc.stderr

    proc = run_tool("export_model.py", *args, f"Global.save_inference_dir={tmp_path / 'inference'}", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for variant in ("paddle_inference/fp32", "onnxruntime/fp32", "onnxruntime/int8"):
        assert re.search(rf"fusion {variant} +max (abs|softmax probability) diff: b1 ", proc.stdout), proc.stdout

    split = load_vqa_split(vqa_data, "valid", 32)
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"q{k}.png")
        paths[-1].write_bytes(encode_png(split.images[split.image_index[k]]))
    questions = [split.questions[0]["question"], "图中有几个图形？"]
    out = tmp_path / "answers.json"
    proc = run_tool(
        "predict.py", "--model", str(tmp_path / "inference"), "--image", *map(str, paths), "--question", *questions,
        "--threads", "1", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text(encoding="utf-8"))["fusion"]
    model = load_model(run / "best_model")
    from paddle_mm.inference import Predictor

    expected = Predictor(tmp_path / "inference", backend="paddle_inference", threads=1)
    for row, path in zip(rows, paths):
        want = expected.answer([path], questions)
        assert [r["answer"] for r in row["results"]] == want.labels and set(want.labels) <= set(model.labels)
        assert [r["score"] for r in row["results"]] == pytest.approx(want.scores.tolist(), abs=1e-5)
        assert all(f"{r['text']} -> {r['answer']}  (" in proc.stdout for r in row["results"])
