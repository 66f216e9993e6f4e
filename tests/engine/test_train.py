"""End-to-end training through tools/train.py on the tiny config: checkpoints, repeatability, kill -9 and
resume, fine-tuning, corrupt samples, and two processes matching one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import ROOT, run_tool, tiny_args

RUN = "CN-CLIP-Tiny"


def losses(out: Path) -> dict[int, float]:
    """step -> loss; a step repeated after a resume keeps its last value."""
    rows = [json.loads(line) for line in (out / RUN / "train_metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def weights(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path / "model.safetensors"))


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)


@pytest.fixture(scope="module")
def baseline(tiny_run) -> Path:
    return tiny_run


def test_training_writes_complete_checkpoints_and_logs(baseline):
    run = baseline / RUN
    for name in ("best_model", "latest", "epoch_1", "epoch_2"):
        for f in ("model.safetensors", "model_config.json", "optimizer.safetensors", "state.json"):
            assert (run / name / f).is_file(), f"{name}/{f} missing"
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".*.old"))
    state = json.loads((run / "latest" / "state.json").read_text())["train_state"]
    assert state["epoch"] == 2 and state["global_step"] == max(losses(baseline))
    summary = json.loads((run / "train_summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert all(0.0 <= h["MR"] <= 100.0 for h in summary["history"])
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "[Train][Epoch 1/2][Iter 1/" in log and "ips:" in log and "eta:" in log and "lr:" in log
    assert "[Eval][Epoch 2]" in log and "MR:" in log
    curve = losses(baseline)
    first, last = np.mean([curve[s] for s in sorted(curve)[:3]]), np.mean([curve[s] for s in sorted(curve)[-3:]])
    assert last < first, f"training loss did not go down: {first:.3f} -> {last:.3f}"


def test_same_seed_repeats_the_run(baseline, tiny_data, tmp_path):
    args = tiny_args(tiny_data, tmp_path / "a", "-o", "Global.epochs=1")
    assert run_tool("train.py", *args).returncode == 0
    args_b = tiny_args(tiny_data, tmp_path / "b", "-o", "Global.epochs=1")
    assert run_tool("train.py", *args_b).returncode == 0
    a, b, ref = losses(tmp_path / "a"), losses(tmp_path / "b"), losses(baseline)
    assert a == pytest.approx(b, abs=1e-6)  # same seed: the same run, step for step
    assert max_weight_diff(tmp_path / "a" / RUN / "latest", tmp_path / "b" / RUN / "latest") < 1e-6
    # the 2-epoch baseline shares init and first batch (its cosine schedule is longer, so only step 1 matches)
    assert a[1] == pytest.approx(ref[1], abs=1e-6)
    args_c = tiny_args(tiny_data, tmp_path / "c", "-o", "Global.epochs=1", "Global.seed=8")
    assert run_tool("train.py", *args_c).returncode == 0
    assert losses(tmp_path / "c")[1] != pytest.approx(a[1], abs=1e-4)  # another seed is another run


def _kill_mid_epoch(cmd: list[str], latest: Path, steps_per_epoch: int) -> int:
    """Start ``cmd``; kill -9 it once ``latest`` holds a mid-epoch-1 checkpoint. Returns the saved step."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            state_file = latest / "state.json"
            if state_file.is_file():
                try:
                    st = json.loads(state_file.read_text())["train_state"]
                except (json.JSONDecodeError, KeyError, OSError):
                    st = None
                if st and st["epoch"] == 1 and 0 < st["step_in_epoch"] < steps_per_epoch:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return st["global_step"]
            assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise AssertionError("no mid-epoch checkpoint appeared within 300 s")


