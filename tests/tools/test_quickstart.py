"""What the quickstart shows: checked searches (✓ / ✗ per result, framed in the grid), attribute precision in
tools/eval.py, and a training that gives the same numbers twice."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ROOT, run_tool, tiny_args
from tests.data.caption_checker import caption_holds

RUN = "CN-CLIP-Tiny"
IN_LANGUAGE = "左上角有一个红色的圆形"
OUTSIDE = "一只猫"


def test_infer_marks_each_result_and_frames_it_in_the_grid(tiny_run, tiny_data, tmp_path):
    from PIL import Image

    from paddle_mm.inference.grid import CELL, LABEL, MARKS, PAD, TEXT_WIDTH

    model = f"Global.pretrained_model={tiny_run / RUN / 'best_model'}"
    queries = f"Infer.queries=['{IN_LANGUAGE}', '{OUTSIDE}']"
    args = tiny_args(tiny_data, tmp_path, "-o", model, f"Infer.root={tiny_data}", "Infer.split=valid", queries)
    proc = run_tool("infer.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / RUN / "infer_results.json").read_text(encoding="utf-8"))
    checked, unchecked = result["text_to_image"]
    records = {}
    for line in (tiny_data / "valid_scenes.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        records[record["image_id"]] = record
    truth = [caption_holds(IN_LANGUAGE, records[r["image_id"]]) for r in checked["results"]]
    assert [r["check"]["satisfies"] for r in checked["results"]] == truth  # the independent reader agrees
    assert all(r["check"] is None for r in unchecked["results"])
    lines = proc.stdout.splitlines()
    start = lines.index(f"[text -> image] {IN_LANGUAGE}  ({sum(truth)} of 5 satisfy it)")
    for line, ok, r in zip(lines[start + 1 : start + 6], truth, checked["results"]):
        assert line.lstrip().startswith("✓" if ok else "✗") and f"image {r['image_id']}" in line
    assert f"[text -> image] {OUTSIDE}  (not checked: outside the built-in caption language)" in lines

    grid = Image.open(tmp_path / RUN / "infer_grid.png").convert("RGB")
    for c, ok in enumerate(truth):  # just left of each image of the first row: its frame
        assert grid.getpixel((TEXT_WIDTH + c * (CELL + PAD) - 2, PAD + CELL // 2)) == MARKS[ok][0]
    second_row = PAD + (CELL + LABEL + PAD) + CELL // 2
    assert grid.getpixel((TEXT_WIDTH - 2, second_row)) == (255, 255, 255)  # an unchecked query: no frame


def test_eval_reports_attribute_precision_on_built_in_data(tiny_run, tiny_data, tmp_path):
    model = f"Global.pretrained_model={tiny_run / RUN / 'best_model'}"
    proc = run_tool("eval.py", *tiny_args(tiny_data, tmp_path, "-o", model))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attribute precision@5 (" in proc.stdout and "(chance: all: " in proc.stdout
    result = json.loads((tmp_path / RUN / "eval_valid.json").read_text(encoding="utf-8"))
    ap = result["attribute_precision"]
    assert ap["k"] == 5 and ap["unchecked"] == 0
    assert set(ap["precision"]) == {"all", "colour", "shape", "size", "position", "count"}
    assert all(0 <= v <= 100 for v in (*ap["precision"].values(), *ap["chance"].values()))


def train_quickstart(data: Path, out: Path) -> tuple[dict, bytes]:
    """configs/quickstart.yml itself, one short epoch on the tiny data: (its summary, its weights)."""
    args = ["-c", str(ROOT / "configs" / "quickstart.yml"), "-o", f"Global.output_dir={out}", "Global.epochs=1"]
    args += [f"DataLoader.Train.dataset.root={data}", f"DataLoader.Eval.dataset.root={data}"]
    args += ["Global.use_visualdl=false", "Global.progress_bar=false", "Optimizer.lr.warmup_steps=2"]
    args += ["DataLoader.Train.sampler.batch_size=32"]  # 5 steps on the tiny data (its 128 would make one)
    proc = run_tool("train.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / RUN / "train_summary.json").read_text(encoding="utf-8"))
    return summary["history"], (out / RUN / "best_model" / "model.safetensors").read_bytes()


def test_quickstart_training_is_deterministic(tiny_data, tmp_path):
    first, weights = train_quickstart(tiny_data, tmp_path / "a")
    second, weights_again = train_quickstart(tiny_data, tmp_path / "b")
    assert first == second and "MR" in first[0]
    assert weights == weights_again
