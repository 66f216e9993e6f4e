"""Build the board runtime (pmm-run) for a target, cached outside the work tree.

    python -m hardware.runtime.build --target x86_64            # native
    python -m hardware.runtime.build --target loongarch64        # zig, baseline CPU (runs under QEMU 7.2)
    python -m hardware.runtime.build --target tested              # what scripts/setup.sh --tests builds
    python -m hardware.runtime.build --target all                 # every target, print binary paths

ggml and stb_image come from the llama-cpp-python source distribution on PyPI (``scripts/setup.sh``
downloads it into ``~/.cache/paddle_mm/src``; its SHA-256 is pinned below). Each build lives in
``~/.cache/paddle_mm/boards/<target>-<key>``, key = hash of the sdist, this directory's sources and the
target's settings, so a repeat run with nothing changed costs a stat. Standard library only: this module
never imports paddle_mm.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDIST_NAME = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be"  # first 16 hex digits of the sdist's SHA-256, checked before unpacking
CACHE = Path(os.environ.get("PMM_CACHE", Path.home() / ".cache" / "paddle_mm"))


@dataclass(frozen=True)
class Target:
    """One build: a toolchain, ggml options, and how to run the result here (an emulator command or none)."""

    name: str
    toolchain: str | None = None  # file under cmake/
    cmake: tuple[str, ...] = ()
    emulator: tuple[str, ...] = ()  # prefix for running the binary on this machine; () = native
    runs_here: bool = True  # False: the build is for boards only (QEMU 7.2 lacks the instructions)
    needs: tuple[str, ...] = ()  # compilers the build needs on PATH (zig comes from PyPI)
    tested: bool = True  # built by scripts/setup.sh --tests and checked by tests/boards; else only on request


_NO_RV_EXT = ("-DGGML_RV_ZFH=OFF", "-DGGML_RV_ZVFH=OFF", "-DGGML_RV_ZICBOP=OFF", "-DGGML_RV_ZIHINTPAUSE=OFF")
TARGETS = {
    t.name: t
    for t in (
        Target("x86_64", cmake=("-DGGML_NATIVE=ON", "-DGGML_LLAMAFILE=ON")),
        # zig's -mcpu=la464-lsx-lasx is la464 minus LSX/LASX: the baseline QEMU 7.2 can run.
        Target(
            "loongarch64",
            "zig.cmake",
            (
                "-DPMM_ZIG_TARGET=loongarch64-linux-musl",
                "-DPMM_ZIG_CPU=la464-lsx-lasx",
                "-DGGML_NATIVE=OFF",
                "-DGGML_LSX=OFF",
                "-DGGML_LASX=OFF",
            ),
            ("qemu-loongarch64",),
        ),
        # Boards (3A5000/3A6000/3C5000): LSX + LASX kernels. Built and linked here, not run (QEMU 7.2: SIGILL).
        # Linked for the baseline CPU: it shares zig's musl/libc++ build with the target above.
        Target(
            "loongarch64-lasx",
            "zig.cmake",
            (
                "-DPMM_ZIG_TARGET=loongarch64-linux-musl",
                "-DPMM_ZIG_CPU=la464",
                "-DPMM_ZIG_LINK_CPU=la464-lsx-lasx",
                "-DGGML_NATIVE=OFF",
                "-DGGML_LSX=ON",
                "-DGGML_LASX=ON",
            ),
            runs_here=False,
            tested=False,  # only linked here, never run: PMM_BOARD_TARGETS=all adds it to the tests
        ),
        Target(
            "riscv64",
            "riscv64-gcc.cmake",
            ("-DGGML_NATIVE=OFF", "-DGGML_RVV=OFF", *_NO_RV_EXT),
            ("qemu-riscv64",),
            needs=("riscv64-linux-gnu-g++",),
        ),
        # RVV 1.0 kernels need a compiler with RVV intrinsics (Debian's gcc 12 has none): zig/clang.
        Target(
            "riscv64-rvv",
            "zig.cmake",
            (
                "-DPMM_ZIG_TARGET=riscv64-linux-musl",
                "-DPMM_ZIG_CPU=baseline_rv64+v",
                "-DGGML_NATIVE=OFF",
                "-DGGML_RVV=ON",
                *_NO_RV_EXT,
            ),
            ("qemu-riscv64", "-cpu", "rv64,v=true,vlen=256"),
        ),
        Target(
            "aarch64",
            "aarch64-gcc.cmake",
            ("-DGGML_NATIVE=OFF", "-DGGML_CPU_ARM_ARCH=armv8-a"),
            ("qemu-aarch64",),
            needs=("aarch64-linux-gnu-g++",),
        ),
    )
}


class BuildError(RuntimeError):
    """A build could not run or failed; the message names what is missing and how to get it."""


def tested_targets() -> list[str]:
    """Targets tests/boards builds and checks: those marked tested, or $PMM_BOARD_TARGETS ('all' or a comma list)."""
    wanted = os.environ.get("PMM_BOARD_TARGETS", "")
    if not wanted:
        return [name for name, target in TARGETS.items() if target.tested]
    names = sorted(TARGETS) if wanted == "all" else wanted.split(",")
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise BuildError(f"PMM_BOARD_TARGETS names unknown targets {unknown}; choose from {sorted(TARGETS)} or 'all'")
    return names


def _zig() -> Path:
    try:
        import ziglang  # PyPI ziglang: the zig binary lives in the package directory
    except ImportError:
        raise BuildError("zig not found: pip install ziglang (pinned in requirements/lock.txt)") from None
    return Path(ziglang.__file__).parent / "zig"


def source_dir() -> Path:
    """The unpacked ggml + stb sources of the pinned sdist (unpacked once)."""
    sdist = CACHE / "src" / SDIST_NAME
    out = CACHE / "src" / f"llama.cpp-{SDIST_SHA256}"
    if (out / "ggml" / "CMakeLists.txt").is_file() and (out / "stb" / "stb_image.h").is_file():
        return out
    if not sdist.is_file():
        raise BuildError(f"{sdist} not found; run scripts/setup.sh (it downloads {SDIST_NAME} from PyPI)")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if not digest.startswith(SDIST_SHA256):
        raise BuildError(f"{sdist} has SHA-256 {digest[:16]}..., expected {SDIST_SHA256}...; delete it and run setup")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    prefix = SDIST_NAME.removesuffix(".tar.gz") + "/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith((prefix + "ggml/", prefix + "vendor/stb/"))]
        members += [tar.getmember(prefix + "LICENSE")]
        tar.extractall(tmp, members=members, filter="data")
    root = tmp / prefix
    root.joinpath("ggml").rename(tmp / "ggml")
    root.joinpath("vendor", "stb").rename(tmp / "stb")
    root.joinpath("LICENSE").rename(tmp / "LICENSE")
    shutil.rmtree(tmp / SDIST_NAME.removesuffix(".tar.gz"))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _host_cpu() -> str:
    """The host CPU's model and instruction flags: what a -march=native build depends on."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.machine()
    lines = info.read_text(errors="replace").splitlines()
    wanted = ("model name", "flags", "Features", "isa")  # x86, ARM, RISC-V names
    fields = (line.split(":", 1) for line in lines if ":" in line)
    return "|".join(sorted({value.strip() for name, value in fields if name.strip() in wanted}))


