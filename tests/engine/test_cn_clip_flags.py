"""Chinese-CLIP's run-side training flags in the trainer: ``--max-steps`` (``Global.max_steps``),
``--valid-step-interval`` (``Global.eval_interval_steps``), ``--report-training-batch-acc``
(``Global.report_batch_acc``), ``--debug`` (``Global.log_level``), ``--use-bn-sync`` in one process and
``--clip-weight-path`` through the trainer. Three in-process runs on the tiny data (11 steps an epoch) share a
module fixture: A with every flag, B resuming A from its first epoch, C with none of the reporting flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file, save_file

from paddle_mm.config import ConfigError, load_config
from paddle_mm.engine import train as train_module
from paddle_mm.losses import ClipLoss, build_loss
from paddle_mm.optim import warmup_cosine
from tests.conftest import TINY

RUN = "CN-CLIP-Tiny"
STEPS_PER_EPOCH = 11  # 186 training pairs in batches of 16
COMMON = ("Global.epochs=5", "Global.max_steps=15", "Global.save_steps=0", "Global.print_batch_step=1")
FLAGS = ("Global.eval_interval_steps=3", "Global.report_batch_acc=true", "Global.log_level=debug")


def _cfg(data: Path, out: Path, *overrides: str) -> dict:
    roots = (f"DataLoader.Train.dataset.root={data}", f"DataLoader.Eval.dataset.root={data}")
    return load_config(TINY, [*roots, f"Global.output_dir={out}", *COMMON, *overrides])


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RUN / "train_metrics.jsonl").read_text().splitlines()]


def _summary(out: Path) -> dict:
    return json.loads((out / RUN / "train_summary.json").read_text())


def _weights(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cn_clip_flags")
    out = {name: root / name for name in "ABC"}
    train_module.train(_cfg(tiny_data, out["A"], *FLAGS))
    resume = f"Global.checkpoints={out['A'] / RUN / 'epoch_1'}"
    train_module.train(_cfg(tiny_data, out["B"], *FLAGS, resume))
    train_module.train(_cfg(tiny_data, out["C"], "Global.sync_bn=true"))
    return out


def test_max_steps_stops_at_the_step_and_sizes_the_schedule(runs):
    a = _records(runs["A"])
    assert [r["step"] for r in a] == list(range(1, 16)) and [r["epoch"] for r in a] == [1] * 11 + [2] * 4
    lr_at = warmup_cosine(1e-3, 3, 15)  # the schedule spans max_steps, not epochs x steps (5 x 11 = 55)
    for r in a:
        assert r["lr"] == pytest.approx(lr_at(r["step"] - 1), rel=1e-6), r
    assert a[-1]["lr"] < 0.1 * 1e-3  # the cosine has come down: over 55 steps, step 15 would still be at 0.9e-3
    state = json.loads((runs["A"] / RUN / "latest" / "state.json").read_text())["train_state"]
    assert (state["epoch"], state["global_step"]) == (2, 15)
    log = (runs["A"] / RUN / "train.log").read_text(encoding="utf-8")
    assert "Global.max_steps=15: 2 epoch(s)" in log and "[Train][Epoch 2/2][Iter 4/4]" in log


def test_a_resumed_max_steps_run_ends_where_the_uninterrupted_one_does(runs):
    assert _same_weights(runs["A"] / RUN / "latest", runs["B"] / RUN / "latest") < 1e-6
    a, b = _records(runs["A"]), _records(runs["B"])
    assert [r["step"] for r in b] == [12, 13, 14, 15]
    for ra, rb in zip(a[11:], b):
        assert rb == pytest.approx(ra, rel=1e-5, abs=1e-6)
    ha, hb = _summary(runs["A"])["history"], _summary(runs["B"])["history"]
    assert [h["global_step"] for h in hb] == [h["global_step"] for h in ha] == [3, 6, 9, 11, 12, 15]
    for x, y in zip(ha, hb):
        assert y["MR"] == pytest.approx(x["MR"], abs=1e-6)


def test_step_evaluations_join_the_history_and_best_model_selection(runs):
    summary = _summary(runs["A"])
    history = summary["history"]
    where = [(h["epoch"], h.get("step_in_epoch")) for h in history]
    assert where == [(1, 3), (1, 6), (1, 9), (1, None), (2, 1), (2, None)]
    assert history[0]["epoch_progress"] == pytest.approx(3 / 11, abs=1e-4) and all("MR" in h for h in history)
    best = max(history, key=lambda h: h["MR"])  # the first of equal values wins, as _improved keeps it
    assert summary["best_metric"] == pytest.approx(best["MR"]) and summary["best_step"] == best["global_step"]
    saved = json.loads((runs["A"] / RUN / "best_model" / "state.json").read_text())["train_state"]
    assert saved["global_step"] == best["global_step"]
    log = (runs["A"] / RUN / "train.log").read_text(encoding="utf-8")
    assert "[Eval] global step 3 (epoch 1, iter 3)" in log and "[Eval] global step 12 (epoch 2, iter 1)" in log
    assert "[Eval] global step 15" not in log  # the run's last step evaluates once, as [Eval][Epoch 2]


def test_step_evaluations_and_reporting_leave_training_unchanged(runs):
    assert _same_weights(runs["A"] / RUN / "latest", runs["C"] / RUN / "latest") < 1e-6
    a, c = _records(runs["A"]), _records(runs["C"])
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in c], abs=1e-6)
    assert [h["global_step"] for h in _summary(runs["C"])["history"]] == [11, 15]


def test_batch_accuracy_is_logged_as_a_share_of_the_batch(runs):
    for r in _records(runs["A"]):
        for key in ("i2t_acc", "t2i_acc"):
            assert 0.0 <= r[key] <= 100.0
            assert r[key] * 16 / 100 == pytest.approx(round(r[key] * 16 / 100), abs=1e-4)  # k of 16 pairs
    log = (runs["A"] / RUN / "train.log").read_text(encoding="utf-8")
    assert "i2t_acc: " in log and "t2i_acc: " in log
    assert all("i2t_acc" not in r for r in _records(runs["C"]))


def test_debug_log_level_adds_step_and_config_lines(runs):
    debug = (runs["A"] / RUN / "train.log").read_text(encoding="utf-8")
    info = (runs["C"] / RUN / "train.log").read_text(encoding="utf-8")
    assert debug.count("[Debug][Step ") == 15 and "[Debug] config Global.max_steps = 15" in debug
    assert "[Debug] evaluation at global step 3 took" in debug
    assert "[Debug]" not in info
    assert "Global.sync_bn: one process, nothing to synchronise" in info


def test_batch_accuracy_values():
    loss = ClipLoss()
    eye = paddle.eye(4)
    perfect = loss.batch_accuracy(eye, eye)
    assert float(perfect["i2t_acc"]) == 100.0 and float(perfect["t2i_acc"]) == 100.0
    shuffled = loss.batch_accuracy(eye, eye[paddle.to_tensor([1, 2, 3, 0])])  # no text next to its image
    assert float(shuffled["i2t_acc"]) == 0.0 and float(shuffled["t2i_acc"]) == 0.0
    swapped = loss.batch_accuracy(eye, eye[paddle.to_tensor([1, 0, 2, 3])])
    assert float(swapped["i2t_acc"]) == 50.0 and float(swapped["t2i_acc"]) == 50.0
    # each image scores its own text highest, but text 1 scores image 0 (0.8) above its own (0.6)
    images = paddle.to_tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = paddle.to_tensor([[0.9, 0.1], [0.8, 0.6]])
    one_way = loss.batch_accuracy(images, texts)
    assert float(one_way["i2t_acc"]) == 100.0 and float(one_way["t2i_acc"]) == 50.0


def test_combined_loss_reports_accuracy_only_when_asked_and_able():
    eye = paddle.eye(4)
    outputs = {"image_features": eye, "text_features": eye, "logit_scale": paddle.to_tensor(10.0)}
    loss_fn = build_loss([{"ClipLoss": {}}])
    assert "i2t_acc" not in loss_fn(outputs)
    assert loss_fn.report_batch_accuracy()
    parts = loss_fn(outputs)
    assert float(parts["i2t_acc"]) == 100.0 and float(parts["loss"]) == pytest.approx(float(parts["ClipLoss"]))
    from paddle_mm.losses import CombinedLoss, VQALoss

    assert not CombinedLoss({"VQALoss": VQALoss()}).report_batch_accuracy()


@pytest.mark.parametrize(
    "override, message",
    [
        ("Global.max_steps=0", r"Global.max_steps: 0 must be > 0"),
        ("Global.eval_interval_steps=-2", r"Global.eval_interval_steps: -2 must be >= 0"),
        ("Global.log_level=verbose", r"Global.log_level: 'verbose' is not one of \['debug', 'info', 'warning'\]"),
        ("Global.report_batch_acc=3", r"Global.report_batch_acc: expected bool, got int 3"),
        ("Global.sync_bn=yes please", r"Global.sync_bn: expected bool, got str"),
        ("Global.clip_weight_path=3", r"Global.clip_weight_path: expected str or null, got int 3"),
    ],
)
def test_bad_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TINY, [override])
    assert "\n" not in str(err.value)


def test_trainer_starts_the_towers_from_weight_files(tmp_path):
    from paddle_mm.models import create_model
    from paddle_mm.models.conversion.names import paddle_to_cn_clip
    from tests.conftest import TINY_ARCH, TINY_NAME

    paddle.seed(1)
    source = create_model(TINY_NAME, **TINY_ARCH)
    state = {k: v.numpy() for k, v in source.state_dict().items() if k.startswith("visual.") or k == "logit_scale"}
    openai = {k: v.copy(order="C") for k, v in paddle_to_cn_clip(state, prefix="").items()}
    save_file(openai, tmp_path / "clip.safetensors")
    cfg = load_config(TINY, [f"Global.clip_weight_path={tmp_path / 'clip.safetensors'}"])
    paddle.seed(2)
    target = create_model(TINY_NAME, **TINY_ARCH)
    before = target.bert.embeddings.word_embeddings.weight.numpy().copy()
    train_module._restore(cfg, target, None, {}, STEPS_PER_EPOCH)
    for key, value in source.state_dict().items():
        if key.startswith("visual."):
            np.testing.assert_array_equal(target.state_dict()[key].numpy(), value.numpy(), err_msg=key)
    np.testing.assert_array_equal(target.bert.embeddings.word_embeddings.weight.numpy(), before)
    cfg["Global"]["clip_weight_path"] = str(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match=r"Global.clip_weight_path='.*missing.safetensors': no such file"):
        train_module._restore(cfg, target, None, {}, STEPS_PER_EPOCH)


class _DrawingTask:
    """A task whose evaluation draws random numbers (sampling decoders do), scoring ``MR`` = the step number."""

    main_metric, higher_is_better = "MR", True

    def evaluate(self, model, data, batch_size):
        paddle.rand([5])
        return {"MR": float(data)}

    def log_eval(self, metrics, epoch):
        return {}


class _Save:
    def __init__(self, parts):
        self.p, self.saved, self.on_step_calls = parts, [], 0

    def __call__(self, name):
        self.saved.append(name)

    def on_step(self, state):
        self.on_step_calls += 1


def test_a_step_evaluation_leaves_the_random_stream_and_picks_the_best():
    from types import SimpleNamespace

    save = _Save(SimpleNamespace(task=_DrawingTask(), model=None, steps_per_epoch=10))
    state = train_module.TrainState(epoch=1, step_in_epoch=2, global_step=2)
    paddle.seed(0)
    expected = paddle.rand([4]).numpy()
    for steps, score in ((2, 7.0), (3, 9.0), (4, 5.0)):  # every 2 steps: steps 2 and 4 evaluate
        state.step_in_epoch = state.global_step = steps
        hooks = train_module._StepHooks(save, (score, 8), None, every=2, max_steps=None)
        paddle.seed(0)
        hooks(state)
        np.testing.assert_array_equal(paddle.rand([4]).numpy(), expected)  # as if nothing had run
    assert [(h["global_step"], h["MR"]) for h in state.history] == [(2, 7.0), (4, 5.0)]
    assert (state.best_metric, state.best_step, save.saved, save.on_step_calls) == (7.0, 2, ["best_model"], 3)


def test_feature_accumulation_reports_the_accuracy_of_the_whole_accumulated_batch():
    """As cn_clip with --accum-freq: the reported accuracy is that of all k micro-batches together."""
    from paddle_mm.engine.accumulate import features_step
    from tests.engine.grads import AMP_OFF, batch, tiny_model

    model = tiny_model()
    pixels, ids = batch(12)
    loss_fn = build_loss([{"ClipLoss": {}}])
    loss_fn.report_batch_accuracy()
    micro = [(pixels[i : i + 4], ids[i : i + 4]) for i in (0, 4, 8)]
    losses, _ = features_step(model, micro, loss_fn, AMP_OFF)
    with paddle.no_grad():
        whole = ClipLoss().batch_accuracy(**model(pixels, ids))
    for key in ("i2t_acc", "t2i_acc"):
        assert float(losses[key]) == pytest.approx(float(whole[key]), abs=1e-4)
        assert float(losses[key]) * 12 / 100 == pytest.approx(round(float(losses[key]) * 12 / 100), abs=1e-4)


def test_resuming_with_another_max_steps_is_refused_but_reporting_flags_may_change():
    import logging

    from paddle_mm.engine.errors import ConfigDrift
    from paddle_mm.engine.run import check_resume_drift

    facts = {"world_size": 1, "global_batch": 16, "train_samples": 186}
    saved = {"config": load_config(TINY, ["Global.max_steps=15"]), "run_facts": facts}
    with pytest.raises(ConfigDrift, match=r"Global.max_steps: 15 -> 20"):
        check_resume_drift(saved, load_config(TINY, ["Global.max_steps=20"]), facts, Path("latest"))
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("paddle_mm").addHandler(handler)
    try:
        quiet = ["Global.max_steps=15", "Global.log_level=debug", "Global.report_batch_acc=true"]
        check_resume_drift(saved, load_config(TINY, quiet), facts, Path("latest"))
        assert warnings == []
        check_resume_drift(saved, load_config(TINY, [*quiet, "Global.eval_interval_steps=5"]), facts, Path("latest"))
        assert len(warnings) == 1 and "Global.eval_interval_steps: 0 -> 5" in warnings[0]  # allowed, said once
    finally:
        logging.getLogger("paddle_mm").removeHandler(handler)
