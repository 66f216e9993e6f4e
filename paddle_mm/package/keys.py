"""SM2 keys in the formats OpenSSL and KMSs use, X.509 trust anchors, and the pluggable signer.

- private keys: PKCS#8 PEM; written encrypted (PBES2: PBKDF2-HMAC-SHA256 + SM4-CBC, the scheme
  ``openssl pkcs8 -topk8 -v2 sm4-cbc`` writes and reads; OpenSSL 3.0 has no hmacWithSM3 PRF) unless
  the caller asks for a plain key; SEC1 ``EC PRIVATE KEY`` and AES-CBC PBES2 are read too.
- public keys: SPKI PEM holding the 65-byte point 04||X||Y; the key id is the SM3 of the SPKI DER.
- certificates: X.509 with an SM2 key, accepted as trust anchors (key + validity window).
- signing goes through :class:`Signer` (``sign_digest(e)`` returning a DER signature), so a cloud
  KMS or a GM/T 0018 (SDF) device signs without the private key ever reaching this process.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import der, sm2
from .errors import PackageConfigError, show
from .sm3 import sm3

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2_CURVE = "1.2.156.10197.1.301"
OID_PBES2, OID_PBKDF2 = "1.2.840.113549.1.5.13", "1.2.840.113549.1.5.12"
OID_HMAC_SHA1, OID_HMAC_SHA256 = "1.2.840.113549.2.7", "1.2.840.113549.2.9"
OID_SM4_CBC = "1.2.156.10197.1.104.2"
OID_AES_CBC = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}
DEFAULT_KDF_ITERATIONS = 600_000
MIN_KDF_ITERATIONS = 1000  # PBKDF2 rounds accepted when writing a key (tests use this; keys use the default)
MAX_PEM_BYTES = 1 << 20  # a trust anchor, key or certificate file
_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


def passphrase_from_env(var: str | None) -> bytes | None:
    """The key passphrase held by environment variable ``var`` (None when no variable is named); a named
    variable that is not set is a :class:`PackageConfigError` naming it."""
    if not var:
        return None
    if var not in os.environ:
        raise PackageConfigError(f"environment variable {var!r} is not set; export it or name another one")
    return os.environ[var].encode()


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """All PEM blocks in ``data`` as (label, DER) pairs; broken base64 is a :class:`PackageConfigError`."""
    if len(data) > MAX_PEM_BYTES:
        raise PackageConfigError(f"PEM data of {len(data)} bytes is over the {MAX_PEM_BYTES}-byte limit")
    blocks = []
    for m in _PEM_RE.finditer(data):
        label = m.group(1).decode()
        try:
            blocks.append((label, base64.b64decode(b"".join(m.group(2).split()), validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise PackageConfigError(f"PEM block {label!r} is not valid base64 ({exc}); re-export the file") from exc
    return blocks


def to_pem(label: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


def _sm2_algorithm() -> bytes:
    return der.encode_seq(der.encode_oid(OID_EC_PUBLIC_KEY), der.encode_oid(OID_SM2_CURVE))


def _check_sm2_algorithm(alg: der.Tlv) -> None:
    items = der.children(der.expect(alg, der.SEQUENCE, "AlgorithmIdentifier"))
    oids = [der.to_oid(t) for t in items if t.tag == der.OID]
    if OID_SM2_CURVE not in oids:
        raise PackageConfigError(
            f"key algorithm {oids} is not SM2 (curve {OID_SM2_CURVE}); make the key with "
            "`tools/package.py keygen` or `openssl genpkey -algorithm SM2`"
        )


@dataclass(frozen=True)
class PublicKey:
    """An SM2 public key (a point on the curve, checked on construction)."""

    point: sm2.Point

    def __post_init__(self) -> None:
        sm2.check_public(self.point)

    def spki_der(self) -> bytes:
        raw = b"\x04" + self.point[0].to_bytes(32, "big") + self.point[1].to_bytes(32, "big")
        return der.encode_seq(_sm2_algorithm(), der.encode(der.BIT_STRING, b"\x00" + raw))

    @property
    def key_id(self) -> str:
        """Hex SM3 of the SPKI DER: how manifests name their signer and key files name recipients."""
        return sm3(self.spki_der()).hex()

    def to_pem(self) -> bytes:
        return to_pem("PUBLIC KEY", self.spki_der())

    @classmethod
    def from_spki_der(cls, data: bytes) -> PublicKey:
        items = der.children(der.decode_one(data, der.SEQUENCE))
        if len(items) != 2:
            raise PackageConfigError("SubjectPublicKeyInfo must hold an algorithm and a key")
        _check_sm2_algorithm(items[0])
        raw = der.bit_string_bytes(items[1], "SM2 public key")
        if len(raw) != 65 or raw[0] != 4:
            raise PackageConfigError(f"SM2 public key must be the 65-byte point 04||X||Y, got {len(raw)} bytes")
        return cls((int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")))

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        for label, body in pem_blocks(data):
            if label == "PUBLIC KEY":
                return cls.from_spki_der(body)
        raise PackageConfigError(
            "no '-----BEGIN PUBLIC KEY-----' block; export one with "
            "`openssl pkey -in KEY -pubout` or `tools/package.py keygen`"
        )

    def verify(self, message: bytes, signature: bytes, user_id: bytes = sm2.DEFAULT_USER_ID) -> bool:
        """True when ``signature`` (DER) is SM2-with-SM3 over ``message`` with ``user_id``."""
        try:
            r, s = sm2.signature_from_der(signature)
        except der.DerError:
            return False
        return sm2.verify_digest(self.point, sm2.message_digest(message, user_id, self.point), r, s)


@dataclass(frozen=True, repr=False)
class PrivateKey:
    """An SM2 private key. ``repr`` never shows the scalar."""

    d: int
    public_key: PublicKey = field(init=False)

    def __post_init__(self) -> None:
        sm2.check_private(self.d)
        object.__setattr__(self, "public_key", PublicKey(sm2.mul(self.d, sm2.G)))

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self.public_key.key_id[:16]}...)"

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(sm2.generate_private())

    def pkcs8_der(self) -> bytes:
        pub = self.public_key.spki_der()
        pub_bits = der.children(der.decode_one(pub, der.SEQUENCE))[1]
        ec_key = der.encode_seq(
            der.encode_int(1),
            der.encode(der.OCTET_STRING, self.d.to_bytes(32, "big")),
            der.encode(0xA1, der.encode(pub_bits.tag, pub_bits.value)),
        )
        return der.encode_seq(der.encode_int(0), _sm2_algorithm(), der.encode(der.OCTET_STRING, ec_key))

    def to_pem(self, passphrase: bytes | None, iterations: int = DEFAULT_KDF_ITERATIONS) -> bytes:
        """PKCS#8 PEM; encrypted with ``passphrase`` unless it is None (then stored in the clear)."""
        if passphrase is None:
            return to_pem("PRIVATE KEY", self.pkcs8_der())
        if not passphrase:
            raise PackageConfigError("empty passphrase; give a real one or ask for an unencrypted key explicitly")
        if not MIN_KDF_ITERATIONS <= iterations <= 100_000_000:
            raise PackageConfigError(
                f"PBKDF2 iterations {iterations} out of range [{MIN_KDF_ITERATIONS}, 100000000]; the default is "
                f"{DEFAULT_KDF_ITERATIONS}"
            )
        return to_pem("ENCRYPTED PRIVATE KEY", _pbes2_encrypt(self.pkcs8_der(), passphrase, iterations))

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> PrivateKey:
        try:
            return cls._from_pem(data, passphrase)
        except (IndexError, ValueError, TypeError) as exc:
            if isinstance(exc, PackageConfigError):
                raise
            raise PackageConfigError(f"the private key file is malformed ({type(exc).__name__}); re-export it") from exc

    @classmethod
    def _from_pem(cls, data: bytes, passphrase: bytes | None) -> PrivateKey:
        for label, body in pem_blocks(data):
            if label == "PRIVATE KEY":
                return cls._from_pkcs8(body)
            if label in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # SEC1; `openssl ec` writes the SM2 label
                return cls._from_sec1(body)
            if label == "ENCRYPTED PRIVATE KEY":
                if passphrase is None:
                    raise PackageConfigError(
                        "the private key is encrypted; give its passphrase "
                        "(--passphrase-env VAR or --passphrase-file FILE)"
                    )
                return cls._from_pkcs8(_pbes2_decrypt(body, passphrase))
        raise PackageConfigError("no PKCS#8 or SEC1 private key PEM block found")

    @classmethod
    def _from_pkcs8(cls, body: bytes) -> PrivateKey:
        items = der.children(der.decode_one(body, der.SEQUENCE))
        if len(items) < 3:
            raise PackageConfigError("PKCS#8 PrivateKeyInfo is incomplete")
        _check_sm2_algorithm(items[1])
        return cls._from_sec1(der.expect(items[2], der.OCTET_STRING, "privateKey"))

    @classmethod
    def _from_sec1(cls, body: bytes) -> PrivateKey:
        items = der.children(der.decode_one(body, der.SEQUENCE))
        scalar = der.expect(items[1], der.OCTET_STRING, "ECPrivateKey.privateKey")
        key = cls(int.from_bytes(scalar, "big"))
        for item in items[2:]:
            if item.tag == 0xA0 and der.to_oid(der.read_tlv(item.value)[0]) != OID_SM2_CURVE:
                raise PackageConfigError("EC private key is not on the SM2 curve (1.2.156.10197.1.301)")
            if item.tag == 0xA1:  # embedded public key must match the scalar
                raw = der.bit_string_bytes(der.read_tlv(item.value)[0], "ECPrivateKey.publicKey")
                if raw != b"\x04" + key.public_key.spki_der()[-64:]:
                    raise PackageConfigError("private key file is inconsistent: its public key does not match")
        return key


