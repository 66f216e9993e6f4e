"""Config loading: overrides in both forms, YAML literals, and one-line errors with exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paddle_mm.config import ConfigError, apply_override, load_config

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yml"


def test_quickstart_loads_with_defaults():
    cfg = load_config(QUICKSTART)
    assert cfg["Global"]["epochs"] == 12
    assert cfg["Global"]["accum_steps"] == 1  # default filled in
    assert cfg["Arch"]["name"] == "CN-CLIP-Tiny"
    assert cfg["Arch"]["vocab_size"] is None  # None = the named model's own value
    assert cfg["Optimizer"]["lr"]["learning_rate"] == pytest.approx(3e-3)
    assert cfg["DataLoader"]["Eval"]["sampler"]["shuffle"] is False


def test_overrides_are_yaml_literals_with_list_indices():
    cfg = load_config(
        QUICKSTART,
        [
            "Global.epochs=2",
            "Global.checkpoints=null",
            "Metric.Eval.0.Recall.topk=[1, 3]",
            "Optimizer.lr.learning_rate=5e-5",
            "Arch.vision_layers=2",
            "Infer.queries=['红色的圆形']",
            "Global.output_dir=a=b",  # only the first '=' splits
        ],
    )
    assert cfg["Global"]["epochs"] == 2
    assert cfg["Global"]["checkpoints"] is None
    assert cfg["Metric"]["Eval"][0]["Recall"]["topk"] == [1, 3]
    assert cfg["Optimizer"]["lr"]["learning_rate"] == pytest.approx(5e-5)
    assert isinstance(cfg["Optimizer"]["lr"]["learning_rate"], float)
    assert cfg["Arch"]["vision_layers"] == 2
    assert cfg["Infer"]["queries"] == ["红色的圆形"]
    assert cfg["Global"]["output_dir"] == "a=b"


def test_override_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    cfg = load_config(QUICKSTART, [f"Global.output_dir=__import__('os').mkdir('{marker}')"])
    assert not marker.exists()
    assert cfg["Global"]["output_dir"].startswith("__import__")


def test_int_is_accepted_where_float_expected():
    cfg = load_config(QUICKSTART, ["Optimizer.weight_decay=0"])
    assert cfg["Optimizer"]["weight_decay"] == 0.0 and isinstance(cfg["Optimizer"]["weight_decay"], float)


def _write(tmp_path, mutate):
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


BAD_FILES = {
    "unknown key": (lambda d: d["Global"].update(epoch=3), "Global.epoch: unknown key; did you mean 'epochs'?"),
    "wrong type": (lambda d: d["Global"].update(epochs="ten"), "Global.epochs: expected int, got str 'ten'"),
    "missing required": (
        lambda d: d["Optimizer"]["lr"].pop("learning_rate"),
        "Optimizer.lr.learning_rate: missing required key",
    ),
    "missing section": (lambda d: d.pop("Arch"), "Arch: missing required section"),
    "unknown model": (lambda d: d.update(Arch={"name": "ViT-B-61"}), "Arch.name: 'ViT-B-61' is not one of"),
    "unknown loss": (
        lambda d: d["Loss"].update(Train=[{"ClipLos": {}}]),
        "Loss.Train.0.ClipLos: unknown name; did you mean 'ClipLoss'?",
    ),
    "bad choice": (lambda d: d["Optimizer"].update(name="adamw"), "Optimizer.name: 'adamw' is not one of"),
    "negative": (
        lambda d: d["DataLoader"]["Train"]["sampler"].update(batch_size=-4),
        "DataLoader.Train.sampler.batch_size: -4 must be > 0",
    ),
    "bool as int": (lambda d: d["Global"].update(epochs=True), "Global.epochs: expected int, got bool True"),
    "list item type": (
        lambda d: d["Metric"]["Eval"][0]["Recall"].update(topk=[1, "5"]),
        "Metric.Eval.0.Recall.topk: expected list of int",
    ),
    "section as value": (lambda d: d.update(Global=3), "Global: expected a section (mapping), got int 3"),
    "unknown arch field": (
        lambda d: d["Arch"].update(vision_layer=2),
        "Arch.vision_layer: unknown key; did you mean 'vision_layers'?",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_config_files_name_the_key(tmp_path, case):
    mutate, expected = BAD_FILES[case]
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, mutate))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


BAD_OVERRIDES = {
    "no equals": ("Global.epochs", "is not of the form Key.sub=value"),
    "unknown nested": ("Global.seeed=1", "Global.seeed: unknown key; did you mean 'seed'?"),
    "index not int": ("Metric.Eval.first.Recall.topk=[1]", "indexes a list, so it must be an integer"),
    "index out of range": ("Metric.Eval.3.Recall.topk=[1]", "index 3 out of range for a list of 1 items"),
    "bad literal": ("Global.epochs=[1,", "is not a YAML literal"),
    "wrong type": ("Global.use_visualdl=maybe", "Global.use_visualdl: expected bool, got str 'maybe'"),
    "into a value": ("Global.epochs.max=3", "is a value, not a section"),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_bad_overrides_name_the_key(case):
    override, expected = BAD_OVERRIDES[case]
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, [override])
    assert expected in str(err.value)


def test_apply_override_creates_missing_sections():
    cfg = {"Global": {}}
    apply_override(cfg, "AMP.use_amp=true")
    assert cfg["AMP"] == {"use_amp": True}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["-o", "Global.epochz=1"], "config error: Global.epochz: unknown key; did you mean 'epochs'?"),
        (["-o", "Global.epochs=1", "Global.device=7"], "config error: Global.device: expected str, got int 7"),
        (["-o", "Global.epochs=1", "-o", "Optimizer.lr.name=Cosin"], "config error: Optimizer.lr.name: 'Cosin' is not"),
    ],
)
def test_cli_prints_one_line_and_exits_2(argv, expected):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(QUICKSTART), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_every_bad_override_exits_2_through_the_tool(case):
    override, expected = BAD_OVERRIDES[case]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(QUICKSTART), "-o", override],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_every_bad_file_exits_2_through_the_tool(tmp_path, case):
    mutate, expected = BAD_FILES[case]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(_write(tmp_path, mutate))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr


def test_missing_config_file_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(tmp_path / "nope.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_docs_reference_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen", ROOT / "tools" / "dev" / "gen_config_reference.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    render = gen.render
    assert (ROOT / "docs" / "config_reference.md").read_text(encoding="utf-8") == render(), (
        "docs/config_reference.md is stale: run python tools/dev/gen_config_reference.py"
    )


TRAINING_CONFIGS = sorted(
    p.relative_to(ROOT / "configs").as_posix() for p in ROOT.glob("configs/**/*.yml") if "serving" not in p.parts
)  # configs/serving/ is tools/serve.py's schema (paddle_mm/serving/config.py)


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_a_run_folders_config_yml_reloads_to_the_same_config(tmp_path, name):
    """The trainer writes the validated config (dump_config) as <run>/config.yml, and tools/eval.py -c reads it
    back: an absent optional section (a retrieval run's Arch.fusion) is written as null and must reload."""
    from paddle_mm.config import dump_config

    cfg = load_config(ROOT / "configs" / name)
    saved = tmp_path / "config.yml"
    saved.write_text(dump_config(cfg), encoding="utf-8")
    assert load_config(saved) == cfg
