"""Nothing lost, nothing silent (issue 17, training side): used output folders, the run lock, divergence,
signals and data-loader workers, resume drift, one-line errors with exit codes, digests, curves."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import ROOT, TINY_ARCH, TINY_NAME, run_tool, tiny_args

RUN = TINY_NAME  # a run's folder is named after Arch.name
QUICK = ("Global.epochs=1", "Global.eval_during_train=false")


def one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The run failed with ``code`` and said so in exactly one stderr line containing every needle."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- point 1: used output folders


def test_a_used_output_folder_is_refused_unless_resumed_or_overwritten(tiny_data, tmp_path):
    first = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", "Global.epochs=1", "Global.use_visualdl=true"))
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / RUN
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    again = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", *QUICK))
    one_line(again, 20, "already holds a run", f"Global.checkpoints={run / 'latest'}", "Global.overwrite=true")
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # not one result touched

    # the curves and VisualDL records of the first run (point 13)
    png = run / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["logit_scale"]) and r["logit_scale"] > 1 for r in rows)
    records = b"".join(p.read_bytes() for p in (run / "vdl").glob("vdlrecords.*"))
    for tag in ("eval/t2i_R@1", "eval/t2i_R@5", "eval/i2t_R@10", "eval/MR", "train/logit_scale"):
        assert tag.encode() in records, tag
    from paddle_mm.engine.plot import plot_run

    assert plot_run(run, tmp_path / "again.png").stat().st_size > 20_000  # what tools/plot.py calls

    (run / "epoch_9").mkdir()  # a leftover from an older, longer run: overwrite must not keep it
    fresh = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", *QUICK, "Global.overwrite=true"))
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert not (run / "epoch_9").exists() and not (run / "vdl").exists()
    assert f"Global.overwrite: emptied {run}" in fresh.stdout


# ----------------------------------------------------------------------------- point 2: divergence


def test_divergence_stops_at_the_step_and_saves_nothing_non_finite(tiny_data, tmp_path):
    args = tiny_args(tiny_data, tmp_path, "-o", "Optimizer.lr.learning_rate=1e9", "Global.epochs=1")
    proc = run_tool("train.py", *args)
    line = one_line(proc, 23, "training diverged at step ", "NaN/Inf", "Optimizer.lr.learning_rate")
    step = int(line.split("training diverged at step ")[1].split()[0])
    logged = [json.loads(r)["step"] for r in (tmp_path / RUN / "train_metrics.jsonl").read_text().splitlines()]
    assert max(logged, default=0) < step  # no line was logged for the diverged step
    for ckpt in (tmp_path / RUN).glob("*/model.safetensors"):  # whatever was saved before it is finite
        assert all(np.isfinite(a).all() for a in load_file(str(ckpt)).values()), ckpt
    assert not (tmp_path / RUN / "best_model").exists()


def test_save_checkpoint_refuses_non_finite_weights_and_keeps_the_old_one(tmp_path):
    import paddle

    from paddle_mm.engine.checkpoint import save_checkpoint
    from paddle_mm.engine.errors import Diverged
    from paddle_mm.models import create_model, load_model

    model = create_model(TINY_NAME, **TINY_ARCH)
    save_checkpoint(tmp_path / "best_model", model)
    good = (tmp_path / "best_model" / "model.safetensors").read_bytes()
    model.logit_scale.set_value(paddle.to_tensor(float("nan")))
    with pytest.raises(Diverged, match="non-finite values \\(logit_scale\\); nothing was written"):
        save_checkpoint(tmp_path / "best_model", model)
    assert (tmp_path / "best_model" / "model.safetensors").read_bytes() == good
    assert np.isfinite(float(load_model(tmp_path / "best_model").logit_scale))


# ----------------------------------------------------------------------------- points 4 and 6: lock, signals, workers


def _args(tiny_data: Path, out: Path) -> list[str]:
    return tiny_args(tiny_data, out, "-o", "Global.epochs=50", "DataLoader.Train.loader.num_workers=2")


def _start(tiny_data: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), *_args(tiny_data, out)]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_training(proc: subprocess.Popen, out: Path) -> list[int]:
    """Wait until a mid-run ``latest`` exists and both loader workers run; return the workers' pids."""
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        workers = children(proc.pid)
        if (out / RUN / "latest" / "state.json").is_file() and len(workers) >= 2:
            return workers
        time.sleep(0.1)
    raise AssertionError("training did not reach its first checkpoint within 120 s")


