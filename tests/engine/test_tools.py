"""tools/eval.py and tools/infer.py on a checkpoint of the tiny run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tool, tiny_args

RUN = "CN-CLIP-Tiny"


def test_eval_reproduces_the_numbers_logged_during_training(tiny_run, tiny_data):
    # the run folder's own config.yml, as written by the trainer (Arch.fusion: null and all), reloads
    config = ["-c", str(tiny_run / RUN / "config.yml"), "-o", f"Global.output_dir={tiny_run}"]
    proc = run_tool("eval.py", *config, f"Global.pretrained_model={tiny_run / RUN / 'epoch_2'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tiny_run / RUN / "eval_valid.json").read_text(encoding="utf-8"))
    logged = json.loads((tiny_run / RUN / "train_summary.json").read_text())["history"][1]
    assert result["MR"] == pytest.approx(logged["MR"], abs=1e-9)
    assert result["t2i"] == pytest.approx(logged["t2i"]) and result["i2t"] == pytest.approx(logged["i2t"])
    cn = result["text_to_image"]
    assert cn["success"] is True and cn["score"] == pytest.approx(logged["t2i"]["mean_recall"])
    assert set(cn["scoreJson"]) == {"score", "mean_recall", "r1", "r5", "r10"}
    assert f"MR (both directions): {logged['MR']:.2f}" in proc.stdout


def test_eval_without_weights_is_a_config_error(tiny_data, tmp_path):
    proc = run_tool("eval.py", *tiny_args(tiny_data, tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "config error: Global.pretrained_model: missing; pass -o Global.pretrained_model=output/<run>/best_model"
    )


def test_eval_on_a_missing_checkpoint_names_it(tiny_data, tmp_path):
    proc = run_tool("eval.py", *tiny_args(tiny_data, tmp_path, "-o", f"Global.pretrained_model={tmp_path / 'nope'}"))
    assert proc.returncode != 0 and f"checkpoint '{tmp_path / 'nope'}' not found" in proc.stderr


def test_infer_ranks_the_gallery_both_ways(tiny_run, tiny_data, tmp_path):
    import base64

    first = (tiny_data / "valid_imgs.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    query_png = tmp_path / "q.png"
    query_png.write_bytes(base64.b64decode(first[1]))
    proc = run_tool(
        "infer.py",
        *tiny_args(
            tiny_data,
            tiny_run,
            "-o",
            f"Global.pretrained_model={tiny_run / RUN / 'latest'}",
            f"Infer.root={tiny_data}",
            "Infer.split=valid",
            "Infer.topk=3",
            "Infer.queries=['左上角有一个红色的圆形', '图中有两个蓝色的三角形']",
            f"Infer.query_images=['{query_png}']",
        ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tiny_run / RUN / "infer_results.json").read_text(encoding="utf-8"))
    assert [q["query"] for q in res["text_to_image"]] == ["左上角有一个红色的圆形", "图中有两个蓝色的三角形"]
    for q in res["text_to_image"] + res["image_to_text"]:
        scores = [r["score"] for r in q["results"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    gallery_ids = {int(line.split("\t")[0]) for line in (tiny_data / "valid_imgs.tsv").read_text().splitlines()}
    assert all(r["image_id"] in gallery_ids for q in res["text_to_image"] for r in q["results"])
    assert "[image -> text]" in proc.stdout and "[text -> image] 左上角有一个红色的圆形" in proc.stdout
