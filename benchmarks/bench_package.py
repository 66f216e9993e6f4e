#!/usr/bin/env python3
"""Speed of SM-signed package verification, side by side with its yardsticks on the same files.

    python benchmarks/bench_package.py                 # 1 GiB + 10 MB, 5 runs each (needs ~1.1 GB in --tmp)
    python benchmarks/bench_package.py --big-mb 256    # quicker
    python benchmarks/bench_package.py --memory        # peak memory under a 1 GiB address-space limit instead

Rows (medians of --runs interleaved runs, page cache warm for every contender):
1. 1 GiB file: `openssl dgst -sm3` vs in-process `verify_package` (all cores, and one thread to show what
   the thread pool adds), as MB/s and as a ratio to openssl (target >= 0.90);
2. 10 MB model: in-process `verify_package` (target <= 0.1 s);
3. 10 MB model, whole process: `tools/package.py verify` vs `model_signing verify key` (target <= 0.5x).
model_signing is looked up on PATH, then in the repository's .venv-sign (a scratch venv:
`pip install model-signing pyopenssl`).
Everything is written under a temporary directory that is removed at the end. Needs paddle_mm importable
(`pip install -e .`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from paddle_mm.package import (
    LocalSigner,
    PrivateKey,
    RollbackStore,
    TrustAnchor,
    TrustStore,
    sign_package,
    verify_package,
)
from paddle_mm.package.sm3 import BACKEND, default_workers

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "package.py"
MB = 1_000_000


def write_safetensors(path: Path, nbytes: int) -> None:
    """A valid safetensors file holding one uint8 tensor of random bytes (written in 16 MiB pieces)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [nbytes], "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        left = nbytes
        while left:
            piece = min(left, 16 << 20)
            f.write(os.urandom(piece))
            left -= piece


def make_model(root: Path, nbytes: int, key: PrivateKey) -> int:
    root.mkdir()
    write_safetensors(root / "model.safetensors", nbytes)
    (root / "config.json").write_text('{"embed_dim": 512}')
    sign_package(root, LocalSigner(key), model="bench", version="1", sequence=1)
    return sum(p.stat().st_size for p in root.iterdir())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_ok(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, check=False, env=env)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")