def _gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


@pytest.mark.parametrize("sig, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_a_second_training_is_locked_out_and_signals_stop_cleanly(tiny_data, tmp_path, sig, to_group):
    proc = _start(tiny_data, tmp_path)
    try:
        workers = _wait_for_training(proc, tmp_path)
        if sig == signal.SIGTERM:  # point 4: the folder is in use (resuming would otherwise be allowed in)
            latest = tmp_path / RUN / "latest"
            second = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", f"Global.checkpoints={latest}"))
            one_line(second, 21, "is in use by another training", f"pid {proc.pid} ")
        os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)  # Ctrl-C reaches the whole group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run = tmp_path / RUN
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 128 + sig and len(lines) == 1, (proc.returncode, err[-2000:])
    assert lines[0].startswith(f"interrupted: {sig.name} at global step ")
    command = shlex.split(lines[0].split("resume with: ")[1])  # this command line again, resuming from latest
    given = _args(tiny_data, tmp_path)
    assert command[:4] == ["python", "tools/train.py", "-c", given[1]]
    overrides = [w for w in given[2:] if w != "-o"] + [f"Global.checkpoints={run / 'latest'}"]
    assert [w for w in command[4:] if w != "-o"] == overrides
    step = int(lines[0].split("global step ")[1].split()[0])
    assert json.loads((run / "latest" / "state.json").read_text())["train_state"]["global_step"] == step
    assert _gone(workers), "data-loader workers outlived the trainer"
    assert (run / ".lock").read_text() == ""  # released


def test_kill9_leaves_no_worker_and_the_stale_lock_is_taken_over(tiny_data, tmp_path):
    proc = _start(tiny_data, tmp_path)
    workers: list[int] = []
    try:
        workers = _wait_for_training(proc, tmp_path)
        proc.kill()  # the trainer only: its workers must notice by themselves
        proc.wait()
        assert _gone(workers), "data-loader workers outlived a kill -9 of the trainer"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert f"pid {proc.pid} " in (tmp_path / RUN / ".lock").read_text()
    again = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", *QUICK))  # past the lock (not 21) to 20
    one_line(again, 20, "already holds a run")
    assert f"took over the lock {tmp_path / RUN / '.lock'} left by a run that died (pid {proc.pid} " in again.stdout


# ----------------------------------------------------------------------------- point 7: resume drift


def test_resume_refuses_drift_in_data_order_or_step_count_and_warns_on_the_rest(tiny_run, tiny_data, tmp_path):
    latest = tiny_run / RUN / "latest"
    for override, needle in [
        ("DataLoader.Train.sampler.batch_size=8", "global batch: 16 -> 8"),
        ("Global.epochs=3", "Global.epochs: 2 -> 3"),
    ]:
        proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", f"Global.checkpoints={latest}", override))
        one_line(proc, 22, "changes the data order or the step count", needle, "Global.pretrained_model=")
    ok = run_tool(
        "train.py",
        *tiny_args(tiny_data, tmp_path, "-o", f"Global.checkpoints={latest}", "Optimizer.weight_decay=0.02"),
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "with config changes: Optimizer.weight_decay: 0.01 -> 0.02" in ok.stdout


# ----------------------------------------------------------------------------- points 9 and 10: one line, exit codes


def test_data_and_output_folder_errors_are_one_line_with_their_exit_codes(tiny_data, tmp_path):
    from paddle_mm.data.datasets import DatasetError, load_corpus
    from paddle_mm.engine.errors import OutputDirUnusable
    from paddle_mm.engine.run import claim_output_dir

    with pytest.raises(DatasetError, match="dataset root .* does not exist"):
        load_corpus(tmp_path / "nope", "train")
    with pytest.raises(DatasetError, match="found neither layout for split 'tset'.*splits there: train, valid"):
        load_corpus(tiny_data, "tset")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train_imgs.tsv").write_text("")
    (empty / "train_texts.jsonl").write_text("")
    with pytest.raises(DatasetError, match="split 'train' in .* is empty \\(0 images, 0 texts\\)"):
        load_corpus(empty, "train")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputDirUnusable, match="'a_file' is a file|a_file' is a file"):
        claim_output_dir(tmp_path / "a_file" / RUN, resume=False, overwrite=False)
    with pytest.raises(OutputDirUnusable, match="is not writable"):
        claim_output_dir(Path("/sys/paddle_mm_test") / RUN, resume=False, overwrite=False)

    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path, "-o", f"DataLoader.Train.dataset.root={empty}"))
    one_line(proc, 3, "data error: split 'train' in", "is empty")
    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path / "a_file"))
    one_line(proc, 4, "output error: output folder", "is a file")


