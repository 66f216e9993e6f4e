"""DistillLoss: a student trained with a frozen teacher's features moves toward the teacher; the teacher stays
frozen; both kinds run with feature-cached accumulation."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_mm.engine.accumulate import features_step
from paddle_mm.losses import build_loss
from paddle_mm.models import build_model, save_model
from paddle_mm.tasks.base import load_teacher
from tests.engine.grads import AMP_OFF, assert_same_grads, batch, grads

ARCH = {"name": "CN-CLIP-Tiny", "image_resolution": 32, "vision_layers": 1, "text_num_hidden_layers": 1}


def make(seed: int, embed_dim: int = 16):
    paddle.seed(seed)
    return build_model({**ARCH, "embed_dim": embed_dim})


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return save_model(make(seed=11), tmp_path_factory.mktemp("teacher") / "teacher")


def closeness(kind: str, student, teacher, pixels, ids) -> float:
    """What each kind pulls together: the image features (cosine), or the image->text similarity distributions
    (minus their KL divergence, so that higher is closer for both)."""
    with paddle.no_grad():
        s = F.normalize(student.encode_image(pixels), axis=-1)
        t = F.normalize(teacher.encode_image(pixels), axis=-1)
        if kind == "cosine":
            return float((s * t).sum(-1).mean())
        s_logits = student.logit_scale.exp() * s @ F.normalize(student.encode_text(ids), axis=-1).t()
        t_logits = teacher.logit_scale.exp() * t @ F.normalize(teacher.encode_text(ids), axis=-1).t()
        p = F.softmax(t_logits, axis=-1)
        return -float((p * (F.log_softmax(t_logits, axis=-1) - F.log_softmax(s_logits, axis=-1))).sum(-1).mean())


def train(student, loss_fn, pixels, ids, steps: int = 15) -> None:
    opt = paddle.optimizer.Adam(learning_rate=3e-3, parameters=student.parameters())
    for _ in range(steps):
        out = student(pixels, ids)
        loss_fn({**out, **loss_fn.extra_targets(pixels, ids)})["loss"].backward()
        opt.step()
        opt.clear_grad()


@pytest.mark.parametrize("kind", ["cosine", "kl"])
def test_student_moves_toward_the_teacher(teacher_dir, kind):
    pixels, ids = batch(8, seed=4)
    distill = build_loss(
        [{"ClipLoss": {}}, {"DistillLoss": {"teacher": load_teacher(str(teacher_dir)), "weight": 5.0, "kind": kind}}]
    )
    teacher = distill.terms["DistillLoss"].teacher
    frozen = {n: p.numpy().copy() for n, p in teacher.named_parameters()}
    runs = {}
    for name, loss_fn in (("with", distill), ("without", build_loss([{"ClipLoss": {}}]))):
        student = make(seed=5)
        before = closeness(kind, student, teacher, pixels, ids)
        train(student, loss_fn, pixels, ids)
        runs[name] = closeness(kind, student, teacher, pixels, ids) - before
    assert runs["with"] > runs["without"] + 0.1, runs  # the teacher term, not the contrastive one, moves it
    if kind == "cosine":  # (random towers give near-uniform similarity rows: the KL starts near 0, and stays there)
        assert runs["with"] > 0.1, runs
    assert all(np.array_equal(frozen[n], p.numpy()) for n, p in teacher.named_parameters())
    assert not teacher.training
    assert not [n for n, _ in distill.named_parameters() if "teacher" in n]  # not a sublayer: never saved / trained


@pytest.mark.parametrize("kind", ["cosine", "kl"])
def test_distillation_with_feature_accumulation_equals_the_large_batch(teacher_dir, kind):
    loss_fn = build_loss([{"ClipLoss": {}}, {"DistillLoss": {"teacher": load_teacher(str(teacher_dir)), "kind": kind}}])
    student = make(seed=5)
    pixels, ids = batch(12, seed=2)
    full = loss_fn({**student(pixels, ids), **loss_fn.extra_targets(pixels, ids)})
    full["loss"].backward()
    ref = grads(student)
    micro = [(pixels[j * 3 : (j + 1) * 3], ids[j * 3 : (j + 1) * 3]) for j in range(4)]
    losses, _ = features_step(student, micro, loss_fn, AMP_OFF)
    assert float(losses["DistillLoss"]) == pytest.approx(float(full["DistillLoss"]), rel=1e-5)
    assert_same_grads(grads(student), ref)


def test_cosine_needs_equal_sizes_and_kl_does_not(teacher_dir):
    pixels, ids = batch(4)
    student = make(seed=5, embed_dim=24)
    cos = build_loss([{"DistillLoss": {"teacher": load_teacher(str(teacher_dir))}}])
    with pytest.raises(ValueError, match="student embed_dim 24 != teacher embed_dim 16; use kind: kl"):
        cos({**student(pixels, ids), **cos.extra_targets(pixels, ids)})
    kl = build_loss([{"DistillLoss": {"teacher": load_teacher(str(teacher_dir)), "kind": "kl"}}])
    assert float(kl({**student(pixels, ids), **kl.extra_targets(pixels, ids)})["loss"]) > 0


def test_a_missing_teacher_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="DistillLoss teacher: .*no such file or directory"):
        load_teacher(str(tmp_path / "nope"))


def test_train_tool_names_a_missing_teacher_in_one_line(tiny_data, tmp_path):
    from tests.conftest import run_tool, tiny_args

    loss = f"Loss.Train=[{{ClipLoss: {{}}}}, {{DistillLoss: {{teacher: {tmp_path / 'nope'}}}}}]"
    proc = run_tool("train.py", *tiny_args(tiny_data, tmp_path / "out", "-o", loss))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "config error: Loss.Train: DistillLoss teacher:" in proc.stderr and "Traceback" not in proc.stderr
