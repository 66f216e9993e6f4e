"""Key formats: PKCS#8 (encrypted and not), SPKI, key ids, passphrase errors, the signer interface."""

from __future__ import annotations

import pytest

from paddle_mm.package import LocalSigner, PackageConfigError, PrivateKey, PublicKey, sign_message, sm2
from paddle_mm.package.keys import passphrase_from_env, pem_blocks
from paddle_mm.package.sm3 import sm3


def test_encrypted_pkcs8_roundtrip(key) -> None:
    pem = key.to_pem(b"s3cret", iterations=1000)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PrivateKey.from_pem(pem, b"s3cret").d == key.d
    with pytest.raises(PackageConfigError, match="wrong passphrase"):
        PrivateKey.from_pem(pem, b"S3cret")
    with pytest.raises(PackageConfigError, match="encrypted; give its passphrase"):
        PrivateKey.from_pem(pem)


def test_plain_pkcs8_and_spki_roundtrip(key) -> None:
    assert PrivateKey.from_pem(key.to_pem(None)).d == key.d
    assert PublicKey.from_pem(key.public_key.to_pem()) == key.public_key


def test_empty_passphrase_refused(key) -> None:
    with pytest.raises(PackageConfigError, match="empty passphrase"):
        key.to_pem(b"")


def test_key_id_is_sm3_of_spki(key) -> None:
    (label, spki), = pem_blocks(key.public_key.to_pem())
    assert label == "PUBLIC KEY" and len(spki) == 91
    assert key.public_key.key_id == sm3(spki).hex()


def test_public_key_with_leading_zero_hex_digits() -> None:
    """gmssl's lstrip('04') bug eats leading '0'/'4' digits of X; integers keep every digit."""
    for _ in range(200):
        key = PrivateKey.generate()
        if key.public_key.point[0] >> 248 in (0x00, 0x04, 0x40, 0x44):
            break
    assert PublicKey.from_pem(key.public_key.to_pem()) == key.public_key


def test_repr_hides_scalar(key) -> None:
    assert f"{key.d:x}" not in repr(key) and hex(key.d) not in repr(key)


def test_raw_signature_from_device_is_accepted(key) -> None:
    class RawSigner:  # e.g. a GM/T 0018 device returning r||s
        public_key = key.public_key

        def sign_digest(self, e: bytes) -> bytes:
            r, s = sm2.sign_digest(key.d, e)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    sig = sign_message(RawSigner(), b"manifest", b"1234567812345678")
    assert key.public_key.verify(b"manifest", sig)


def test_raw_signature_starting_like_der_is_still_raw(key) -> None:
    """r||s whose first byte is 0x30 (DER's SEQUENCE tag, one raw signature in 256) is still converted."""

    class RawSigner:
        public_key = key.public_key

        def sign_digest(self, e: bytes) -> bytes:
            for k in range(1, 100_000):  # a nonce whose r starts with the byte 0x30
                r, s = sm2.sign_digest(key.d, e, k=k)
                if r >> 248 == 0x30:
                    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
            raise AssertionError("no nonce gave r starting with 0x30")

    sig = sign_message(RawSigner(), b"manifest", b"1234567812345678")
    assert key.public_key.verify(b"manifest", sig)


def test_signer_with_wrong_key_is_caught(key) -> None:
    class Mismatched:
        public_key = key.public_key
        _other = LocalSigner(PrivateKey.generate())

        def sign_digest(self, e: bytes) -> bytes:
            return self._other.sign_digest(e)

    with pytest.raises(PackageConfigError, match="does not verify"):
        sign_message(Mismatched(), b"manifest", b"1234567812345678")


def test_non_sm2_key_refused() -> None:
    p256_spki = bytes.fromhex(
        "3059301306072a8648ce3d020106082a8648ce3d030107034200046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a139"
        "45d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
    with pytest.raises(PackageConfigError, match="is not SM2"):
        PublicKey.from_spki_der(p256_spki)


def test_passphrase_from_env_names_a_missing_variable(monkeypatch):
    monkeypatch.setenv("PMM_TEST_PASS", "口令 secret")
    monkeypatch.delenv("PMM_TEST_UNSET", raising=False)
    assert passphrase_from_env("PMM_TEST_PASS") == "口令 secret".encode()
    assert passphrase_from_env(None) is None and passphrase_from_env("") is None
    with pytest.raises(PackageConfigError, match="'PMM_TEST_UNSET' is not set"):
        passphrase_from_env("PMM_TEST_UNSET")


def _certificate(key: PrivateKey, not_before: bytes, not_after: bytes, utc: bool = True) -> bytes:
    """A minimal DER certificate for ``key`` with raw validity times (UTCTime or GeneralizedTime)."""
    from paddle_mm.package import der

    tag = der.UTC_TIME if utc else der.GENERALIZED_TIME
    name = der.encode_seq(der.encode(0x31, der.encode_seq(der.encode_oid("2.5.4.3"), der.encode(0x0C, b"signer"))))
    alg = der.encode_seq(der.encode_oid("1.2.156.10197.1.501"))
    tbs = der.encode_seq(der.encode(0xA0, der.encode_int(2)), der.encode_int(1), alg, name,
                         der.encode_seq(der.encode(tag, not_before), der.encode(tag, not_after)), name,
                         key.public_key.spki_der())
    return der.encode_seq(tbs, alg, der.encode(der.BIT_STRING, b"\x00" + sm2.signature_to_der(1, 1)))


def test_certificate_times_follow_rfc5280(key) -> None:
    """UTCTime years 50-99 are 19xx (our old strptime read 50-68 as 2050-2068)."""
    from paddle_mm.package import Certificate

    cert = Certificate.from_der(_certificate(key, b"500101000000Z", b"491231235959Z"))
    assert (cert.not_before.year, cert.not_after.year) == (1950, 2049)
    assert cert.public_key == key.public_key and "CN=signer" in cert.subject
    later = Certificate.from_der(_certificate(key, b"20500101000000Z", b"20680101000000Z", utc=False))
    assert (later.not_before.year, later.not_after.year) == (2050, 2068)


@pytest.mark.parametrize("body", [b"", b"\x30\x03\x02\x01\x00", b"\x30\x80", bytes(64), "version 91"])
def test_malformed_certificate_is_a_config_error(key, body) -> None:
    from paddle_mm.package import Certificate

    if body == "version 91":  # found by test_fuzz.py: cryptography's InvalidVersion is not a ValueError
        good = _certificate(key, b"260101000000Z", b"360101000000Z")
        body = good.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01[")
    with pytest.raises(PackageConfigError):
        Certificate.from_der(body)
