"""Shared start-up for the command-line tools: CPU tuning before paddle loads, config parsing."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

import hardware

hardware.tune_cpu_env()  # must precede `import paddle`
warnings.filterwarnings("ignore", message="No ccache found")
os.environ.setdefault("GLOG_minloglevel", "2")

from paddle_mm.config import ConfigError, add_config_args, flatten_overrides, load_config
from paddle_mm.config import exit_on_config_error as _exit_on_config_error


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """A config error, or a device that is unknown or absent here (hardware.DeviceError), is one line on
    stderr and exit code 2: nothing was run, the command line needs changing."""
    from _errors import exit_on_device_error

    with _exit_on_config_error(), exit_on_device_error("Global.device"):
        yield


def parse_config(description: str, argv: list[str] | None = None) -> tuple[dict, argparse.Namespace]:
    """``-c x.yml -o K=V ...`` -> (validated config, args). Config errors exit with code 2, one line."""
    parser = argparse.ArgumentParser(description=description)
    add_config_args(parser)
    args = parser.parse_args(argv)
    with exit_on_config_error():
        cfg = load_config(args.config, flatten_overrides(args.override))
    return cfg, args


__all__ = ["ConfigError", "exit_on_config_error", "parse_config"]