def _pbes2_cipher(oid: str, key: bytes, iv: bytes) -> Any:  # a cryptography Cipher
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algorithm = algorithms.SM4(key) if oid == OID_SM4_CBC else algorithms.AES(key)
    return Cipher(algorithm, modes.CBC(iv))


def _pbkdf2(passphrase: bytes, salt: bytes, iterations: int, length: int, prf: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    algorithm = {OID_HMAC_SHA256: hashes.SHA256(), OID_HMAC_SHA1: hashes.SHA1()}[prf]
    return PBKDF2HMAC(algorithm, length, salt, iterations).derive(passphrase)


def _pbes2_encrypt(plain: bytes, passphrase: bytes, iterations: int) -> bytes:
    from cryptography.hazmat.primitives import padding

    salt, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    key = _pbkdf2(passphrase, salt, iterations, 16, OID_HMAC_SHA256)
    padder = padding.PKCS7(128).padder()
    enc = _pbes2_cipher(OID_SM4_CBC, key, iv).encryptor()
    data = enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()
    prf = der.encode_seq(der.encode_oid(OID_HMAC_SHA256), der.encode(der.NULL, b""))
    kdf = der.encode_seq(
        der.encode_oid(OID_PBKDF2), der.encode_seq(der.encode(der.OCTET_STRING, salt), der.encode_int(iterations), prf)
    )
    scheme = der.encode_seq(der.encode_oid(OID_SM4_CBC), der.encode(der.OCTET_STRING, iv))
    alg = der.encode_seq(der.encode_oid(OID_PBES2), der.encode_seq(kdf, scheme))
    return der.encode_seq(alg, der.encode(der.OCTET_STRING, data))


def _pbes2_decrypt(body: bytes, passphrase: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding

    alg, data = der.children(der.decode_one(body, der.SEQUENCE))
    alg_oid, params = der.children(alg.value)
    if der.to_oid(alg_oid) != OID_PBES2:
        raise PackageConfigError(
            f"key encryption {der.to_oid(alg_oid)} is not PBES2; re-encrypt with `openssl pkcs8 -topk8 -v2 sm4-cbc`"
        )
    kdf, scheme = der.children(params.value)
    kdf_oid, kdf_params = der.children(kdf.value)
    if der.to_oid(kdf_oid) != OID_PBKDF2:
        raise PackageConfigError(f"key derivation {der.to_oid(kdf_oid)} is not PBKDF2")
    kp = der.children(kdf_params.value)
    salt, iterations = der.expect(kp[0], der.OCTET_STRING, "salt"), der.to_int(kp[1], "iterations")
    prf = next((der.to_oid(der.children(t.value)[0]) for t in kp[2:] if t.tag == der.SEQUENCE), OID_HMAC_SHA1)
    cipher_oid, iv = der.children(scheme.value)
    cipher = der.to_oid(cipher_oid)
    key_len = 16 if cipher == OID_SM4_CBC else OID_AES_CBC.get(cipher)
    if key_len is None or prf not in (OID_HMAC_SHA256, OID_HMAC_SHA1):
        raise PackageConfigError(
            f"key file cipher {cipher} / PRF {prf} not supported; use sm4-cbc or aes-cbc with hmacWithSHA256"
        )
    key = _pbkdf2(passphrase, salt, iterations, key_len, prf)
    dec = _pbes2_cipher(cipher, key, der.expect(iv, der.OCTET_STRING, "iv")).decryptor()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(dec.update(der.expect(data, der.OCTET_STRING, "data")) + dec.finalize())
        plain += unpadder.finalize()
        der.decode_one(plain, der.SEQUENCE)
    except (ValueError, der.DerError) as exc:
        raise PackageConfigError("wrong passphrase for the private key (or the key file is corrupt)") from exc
    return plain


@dataclass(frozen=True)
class Certificate:
    """An X.509 certificate's SM2 key, subject and validity window (its own signature is not checked:
    a certificate given as a trust anchor is trusted by local configuration, like a pinned key).

    Parsed by ``cryptography`` (RFC 5280: UTCTime years 50-99 are 19xx, GeneralizedTime after 2049).
    ``cryptography`` cannot load an SM2 key ("curve 1.2.156.10197.1.301 is not supported"), so the
    subject public key is read from the certificate's TBS bytes by this module's SPKI reader.
    """

    public_key: PublicKey
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def from_der(cls, body: bytes) -> Certificate:
        from cryptography import x509

        try:
            cert = x509.load_der_x509_certificate(body)
            window = cert.not_valid_before_utc, cert.not_valid_after_utc
            subject = cert.subject.rfc4514_string()
            tbs = cert.tbs_certificate_bytes
        except (ValueError, TypeError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError (fuzz find)
            raise PackageConfigError(f"not a valid X.509 certificate: {show(str(exc))}") from exc
        return cls(PublicKey.from_spki_der(_spki_of_tbs(tbs)), subject, *window)

    @classmethod
    def from_pem(cls, data: bytes) -> Certificate:
        for label, body in pem_blocks(data):
            if label == "CERTIFICATE":
                return cls.from_der(body)
        raise PackageConfigError("no '-----BEGIN CERTIFICATE-----' block found")


def _spki_of_tbs(tbs: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER inside a TBSCertificate (RFC 5280 4.1: [version], serial, signature
    algorithm, issuer, validity, subject, subjectPublicKeyInfo, ...)."""
    items = der.children(der.decode_one(tbs, der.SEQUENCE))
    if items and items[0].tag == 0xA0:  # explicit version
        items = items[1:]
    if len(items) < 6:
        raise PackageConfigError("certificate has no subject public key")
    return der.encode(items[5].tag, items[5].value)


class Signer(Protocol):
    """Anything that signs an SM2 digest e = SM3(Z_A || M) and knows its public key.

    ``sign_digest`` returns the DER SEQUENCE{r, s} signature (KMS and OpenSSL form); a 64-byte raw
    r||s (gmssl, some SDF devices) is accepted too and converted.
    """

    @property
    def public_key(self) -> PublicKey: ...

    def sign_digest(self, e: bytes) -> bytes: ...


class LocalSigner:
    """Signs in this process with a :class:`PrivateKey` (pure Python; see ``sm2`` on timing)."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key

    def sign_digest(self, e: bytes) -> bytes:
        return sm2.signature_to_der(*sm2.sign_digest(self._key.d, e))


class OpenSSLSigner:
    """Signs with the ``openssl`` command line; the private key stays inside OpenSSL.

    ``passphrase_env`` names an environment variable holding the key's passphrase (passed as
    ``-passin env:NAME`` so it never appears on a command line).
    """

    def __init__(
        self, key_path: str, public_key: PublicKey, passphrase_env: str | None = None, openssl: str = "openssl"
    ) -> None:
        import shutil  # here, not at module level: the verifier never needs it

        self.key_path, self._public_key, self.passphrase_env = key_path, public_key, passphrase_env
        self.openssl = shutil.which(openssl) or openssl

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    def sign_digest(self, e: bytes) -> bytes:
        import subprocess

        # Without -rawin, `pkeyutl -sign` treats its input (stdin here) as the SM2 digest e itself.
        cmd = [self.openssl, "pkeyutl", "-sign", "-inkey", self.key_path]
        if self.passphrase_env:
            cmd += ["-passin", f"env:{self.passphrase_env}"]
        proc = subprocess.run(cmd, input=e, capture_output=True, check=False)
        if proc.returncode:
            raise PackageConfigError(f"openssl signing failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout


def _is_der_signature(sig: bytes) -> bool:
    """Whether ``sig`` is a whole DER SEQUENCE{r, s}, not just a byte string that starts like one."""
    try:
        sm2.signature_from_der(sig)
    except der.DerError:
        return False
    return True


def sign_message(signer: Signer, message: bytes, user_id: bytes) -> bytes:
    """SM2-with-SM3 signature (DER) of ``message`` for ``user_id``, checked before it is returned
    (a faulty KMS, HSM or fault-injected signature is caught here, not by the verifier)."""
    public = signer.public_key
    sig = signer.sign_digest(sm2.message_digest(message, user_id, public.point))
    if len(sig) == 64 and not _is_der_signature(sig):
        sig = sm2.raw_to_der(sig)  # r||s from a device; one in 256 of these starts with the SEQUENCE byte 0x30
    if not public.verify(message, sig, user_id):
        raise PackageConfigError(
            f"the signer returned a signature that does not verify under key "
            f"{public.key_id[:16]}...; is it the right key and does it sign the digest e?"
        )
    return sig


class Decryptor(Protocol):
    """Anything that unwraps an SM2-encrypted (GM/T 0009 DER) data key for one recipient key id."""

    @property
    def key_id(self) -> str: ...

    def decrypt(self, ciphertext: bytes) -> bytes: ...


class LocalDecryptor:
    """Unwraps data keys with a :class:`PrivateKey` held in this process."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    @property
    def key_id(self) -> str:
        return self._key.public_key.key_id

    def decrypt(self, ciphertext: bytes) -> bytes:
        return sm2.decrypt(self._key.d, ciphertext)
