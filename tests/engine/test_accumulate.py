"""Feature-cached accumulation (Global.accum_mode: features): k micro-batches give the gradients of one batch
k times larger, in one process and in two (paddle.distributed.launch, gloo on CPU), and through tools/train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddle_mm.engine.accumulate import features_step
from paddle_mm.losses import build_loss
from tests.conftest import ROOT, run_tool, tiny_args
from tests.engine.grads import AMP_OFF, assert_same_grads, batch, grads, tiny_model

WORKER = Path(__file__).with_name("accumulate_worker.py")
K, B = 4, 3  # micro-batches per step, rows per micro-batch and rank


def full_batch_grads(model, pixels, ids) -> tuple[dict[str, np.ndarray], float]:
    loss = build_loss([{"ClipLoss": {}}])(model(pixels, ids))["loss"]
    loss.backward()
    return grads(model), float(loss)


def test_k_micro_batches_give_the_gradients_of_one_batch_k_times_larger():
    model = tiny_model()
    pixels, ids = batch(K * B)
    ref, ref_loss = full_batch_grads(model, pixels, ids)
    micro = [(pixels[j * B : (j + 1) * B], ids[j * B : (j + 1) * B]) for j in range(K)]
    losses, spread = features_step(model, micro, build_loss([{"ClipLoss": {}}]), AMP_OFF)
    assert float(losses["loss"]) == pytest.approx(ref_loss, rel=1e-5) and spread < 1e-5
    assert_same_grads(grads(model), ref)
    # the objective it replaces: summed micro-batch losses (negatives from one micro-batch) is measurably another one
    loss_fn = build_loss([{"ClipLoss": {}}])
    for p, i in micro:
        (loss_fn(model(p, i))["loss"] / K).backward()
    naive = grads(model)
    assert max(float(np.abs(naive[n] - ref[n]).max()) for n in ref) > 1e-3


def test_recompute_replays_dropout_masks():
    model = tiny_model(dropout=0.3)
    model.train()
    pixels, ids = batch(K * B, seed=1)
    micro = [(pixels[j * B : (j + 1) * B], ids[j * B : (j + 1) * B]) for j in range(K)]
    _, spread = features_step(model, micro, build_loss([{"ClipLoss": {}}]), AMP_OFF)
    assert spread < 1e-5, f"recomputed features differ from the cached ones: loss spread {spread}"


def test_two_processes_give_the_gradients_of_one_global_batch(tmp_path):
    model = tiny_model()
    pixels, ids = batch(2 * K * B)
    ref, _ = full_batch_grads(model, pixels, ids)
    cmd = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
    ]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path / "grads.npz"), str(K), str(B)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},  # tests.*
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in sorted((tmp_path / "log").glob("*")) if p.is_file())
    assert proc.returncode == 0, proc.stderr[-2000:] + logs
    got = dict(np.load(tmp_path / "grads.npz"))
    assert_same_grads(got, ref)
    # aggregate: false (cn_clip --skip-aggregate): the mean of each rank's own-batch loss
    half = K * B
    loss_fn = build_loss([{"ClipLoss": {}}])
    (
        (loss_fn(model(pixels[:half], ids[:half]))["loss"] + loss_fn(model(pixels[half:], ids[half:]))["loss"]) / 2
    ).backward()
    assert_same_grads(dict(np.load(tmp_path / "grads_local.npz")), grads(model))


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "CN-CLIP-Tiny" / "train_metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_training_with_feature_accumulation_follows_the_large_batch_run(tiny_data, tiny_run, tmp_path):
    """tools/train.py, batch 16 vs 4 micro-batches of 4 by features, both distilling from the tiny run's model
    (DistillLoss kl: the teacher's targets travel with the cached micro-batches): the same loss at every step."""
    teacher = tiny_run / "CN-CLIP-Tiny" / "best_model"
    loss = f"Loss.Train=[{{ClipLoss: {{}}}}, {{DistillLoss: {{teacher: {teacher}, kind: kl}}}}]"
    common = ("Global.epochs=1", "Global.eval_during_train=false", "Global.save_steps=0", loss)
    big = run_tool("train.py", *tiny_args(tiny_data, tmp_path / "big", "-o", *common))
    acc = run_tool(
        "train.py",
        *tiny_args(
            tiny_data,
            tmp_path / "acc",
            "-o",
            *common,
            "DataLoader.Train.sampler.batch_size=4",
            "Global.accum_steps=4",
            "Global.accum_mode=features",
        ),
    )
    assert big.returncode == 0 and acc.returncode == 0, big.stderr[-2000:] + acc.stderr[-2000:]
    a, b = losses(tmp_path / "big"), losses(tmp_path / "acc")
    assert sorted(a) == sorted(b) and len(a) >= 5
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-3, atol=1e-4)
