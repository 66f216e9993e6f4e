"""tools/package.py: exit codes for deploy scripts, passphrase handling, and a verifier that never imports paddle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import make_model

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "package.py"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def signed_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """keygen + sign through the CLI once per module (an encrypted key, a 7-day expiry)."""
    tmp_path = tmp_path_factory.mktemp("cli")
    env = {"PMM_PASS": "hunter2"}
    assert run("keygen", "--out", str(tmp_path / "s.key"), "--passphrase-env", "PMM_PASS", "--iterations", "1000",
               env=env).returncode == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "s.key").read_bytes()
    assert (tmp_path / "s.key").stat().st_mode & 0o777 == 0o600
    make_model(tmp_path / "pkg")
    proc = run("sign", str(tmp_path / "pkg"), "--key", str(tmp_path / "s.key"), "--passphrase-env", "PMM_PASS",
               "--model", "tiny-clip", "--version", "2.0", "--sequence", "4", "--valid-days", "7", env=env)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


@pytest.fixture
def signed(signed_once: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy of the CLI-signed package for a test to tamper with: (package dir, public key)."""
    shutil.copytree(signed_once, tmp_path, dirs_exist_ok=True)
    return tmp_path / "pkg", tmp_path / "s.pub"


def verify(pkg: Path, pub: Path, state: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("verify", str(pkg), "--trust", str(pub), "--model", "tiny-clip", "--state", str(state), *extra)


def test_verify_ok_prints_json(signed, tmp_path) -> None:
    proc = verify(*signed, tmp_path / "st.json", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["model"], summary["version"], summary["sequence"], summary["files"]) == ("tiny-clip", "2.0", 4, 2)


@pytest.mark.parametrize(("tamper", "code", "error"), [
    (lambda p: (p / "config.json").write_text("{}"), 12, "SizeMismatchError"),
    (lambda p: (p / "extra.txt").write_text("x"), 12, "ExtraFileError"),
    (lambda p: (p / "PACKAGE.sig").unlink(), 10, "UnsignedPackageError"),
    (lambda p: (p / "config.json").unlink() or (p / "config.json").symlink_to("/etc/hostname"), 11, "SymlinkError"),
])
def test_refusals_have_grouped_exit_codes(signed, tmp_path, tamper, code, error) -> None:
    tamper(signed[0])
    proc = verify(*signed, tmp_path / "st.json")
    assert (proc.returncode, proc.stderr.split(":")[0]) == (code, f"REFUSED {error}")


def test_wrong_model_and_untrusted_key(signed, tmp_path) -> None:
    proc = run("verify", str(signed[0]), "--trust", str(signed[1]), "--model", "other", "--no-state")
    assert proc.returncode == 13 and "ModelMismatchError" in proc.stderr
    assert run("keygen", "--out", str(tmp_path / "o.key"), "--unencrypted").returncode == 0
    proc = verify(signed[0], tmp_path / "o.pub", tmp_path / "st.json")
    assert proc.returncode == 10 and "UntrustedKeyError" in proc.stderr


def test_config_errors_exit_3(signed, tmp_path) -> None:
    proc = verify(signed[0], tmp_path / "missing.pub", tmp_path / "st.json")
    assert proc.returncode == 3 and "missing.pub" in proc.stderr
    proc = run("sign", str(signed[0]), "--key", str(tmp_path / "s.key"), "--passphrase-env", "PMM_PASS",
               "--model", "tiny-clip", "--version", "x", "--sequence", "1", env={"PMM_PASS": "wrong"})
    assert proc.returncode == 3 and "wrong passphrase" in proc.stderr


def test_keygen_needs_a_passphrase_source_without_a_tty(tmp_path) -> None:
    proc = run("keygen", "--out", str(tmp_path / "k.key"))
    assert proc.returncode == 3 and "--unencrypted" in proc.stderr
    assert not (tmp_path / "k.key").exists()


def test_usage_error_exit_2() -> None:
    assert run("verify").returncode == 2


def test_encrypt_then_verify_with_recipient_key(signed, tmp_path) -> None:
    assert run("keygen", "--out", str(tmp_path / "r.key"), "--unencrypted").returncode == 0
    enc = tmp_path / "enc"
    assert run("encrypt", str(signed[0]), str(enc), "--recipient", str(tmp_path / "r.pub")).returncode == 0
    assert verify(enc, signed[1], tmp_path / "st.json").returncode == 14
    proc = verify(enc, signed[1], tmp_path / "st.json", "--key", str(tmp_path / "r.key"))
    assert proc.returncode == 0, proc.stderr


def test_inspect_marks_manifest_unverified(signed) -> None:
    proc = run("inspect", str(signed[0]))
    assert proc.returncode == 0 and proc.stdout.startswith("UNVERIFIED")
    assert json.loads(proc.stdout.split("\n", 1)[1])["sequence"] == 4


def test_verifier_imports_nothing_heavy(signed) -> None:
    """`verify` of a plain package must not import paddle, numpy, safetensors or even cryptography."""
    code = f"""
import runpy, sys
sys.argv = ["package.py", "verify", {str(signed[0])!r}, "--trust", {str(signed[1])!r}, "--model", "tiny-clip",
            "--no-state"]
try:
    runpy.run_path({str(TOOL)!r}, run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
heavy = ("paddle", "numpy", "safetensors", "cryptography", "gmssl", "Cryptodome")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    size = sum((signed[0] / name).stat().st_size for name in ("model.safetensors", "config.json"))
    assert proc.stdout.strip().splitlines() == [f"OK tiny-clip 2.0 seq 4: 2 files, {size} bytes verified", "[]"]
