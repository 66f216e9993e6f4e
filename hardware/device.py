"""Parse, check and select Paddle devices, reading everything device-specific from :mod:`hardware.tables`.

A device string is ``type[:id]`` with type a key of :data:`hardware.tables.DEVICES`. ``resolve_device``
checks that the device is usable on this machine *before* anything is placed on it: Paddle aborts the whole
process (SIGABRT, no Python exception) when asked for a custom device whose plugin is not loaded, so we
never ask blindly. Every refusal is a :class:`DeviceError` whose one line names the bad value and the fix;
the tools turn it into exit code 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .tables import DEFAULT_DEVICE, DEVICES, Device

KNOWN_TYPES = tuple(DEVICES)


class DeviceError(RuntimeError):
    """The requested device or backend is malformed or not available on this machine."""


@dataclass(frozen=True)
class DeviceSpec:
    type: str
    index: int = 0

    def __str__(self) -> str:
        return self.type if self.type == DEFAULT_DEVICE else f"{self.type}:{self.index}"

    @property
    def caps(self) -> Device:
        """This device's row of the capability table."""
        return DEVICES[self.type]


def parse_device(text: str) -> DeviceSpec:
    """``"gpu:1"`` -> DeviceSpec("gpu", 1). Raises DeviceError naming the bad string."""
    kind, _, index = str(text).strip().lower().partition(":")
    if kind not in DEVICES:
        raise DeviceError(f"unknown device {text!r}; expected one of {list(KNOWN_TYPES)}, optionally with ':N'")
    if index and not index.isdigit():
        raise DeviceError(f"device {text!r}: the index after ':' must be a non-negative integer")
    return DeviceSpec(kind, int(index) if index else 0)


def available_devices() -> dict[str, int]:
    """Device type -> number of devices usable in this process (the CPU is always 1). Never aborts."""
    import paddle

    found = {kind: row.count(paddle, kind) for kind, row in DEVICES.items()}
    return {k: v for k, v in found.items() if v > 0}


def require_device(spec: DeviceSpec, text: str | None = None) -> None:
    """Raise DeviceError (one line: what is missing and the install command) unless ``spec`` is usable here."""
    if spec == DeviceSpec(DEFAULT_DEVICE):
        return  # the host is always there; an ONNX Runtime-only deployment need not load paddle to know it
    found = available_devices()
    text = text or str(spec)
    if spec.type not in found:
        raise DeviceError(
            f"device {text!r} is not available on this machine ({spec.caps.title}; available: {sorted(found)}); "
            f"install it with: {spec.caps.install}; or use {DEFAULT_DEVICE}"
        )
    if spec.index >= found[spec.type]:
        raise DeviceError(f"device {text!r}: only {found[spec.type]} {spec.type} device(s) on this machine")


def apply_device_env(spec: DeviceSpec) -> dict[str, str]:
    """Set the environment flags of ``spec``'s table row that the user has not set; return what was set.

    Paddle's own ``FLAGS_*`` are also set in the running Paddle (it read the environment at import). Flags a
    vendor plugin reads when it loads (at ``import paddle``) must be exported before the process starts
    (docs/hardware.md). Without ``FLAGS_use_stride_kernel=0`` a plugin device gets strided views it has no
    ``contiguous`` kernel for, and training stops at the first one.
    """
    import paddle

    changed = {}
    for key, value in spec.caps.env.items():
        if key in os.environ:
            continue
        os.environ[key] = changed[key] = value
        if key.startswith("FLAGS_"):
            try:
                current = paddle.get_flags(key)[key]
            except ValueError:  # a plugin's flag, unknown to this Paddle build
                continue
            paddle.set_flags(
                {key: value.lower() in ("1", "true") if isinstance(current, bool) else type(current)(value)}
            )
    return changed


def resolve_device(text: str) -> DeviceSpec:
    """Validate ``text`` against this machine and make it Paddle's current device.

    Under ``paddle.distributed.launch`` a bare accelerator type (``npu``) takes this rank's local device.
    """
    spec = parse_device(text)
    if spec.type != DEFAULT_DEVICE and ":" not in str(text):
        local = os.environ.get("PADDLE_LOCAL_RANK", os.environ.get("FLAGS_selected_gpus", "0")).split(",")[0]
        spec = DeviceSpec(spec.type, int(local or 0))
    require_device(spec, str(text))
    apply_device_env(spec)
    import paddle

    paddle.set_device(str(spec))
    return spec


def amp_dtype(spec: DeviceSpec) -> str | None:
    """The mixed-precision dtype this device runs (its table row), or None where Paddle has no autocast.

    Paddle 3.3's ``amp_guard`` only acts on CUDA, XPU and custom (plugin) devices; on CPU it warns and
    does nothing, so the table says None rather than pretend.
    """
    return spec.caps.amp_dtype


def collective_backend(spec: DeviceSpec) -> str:
    """Backend for multi-process collectives (gloo on CPU, the vendor library otherwise)."""
    return spec.caps.collective


def device_choices() -> str:
    """The device strings, for help texts: ``cpu, gpu[:N], npu[:N], ...``."""
    return ", ".join(k if k == DEFAULT_DEVICE else f"{k}[:N]" for k in DEVICES)
