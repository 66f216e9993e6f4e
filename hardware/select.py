"""Which backend runs a model format on a device: the ordered intersection of the tables, first available wins.

    select_backend("paddle_inference", parse_device("npu:0"))  # -> "paddle_inference", or DeviceError
    usable_backends("onnx_fp32", parse_device("cpu"))          # -> ["onnxruntime"]

A backend is *available* when its module imports, the device is present (checked without touching an
absent plugin) and, for ONNX Runtime, the installed build has one of the device's execution providers.
Whatever is missing comes back as one line naming it and its install command.
"""

from __future__ import annotations

import importlib.util

from .device import DeviceError, DeviceSpec, available_devices
from .inference import ort_provider_missing
from .tables import BACKEND_ORDER, BACKENDS, FORMATS, VARIANT_FORMATS


def candidates(fmt: str, spec: DeviceSpec) -> list[str]:
    """Backends that, by the tables, run ``fmt`` on ``spec``'s device type, in order of preference."""
    if fmt not in FORMATS:
        raise DeviceError(f"unknown model format {fmt!r}; expected one of {list(FORMATS)}")
    if FORMATS[fmt].int8 and not spec.caps.int8:
        return []
    return [
        name
        for name in BACKEND_ORDER
        if fmt in BACKENDS[name].formats and (BACKENDS[name].devices is None or spec.type in BACKENDS[name].devices)
    ]


def missing(backend: str, spec: DeviceSpec, devices: dict[str, int] | None = None) -> str | None:
    """Why ``backend`` cannot run on ``spec`` here (one line with the install command), or None if it can."""
    row = BACKENDS[backend]
    if importlib.util.find_spec(row.module.split(".")[0]) is None:
        return f"{row.title} is not installed; install it with: {row.install}"
    if row.devices is not None:  # a runtime of its own (ONNX Runtime): its execution providers decide
        return ort_provider_missing(spec)
    devices = available_devices() if devices is None else devices
    if devices.get(spec.type, 0) <= spec.index:
        return (
            f"device {str(spec)!r} ({spec.caps.title}) is not available to Paddle here; "
            f"install it with: {spec.caps.install}"
        )
    return None


def usable_backends(fmt: str, spec: DeviceSpec) -> dict[str, str | None]:
    """Each candidate backend for (``fmt``, ``spec``) -> None when usable here, else why not (one line)."""
    devices = available_devices()
    return {name: missing(name, spec, devices) for name in candidates(fmt, spec)}


def select_backend(fmt: str, spec: DeviceSpec) -> str:
    """The first backend (``BACKEND_ORDER``) that runs ``fmt`` on ``spec`` and is available here.

    Raises DeviceError naming each backend that could have and what it lacks, or that none can.
    """
    found = usable_backends(fmt, spec)
    for name, why in found.items():
        if why is None:
            return name
    if not found:
        raise DeviceError(f"no backend runs {FORMATS[fmt].title} on {str(spec)!r} ({spec.caps.title})")
    raise DeviceError(f"no backend for {FORMATS[fmt].title} on {str(spec)!r}: " + "; ".join(found.values()))


def check_backend(backend: str, fmt: str, spec: DeviceSpec) -> None:
    """Raise DeviceError (one line, with the install command) unless ``backend`` runs ``fmt`` on ``spec`` here."""
    if backend not in BACKENDS:
        raise DeviceError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if backend not in candidates(fmt, spec):
        raise DeviceError(
            f"{BACKENDS[backend].title} does not run {FORMATS[fmt].title} on {str(spec)!r} "
            f"({spec.caps.title}); backends that do: {candidates(fmt, spec) or 'none'}"
        )
    why = missing(backend, spec)
    if why is not None:
        raise DeviceError(why)


def variant_format(backend: str, precision: str) -> str | None:
    """The model format of an export variant (``onnxruntime``, ``int8`` -> ``onnx_int8``); None if there is none."""
    return VARIANT_FORMATS.get((backend, precision))
