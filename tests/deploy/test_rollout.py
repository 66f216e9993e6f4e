"""deploy/rollout.sh --dry-run: a verified package renders valid manifests; a refused one stops everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import sign_copy

ROOT = Path(__file__).resolve().parents[2]
SERVE = "registry.example.gov.cn/paddle-mm/serve@sha256:" + "ab" * 32


def rollout(pkg: Path, pub: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp / "tokens").write_text("ops admin " + "0" * 64 + "\n")
    (tmp / "galleries").mkdir(exist_ok=True)
    cmd = [
        "bash",
        str(ROOT / "deploy" / "rollout.sh"),
        "--package",
        str(pkg),
        "--galleries",
        str(tmp / "galleries"),
        "--trust",
        str(pub),
        "--model",
        "cn-clip-tiny-serving",
        "--tokens",
        str(tmp / "tokens"),
        "--overlay",
        "arm64",
        "--registry",
        "registry.example.gov.cn",
        "--serve-image",
        SERVE,
        "--state",
        str(tmp / "state.json"),
        "--dry-run",
        *extra,
    ]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture
def package(tower_export, signer, tmp_path) -> Path:
    return sign_copy(tower_export, signer[0], tmp_path / "pkg", 7, "2.0.0")


def test_dry_run_renders_valid_manifests_with_the_verified_sequence(package, signer, tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("rollout.sh renders with kubectl kustomize, which this machine lacks")
    proc = rollout(package, signer[1], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verified cn-clip-tiny-serving 2.0.0 (sequence 7)" in proc.stdout
    rendered = Path(proc.stdout.strip().split("rendered and validated ")[1].split(" ")[0])
    objs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["metadata"]["annotations"]["paddle-mm/package-sequence"] == "7"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == SERVE
    assert "Model.name=cn-clip-tiny-serving" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    secret = next(o for o in objs if o["kind"] == "Secret")
    assert set(secret["data"]) == {"tokens", "signer.pub"}
    shutil.rmtree(rendered.parent)


@pytest.mark.parametrize(
    "attack, code, reason",
    [("tamper", 12, "DigestMismatchError"), ("untrusted", 10, "UntrustedKeyError"), ("rollback", 13, "RollbackError")],
)
def test_refused_package_stops_the_rollout(attack, code, reason, package, signer, tower_export, tmp_path):
    pub = signer[1]
    if attack == "tamper":
        onnx = next(package.glob("*.onnx"))
        data = bytearray(onnx.read_bytes())
        data[100] ^= 1
        onnx.write_bytes(bytes(data))
    elif attack == "untrusted":
        from paddle_mm.package import PrivateKey

        pub = tmp_path / "other.pub"
        pub.write_bytes(PrivateKey.generate().public_key.to_pem())
    else:
        assert rollout(package, pub, tmp_path).returncode == 0  # records sequence 7 in the state file
        sign_copy(tower_export, signer[0], package, 6, "1.9.0")
    proc = rollout(package, pub, tmp_path)
    assert proc.returncode == code and f"REFUSED {reason}" in proc.stderr, (proc.returncode, proc.stderr[-1500:])
    assert "rendered" not in proc.stdout


def test_serve_image_must_be_pinned_by_digest(package, signer, tmp_path):
    proc = rollout(package, signer[1], tmp_path, "--serve-image", "registry.example.gov.cn/paddle-mm/serve:latest")
    assert proc.returncode == 2 and "not pinned by digest" in proc.stderr
