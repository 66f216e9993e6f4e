"""The fake accelerator the tests run on (``tables.FAKE_PLUGIN``: an Ascend stand-in): where it is built, and
building it.

    python -m hardware.plugin build     # what scripts/setup.sh runs; prints the plugin folder
    python -m hardware.plugin path      # the folder to export as CUSTOM_DEVICE_ROOT (exit 1 if not built)

The source is ``hardware/<FAKE_PLUGIN source>``, compiled with g++ against the headers inside the installed
paddlepaddle wheel. The build lands under the virtual environment (``<sys.prefix>/paddle_mm_plugins/``) in a
folder named by a hash of the source, the header and the Paddle version, so a changed source or a new Paddle
builds afresh and an unchanged one is not rebuilt. Paddle loads every plugin in ``$CUSTOM_DEVICE_ROOT`` at
``import paddle``; a process started without it has no such device.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .tables import FAKE_PLUGIN

SOURCE = Path(__file__).resolve().parent / FAKE_PLUGIN["source"]
LIBRARY = FAKE_PLUGIN["library"]
HEADER = Path("paddle", "phi", "backends", "device_ext.h")


def paddle_include() -> Path:
    """``site-packages/paddle/include`` of the installed wheel, found without importing paddle."""
    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("paddlepaddle is not installed; run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0]) / "include"


def build_key() -> str:
    """Hash of what the binary depends on: the plugin source, Paddle's plugin header and Paddle's version."""
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update((paddle_include() / HEADER).read_bytes())
    h.update(metadata.version("paddlepaddle").encode())
    return h.hexdigest()[:16]


def fake_plugin_dir() -> Path:
    """The folder holding this source's build (it may not exist yet)."""
    return Path(sys.prefix) / "paddle_mm_plugins" / f"fake_{FAKE_PLUGIN['type']}-{build_key()}"


def fake_plugin_env() -> dict[str, str]:
    """Environment for a child process that should see the fake device; raises if it was not built."""
    folder = fake_plugin_dir()
    if not (folder / LIBRARY).is_file():
        raise FileNotFoundError(f"the fake device plugin is not built ({folder}); run: python -m hardware.plugin build")
    return {"CUSTOM_DEVICE_ROOT": str(folder)}


def build(compiler: str | None = None) -> Path:
    """Compile the plugin into :func:`fake_plugin_dir` unless it is there; return the folder."""
    folder = fake_plugin_dir()
    if (folder / LIBRARY).is_file():
        return folder
    cxx = compiler or os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        raise FileNotFoundError("no C++ compiler: install g++ (apt-get install g++) or set CXX")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    tmp.mkdir()
    cmd = [cxx, "-O2", "-shared", "-fPIC", "-std=c++17", f"-I{paddle_include()}", str(SOURCE), "-o", str(tmp / LIBRARY)]
    try:
        subprocess.run(cmd, check=True)
        tmp.replace(folder)  # atomic: a concurrent reader sees no folder or a complete one
    except (subprocess.CalledProcessError, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half build behind
        if (folder / LIBRARY).is_file():  # another process finished the same build first
            return folder
        kind = FAKE_PLUGIN["type"]
        raise RuntimeError(f"building the fake {kind} plugin failed ({err}); see the compiler output above") from None
    for old in folder.parent.glob(f"fake_{FAKE_PLUGIN['type']}-*"):  # builds of earlier sources
        if old != folder and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        print(build())
        return 0
    if argv == ["path"]:
        folder = fake_plugin_dir()
        print(folder)
        return 0 if (folder / LIBRARY).is_file() else 1
    print("usage: python -m hardware.plugin build|path", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
