"""SM2 (GB/T 32918) on the recommended 256-bit curve: keys, signatures over a digest, encryption.

Pure-Python integer arithmetic in Jacobian coordinates: fast enough for one manifest signature
(a few milliseconds), checked against the GB/T 32918.5 examples (signature and encryption), ``gmssl``
and OpenSSL. Python integers are not constant-time, so for production signing keys prefer
:class:`OpenSSLSigner` or a KMS / GM/T 0018 module behind the same ``sign_digest`` interface;
verification uses only public data. Decryption multiplies the private key by a point from the
(unsigned) key file, so it is blinded: the scalar gets a random multiple of n added and the point
random projective coordinates, so its timing does not follow the key's bits or a chosen point;
that is a mitigation, not constant time.

What ``gmssl`` 3.2.2 gets wrong is done right here: nonces come from ``secrets``; public keys are
handled as integers (no ``lstrip("04")``); the user ID is a parameter; decryption checks C3; the
ciphertext is C1C3C2 in the GM/T 0009 DER form that OpenSSL reads and writes.
"""

from __future__ import annotations

import hmac
import secrets

from . import der
from .errors import PackageConfigError
from .sm3 import kdf, sm3

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
G = (GX, GY)
DEFAULT_USER_ID = b"1234567812345678"  # GB/T 35276 default; OpenSSL 3 uses an EMPTY ID unless told

Point = tuple[int, int]
_Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is infinity
_INF: _Jacobian = (1, 1, 0)


class SM2Error(PackageConfigError):
    """An SM2 input is invalid (point off the curve, scalar out of range)."""


class DecryptionError(Exception):
    """SM2 decryption failed: wrong key or modified ciphertext (C3 mismatch)."""


def _double(p1: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p1
    if not z1 or not y1:
        return _INF
    zz = z1 * z1 % P
    m = 3 * (x1 - zz) * (x1 + zz) % P  # a = -3
    yy = y1 * y1 % P
    s = 4 * x1 * yy % P
    x3 = (m * m - 2 * s) % P
    return x3, (m * (s - x3) - 8 * yy * yy) % P, 2 * y1 * z1 % P


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if not z1:
        return p2
    if not z2:
        return p1
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    h, r = (u2 - u1) % P, (s2 - s1) % P
    if not h:
        return _double(p1) if not r else _INF
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return x3, (r * (v - x3) - s1 * hhh) % P, h * z1 * z2 % P


def _to_affine(p1: _Jacobian) -> Point | None:
    x, y, z = p1
    if not z:
        return None
    zinv = pow(z, -1, P)
    zinv2 = zinv * zinv % P
    return x * zinv2 % P, y * zinv2 * zinv % P


def _window_table(point: Point) -> list[_Jacobian]:
    table = [_INF, (point[0], point[1], 1)]
    for _ in range(14):
        table.append(_add(table[-1], table[1]))
    return table


def _multi_mul(pairs: list[tuple[int, list[_Jacobian]]], bits: int = 256) -> _Jacobian:
    """sum(k_i * P_i) with 4-bit fixed windows over shared doublings (Straus); every k_i < 2**bits."""
    acc = _INF
    for shift in range(bits - 4, -1, -4):
        for _ in range(4):
            acc = _double(acc)
        for k, table in pairs:
            digit = (k >> shift) & 0xF
            if digit:
                acc = _add(acc, table[digit])
    return acc


_G_TABLE = _window_table(G)


def on_curve(point: Point) -> bool:
    x, y = point
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - A * x - B) % P == 0


def mul(k: int, point: Point) -> Point:
    """k * point in affine coordinates; raises if the result is the point at infinity."""
    table = _G_TABLE if point == G else _window_table(point)
    result = _to_affine(_multi_mul([(k % N, table)]))
    if result is None:
        raise SM2Error("scalar multiple is the point at infinity")
    return result


def mul_secret(k: int, point: Point) -> Point:
    """k * point for a secret k and an untrusted point (decryption): blinded, see the module docstring."""
    check_public(point)
    blinded = k % N + (secrets.randbits(64) | 1) * N  # the same multiple: n * point is infinity (cofactor 1)
    z = secrets.randbelow(P - 1) + 1
    start = (point[0] * z * z % P, point[1] * z * z * z % P, z)
    table = [_INF, start]
    for _ in range(14):
        table.append(_add(table[-1], start))
    result = _to_affine(_multi_mul([(blinded, table)], 324))
    if result is None:
        raise SM2Error("scalar multiple is the point at infinity")
    return result


def check_public(point: Point) -> Point:
    if not on_curve(point):
        raise SM2Error(f"public key ({point[0]:x}, {point[1]:x}) is not on the SM2 curve")
    return point


def check_private(d: int) -> int:
    if not 1 <= d <= N - 2:
        raise SM2Error("SM2 private key must lie in [1, n-2]")
    return d


