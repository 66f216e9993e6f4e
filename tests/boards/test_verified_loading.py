"""pmm-run verifies a signed paddle_mm package (SM3 chunks, SM2 signature) before loading the model.

Packages are signed by paddle_mm.package (Python); the C++ SM3/SM2 must agree with it on every package
built here, and refuse every tampered one with exit code 5 and a one-line message naming the problem.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from hardware.runtime import build as board_build
from paddle_mm.package import LocalSigner, PrivateKey, sign_package
from paddle_mm.package.build import write_signed
from paddle_mm.package.keys import sign_message

TARGETS = ["x86_64", "loongarch64", "riscv64"]


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="module")
def trust(key, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "signer.pub"
    path.write_bytes(key.public_key.to_pem())
    return path


def make_package(tiny_gguf: Path, root: Path, key: PrivateKey, chunk_size: int = 64 << 10, **extra) -> Path:
    """A signed board package: the GGUF plus a README, small chunks so the GGUF spans many of them."""
    root.mkdir(parents=True)
    shutil.copy(tiny_gguf, root / "model.gguf")
    (root / "README.md").write_text("CN-CLIP-Tiny for boards\n", encoding="utf-8")
    signer = LocalSigner(key)
    sign_package(root, signer, model="cn-clip-tiny", version="1.0.0", sequence=1, chunk_size=chunk_size, **extra)
    return root


def run_verified(cmd: list[str], package: Path, trust: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [*cmd, "--package", str(package), "--trust", str(trust), "--model", "model.gguf", "--text", "一只猫"]
    return subprocess.run([*args, "--threads", "1", *extra], capture_output=True, text=True, timeout=300)


def refused(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 5, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: package ") and needle in lines[0], proc.stderr
    assert "verified package" not in proc.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_selftest_vectors(target):
    """SM3 (GB/T 32905) and SM2 (GB/T 32918.5 Annex A) standard vectors and the activation polynomials, on each
    target's own build; the native x86-64 build also checks its packed GEMM against a double-precision product."""
    proc = subprocess.run(board_build.command(target, "pmm-selftest"), capture_output=True, text=True, timeout=120)
    packed = target == "x86_64" and _has_packed_gemm_isa()
    assert proc.returncode == 0 and proc.stdout.count("ok  ") == (11 if packed else 9), proc.stdout + proc.stderr
    assert ("packed GEMM" in proc.stdout) == packed, proc.stdout


def _has_packed_gemm_isa() -> bool:
    """Whether this CPU has what the native build's packed GEMM needs (AVX-512F, or AVX2 and FMA)."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return "avx512f" in flags or {"avx2", "fma"} <= flags


@pytest.mark.parametrize("target", TARGETS)
def test_signed_package_verifies_and_loads(target, tiny_gguf, key, trust, tmp_path):
    """C++ SM3 of every 64 KiB chunk and the SM2 signature agree with the Python signer."""
    package = make_package(tiny_gguf, tmp_path / "pkg", key)
    proc = run_verified(board_build.command(target), package, trust, "--npy", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "verified package" in proc.stderr and (tmp_path / "text_features.npy").is_file()


def test_default_chunk_size_and_expected_model(native_cmd, tiny_gguf, key, trust, tmp_path):
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    package = make_package(tiny_gguf, tmp_path / "pkg", key, chunk_size=4 << 20, expires=expires)
    assert run_verified(native_cmd, package, trust, "--expect-model", "cn-clip-tiny").returncode == 0
    proc = run_verified(native_cmd, package, trust, "--expect-model", "other-model")
    refused(proc, "signed for model 'cn-clip-tiny'")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_packages_are_refused(native_cmd, tiny_gguf, key, trust, tmp_path):
    cases = []

    def fresh(name: str) -> Path:
        return make_package(tiny_gguf, tmp_path / name, key)

    p = fresh("weights")
    _flip(p / "model.gguf", 200_000)  # inside chunk 3 of 64 KiB
    cases.append((p, "model.gguf: SM3 of chunk 3 (offset 196608)"))
    p = fresh("manifest")
    manifest = (p / "PACKAGE.manifest").read_bytes().replace(b'"version":"1.0.0"', b'"version":"1.0.1"')
    (p / "PACKAGE.manifest").write_bytes(manifest)
    cases.append((p, "SM2 signature does not verify"))
    p = fresh("signature")
    _flip(p / "PACKAGE.sig", 10)
    cases.append((p, "SM2 signature does not verify"))
    p = fresh("unsigned")
    (p / "PACKAGE.sig").unlink()
    cases.append((p, "PACKAGE.sig: missing (an unsigned package is refused)"))
    p = fresh("extra")
    (p / "extra.txt").write_text("not signed", encoding="utf-8")
    cases.append((p, "extra.txt is in the package directory but not signed"))
    p = fresh("missing")
    (p / "README.md").unlink()
    cases.append((p, "README.md is signed but missing"))
    p = fresh("truncated")
    (p / "model.gguf").write_bytes((p / "model.gguf").read_bytes()[:-1])
    cases.append((p, "model.gguf is"))
    p = fresh("symlink")
    (p / "README.md").unlink()
    (p / "README.md").symlink_to(p / "model.gguf")
    cases.append((p, "README.md is a symlink"))
    p = fresh("other_key")  # re-signed by someone else: a valid signature by an untrusted key
    data = (p / "PACKAGE.manifest").read_bytes()
    write_signed(p, data, sign_message(LocalSigner(PrivateKey.generate()), data, b"1234567812345678"))
    cases.append((p, "SM2 signature does not verify"))
    for package, needle in cases:
        refused(run_verified(native_cmd, package, trust), needle)


def test_untrusted_signer_and_model_outside_package(native_cmd, tiny_gguf, key, trust, tmp_path):
    package = make_package(tiny_gguf, tmp_path / "pkg", key)
    other = tmp_path / "other.pub"
    other.write_bytes(PrivateKey.generate().public_key.to_pem())
    refused(run_verified(native_cmd, package, other), "is not signed by the trusted key")
    proc = subprocess.run(
        [*native_cmd, "--package", str(package), "--trust", str(trust), "--model", "../model.gguf", "--text", "x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 5 and "is not a file of the signed package" in proc.stderr
