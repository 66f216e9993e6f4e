"""Parse, check and select Paddle devices.

A device string is ``type[:id]`` with type in :data:`KNOWN_TYPES`. ``resolve_device`` checks that the
device is usable on this machine *before* anything is placed on it: Paddle aborts the whole process
(SIGABRT, no Python exception) when asked for a custom device whose plugin is not loaded, so we never
ask blindly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# cpu and the vendor backends Paddle knows; npu/mlu/gcu are custom-device plugins.
KNOWN_TYPES = ("cpu", "gpu", "xpu", "npu", "mlu", "dcu", "gcu")
_CUSTOM_TYPES = ("npu", "mlu", "gcu")


class DeviceError(RuntimeError):
    """The requested device is malformed or not available on this machine."""


@dataclass(frozen=True)
class DeviceSpec:
    type: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"{self.type}:{self.index}"


def parse_device(text: str) -> DeviceSpec:
    """``"gpu:1"`` -> DeviceSpec("gpu", 1). Raises DeviceError naming the bad string."""
    kind, _, index = text.strip().lower().partition(":")
    if kind not in KNOWN_TYPES:
        raise DeviceError(f"unknown device {text!r}; expected one of {list(KNOWN_TYPES)}, optionally with ':N'")
    if index and not index.isdigit():
        raise DeviceError(f"device {text!r}: the index after ':' must be a non-negative integer")
    return DeviceSpec(kind, int(index) if index else 0)


def available_devices() -> dict[str, int]:
    """Device type -> number of devices usable in this process (cpu is always 1)."""
    import paddle

    found = {"cpu": 1}
    if paddle.is_compiled_with_cuda() and not paddle.is_compiled_with_rocm():
        found["gpu"] = paddle.device.cuda.device_count()
    if paddle.is_compiled_with_rocm():
        found["dcu"] = paddle.device.cuda.device_count()
    if paddle.is_compiled_with_xpu():
        found["xpu"] = paddle.device.xpu.device_count()
    for kind in paddle.device.get_all_custom_device_type() or []:
        found[kind] = len([d for d in paddle.device.get_available_custom_device() if d.startswith(kind)])
    return {k: v for k, v in found.items() if v > 0}


def resolve_device(text: str) -> DeviceSpec:
    """Validate ``text`` against this machine and make it Paddle's current device.

    Under ``paddle.distributed.launch`` a bare accelerator type (``gpu``) takes this rank's local device.
    """
    spec = parse_device(text)
    found = available_devices()
    if spec.type not in found:
        raise DeviceError(
            f"device {text!r} is not available on this machine (available: {sorted(found)}); "
            "set Global.device=cpu or install the Paddle build for this accelerator"
        )
    if spec.type != "cpu" and ":" not in text:
        spec = DeviceSpec(spec.type, int(os.environ.get("PADDLE_LOCAL_RANK", os.environ.get("FLAGS_selected_gpus", 0))))
    if spec.index >= found[spec.type]:
        raise DeviceError(f"device {text!r}: only {found[spec.type]} {spec.type} device(s) on this machine")
    import paddle

    paddle.set_device(str(spec))
    return spec


def amp_dtype(spec: DeviceSpec) -> str | None:
    """The mixed-precision dtype this device runs, or None where Paddle has no autocast.

    Paddle 3.3's ``amp_guard`` only acts on CUDA, XPU and custom (plugin) devices; on CPU it warns and
    does nothing, so we report None rather than pretend.
    """
    if spec.type == "cpu":
        return None
    return "bfloat16" if spec.type in ("npu",) else "float16"


def collective_backend(spec: DeviceSpec) -> str:
    """Backend for multi-process collectives: gloo on CPU, the vendor library otherwise."""
    return {"cpu": "gloo", "gpu": "nccl", "dcu": "nccl", "xpu": "bkcl"}.get(spec.type, "xccl")
