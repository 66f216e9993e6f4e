"""What this machine offers: CPU and its ISA features, Paddle build and devices, plugins, ONNX Runtime
providers, the measured GEMM ceiling and the backend each model format gets per device.

``python -m hardware`` prints it (``--json`` writes it); ``tools/benchmark.py`` stores the same dict in its
results. Collecting it never aborts: custom devices are only asked about once Paddle lists their plugin.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from .cpu import cpu_vendor, cpuinfo_field
from .device import DeviceError, available_devices, parse_device, require_device
from .inference import default_threads, machine_fingerprint
from .select import usable_backends
from .tables import DEFAULT_DEVICE, DEVICES, FORMATS, ISA_FEATURES


def isa_features() -> dict[str, bool]:
    """The ISA features of :data:`hardware.tables.ISA_FEATURES` for this architecture: present or not."""
    arch = platform.machine().lower()
    wanted = ISA_FEATURES.get(arch, ())
    flags = set((cpuinfo_field("flags") or cpuinfo_field("Features")).split())
    isa = cpuinfo_field("isa")  # RISC-V: rv64imafdcv_zicsr...; a single-letter extension follows "rv64"
    if isa.startswith("rv64"):
        flags |= set(isa[4:].split("_")[0])
    flags |= set(cpuinfo_field("features").split())  # LoongArch: "cpucfg lam ual fpu lsx lasx ..."
    return {name: name in flags for name in wanted}


def paddle_info() -> dict[str, Any]:
    import paddle

    return {
        "version": paddle.__version__,
        "commit": getattr(paddle.version, "commit", "?")[:12],
        "plugins": sorted(paddle.device.get_all_custom_device_type() or []),
        "custom_device_root": os.environ.get("CUSTOM_DEVICE_ROOT", ""),
        "devices": available_devices(),
    }


def onnxruntime_info() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"version": "absent", "providers": []}
    return {"version": ort.__version__, "providers": ort.get_available_providers()}


def backend_choices(devices: list[str]) -> dict[str, dict[str, dict[str, str | None]]]:
    """device -> format -> each candidate backend: None if usable here, else why not."""
    specs = [parse_device(text) for text in devices]
    return {str(spec): {fmt: usable_backends(fmt, spec) for fmt in FORMATS} for spec in specs}


def collect(gemm: bool = True, remeasure: bool = False, threads: int | None = None) -> dict[str, Any]:
    """The whole report as a dict (JSON-ready). ``gemm``: include the (cached) GEMM ceiling."""
    threads = threads or default_threads()
    paddle = paddle_info()
    present = [t if t == DEFAULT_DEVICE else f"{t}:0" for t in paddle["devices"]]
    report = {
        "host": {
            "vendor": cpu_vendor() or "unknown",
            "model": cpuinfo_field("model name") or platform.processor() or "unknown",
            "arch": platform.machine(),
            "cores_usable": default_threads(),
            "isa": isa_features(),
        },
        "paddle": paddle,
        "onnxruntime": onnxruntime_info(),
        "backends": backend_choices(present),
        "fingerprint": machine_fingerprint(),
    }
    if gemm:
        from .gemm import ceiling

        report["gemm"] = ceiling(threads, report["fingerprint"], remeasure)
    return report


def format_report(r: dict[str, Any]) -> str:
    """The report as the text ``python -m hardware`` prints."""
    cpu, pd, ort = r["host"], r["paddle"], r["onnxruntime"]
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["isa"].items()) or "no feature list for this arch"
    lines = [
        f"host       {cpu['model']} ({cpu['vendor']}, {cpu['arch']}), {cpu['cores_usable']} usable cores",
        f"ISA        {isa}",
        f"Paddle     {pd['version']} (commit {pd['commit']}); devices: "
        + ", ".join(f"{k} x{v}" for k, v in pd["devices"].items()),
        f"plugins    {', '.join(pd['plugins']) or 'none'}"
        + (f" (CUSTOM_DEVICE_ROOT={pd['custom_device_root']})" if pd["custom_device_root"] else ""),
        f"ONNX Rt    {ort['version']}; providers: {', '.join(ort['providers']) or 'none'}",
    ]
    if "gemm" in r:
        g = r["gemm"]
        lines.append(
            f"GEMM       fp32 {g['fp32_gflops']} GFLOP/s, bf16 {g.get('bf16_gflops') or '-'} GFLOP/s, "
            f"int8 {g['int8_gflops']} GOP/s ({g['shape']}, {g['threads']} "
            f"threads, median of {g['runs']} runs, load {g['load_average']} when measured {g['measured_at']}"
            f"{', cached' if g['cached'] else ''})"
        )
    for device, formats in r["backends"].items():
        lines.append(f"backends on {device}:")
        for fmt, found in formats.items():
            usable = [b for b, why in found.items() if why is None]
            shown = (
                ", ".join(usable)
                if usable
                else "none: " + ("; ".join(found.values()) or "the tables give no backend for it here")
            )
            lines.append(f"  {fmt:<17}{shown}")
    lines.append("device types known: " + ", ".join(f"{t} ({d.title})" for t, d in DEVICES.items()))
    return "\n".join(lines)


def check(text: str) -> str:
    """One line saying ``text`` is usable here; raises DeviceError (one line, install command) if not."""
    spec = parse_device(text)
    require_device(spec, text)
    return f"{text}: available ({spec.caps.title})"


__all__ = ["DeviceError", "check", "collect", "format_report"]
