"""``python -m hardware``: what this machine offers (docs/hardware.md).

python -m hardware                      # the report; the GEMM ceiling is measured once, then cached
python -m hardware --no-gemm            # without the GEMM ceiling
python -m hardware --remeasure          # measure the GEMM ceiling again (do it on an idle machine)
python -m hardware --json report.json   # also write the report as JSON
python -m hardware --device npu:0       # one line: usable here, or what is missing (exit 2)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from .cpu import tune_cpu_env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hardware", description=__doc__.split("\n")[0])
    p.add_argument("--device", help="only check this device string and exit (0: usable, 2: not)")
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMM ceiling")
    p.add_argument("--remeasure", action="store_true", help="measure the GEMM ceiling even if cached")
    p.add_argument("--threads", type=int, help="threads for the GEMM ceiling (default: all usable cores)")
    p.add_argument("--json", help="write the report to this JSON file")
    args = p.parse_args(argv)
    tune_cpu_env()  # before paddle loads: the report describes the set-up paddle_mm runs with
    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore", message="No ccache found")
    from .device import DeviceError
    from .report import check, collect, format_report

    try:
        if args.device:
            print(check(args.device))
            return 0
        report = collect(gemm=not args.no_gemm, remeasure=args.remeasure, threads=args.threads)
    except DeviceError as err:
        print(f"device error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
