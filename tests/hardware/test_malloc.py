"""hardware.cpu.keep_freed_memory: freed memory stays with the process, so the next run does not fault it in."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Two 24 MB blocks freed together leave 48 MB at the top of the heap, over glibc's adapted trim threshold (twice the
# largest block freed), so by default each cycle gives them back and faults them in again.
CYCLE = """
import resource, sys
sys.path.insert(0, {root!r})
{setup}
def cycle():
    a = bytearray(24 << 20); b = bytearray(24 << 20)
    a[::4096] = b"x" * len(a[::4096]); b[::4096] = b"x" * len(b[::4096])
    del a, b
for _ in range(3):
    cycle()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


KEEP = "from hardware.cpu import keep_freed_memory; assert keep_freed_memory()"
# what a Paddle Inference predictor on the host is configured with (the files are not parsed before create_predictor)
PADDLE_CONFIG = (
    "from hardware import DEFAULT_DEVICE, DeviceSpec; from hardware.inference import paddle_inference_config; "
    "paddle_inference_config({model!r}, {params!r}, DeviceSpec(DEFAULT_DEVICE), 1)"
)


def faults(setup: str = "") -> int:
    code = CYCLE.format(root=str(ROOT), setup=setup)
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again(tmp_path):
    pages = 10 * 2 * (24 << 20) // 4096  # every page of both blocks, every cycle
    assert faults() > pages // 2  # the pattern does fault by default: the test can tell
    assert faults(KEEP) < pages // 100
    model, params = tmp_path / "m.json", tmp_path / "m.pdiparams"
    model.write_text("{}"), params.write_bytes(b"")
    assert faults(PADDLE_CONFIG.format(model=str(model), params=str(params))) < pages // 100
