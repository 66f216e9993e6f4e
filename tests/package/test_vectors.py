"""Standard vectors: SM3 (GB/T 32905), SM4 and SM4-GCM (GB/T 32907, RFC 8998), SM2 (GB/T 32918.5),
plus cross-checks of the pure-Python SM2 against gmssl (an independent implementation)."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from paddle_mm.package import sm2
from paddle_mm.package.sm3 import kdf, sm3

SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
PUB = (0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
       0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13)
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA


def test_sm3_gbt32905() -> None:
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    assert sm3(b"ab", b"c") == sm3(b"abc")  # parts concatenate


def test_sm4_gbt32907_single_and_million() -> None:
    enc = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()
    block = enc.update(SM4_KEY)
    assert block.hex() == "681edf34d206965e86b3e94f536e4246"
    for _ in range(999_999):
        block = enc.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_rfc8998() -> None:
    iv, aad = bytes.fromhex("00001234567800000000abcd"), bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    plain = bytes.fromhex("aa" * 8 + "bb" * 8 + "cc" * 8 + "dd" * 8 + "ee" * 8 + "ff" * 8 + "ee" * 8 + "aa" * 8)
    enc = Cipher(algorithms.SM4(SM4_KEY), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(plain) + enc.finalize()
    assert ct.hex() == ("17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
                        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d")
    assert enc.tag.hex() == "83de3541e4c2b58177e065a9bf7b62ec"


def test_sm2_gbt32918_example() -> None:
    assert sm2.mul(D, sm2.G) == PUB
    e = sm2.message_digest(b"message digest", b"1234567812345678", PUB)
    assert sm2.sign_digest(D, e, K) == (R, S)
    assert sm2.verify_digest(PUB, e, R, S)
    assert not sm2.verify_digest(PUB, e, R, S + 1)
    assert not sm2.verify_digest(PUB, sm2.message_digest(b"message digesT", b"1234567812345678", PUB), R, S)
    assert not sm2.verify_digest(PUB, sm2.message_digest(b"message digest", b"", PUB), R, S)  # other user ID


def test_sm2_random_nonces_differ_and_verify() -> None:
    e = sm3(b"x")
    sig1, sig2 = sm2.sign_digest(D, e), sm2.sign_digest(D, e)
    assert sig1 != sig2
    assert sm2.verify_digest(PUB, e, *sig1) and sm2.verify_digest(PUB, e, *sig2)


def test_sm2_der_roundtrip_and_raw() -> None:
    der = sm2.signature_to_der(R, S)
    assert sm2.signature_from_der(der) == (R, S)
    assert sm2.raw_to_der(R.to_bytes(32, "big") + S.to_bytes(32, "big")) == der


def test_sm2_encrypt_roundtrip_and_c3_check() -> None:
    message = secrets.token_bytes(16)
    ct = sm2.encrypt(PUB, message)
    assert sm2.decrypt(D, ct) == message
    tampered = bytearray(ct)
    tampered[-1] ^= 1
    with pytest.raises(sm2.DecryptionError, match="C3"):
        sm2.decrypt(D, bytes(tampered))
    with pytest.raises(sm2.DecryptionError):
        sm2.decrypt(D + 1, ct)


def test_kdf_matches_definition() -> None:
    z = b"\x01" * 64
    assert kdf(z, 40) == (sm3(z, b"\x00\x00\x00\x01") + sm3(z, b"\x00\x00\x00\x02"))[:40]


def test_point_checks() -> None:
    with pytest.raises(sm2.SM2Error, match="not on the SM2 curve"):
        sm2.check_public((PUB[0], PUB[1] + 1))
    assert sm2.on_curve(sm2.G)


@pytest.fixture
def gmssl_crypt() -> object:
    """gmssl used correctly: explicit nonce, public key given as X||Y without the 04 prefix."""
    gmssl_sm2 = pytest.importorskip("gmssl.sm2")
    return gmssl_sm2.CryptSM2(private_key=f"{D:064x}", public_key=f"{PUB[0]:064x}{PUB[1]:064x}")


def test_gmssl_gives_same_signature_from_same_nonce(gmssl_crypt: object) -> None:
    e = sm2.message_digest(b"message digest", b"1234567812345678", PUB)
    assert gmssl_crypt.sign(e, f"{K:064x}") == f"{R:064x}{S:064x}"


def test_gmssl_and_ours_verify_each_other(gmssl_crypt: object) -> None:
    e = sm3(b"paddle_mm")
    r, s = sm2.sign_digest(D, e)
    assert gmssl_crypt.verify(f"{r:064x}{s:064x}", e)
    theirs = gmssl_crypt.sign(e, secrets.token_hex(32))
    assert sm2.verify_digest(PUB, e, int(theirs[:64], 16), int(theirs[64:], 16))


def test_sm2_encryption_gbt32918_example() -> None:
    """GB/T 32918.5 (GM/T 0003.5-2012) Annex C, recommended curve: d_B, k and M = "encryption standard" give
    C1, C3 and C2 below; here in the GM/T 0009 DER order {x, y, C3, C2} that OpenSSL writes. Values as quoted
    by OpenSSL's test/sm2_internal_test.c (the standard's own text was not available here)."""
    expected = bytes.fromhex(
        "307C"
        "0220" "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
        "022100" "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
        "0420" "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
        "0413" "21886CA989CA9C7D58087307CA93092D651EFA"
    )
    assert sm2.encrypt(PUB, b"encryption standard", k=K) == expected
    assert sm2.decrypt(D, expected) == b"encryption standard"
    assert sm2.mul_secret(D, sm2.mul(K, sm2.G)) == sm2.mul(K, PUB)  # the blinded product is the plain one
