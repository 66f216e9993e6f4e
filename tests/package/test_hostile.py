"""Hostile packages (tests/package/attacks.py) through ``load_verified``: each refused with its own class, in one
line with untrusted text escaped, before any parser runs; plus the reader budget, the refusals' message rules,
encrypt's path checks, configuration errors and key files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_mm.package import (
    PackageConfigError,
    PackageRefused,
    PathTraversalError,
    PrivateKey,
    RollbackStore,
    TrustStore,
    encrypt_package,
    load_verified,
)
from paddle_mm.package.errors import one_line, show

from .attacks import ATTACKS, Attack, sign_raw
from .helpers import NOW, make_model, sign

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "package.py"


def build(attack: Attack, tmp_path: Path, key: PrivateKey) -> tuple[Path, dict]:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, key)
    kw = attack.build(root, key, tmp_path)
    return kw.pop("path", root), kw


def assert_clean_message(exc: BaseException) -> None:
    text = f"REFUSED {type(exc).__name__}: {exc}"
    assert text.isprintable(), f"control or format character in {text!r}"
    assert "\x1b" not in text and "\n" not in text and "\u202e" not in text


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_refused_with_its_class(attack, tmp_path, key, trust, state, loader_calls) -> None:
    path, kw = build(attack, tmp_path, key)
    with pytest.raises(PackageRefused) as info:
        load_verified(path, trust, model="tiny-clip", state=state, now=NOW, **kw)
    assert type(info.value) is attack.error, f"{attack.name}: {type(info.value).__name__}: {info.value}"
    assert_clean_message(info.value)
    assert loader_calls == [] and not state.path.exists()


def test_injection_is_escaped_not_dropped(tmp_path, key, trust, loader_calls) -> None:
    attack = next(a for a in ATTACKS if a.name == "injected_user_id")
    path, _ = build(attack, tmp_path, key)
    with pytest.raises(PackageRefused) as info:
        load_verified(path, trust, model="tiny-clip", state=None, now=NOW)
    assert "\\n\\x1b[32mOK tiny-clip" in str(info.value)  # visible to the operator, harmless to the terminal


def test_messages_are_one_line_whatever_goes_in() -> None:
    assert one_line("a\nb\x1b[0m\u202ec") == "a\\nb\\x1b[0m\\u202ec"
    assert show("x" * 500).endswith("...'") and len(show("x" * 500)) == 120
    assert str(PackageRefused("bad\r\nOK verified")) == "bad\\r\\nOK verified"
    assert str(PackageConfigError("x\x00y")) == "x\\x00y"


def test_cli_refusal_is_one_line(tmp_path, key) -> None:
    attack = next(a for a in ATTACKS if a.name == "injected_file_name")
    path, _ = build(attack, tmp_path, key)
    (tmp_path / "s.pub").write_bytes(key.public_key.to_pem())
    proc = subprocess.run([sys.executable, str(TOOL), "verify", str(path), "--trust", str(tmp_path / "s.pub"),
                           "--model", "tiny-clip", "--no-state"], capture_output=True, text=True, check=False)
    assert proc.returncode == 12 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("REFUSED ExtraFileError")
    assert "\x1b" not in proc.stderr and "Traceback" not in proc.stderr


def test_sign_refuses_what_verify_refuses(tmp_path, key) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    header = b'{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}'
    (root / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(PackageRefused, match="offsets"):
        sign(root, key)
    make_model(root)
    with pytest.raises(PackageConfigError, match="sequence"):
        sign(root, key, sequence=-1)


def test_encrypt_validates_source_paths(tmp_path, key) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    victim = tmp_path / "victim.json"
    victim.write_bytes(b"{}")
    sign_raw(root, key, {"model.safetensors": (root / "model.safetensors").read_bytes()})
    manifest = (root / "PACKAGE.manifest").read_bytes()  # made into an unsigned source manifest naming ../
    (root / "PACKAGE.manifest").write_bytes(manifest.replace(b'"path":"model.safetensors"', b'"path":"../victim.json"'))
    with pytest.raises(PathTraversalError):
        encrypt_package(root, tmp_path / "out" / "enc", [PrivateKey.generate().public_key])
    assert not (tmp_path / "out" / "enc").exists() and victim.read_bytes() == b"{}"
    assert not (tmp_path / "out" / "victim.json").exists()


def test_encrypt_cleans_up_on_failure(pkg, tmp_path) -> None:
    (pkg / "config.json").write_text("changed size")
    with pytest.raises(PackageRefused):
        encrypt_package(pkg, tmp_path / "enc", [PrivateKey.generate().public_key])
    assert not (tmp_path / "enc").exists()


@pytest.mark.parametrize("content", ['[]', '{"tiny-clip": []}', '{"tiny-clip": {"sequence": "5"}}',
                                     '{"tiny-clip": {"sequence": true, "version": "1", "manifest_sm3": "00"}}'])
def test_rollback_state_of_the_wrong_shape_is_a_config_error(pkg, trust, tmp_path, content) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(PackageConfigError, match="never delete it"):
        load_verified(pkg, trust, model="tiny-clip", state=RollbackStore(path), now=NOW)


# --- configuration errors through the CLI: one line, exit 3, no traceback, no file left behind ---------
def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


def assert_config_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ERROR ") and needle in proc.stderr, proc.stderr


def test_config_errors_are_one_line(pkg, tmp_path, key) -> None:
    pem = key.public_key.to_pem().decode()
    (tmp_path / "b64.pub").write_text(pem.replace(pem.splitlines()[1][:8], "!!!!****"))
    assert_config_error(run("verify", str(pkg), "--trust", str(tmp_path / "b64.pub"), "--model", "tiny-clip",
                            "--no-state"), "base64")
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n")
    assert_config_error(run("verify", str(pkg), "--trust", str(tmp_path / "bad.crt"), "--model", "tiny-clip",
                            "--no-state"), "X.509")
    (tmp_path / "empty.pass").write_bytes(b"")
    assert_config_error(run("keygen", "--out", str(tmp_path / "k.key"), "--passphrase-file",
                            str(tmp_path / "empty.pass")), "empty")
    (tmp_path / "state.json").write_text("[1, 2]")
    (tmp_path / "s.pub").write_text(pem)
    assert_config_error(run("verify", str(pkg), "--trust", str(tmp_path / "s.pub"), "--model", "tiny-clip",
                            "--state", str(tmp_path / "state.json")), "rollback state")
    assert_config_error(run("keygen", "--out", str(tmp_path / "i.key"), "--passphrase-env", "P", "--iterations", "0",
                            P="pw"), "iterations")
    assert not (tmp_path / "i.key").exists() and not (tmp_path / "i.pub").exists()
    assert_config_error(run("sign", str(pkg), "--key", str(tmp_path / "nokey"), "--model", "m", "--version", "1",
                            "--sequence", "1", "--expires", "soon"), "nokey")


def test_keygen_never_follows_a_planted_link(tmp_path) -> None:
    target = tmp_path / "authorized_keys"
    target.write_text("precious")
    (tmp_path / "k.pub").symlink_to(target)
    assert_config_error(run("keygen", "--out", str(tmp_path / "k.key"), "--unencrypted"), "never overwrites")
    assert target.read_text() == "precious" and not (tmp_path / "k.key").exists()


def test_keygen_modes_ignore_umask(tmp_path) -> None:
    code = (f"import os, runpy, sys; os.umask(0); sys.argv = ['package.py', 'keygen', '--out', "
            f"{str(tmp_path / 'k.key')!r}, '--unencrypted']; runpy.run_path({str(TOOL)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "key id" in proc.stdout, proc.stderr
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").stat().st_mode & 0o777 == 0o644


def test_api_config_errors(tmp_path, key) -> None:
    (tmp_path / "t.pub").write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(PackageConfigError):
        TrustStore.from_files([tmp_path / "t.pub"])
    with pytest.raises(PackageConfigError, match="iterations"):
        key.to_pem(b"pw", iterations=0)


def test_oversized_manifest_is_refused_before_it_is_read(tmp_path, key, trust, monkeypatch) -> None:
    from paddle_mm.package import BudgetExceededError, fsio, verify_package
    from paddle_mm.package.manifest import MAX_MANIFEST_BYTES

    attack = next(a for a in ATTACKS if a.name == "huge_manifest")
    path, _ = build(attack, tmp_path, key)
    real = fsio.read_exact
    reads: list[int] = []
    monkeypatch.setattr(fsio, "read_exact", lambda fd, off, n, name: reads.append(n) or real(fd, off, n, name))
    with pytest.raises(BudgetExceededError):
        verify_package(path, trust, model="tiny-clip", state=None, now=NOW)
    assert all(n <= MAX_MANIFEST_BYTES for n in reads), reads