def medians(contenders: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median seconds of each contender, runs interleaved so load drifts hit all of them alike."""
    for fn in contenders.values():  # warm-up: page cache, imports, .pyc files
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_big(tmp: Path, key: PrivateKey, trust: TrustStore, mb: int, runs: int) -> list[tuple[str, str, str]]:
    root = tmp / "big"
    size = make_model(root, mb << 20, key)
    weights = str(root / "model.safetensors")
    t = medians({
        "openssl": lambda: run_ok(["openssl", "dgst", "-sm3", weights]),
        "ours": lambda: verify_package(root, trust, model="bench", state=None),
        "ours_1": lambda: verify_package(root, trust, model="bench", state=None, workers=1),
    }, runs)
    ssl = size / t["openssl"] / MB
    ours, ours_1 = size / t["ours"] / MB, size / t["ours_1"] / MB
    shutil.rmtree(root)
    label = f"{size / MB:.0f} MB"
    return [
        (f"openssl dgst -sm3, {label}", f"{t['openssl']:.3f} s", f"{ssl:.0f} MB/s (reference)"),
        (f"verify_package, {default_workers()} threads, {label}", f"{t['ours']:.3f} s",
         f"{ours:.0f} MB/s = {ours / ssl:.2f}x openssl (target >= 0.90)"),
        (f"verify_package, 1 thread, {label}", f"{t['ours_1']:.3f} s",
         f"{ours_1:.0f} MB/s = {ours_1 / ssl:.2f}x openssl"),
    ]


def model_signing_exe(given: str | None) -> str | None:
    scratch = str(Path(__file__).resolve().parents[1] / ".venv-sign/bin/model_signing")
    for candidate in (given, shutil.which("model_signing"), scratch):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def bench_small(tmp: Path, key: PrivateKey, trust: TrustStore, runs: int, ms_exe: str | None) -> list[tuple]:
    root = tmp / "small"
    size = make_model(root, 10 * MB, key)
    pub = tmp / "sm2.pub"
    pub.write_bytes(key.public_key.to_pem())
    state = tmp / "state.json"
    ours_cli = [sys.executable, str(TOOL), "verify", str(root), "--trust", str(pub), "--model", "bench",
                "--state", str(state)]
    # Both CLIs get a bytecode cache (written by the warm-up run) as installed packages have; the
    # no-cache row shows our cost where PYTHONDONTWRITEBYTECODE=1 (as in this dev environment).
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    no_cache = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    no_cache["PYTHONDONTWRITEBYTECODE"] = "1"
    weights = str(root / "model.safetensors")
    contenders: dict[str, Callable[[], object]] = {
        "openssl": lambda: run_ok(["openssl", "dgst", "-sm3", weights]),
        "inproc": lambda: verify_package(root, trust, model="bench", state=RollbackStore(state)),
        "cli": lambda: run_ok(ours_cli, cached),
        "cli_nopyc": lambda: run_ok(ours_cli, no_cache),
    }
    if ms_exe:
        ms_cmd = model_signing_setup(tmp, root, ms_exe)
        contenders["ms"] = lambda: run_ok(ms_cmd, cached)
    t = medians(contenders, runs)
    label = f"{size / MB:.1f} MB"
    rows = [(f"openssl dgst -sm3 on the weights (whole process), {label}", f"{t['openssl']:.3f} s",
             "the hashing floor on this machine now"),
            (f"verify_package in-process, {label}", f"{t['inproc']:.3f} s", "target <= 0.100 s"),
            (f"tools/package.py verify (whole process), {label}", f"{t['cli']:.3f} s", "bytecode cached"),
            (f"tools/package.py verify, no bytecode cache, {label}", f"{t['cli_nopyc']:.3f} s",
             "sources compiled every run")]
    if ms_exe:
        ratio = f"ours / theirs = {t['cli'] / t['ms']:.2f} (target <= 0.50); no cache {t['cli_nopyc'] / t['ms']:.2f}"
        rows.append((f"model_signing verify key (whole process), {label}", f"{t['ms']:.3f} s", ratio))
    else:
        rows.append(("model_signing verify", "not run", "model_signing not found (install it in a scratch venv)"))
    return rows


def model_signing_setup(tmp: Path, root: Path, exe: str) -> list[str]:
    """Sign ``root`` once with model_signing (ECDSA P-256 key, signature outside the directory);
    return its verify command line."""
    key, pub, sig = tmp / "ec.key", tmp / "ec.pub", tmp / "model.sig"
    run_ok(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)])
    run_ok(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)])
    run_ok([exe, "sign", "key", str(root), "--private_key", str(key), "--signature", str(sig)])
    return [exe, "verify", "key", str(root), "--signature", str(sig), "--public_key", str(pub)]


def verify_limited(pkg: Path, pub: Path, limit: int) -> tuple[int, float, str]:
    """``tools/package.py verify`` in a child limited to ``limit`` bytes of address space (RLIMIT_AS):
    (exit code, the child's max RSS in MiB, first stderr line)."""
    import resource

    def limit_as() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, str(TOOL), "verify", str(pkg), "--trust", str(pub), "--model", "bench", "--no-state"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit_as)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, (err.splitlines() or [""])[0][:110]


def bench_memory(tmp: Path, key: PrivateKey, mb: int) -> list[tuple[str, str, str]]:
    """Peak memory of verifying hostile manifests and a clean package, each under a 1 GiB address-space limit."""
    from paddle_mm.package.manifest import MAGIC

    pub = tmp / "signer.pub"
    pub.write_bytes(key.public_key.to_pem())
    signer = b'"signer":{"key_id":"' + key.public_key.key_id.encode() + b'","user_id":"1234567812345678"},'
    rows = []
    hostile = (("hostile 64 MiB manifest of '[],'", (64 << 20) // 3), ("hostile 15 MiB manifest", (15 << 20) // 3))
    for name, n in hostile:
        root = tmp / name.split()[1]
        make_model(root, 1 << 20, key)
        (root / "PACKAGE.manifest").write_bytes(MAGIC + b'{"a":[' + b"[]," * n + b"[]]," + signer + b'"version":"1"}\n')
        start = time.perf_counter()
        code, rss, err = verify_limited(root, pub, 1 << 30)
        rows.append((name, f"{time.perf_counter() - start:.3f} s", f"exit {code}, max RSS {rss:.0f} MiB: {err}"))
        shutil.rmtree(root)
    root = tmp / "clean"
    size = make_model(root, mb << 20, key)
    subprocess.run(["cat", str(root / "model.safetensors")], stdout=subprocess.DEVNULL, check=True)  # warm cache
    start = time.perf_counter()
    code, rss, err = verify_limited(root, pub, 1 << 30)
    rows.append((f"clean package, {size / MB:.0f} MB", f"{time.perf_counter() - start:.3f} s",
                 f"exit {code}, max RSS {rss:.0f} MiB {err}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the big file in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per contender (default 5)")
    parser.add_argument("--model-signing", help="path of the model_signing executable")
    parser.add_argument("--tmp", help="directory for the temporary files (default: system temp)")
    parser.add_argument("--memory", action="store_true", help="measure peak memory (1 GiB RLIMIT_AS) instead of speed")
    args = parser.parse_args()

    key = PrivateKey.generate()
    trust = TrustStore([TrustAnchor(key.public_key)])
    tmp = Path(tempfile.mkdtemp(prefix="bench_package_", dir=args.tmp))
    try:
        if args.memory:
            rows = bench_memory(tmp, key, args.big_mb)
        else:
            rows = bench_big(tmp, key, trust, args.big_mb, args.runs)
            rows += bench_small(tmp, key, trust, args.runs, model_signing_exe(args.model_signing))
    finally:
        shutil.rmtree(tmp)
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"SM3 backend: {BACKEND}; {os.cpu_count()} CPUs, {default_workers()} usable; "
          f"python {sys.version.split()[0]}; {openssl}; medians of {args.runs} interleaved runs")
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'time':>9}  result")
    for what, secs, note in rows:
        print(f"{what:<{width}}  {secs:>9}  {note}")


if __name__ == "__main__":
    main()
