"""Interoperability with the OpenSSL 3 command line, both ways (signatures, keys, certificates, SM2 encryption)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from paddle_mm.package import (
    BadSignatureError,
    OpenSSLSigner,
    PrivateKey,
    PublicKey,
    TrustStore,
    UntrustedKeyError,
    load_verified,
    sign_package,
    sm2,
    verify_package,
)
from paddle_mm.package.keys import Certificate
from paddle_mm.package.manifest import MANIFEST_NAME, SIGNATURE_NAME

from .helpers import NOW, make_model, openssl_sm2_missing, sign

pytestmark = pytest.mark.skipif(openssl_sm2_missing() is not None, reason=str(openssl_sm2_missing()))
DISTID = "distid:1234567812345678"


def openssl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["openssl", *args], capture_output=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


@pytest.fixture
def osl_key(tmp_path: Path) -> tuple[Path, Path]:
    """An SM2 key pair made by openssl (PKCS#8 private, SPKI public)."""
    priv, pub = tmp_path / "osl.key", tmp_path / "osl.pub"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(priv))
    openssl("pkey", "-in", str(priv), "-pubout", "-out", str(pub))
    return priv, pub


def test_openssl_verifies_our_manifest_signature(pkg, key, tmp_path) -> None:
    pub = tmp_path / "ours.pub"
    pub.write_bytes(key.public_key.to_pem())
    manifest, sig = str(pkg / MANIFEST_NAME), str(pkg / SIGNATURE_NAME)
    out = openssl("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(pub),
                  "-pkeyopt", DISTID, "-in", manifest, "-sigfile", sig)
    assert b"Signature Verified Successfully" in out.stdout
    out = openssl("dgst", "-sm3", "-verify", str(pub), "-sigopt", DISTID, "-signature", sig, manifest)
    assert b"Verified OK" in out.stdout
    wrong_id = subprocess.run(["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey",
                               str(pub), "-in", manifest, "-sigfile", sig], capture_output=True, check=False)
    assert wrong_id.returncode != 0  # OpenSSL's default (empty) ID is not the one we signed with


def test_openssl_signature_over_our_manifest_verifies_here(tmp_path, osl_key, state) -> None:
    priv, pub = osl_key
    root = tmp_path / "pkg"
    make_model(root)
    their_key = PrivateKey.from_pem(priv.read_bytes())
    sign(root, their_key)  # writes the manifest naming their key; its signature is replaced below
    (root / SIGNATURE_NAME).unlink()
    openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(priv), "-pkeyopt", DISTID,
            "-in", str(root / MANIFEST_NAME), "-out", str(root / SIGNATURE_NAME))
    trust = TrustStore.from_files([pub])
    assert verify_package(root, trust, model="tiny-clip", state=state, now=NOW).manifest.sequence == 5


def test_openssl_signature_with_default_empty_id_is_refused(tmp_path, osl_key) -> None:
    priv, pub = osl_key
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, PrivateKey.from_pem(priv.read_bytes()))
    openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(priv),
            "-in", str(root / MANIFEST_NAME), "-out", str(root / SIGNATURE_NAME))
    with pytest.raises(BadSignatureError):
        verify_package(root, TrustStore.from_files([pub]), model="tiny-clip", state=None, now=NOW)


def test_openssl_signer_signs_the_digest(tmp_path, osl_key, state, monkeypatch) -> None:
    priv, pub = osl_key
    enc_priv = tmp_path / "osl.enc.key"
    monkeypatch.setenv("OSL_PASS", "correct horse")
    openssl("pkcs8", "-topk8", "-in", str(priv), "-out", str(enc_priv), "-v2", "sm4-cbc", "-iter", "1000",
            "-passout", "env:OSL_PASS")
    root = tmp_path / "pkg"
    make_model(root)
    signer = OpenSSLSigner(str(enc_priv), PublicKey.from_pem(pub.read_bytes()), passphrase_env="OSL_PASS")
    sign_package(root, signer, model="tiny-clip", version="1", sequence=1, now=NOW)
    loaded = load_verified(root, TrustStore.from_files([pub]), model="tiny-clip", state=state, now=NOW)
    assert loaded.manifest.key_id == PublicKey.from_pem(pub.read_bytes()).key_id


def test_openssl_keys_load_here(tmp_path, osl_key) -> None:
    priv, pub = osl_key
    public = PublicKey.from_pem(pub.read_bytes())
    assert PrivateKey.from_pem(priv.read_bytes()).public_key == public
    for extra in (["-v2", "sm4-cbc"], ["-v2", "aes-256-cbc"]):
        enc = tmp_path / "k.enc"
        openssl("pkcs8", "-topk8", "-in", str(priv), "-out", str(enc), *extra, "-iter", "1000", "-passout", "pass:pw")
        assert PrivateKey.from_pem(enc.read_bytes(), b"pw").public_key == public
    sec1 = tmp_path / "k.sec1"
    openssl("ec", "-in", str(priv), "-out", str(sec1))
    assert PrivateKey.from_pem(sec1.read_bytes()).public_key == public


def test_our_keys_load_in_openssl(tmp_path, key) -> None:
    enc, plain = tmp_path / "ours.enc.key", tmp_path / "ours.key"
    enc.write_bytes(key.to_pem(b"pw", iterations=1000))
    plain.write_bytes(key.to_pem(None))
    expected = key.public_key.to_pem()
    assert openssl("pkey", "-in", str(enc), "-passin", "pass:pw", "-pubout").stdout == expected
    assert openssl("pkey", "-in", str(plain), "-pubout").stdout == expected
    pub = tmp_path / "ours.pub"
    pub.write_bytes(expected)
    assert openssl("pkey", "-pubin", "-in", str(pub), "-pubout").stdout == expected
    text = openssl("pkey", "-in", str(plain), "-text", "-noout").stdout
    assert b"ASN1 OID: SM2" in text


def test_openssl_certificate_as_trust_anchor(tmp_path, osl_key, state) -> None:
    priv, _ = osl_key
    cert_path = tmp_path / "signer.crt"
    openssl("req", "-x509", "-new", "-key", str(priv), "-sm3", "-sigopt", DISTID, "-subj", "/CN=model-signer",
            "-days", "30", "-out", str(cert_path))
    cert = Certificate.from_pem(cert_path.read_bytes())
    assert cert.subject == "CN=model-signer"
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, PrivateKey.from_pem(priv.read_bytes()), now=cert.not_before)
    trust = TrustStore.from_files([cert_path])
    assert verify_package(root, trust, model="tiny-clip", state=state, now=cert.not_before).manifest
    with pytest.raises(UntrustedKeyError, match="renew the certificate"):
        verify_package(root, trust, model="tiny-clip", state=None, now=cert.not_after.replace(year=2099))


def test_sm2_encryption_both_ways(tmp_path, osl_key) -> None:
    priv, pub = osl_key
    data_key = bytes(range(16))
    ours = tmp_path / "wrapped.der"
    ours.write_bytes(sm2.encrypt(PublicKey.from_pem(pub.read_bytes()).point, data_key))
    assert openssl("pkeyutl", "-decrypt", "-inkey", str(priv), "-in", str(ours)).stdout == data_key
    plain, theirs = tmp_path / "plain", tmp_path / "theirs.der"
    plain.write_bytes(data_key)
    openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), "-in", str(plain), "-out", str(theirs))
    assert sm2.decrypt(PrivateKey.from_pem(priv.read_bytes()).d, theirs.read_bytes()) == data_key
