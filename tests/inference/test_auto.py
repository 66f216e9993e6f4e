"""auto's decision logic on fake backends driving a fake clock: no runtime, no timing noise of the host."""

from __future__ import annotations

import json

import pytest

from paddle_mm.inference import auto
from paddle_mm.inference.auto import BUSY_CORES, CACHE_FILE, MAX_ROUNDS_FACTOR, ROUNDS, choose, decide


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """These tests run on a loaded CI machine: the other processes' load is what each test says it is. The
    fake backends leave no threads spinning: no settling pause between them."""
    monkeypatch.setattr(auto, "_other_load", lambda: lambda: 0.0)
    monkeypatch.setattr(auto, "SETTLE_S", 0.0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Fake:
    """A backend whose n-th run takes ``ms[n % len(ms)]`` milliseconds of the fake clock."""

    def __init__(self, clock: Clock, *ms: float):
        self.clock, self.ms, self.calls = clock, ms, 0

    def run(self, feeds):
        self.clock.now += self.ms[self.calls % len(self.ms)] / 1e3
        self.calls += 1
        return []


def builders(backends: dict[str, Fake], built: list[str] | None = None):
    def builder(name):
        def build():
            if built is not None:
                built.append(name)
            return backends[name]

        return build

    return {name: builder(name) for name in backends}


def test_the_clearly_faster_backend_wins_and_is_cached_with_its_margin(tmp_path):
    clock = Clock()
    fakes = {"slow": Fake(clock, 10.0), "fast": Fake(clock, 6.0)}  # the default (first) is the slow one
    backend, choice = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock)
    assert backend is fakes["fast"] and choice.backend == "fast" and choice.confident
    assert choice.margin == pytest.approx(10 / 6 - 1) and choice.noise == pytest.approx(0.0)
    assert choice.timings_ms == {"slow": pytest.approx(10.0), "fast": pytest.approx(6.0)}
    entry = next(iter(json.loads((tmp_path / CACHE_FILE).read_text(encoding="utf-8")).values()))
    assert entry["backend"] == "fast" and entry["margin"] == pytest.approx(2 / 3) and entry["rounds"] == ROUNDS

    built: list[str] = []
    again, cached = choose(builders(fakes, built), {}, {"k": "v"}, directory=tmp_path, clock=clock)
    assert cached.cached and again is fakes["fast"] and built == ["fast"]  # only the winner is built


def test_a_margin_inside_the_noise_is_not_cached_and_the_faster_median_is_used(tmp_path):
    clock = Clock()
    # b is faster by median (9.5 vs 10) but loses every other round: a 5 % edge inside +-10 % noise. The
    # default (a, first) is not preferred over the evidence; the pick is only not cached.
    fakes = {"a": Fake(clock, 10.0, 10.0), "b": Fake(clock, 8.0, 11.0)}
    backend, choice = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock)
    assert not choice.confident and choice.backend == "b" and backend is fakes["b"]
    assert choice.rounds == ROUNDS * MAX_ROUNDS_FACTOR  # it kept measuring before giving up
    assert choice.noise > choice.margin
    assert not (tmp_path / CACHE_FILE).exists()


def test_one_slow_round_under_load_does_not_flip_a_clear_decision(tmp_path):
    clock = Clock()
    # a burst of load hits round 3 of the faster backend only (3x); the median and the paired ratios hold
    fakes = {"a": Fake(clock, 10.0), "b": Fake(clock, 7.0, 7.0, 7.0, 7.0, 21.0, 7.0, 7.0)}
    _, choice = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock)
    assert choice.backend == "b" and choice.confident and choice.cached is False


def test_decide_compares_round_by_round():
    # load doubles halfway through: both backends slow down alike, b stays 20 % faster in every round
    times = {"a": [10, 10, 20, 20, 20], "b": [8, 8, 16, 16, 16]}
    d = decide(times)
    assert d.best == "b" and d.confident and d.margin == pytest.approx(0.25)
    # the same medians without pairing: b won only where a happened to be slow
    d = decide({"a": [10, 20, 10, 20, 10], "b": [16, 8, 16, 8, 16]})
    assert not d.confident


def test_a_clear_decision_measured_on_a_busy_machine_is_used_but_not_cached(tmp_path):
    clock = Clock()
    fakes = {"slow": Fake(clock, 10.0), "fast": Fake(clock, 6.0)}
    busy = lambda: lambda: BUSY_CORES + 1.0
    backend, choice = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock, load_meter=busy)
    assert backend is fakes["fast"] and choice.confident and choice.other_cores == BUSY_CORES + 1.0
    assert not (tmp_path / CACHE_FILE).exists()