def test_checkpoint_digests_are_recorded_and_checked(tiny_run, tiny_data, tmp_path):
    import shutil

    from paddle_mm.engine.errors import CheckpointError
    from paddle_mm.models import load_model

    state = json.loads((tiny_run / RUN / "latest" / "state.json").read_text())
    for name in ("model.safetensors", "optimizer.safetensors"):
        data = (tiny_run / RUN / "latest" / name).read_bytes()
        assert state["sha256"][name] == hashlib.sha256(data).hexdigest()

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_run / RUN / "latest", ckpt)
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01  # one flipped bit inside a tensor: still a valid file, other scores
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors does not match the SHA-256 recorded in state.json"):
        load_model(ckpt)
    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path / "out", "-o", f"Global.checkpoints={ckpt}"))
    one_line(proc, 6, f"checkpoint error: {weights} does not match the SHA-256")

    weights.write_bytes(bytes(data[:1000]))  # truncated
    state["sha256"].pop("model.safetensors")
    (ckpt / "state.json").write_text(json.dumps(state))
    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path / "out2", "-o", f"Global.pretrained_model={ckpt}"))
    one_line(proc, 6, f"checkpoint error: {weights} is corrupt or truncated")


def test_plot_draws_a_task_run_without_logit_scale_and_names_a_wrong_folder(tmp_path):
    from paddle_mm.engine.plot import plot_run, read_steps

    run = tmp_path / "run"
    run.mkdir()
    steps = [{"epoch": 1 + s // 5, "step": s, "loss": 3.0 - 0.1 * s, "lr": 1e-3} for s in range(1, 11)]
    steps.append({**steps[-1], "loss": 1.5})  # a step logged again after a resume: the later record wins
    (run / "train_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    history = [
        {"epoch": e, "global_step": 5 * e, "vqa_acc": 20.0 * e, "accuracy": 18.0 * e, "per_type": {}} for e in (1, 2)
    ]
    (run / "train_summary.json").write_text(json.dumps({"history": history}))
    png = plot_run(run)
    assert png == run / "training_curves.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert len(read_steps(run)) == 10 and read_steps(run)[-1]["loss"] == 1.5
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "plot.py"), str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_the_step_check_names_the_first_non_finite_parameter(bad):
    import paddle

    from paddle_mm.engine.train import _first_non_finite
    from paddle_mm.models import create_model

    model = create_model(TINY_NAME, **TINY_ARCH)
    assert _first_non_finite(model) is None
    bias = model.bert.encoder.layer[0].output.dense.bias
    with paddle.no_grad():
        bias[3] = bad  # one value of one tensor
        model.logit_scale.set_value(paddle.to_tensor(3e38))  # finite
    assert _first_non_finite(model) == "bert.encoder.layer.0.output.dense.bias"
    with paddle.no_grad():
        bias[3] = 3e38
    assert _first_non_finite(model) is None  # finite values: not a divergence, even when their sum overflows
