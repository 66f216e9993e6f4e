"""Device layer: every device decision of paddle_mm goes through here.

Code asks for capabilities (``resolve_device``, ``amp_dtype``, ``collective_backend``), never for vendor
names. This package imports paddle lazily and never imports paddle_mm.
"""

from .cpu import cpu_vendor, cpuinfo_field, tune_cpu_env
from .device import (
    DeviceError,
    DeviceSpec,
    amp_dtype,
    available_devices,
    collective_backend,
    parse_device,
    resolve_device,
)

__all__ = [
    "DeviceError",
    "DeviceSpec",
    "amp_dtype",
    "available_devices",
    "collective_backend",
    "cpu_vendor",
    "cpuinfo_field",
    "parse_device",
    "resolve_device",
    "tune_cpu_env",
]