def test_a_quarter_of_a_core_busy_is_already_too_busy_to_cache(tmp_path):
    """Measured here: at 0.45 busy cores of 2, auto cached ONNX Runtime for a text tower where a quiet run found
    Paddle Inference 1.26x faster. The line is the benchmark's quiet line, 0.25 cores."""
    clock = Clock()
    fakes = {"slow": Fake(clock, 10.0), "fast": Fake(clock, 6.0)}
    for other, cached in ((0.45, False), (0.2, True)):
        (tmp_path / CACHE_FILE).unlink(missing_ok=True)
        meter = lambda: lambda: other  # noqa: B023
        backend, _ = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock, load_meter=meter)
        assert backend is fakes["fast"] and (tmp_path / CACHE_FILE).exists() == cached, other


def test_each_timed_run_of_several_backends_starts_after_a_settling_pause(monkeypatch):
    """A pause precedes every timed run (the previous backend's threads may still spin), outside the timing;
    one backend alone is not paused."""
    pauses: list[float] = []
    monkeypatch.setattr(auto, "SETTLE_S", 0.25)
    monkeypatch.setattr(auto.time, "sleep", pauses.append)
    clock = Clock()
    fakes = {"a": Fake(clock, 10.0), "b": Fake(clock, 6.0)}
    times = auto.interleaved_ms(fakes, {}, rounds=3, clock=clock)
    assert pauses == [0.25] * 6
    assert times == {"a": pytest.approx([10.0] * 3), "b": pytest.approx([6.0] * 3)}  # the pause is not timed
    pauses.clear()
    auto.interleaved_ms({"a": fakes["a"]}, {}, rounds=3, clock=clock)
    assert pauses == []


class Answering(Fake):
    """A fake backend that also returns ``outputs`` (features) from every run."""

    def __init__(self, clock: Clock, outputs, *ms: float):
        super().__init__(clock, *ms)
        self.outputs = outputs

    def run(self, feeds):
        super().run(feeds)
        return self.outputs


def features(cosine: float) -> list:
    """Two rows whose cosine to REFERENCE is 1 and ``cosine`` (both unit vectors)."""
    import numpy as np

    s = (1 - cosine**2) ** 0.5
    return [np.array([[1.0, 0.0, 0.0], [0.0, cosine, s]], np.float32)]


REFERENCE = features(1.0)


def test_a_gated_candidate_competes_only_while_its_features_stay_within_the_bound(tmp_path):
    clock = Clock()
    fakes = {
        "fp32": Answering(clock, REFERENCE, 10.0),
        "close": Answering(clock, features(0.9995), 6.0),  # faster, within 0.999
        "far": Answering(clock, features(0.99), 3.0),  # fastest, but outside the bound
    }
    gates = {"close": 0.999, "far": 0.999}
    backend, choice = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock, min_cosine=gates)
    assert backend is fakes["close"] and choice.backend == "close"
    assert choice.cosines == {"close": pytest.approx(0.9995, abs=1e-6), "far": pytest.approx(0.99, abs=1e-6)}
    assert "far" not in choice.timings_ms and "cosine 0.99000 to fp32 is under the bound 0.999" in choice.failed["far"]
    entry = next(iter(json.loads((tmp_path / CACHE_FILE).read_text(encoding="utf-8")).values()))
    assert entry["backend"] == "close" and entry["cosines"]["close"] == pytest.approx(0.9995, abs=1e-6)


def test_a_gated_candidate_with_zero_features_or_no_reference_never_competes(tmp_path):
    import numpy as np

    clock = Clock()
    zero = [np.zeros((2, 3), np.float32)]
    fakes = {"fp32": Answering(clock, REFERENCE, 10.0), "zero": Answering(clock, zero, 1.0)}
    backend, choice = choose(builders(fakes), {}, {"k": "v"}, directory=tmp_path, clock=clock, min_cosine={"zero": 0.9})
    assert backend is fakes["fp32"] and "cosine -1.00000" in choice.failed["zero"]

    def no_runtime():
        raise RuntimeError("no runtime")

    alone = {"fp32": no_runtime, "gated": builders({"gated": Answering(clock, REFERENCE, 1.0)})["gated"]}
    with pytest.raises(RuntimeError, match="pass its accuracy check.*no reference candidate"):
        choose(alone, {}, {"k": "w"}, directory=tmp_path, clock=clock, min_cosine={"gated": 0.999})