def _key(target: Target) -> str:
    h = hashlib.sha256(f"{SDIST_SHA256}|{target}".encode())
    if "-DGGML_NATIVE=ON" in target.cmake:  # a native build cached on one CPU may not run on another (SIGILL)
        h.update(_host_cpu().encode())
    for path in sorted(HERE.rglob("*")):
        if path.is_file() and path.suffix in (".cpp", ".h", ".c", ".cmake", ".txt"):
            h.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build_dir(name: str) -> Path:
    target = TARGETS[name]
    return CACHE / "boards" / f"{name}-{_key(target)}"


def build(name: str, jobs: int = 2, quiet: bool = True) -> Path:
    """Path of pmm-run for `name`, building it first if this source state was never built."""
    if name not in TARGETS:
        raise BuildError(f"unknown target {name!r}; choose one of {sorted(TARGETS)}")
    binary = build_dir(name) / "pmm-run"
    if binary.is_file():
        return binary
    (CACHE / "boards").mkdir(parents=True, exist_ok=True)
    with open(CACHE / "boards" / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per target at a time (parallel test runs, setup)
        return _build_locked(name, jobs, quiet)


def _build_locked(name: str, jobs: int, quiet: bool) -> Path:
    target = TARGETS[name]
    out = build_dir(name)
    binary = out / "pmm-run"
    if binary.is_file():
        return binary
    for tool in target.needs:
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found; run scripts/setup.sh (it installs Debian's cross compilers)")
    src = source_dir()
    work = out.parent / f"{name}.build"  # kept: a source change rebuilds only what changed
    if _configured_from(work) not in (None, HERE):  # another clone configured it: cmake refuses to reuse it
        shutil.rmtree(work)
    args = [
        "cmake", "-S", str(HERE), "-B", str(work), "-DCMAKE_BUILD_TYPE=Release",
        f"-DPMM_GGML_DIR={src / 'ggml'}", f"-DPMM_STB_DIR={src / 'stb'}", *target.cmake,
    ]  # fmt: skip
    if target.toolchain:
        args.append(f"-DCMAKE_TOOLCHAIN_FILE={HERE / 'cmake' / target.toolchain}")
    if target.toolchain == "zig.cmake":
        args.append(f"-DPMM_ZIG={_zig()}")
    # zig's own cache (musl, libc++, compiler-rt built from source: minutes per CPU) lives in ours, so one
    # cache directory holds everything a repeat build needs and a fresh one really starts cold.
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": os.environ.get("ZIG_GLOBAL_CACHE_DIR", str(CACHE / "zig"))}
    for step in (args, ["cmake", "--build", str(work), "-j", str(jobs), "--target", "pmm-run", "pmm-selftest"]):
        try:
            proc = subprocess.run(step, capture_output=quiet, text=True, env=env)
        except FileNotFoundError:
            raise BuildError(f"{step[0]} not found; run scripts/setup.sh --tests (it installs cmake)") from None
        if proc.returncode:
            tail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:]
            raise BuildError(f"building {name} failed at `{' '.join(step[:3])}`:\n{tail}")
    for stale in out.parent.glob(f"{name}-*"):  # builds of earlier source states
        if stale.name != out.name and stale.name.removeprefix(f"{name}-").isalnum():
            shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / "pmm-selftest", out / "pmm-selftest")
    shutil.copy2(work / "pmm-run", binary.with_suffix(".tmp"))
    binary.with_suffix(".tmp").rename(binary)  # last: its presence marks a complete build
    return binary


def _configured_from(work: Path) -> Path | None:
    """The source directory a cmake build directory was configured from (None: not configured)."""
    cache = work / "CMakeCache.txt"
    if not cache.is_file():
        return None
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith("CMAKE_HOME_DIRECTORY:INTERNAL="):
            return Path(line.split("=", 1)[1])
    return None


def command(name: str, program: str = "pmm-run") -> list[str]:
    """argv prefix that runs this target's pmm-run (or pmm-selftest) here (through QEMU for foreign targets)."""
    target = TARGETS[name]
    if target.emulator and shutil.which(target.emulator[0]) is None:
        raise BuildError(f"{target.emulator[0]} not found; run scripts/setup.sh (apt: qemu-user)")
    if not target.runs_here:
        raise BuildError(f"target {name} cannot run here (QEMU 7.2 lacks its instructions); run it on a board")
    return [*target.emulator, str(build(name).with_name(program))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="x86_64", help=f"one of {sorted(TARGETS)}, 'tested' or 'all'")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        names = {"all": sorted(TARGETS), "tested": tested_targets()}.get(args.target, [args.target])
        for name in names:
            print(name, build(name, args.jobs, quiet=not args.verbose))
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
