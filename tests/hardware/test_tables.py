"""hardware/tables.py: the one place device names live, and selection as the ordered intersection of its tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hardware import DeviceError, parse_device
from hardware import select as hw_select
from hardware.tables import BACKEND_ORDER, BACKENDS, DEFAULT_DEVICE, DEVICES, FORMATS

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "hardware" / "tables.py"
# Accelerator types, vendors, their libraries and runtimes: what only the tables may name.
NAMES = {t for t in DEVICES if t != DEFAULT_DEVICE} | {
    "cuda", "rocm", "cann", "ascend", "kunlun", "kunlunxin", "hygon", "hygongenuine", "cambricon", "enflame",
    "nccl", "bkcl", "xccl", "migraphx", "tensorrt", "openvino",
}  # fmt: skip
WORD = re.compile(r"[a-z0-9]+")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _device_uses(tree: ast.AST) -> set[int]:
    """Constants passed to a call or compared: where ``"cpu"`` would be a device decision, not a label."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            ids |= {id(a) for a in node.args} | {id(k.value) for k in node.keywords}
        elif isinstance(node, ast.Compare):
            ids |= {id(node.left)} | {id(c) for c in node.comparators}
            ids |= {id(e) for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts}
    return ids


def device_names_in(path: Path) -> list[str]:
    """``file:line: text`` for each string literal (docstrings aside) or identifier naming an accelerator, a
    vendor or an ONNX Runtime provider, and each host device string (``"cpu"``, ``"cpu:0"``) passed or compared."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip, used, hits = _docstrings(tree), _device_uses(tree), []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value.lower()
            words = set(WORD.findall(text))
            host = id(node) in used and re.fullmatch(r"cpu(:\d+)?", text.strip())
            if words & NAMES or host or "executionprovider" in text:
                hits.append(f"{where}:{node.lineno}: {node.value!r}")
        name = getattr(node, "attr", None) or getattr(node, "id", None) or getattr(node, "name", None)
        if isinstance(name, str) and set(name.lower().split("_")) & NAMES:
            hits.append(f"{where}:{node.lineno}: identifier {name}")
    return hits


def test_device_names_appear_only_in_the_tables():
    files = [p for d in ("hardware", "paddle_mm", "tools", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))]
    files = [p for p in files if "dev" not in p.relative_to(ROOT).parts]  # tools/dev: golden-data generators
    assert len(files) > 50 and TABLES in files
    hits = [h for p in files if p != TABLES for h in device_names_in(p)]
    assert hits == [], "device names outside hardware/tables.py (ask for a capability instead):\n" + "\n".join(hits)


def test_the_grep_sees_a_vendor_branch(tmp_path):
    """The scan above would catch the code it forbids."""
    bad = tmp_path / "branch.py"
    bad.write_text('def f(spec):\n    """npu in a docstring is fine"""\n    return spec.type == "npu"\n')
    assert device_names_in(bad) == ["branch.py:3: 'npu'"]
    bad.write_text("import paddle\nok = paddle.is_compiled_with_xpu()\npaddle.set_device('cpu')\nlabel = {'cpu': 1}\n")
    assert sorted(h.split(": ", 1)[1] for h in device_names_in(bad)) == ["'cpu'", "identifier is_compiled_with_xpu"]


def test_every_device_row_is_complete():
    for kind, row in DEVICES.items():
        assert row.type == kind and row.title and row.install and row.collective and row.tested_here
        assert set(row.precisions) <= {"float32", "float16", "bfloat16"} and "float32" in row.precisions
        assert row.amp_dtype is None or row.amp_dtype in row.precisions
        assert all(k.isupper() or k.startswith("FLAGS_") for k in row.env)
    assert DEVICES[DEFAULT_DEVICE].amp_dtype is None  # Paddle 3.3 has no CPU autocast
    assert DEVICES["npu"].amp_dtype == "bfloat16"  # Ascend trains in bf16 (the table)
    for name in BACKEND_ORDER:
        assert set(BACKENDS[name].formats) <= set(FORMATS)
        assert BACKENDS[name].devices is None or set(BACKENDS[name].devices) <= set(DEVICES)


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has ``devices`` and an onnxruntime with ``providers``."""

    def set_machine(devices: dict[str, int], providers: list[str]):
        monkeypatch.setattr(hw_select, "available_devices", lambda: dict(devices))
        monkeypatch.setattr(hw_select, "ort_provider_missing", lambda spec: _ort_missing(spec, providers))

    return set_machine


def _ort_missing(spec, providers):
    return (
        None if set(spec.caps.ort_providers) & set(providers) else f"no provider for {spec} ({spec.caps.ort_install})"
    )


def test_selection_is_the_first_available_backend_of_the_intersection(machine):
    cpu, npu = parse_device(DEFAULT_DEVICE), parse_device("npu:0")
    machine({DEFAULT_DEVICE: 1, "npu": 1}, ["CPUExecutionProvider"])
    assert hw_select.select_backend("checkpoint", npu) == "paddle"
    assert hw_select.select_backend("paddle_inference", npu) == "paddle_inference"
    assert hw_select.select_backend("onnx_fp32", cpu) == "onnxruntime"
    with pytest.raises(DeviceError, match=r"no backend for ONNX fp32 on 'npu:0': .*pip install onnxruntime-cann"):
        hw_select.select_backend("onnx_fp32", npu)  # the format's only backend lacks the CANN provider
    with pytest.raises(DeviceError, match="no backend runs ONNX dynamic INT8 on 'npu:0'"):
        hw_select.select_backend("onnx_int8", npu)  # the table offers no INT8 on npu
    machine({DEFAULT_DEVICE: 1, "npu": 1}, ["CANNExecutionProvider", "CPUExecutionProvider"])
    assert hw_select.select_backend("onnx_fp32", npu) == "onnxruntime"


def test_absent_device_names_its_install_command(machine):
    machine({DEFAULT_DEVICE: 1}, ["CPUExecutionProvider"])
    for kind, row in DEVICES.items():
        if kind == DEFAULT_DEVICE:
            continue
        with pytest.raises(DeviceError) as err:
            hw_select.select_backend("paddle_inference", parse_device(f"{kind}:0"))
        assert "\n" not in str(err.value) and row.install in str(err.value)


def test_check_backend_refuses_what_the_tables_do_not_offer(machine):
    machine({DEFAULT_DEVICE: 1, "xpu": 2}, ["CPUExecutionProvider"])
    hw_select.check_backend("paddle_inference", "paddle_inference", parse_device("xpu:1"))
    with pytest.raises(DeviceError, match=r"ONNX Runtime does not run ONNX fp32 on 'xpu:0' .*backends that do: none"):
        hw_select.check_backend("onnxruntime", "onnx_fp32", parse_device("xpu:0"))
    with pytest.raises(DeviceError, match="'xpu:2' .* is not available to Paddle here"):
        hw_select.check_backend("paddle_inference", "paddle_inference", parse_device("xpu:2"))