def test_kill9_mid_epoch_then_resume_matches_uninterrupted(baseline, tiny_data, tmp_path):
    steps_per_epoch = json.loads((baseline / RUN / "epoch_1" / "state.json").read_text())["train_state"]["global_step"]
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), *tiny_args(tiny_data, tmp_path)]
    saved_step = _kill_mid_epoch(cmd, tmp_path / RUN / "latest", steps_per_epoch)
    proc = run_tool(
        "train.py", *tiny_args(tiny_data, tmp_path, "-o", f"Global.checkpoints={tmp_path / RUN / 'latest'}")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # from latest, or from .latest.old when the kill fell between the two renames of a checkpoint swap
    resumed_from = {f"resumed from {tmp_path / RUN / name}:" for name in ("latest", ".latest.old")}
    assert any(line in proc.stdout for line in resumed_from), proc.stdout[-2000:]
    resumed, ref = losses(tmp_path), losses(baseline)
    assert sorted(resumed) == sorted(ref)  # every step logged, none skipped
    later = [s for s in ref if s > saved_step]
    assert later, "the kill came too late to test anything"
    np.testing.assert_allclose([resumed[s] for s in later], [ref[s] for s in later], atol=2e-4)
    assert max_weight_diff(tmp_path / RUN / "latest", baseline / RUN / "latest") < 2e-4


def test_resume_from_finished_epoch_checkpoint_continues(baseline, tiny_data, tmp_path):
    proc = run_tool(
        "train.py", *tiny_args(tiny_data, tmp_path, "-o", f"Global.checkpoints={baseline / RUN / 'epoch_1'}")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, ref = losses(tmp_path), losses(baseline)
    assert min(resumed) > max(s for s in ref if s <= min(resumed) - 1)  # started after epoch 1
    np.testing.assert_allclose([resumed[s] for s in resumed], [ref[s] for s in resumed], atol=2e-4)


def test_pretrained_model_fine_tunes_from_its_weights(baseline, tiny_data, tmp_path):
    proc = run_tool(
        "train.py",
        *tiny_args(
            tiny_data,
            tmp_path,
            "-o",
            f"Global.pretrained_model={baseline / RUN / 'latest'}",
            "Global.epochs=1",
            "Global.seed=99",
        ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded pretrained weights" in proc.stdout
    scratch = losses(baseline)
    tuned = losses(tmp_path)
    assert tuned[min(tuned)] < scratch[min(scratch)] - 0.1  # starts where the trained model is, not at random


def test_corrupt_images_are_counted_and_skipped(tmp_path):
    from paddle_mm.demo.shapes import make_dataset

    data = tmp_path / "data"
    make_dataset(data, {"train": 64, "valid": 24}, seed=2, image_size=32, corrupt=5, corrupt_split="train")
    info = json.loads((data / "synthetic_info.json").read_text())
    bad_ids = {int(i) for i in info["corrupt"]["train"]}
    texts = [json.loads(line) for line in (data / "train_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    bad_pairs = sum(1 for t in texts for i in t["image_ids"] if i in bad_ids)
    total_pairs = sum(len(t["image_ids"]) for t in texts)
    assert len(bad_ids) == 5 and bad_pairs >= 5
    proc = run_tool(
        "train.py",
        *tiny_args(data, tmp_path / "out", "-o", "Global.epochs=1", "DataLoader.Train.sampler.drop_last=false"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "out" / RUN / "train.log").read_text(encoding="utf-8")
    line = next(ln for ln in log.splitlines() if "[Train][Epoch 1] skipped" in ln)
    assert f"skipped {bad_pairs} of {total_pairs} samples" in line, line


def test_missing_device_is_a_clear_error(tiny_data, tmp_path):
    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", "Global.device=xpu"))
    assert proc.returncode != 0
    assert "device 'xpu' is not available on this machine" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_processes_match_one_with_the_same_global_batch(tiny_data, tmp_path):
    one = run_tool(
        "train.py",
        *tiny_args(
            tiny_data,
            tmp_path / "one",
            "-o",
            "Global.epochs=1",
            "DataLoader.Train.sampler.batch_size=16",
            "Global.eval_during_train=false",
        ),
    )
    assert one.returncode == 0, one.stderr[-3000:]
    cmd = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
        str(ROOT / "tools" / "train.py"),
        *tiny_args(
            tiny_data,
            tmp_path / "two",
            "-o",
            "Global.epochs=1",
            "DataLoader.Train.sampler.batch_size=8",
            "Global.eval_during_train=false",
        ),
    ]
    two = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in sorted((tmp_path / "log").glob("*")) if p.is_file())
    assert two.returncode == 0, two.stderr[-2000:] + logs
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-3, atol=1e-4)
    assert max_weight_diff(tmp_path / "one" / RUN / "latest", tmp_path / "two" / RUN / "latest") < 1e-3
    # rank 1 wrote nothing: only one log file and one set of checkpoints under the output dir
    assert sorted(p.name for p in (tmp_path / "two" / RUN).iterdir()) == sorted(
        p.name for p in (tmp_path / "one" / RUN).iterdir()
    )


def test_visualdl_logs_and_amp_on_cpu_warns(tiny_data, tmp_path):
    proc = run_tool(
        "train.py",
        *tiny_args(tiny_data, tmp_path, "-o", "Global.epochs=1", "Global.use_visualdl=true", "AMP.use_amp=true"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AMP.use_amp ignored: Paddle has no mixed-precision autocast on cpu" in proc.stdout
    records = list((tmp_path / RUN / "vdl").glob("vdlrecords.*.log"))
    assert records and records[0].stat().st_size > 0


def test_duplicate_captions_are_reported_and_can_be_dropped(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "classes"
    data.mkdir()
    for split in ("train", "valid"):  # class names as captions (Chinese-CLIP #240): 3 texts over all images
        shutil.copy(tiny_data / f"{split}_imgs.tsv", data / f"{split}_imgs.tsv")
        ids = [int(line.split("\t")[0]) for line in (data / f"{split}_imgs.tsv").read_text().splitlines()]
        names = ["红色的圆形", "蓝色的三角形", "绿色的正方形"]
        rows = [{"text_id": k, "text": name, "image_ids": ids[k::3]} for k, name in enumerate(names)]
        (data / f"{split}_texts.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    warn = run_tool("train.py", *tiny_args(data, tmp_path / "warn", "-o", "Global.epochs=1"))
    assert warn.returncode == 0, warn.stderr[-3000:]
    assert "InfoNCE treats them as negatives of each other" in warn.stdout
    assert "batches had repeated captions" in warn.stdout and "rows, kept)" in warn.stdout
    drop = run_tool(
        "train.py", *tiny_args(data, tmp_path / "drop", "-o", "Global.epochs=1", "Global.drop_duplicate_captions=true")
    )
    assert drop.returncode == 0, drop.stderr[-3000:]
    assert "rows, dropped)" in drop.stdout
    # at the first step (near-uniform logits) the loss is about log(batch): 16 rows kept, at most 3 after dropping
    assert losses(tmp_path / "drop")[1] < np.log(4) < np.log(12) < losses(tmp_path / "warn")[1]