def generate_private() -> int:
    """A fresh private key from the OS CSPRNG."""
    return secrets.randbelow(N - 2) + 1


def z_a(user_id: bytes, public: Point) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2 5.5)."""
    if len(user_id) >= 8192:
        raise SM2Error(f"SM2 user ID is {len(user_id)} bytes; it must be under 8192")
    ints = (A, B, GX, GY, public[0], public[1])
    return sm3((8 * len(user_id)).to_bytes(2, "big"), user_id, b"".join(i.to_bytes(32, "big") for i in ints))


def message_digest(message: bytes, user_id: bytes, public: Point) -> bytes:
    """e = SM3(Z_A || M): what ``sign_digest`` signs for SM2-with-SM3."""
    return sm3(z_a(user_id, public), message)


def sign_digest(d: int, e: bytes, k: int | None = None) -> tuple[int, int]:
    """Sign the 32-byte digest e with private key d. ``k`` is for test vectors only."""
    check_private(d)
    ei = int.from_bytes(e, "big")
    while True:
        kk = k if k is not None else secrets.randbelow(N - 1) + 1
        x1, _ = mul(kk, G)
        r = (ei + x1) % N
        if r == 0 or r + kk == N:
            if k is not None:
                raise SM2Error("the given k yields r = 0 or r + k = n; pick another")
            continue
        s = pow(1 + d, -1, N) * (kk - r * d) % N
        if s:
            return r, s
        if k is not None:
            raise SM2Error("the given k yields s = 0; pick another")


def verify_digest(public: Point, e: bytes, r: int, s: int) -> bool:
    """True when (r, s) is a valid SM2 signature of digest e under the (curve-checked) public key."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    point = _to_affine(_multi_mul([(s, _G_TABLE), (t, _window_table(public))]))
    return point is not None and (int.from_bytes(e, "big") + point[0]) % N == r


def signature_to_der(r: int, s: int) -> bytes:
    return der.encode_seq(der.encode_int(r), der.encode_int(s))


def signature_from_der(sig: bytes) -> tuple[int, int]:
    items = der.children(der.decode_one(sig, der.SEQUENCE))
    if len(items) != 2:
        raise der.DerError(f"SM2 signature SEQUENCE has {len(items)} elements; expected r and s")
    return der.to_int(items[0], "r"), der.to_int(items[1], "s")


def raw_to_der(sig: bytes) -> bytes:
    """Convert a 64-byte r||s signature (gmssl, some HSMs) to DER SEQUENCE{r, s}."""
    if len(sig) != 64:
        raise SM2Error(f"raw SM2 signature must be 64 bytes r||s, got {len(sig)}")
    return signature_to_der(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def encrypt(public: Point, message: bytes, k: int | None = None) -> bytes:
    """SM2 public-key encryption (GB/T 32918.4), returned as GM/T 0009 DER {x, y, C3, C2}."""
    while True:
        kk = k if k is not None else secrets.randbelow(N - 1) + 1
        c1 = mul(kk, G)
        x2, y2 = mul(kk, public)
        xy = x2.to_bytes(32, "big") + y2.to_bytes(32, "big")
        t = kdf(xy, len(message))
        if any(t) or not message:
            break
        if k is not None:
            raise SM2Error("the given k yields an all-zero KDF output; pick another")
    c2 = bytes(m ^ v for m, v in zip(message, t))
    c3 = sm3(xy[:32], message, xy[32:])
    body = der.encode_int(c1[0]) + der.encode_int(c1[1]) + der.encode(der.OCTET_STRING, c3)
    return der.encode_seq(body + der.encode(der.OCTET_STRING, c2))


def decrypt(d: int, ciphertext: bytes) -> bytes:
    """Inverse of :func:`encrypt`; raises :class:`DecryptionError` on a wrong key or any change."""
    try:
        items = der.children(der.decode_one(ciphertext, der.SEQUENCE))
        if len(items) != 4:
            raise DecryptionError("SM2 ciphertext must hold x, y, C3 and C2")
        c1 = (der.to_int(items[0]), der.to_int(items[1]))
        c3, c2 = der.expect(items[2], der.OCTET_STRING, "C3"), der.expect(items[3], der.OCTET_STRING, "C2")
    except der.DerError as exc:
        raise DecryptionError(f"SM2 ciphertext is not GM/T 0009 DER: {exc}") from exc
    if not on_curve(c1):
        raise DecryptionError("SM2 ciphertext point C1 is not on the curve")
    x2, y2 = mul_secret(d, c1)
    xy = x2.to_bytes(32, "big") + y2.to_bytes(32, "big")
    t = kdf(xy, len(c2))
    if c2 and not any(t):
        raise DecryptionError("SM2 KDF output is all zero")
    message = bytes(c ^ v for c, v in zip(c2, t))
    if not hmac.compare_digest(sm3(xy[:32], message, xy[32:]), c3):
        raise DecryptionError("SM2 C3 check failed: wrong private key or modified ciphertext")
    return message
