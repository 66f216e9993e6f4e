"""tools/export_model.py and tools/predict.py on the tiny trained run: the CLI path, and INT8 accuracy sanity."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tool, tiny_args

RUN = "CN-CLIP-Tiny"


def best_model(run) -> str:
    return f"Global.pretrained_model={run / RUN / 'best_model'}"


@pytest.fixture(scope="module")
def exported(tiny_run, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tool_export")
    proc = run_tool(
        "export_model.py",
        *tiny_args(tiny_data, tiny_run, "-o", best_model(tiny_run), f"Global.save_inference_dir={out}"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "exported and verified" in proc.stdout
    return out


def predict_eval(model_dir, data, tmp_path, precision: str) -> dict:
    out = tmp_path / f"{precision}.json"
    proc = run_tool(
        "predict.py",
        "--model_dir",
        str(model_dir),
        "--precision",
        precision,
        "--threads",
        "1",
        "--eval_root",
        str(data),
        "--eval_split",
        "valid",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


def test_exported_fp32_reproduces_eager_eval_and_int8_stays_within_a_point(exported, tiny_run, tiny_data, tmp_path):
    proc = run_tool("eval.py", *tiny_args(tiny_data, tiny_run, "-o", best_model(tiny_run)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    eager = json.loads((tiny_run / RUN / "eval_valid.json").read_text(encoding="utf-8"))["MR"]
    fp32 = predict_eval(exported, tiny_data, tmp_path, "fp32")
    int8 = predict_eval(exported, tiny_data, tmp_path, "int8")
    assert fp32["eval"]["MR"] == pytest.approx(eager, abs=1e-6)  # same features up to 1e-5: same ranking
    print(f"MR eager {eager:.3f}, exported fp32 {fp32['eval']['MR']:.3f}, int8 {int8['eval']['MR']:.3f}")
    assert abs(int8["eval"]["MR"] - eager) <= 1.0, (eager, int8["eval"])
    assert int8["auto"]["image"]["backend"] == "onnxruntime"


def test_predict_ranks_texts_for_each_image(exported, tiny_data, tmp_path):
    from paddle_mm.data.datasets import load_corpus

    corpus = load_corpus(tiny_data, "valid")
    image = tmp_path / "q.png"
    image.write_bytes(corpus.read_image_bytes(corpus.images[0]))
    texts = [t.text for t in corpus.texts[:4]]
    out = tmp_path / "rank.json"
    proc = run_tool(
        "predict.py",
        "--model_dir",
        str(exported),
        "--backend",
        "onnxruntime",
        "--image",
        str(image),
        "--text",
        *texts,
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranked = json.loads(out.read_text(encoding="utf-8"))["ranking"][0]["texts"]
    assert sorted(r["text"] for r in ranked) == sorted(texts)
    assert [r["cosine"] for r in ranked] == sorted((r["cosine"] for r in ranked), reverse=True)


def test_export_without_a_model_is_a_one_line_config_error(tiny_data, tmp_path):
    proc = run_tool("export_model.py", *tiny_args(tiny_data, tmp_path))
    assert proc.returncode == 2 and "Global.pretrained_model: missing" in proc.stderr


def test_predict_refuses_a_directory_that_is_not_an_export(tmp_path):
    proc = run_tool("predict.py", "--model_dir", str(tmp_path), "--text", "a", "--image", "b.png")
    assert proc.returncode == 6 and "inference.yml not found" in proc.stderr  # a model error (docs/export.md)
