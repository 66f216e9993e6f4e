"""Just enough DER (X.690) to read and write SM2 keys, signatures, certificates and ciphertexts.

Only definite lengths and single-byte tags are accepted: that covers every structure used here and
rejects BER tricks (indefinite lengths, non-minimal lengths) instead of guessing.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import PackageConfigError

SEQUENCE, INTEGER, BIT_STRING, OCTET_STRING, NULL, OID = 0x30, 0x02, 0x03, 0x04, 0x05, 0x06
UTC_TIME, GENERALIZED_TIME = 0x17, 0x18


class DerError(PackageConfigError):
    """The bytes are not the DER structure expected."""


class Tlv(NamedTuple):
    tag: int
    value: bytes


def _encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _encode_length(len(value)) + value


def encode_int(n: int) -> bytes:
    if n < 0:
        raise DerError(f"negative INTEGER {n} is not used in these structures")
    return encode(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def encode_seq(*items: bytes) -> bytes:
    return encode(SEQUENCE, b"".join(items))


def encode_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode(OID, bytes(body))


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """Decode one TLV at ``pos``; returns it and the position after it."""
    if pos + 2 > len(data):
        raise DerError("DER truncated: no room for a tag and a length")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nbytes = first & 0x7F
        if nbytes == 0 or nbytes > 4 or pos + nbytes > len(data):
            raise DerError(f"DER length form 0x{first:02x} is not accepted (indefinite or too long)")
        length = int.from_bytes(data[pos : pos + nbytes], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("DER length is not minimally encoded")
        pos += nbytes
    if pos + length > len(data):
        raise DerError(f"DER value of {length} bytes runs past the end of the data")
    return Tlv(tag, bytes(data[pos : pos + length])), pos + length


def decode_one(data: bytes, tag: int) -> bytes:
    """Decode exactly one TLV with ``tag`` covering all of ``data``; return its value."""
    tlv, end = read_tlv(data)
    if tlv.tag != tag or end != len(data):
        raise DerError(f"expected one DER element with tag 0x{tag:02x}, got tag 0x{tlv.tag:02x}")
    return tlv.value


def children(value: bytes) -> list[Tlv]:
    """Split a constructed value (e.g. a SEQUENCE body) into its elements."""
    out, pos = [], 0
    while pos < len(value):
        tlv, pos = read_tlv(value, pos)
        out.append(tlv)
    return out


def expect(tlv: Tlv, tag: int, what: str) -> bytes:
    if tlv.tag != tag:
        raise DerError(f"{what}: expected DER tag 0x{tag:02x}, got 0x{tlv.tag:02x}")
    return tlv.value


def to_int(tlv: Tlv, what: str = "INTEGER") -> int:
    value = expect(tlv, INTEGER, what)
    if not value or (value[0] & 0x80):
        raise DerError(f"{what}: empty or negative INTEGER")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise DerError(f"{what}: INTEGER is not minimally encoded")
    return int.from_bytes(value, "big")


def to_oid(tlv: Tlv) -> str:
    value = expect(tlv, OID, "OBJECT IDENTIFIER")
    if not value:
        raise DerError("empty OBJECT IDENTIFIER")
    arcs, n = [], 0
    for byte in value[1:]:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(n)
            n = 0
    first = value[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs)


def bit_string_bytes(tlv: Tlv, what: str) -> bytes:
    value = expect(tlv, BIT_STRING, what)
    if not value or value[0] != 0:
        raise DerError(f"{what}: BIT STRING with unused bits is not a key or signature")
    return value[1:]
