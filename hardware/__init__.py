"""Device layer: every device decision of paddle_mm goes through here.

What each device, backend and model format can do is data in :mod:`hardware.tables`, the one file that names
devices. Code asks for capabilities (``resolve_device``, ``amp_dtype``, ``collective_backend``,
``select_backend``), never for vendor names. ``python -m hardware`` prints what this machine offers. This
package imports paddle lazily and never imports paddle_mm.
"""

from .cpu import cpu_training_processes, cpu_vendor, cpuinfo_field, tune_cpu_env, tune_openblas_env, usable_cores
from .device import (
    DeviceError,
    DeviceSpec,
    amp_dtype,
    apply_device_env,
    available_devices,
    collective_backend,
    device_choices,
    parse_device,
    require_device,
    resolve_device,
)
from .select import check_backend, select_backend, usable_backends
from .tables import DEFAULT_DEVICE

__all__ = [
    "DEFAULT_DEVICE",
    "DeviceError",
    "DeviceSpec",
    "amp_dtype",
    "apply_device_env",
    "available_devices",
    "check_backend",
    "collective_backend",
    "cpu_training_processes",
    "cpu_vendor",
    "cpuinfo_field",
    "device_choices",
    "parse_device",
    "require_device",
    "resolve_device",
    "select_backend",
    "tune_cpu_env",
    "tune_openblas_env",
    "usable_backends",
    "usable_cores",
]
