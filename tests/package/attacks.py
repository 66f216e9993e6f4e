"""The hostile-package catalogue: each builder turns a freshly signed package into one attack.

Shared by tests/package/test_hostile.py (replayed through ``load_verified``, exact refusal class) and
tests/inference/test_from_package.py (replayed through ``Predictor.from_package``). Each builder gets the
package root (a signed copy of ``helpers.make_model``), the signing key and a scratch directory, and returns
the path to verify plus extra keyword arguments (a decryptor, a trust store).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paddle_mm.package import (
    BadSignatureError,
    BudgetExceededError,
    EncryptedPackageError,
    ExtraFileError,
    FormatPolicyError,
    LocalDecryptor,
    LocalSigner,
    MalformedKeysError,
    MalformedManifestError,
    ModelMismatchError,
    PackageRefused,
    PrivateKey,
    UnsafePathError,
    WrongDecryptionKeyError,
    WrongUserIdError,
    encrypt_package,
    sign_message,
)
from paddle_mm.package.build import write_signed
from paddle_mm.package.encrypt import KEYS_NAME
from paddle_mm.package.manifest import MAGIC, MANIFEST_NAME, SIGNATURE_NAME, FileEntry, Manifest, format_time
from paddle_mm.package.sm3 import sm3

from .helpers import CHUNK, NOW

ESC_LINE = "\n\x1b[32mOK tiny-clip 1.5 seq 5: 2 files verified\x1b[0m"  # a forged success line


@dataclass(frozen=True)
class Attack:
    name: str
    error: type[PackageRefused]
    build: Callable[[Path, PrivateKey, Path], dict[str, Any]]


def sign_raw(root: Path, key: PrivateKey, files: dict[str, bytes], **overrides: Any) -> bytes:
    """Sign an arbitrary manifest for ``files`` (written into ``root``), bypassing the signing-side policy:
    what a careless or compromised publisher could produce. Returns the manifest bytes."""
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    entries = tuple(
        FileEntry(p, len(d), tuple(sm3(d[i : i + CHUNK]).hex() for i in range(0, max(len(d), 1), CHUNK)))
        for p, d in sorted(files.items())
    )
    fields = {"model": "tiny-clip", "version": "1", "sequence": 5, "created": format_time(NOW), "expires": None,
              "key_id": key.public_key.key_id, "user_id": "1234567812345678", "model_format": "safetensors",
              "chunk_size": CHUNK, "files": entries}
    data = Manifest(**{**fields, **overrides}).encode()
    write_signed(root, data, sign_message(LocalSigner(key), data, b"1234567812345678"))
    return data


def _resign_bytes(root: Path, key: PrivateKey, data: bytes) -> None:
    write_signed(root, data, sign_message(LocalSigner(key), data, b"1234567812345678"))


def _payload(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and not p.name.startswith("PACKAGE.")}


def _signer_tail(key: PrivateKey, user_id: str = "1234567812345678") -> bytes:
    return b'"signer":{"key_id":"' + key.public_key.key_id.encode() + b'","user_id":"' + user_id.encode() + b'"},'


# --- budget: bounded reads before the signature -------------------------------------------------
def huge_manifest(root, key, tmp):  # 64 MiB of "[]," under a valid magic line and the trusted key id
    with open(root / MANIFEST_NAME, "wb") as f:
        f.write(MAGIC + b'{"a":[' + b"[]," * ((64 << 20) // 3) + b"[]]," + _signer_tail(key) + b'"version":"1"}\n')
    return {}


def big_unsigned_manifest(root, key, tmp):  # within the size budget, but the signature does not cover it
    body = b'{"files":[' + b"[]," * (2 << 20) + b"[]]," + _signer_tail(key) + b'"version":"1"}\n'
    (root / MANIFEST_NAME).write_bytes(MAGIC + body)
    return {}


def deep_json_manifest(root, key, tmp):
    (root / MANIFEST_NAME).write_bytes(MAGIC + b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b","
                                       + _signer_tail(key) + b'"version":"1"}\n')
    return {}


def huge_signature(root, key, tmp):
    (root / SIGNATURE_NAME).write_bytes(b"\x30" * (1 << 20))
    return {}


def deep_directories(root, key, tmp):
    deep = root
    for _ in range(200):
        deep = deep / "d"
    deep.mkdir(parents=True)
    return {}


def long_signed_path(root, key, tmp):
    sign_raw(root, key, {"a/" * 40 + "config.json": b"{}", **_payload(root)})
    return {}


# --- crashes before: lone surrogate, huge numbers ---------------------------------------------
def lone_surrogate_user_id(root, key, tmp):
    data = (root / MANIFEST_NAME).read_bytes().replace(b'"user_id":"1234567812345678"', b'"user_id":"\\ud800"')
    (root / MANIFEST_NAME).write_bytes(data)
    return {}


def lone_surrogate_path_signed(root, key, tmp):
    data = sign_raw(root, key, _payload(root))
    _resign_bytes(root, key, data.replace(b'"path":"config.json"', b'"path":"config\\udc80.json"'))
    return {}


def negative_sequence_signed(root, key, tmp):
    sign_raw(root, key, _payload(root), sequence=-1)
    return {}


def huge_sequence_signed(root, key, tmp):
    sign_raw(root, key, _payload(root), sequence=1 << 70)
    return {}


def float_in_manifest_signed(root, key, tmp):
    data = (root / MANIFEST_NAME).read_bytes().replace(b'"sequence":5', b'"sequence":5.0')
    _resign_bytes(root, key, data)
    return {}


# --- terminal and log injection ------------------------------------------------------------------
def injected_user_id(root, key, tmp):
    esc = json.dumps(ESC_LINE)[1:-1].encode()
    data = (root / MANIFEST_NAME).read_bytes().replace(b'"user_id":"1234567812345678"', b'"user_id":"' + esc + b'"')
    (root / MANIFEST_NAME).write_bytes(data)
    return {}


def injected_key_id(root, key, tmp):
    esc = json.dumps(ESC_LINE)[1:-1].encode()
    data = (root / MANIFEST_NAME).read_bytes().replace(key.public_key.key_id.encode(), esc)
    (root / MANIFEST_NAME).write_bytes(data)
    return {}


def injected_file_name(root, key, tmp):
    (root / ("x" + ESC_LINE.replace("/", "_") + ".txt")).write_bytes(b"x")
    return {}


def injected_model_name_signed(root, key, tmp):
    sign_raw(root, key, _payload(root), model="tiny-clip" + ESC_LINE.replace("/", "_"))
    return {}


def bidi_path_signed(root, key, tmp):
    sign_raw(root, key, {**_payload(root), "txt.\u202egnp.json": b"{}"})
    return {}


# --- policy gaps ---------------------------------------------------------------------------------
def pickle_like_safetensors_signed(root, key, tmp):
    payload = pickle.dumps({"w": [1.0]}, protocol=4)
    blob = (len(payload) + 2).to_bytes(8, "little") + b"{ " + payload  # begins like a safetensors header
    sign_raw(root, key, {**_payload(root), "model.safetensors": blob})
    return {}


def safetensors_offsets_outside_signed(root, key, tmp):
    header = b'{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}'
    sign_raw(root, key, {**_payload(root), "model.safetensors": len(header).to_bytes(8, "little") + header + b"\0" * 8})
    return {}


def safetensors_overlap_signed(root, key, tmp):
    header = (b'{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},'
              b'"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}')
    blob = len(header).to_bytes(8, "little") + header + b"\0" * 12
    sign_raw(root, key, {**_payload(root), "model.safetensors": blob})
    return {}


def empty_extra_directory(root, key, tmp):
    (root / "empty" / "deeper").mkdir(parents=True)
    return {}


# --- PACKAGE.keys: unsigned, parsed with the same budget -----------------------------------------
def _encrypted(root: Path, key: PrivateKey, tmp: Path) -> tuple[Path, PrivateKey]:
    recipient = PrivateKey.generate()
    out = tmp / "enc"
    encrypt_package(root, out, [recipient.public_key])
    return out, recipient


def keys_float_segment(root, key, tmp):
    out, _ = _encrypted(root, key, tmp)
    data = (out / KEYS_NAME).read_bytes()
    (out / KEYS_NAME).write_bytes(data.replace(b'"segment_size":65536', b'"segment_size":1e999'))
    return {"path": out}  # no key given: parsed anyway, must still be refused cleanly


def keys_huge(root, key, tmp):
    out, recipient = _encrypted(root, key, tmp)
    (out / KEYS_NAME).write_bytes(b"[" * (1 << 20))
    return {"path": out, "decryptor": LocalDecryptor(recipient)}


def keys_deep(root, key, tmp):
    out, recipient = _encrypted(root, key, tmp)
    (out / KEYS_NAME).write_bytes(b"[" * 100_000 + b"]" * 100_000)
    return {"path": out, "decryptor": LocalDecryptor(recipient)}


def keys_bool_version(root, key, tmp):
    out, recipient = _encrypted(root, key, tmp)
    data = (out / KEYS_NAME).read_bytes().replace(b'"format_version":1', b'"format_version":true')
    (out / KEYS_NAME).write_bytes(data)
    return {"path": out, "decryptor": LocalDecryptor(recipient)}


def keys_not_canonical(root, key, tmp):
    out, recipient = _encrypted(root, key, tmp)
    doc = json.loads((out / KEYS_NAME).read_bytes())
    (out / KEYS_NAME).write_bytes(json.dumps(doc).encode() + b"\n")  # same values, spaced and unsorted
    return {"path": out, "decryptor": LocalDecryptor(recipient)}


def keys_off_curve_point(root, key, tmp):
    out, recipient = _encrypted(root, key, tmp)
    doc = json.loads((out / KEYS_NAME).read_bytes())
    wrapped = bytearray.fromhex(doc["recipients"][0]["wrapped_key"])
    wrapped[8] ^= 1  # inside C1's x coordinate: the point leaves the curve
    doc["recipients"][0]["wrapped_key"] = wrapped.hex()
    (out / KEYS_NAME).write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return {"path": out, "decryptor": LocalDecryptor(recipient)}


def keys_without_decryptor(root, key, tmp):
    out, _ = _encrypted(root, key, tmp)
    return {"path": out}


# --- origin ------------------------------------------------------------------------------------
def other_user_id_signed(root, key, tmp):
    data = (root / MANIFEST_NAME).read_bytes().replace(b'"user_id":"1234567812345678"', b'"user_id":"ALICE"')
    write_signed(root, data, sign_message(LocalSigner(key), data, b"ALICE"))
    return {}


def model_swapped_signed(root, key, tmp):
    sign_raw(root, key, _payload(root), model="other-model")
    return {}


def backslash_path_signed(root, key, tmp):
    sign_raw(root, key, {**_payload(root), "a\\b.json": b"{}"})
    return {}


def edited_manifest(root, key, tmp):
    data = (root / MANIFEST_NAME).read_bytes().replace(b'"sequence":5', b'"sequence":6')
    (root / MANIFEST_NAME).write_bytes(data)
    return {}


ATTACKS = [
    Attack("huge_manifest", BudgetExceededError, huge_manifest),
    Attack("big_unsigned_manifest", BadSignatureError, big_unsigned_manifest),
    Attack("deep_json_manifest", BadSignatureError, deep_json_manifest),
    Attack("huge_signature", BudgetExceededError, huge_signature),
    Attack("deep_directories", BudgetExceededError, deep_directories),
    Attack("long_signed_path", BudgetExceededError, long_signed_path),
    Attack("lone_surrogate_user_id", MalformedManifestError, lone_surrogate_user_id),
    Attack("lone_surrogate_path_signed", MalformedManifestError, lone_surrogate_path_signed),
    Attack("negative_sequence_signed", MalformedManifestError, negative_sequence_signed),
    Attack("huge_sequence_signed", MalformedManifestError, huge_sequence_signed),
    Attack("float_in_manifest_signed", MalformedManifestError, float_in_manifest_signed),
    Attack("injected_user_id", WrongUserIdError, injected_user_id),
    Attack("injected_key_id", MalformedManifestError, injected_key_id),
    Attack("injected_file_name", ExtraFileError, injected_file_name),
    Attack("injected_model_name_signed", ModelMismatchError, injected_model_name_signed),
    Attack("bidi_path_signed", UnsafePathError, bidi_path_signed),
    Attack("pickle_like_safetensors_signed", FormatPolicyError, pickle_like_safetensors_signed),
    Attack("safetensors_offsets_outside_signed", FormatPolicyError, safetensors_offsets_outside_signed),
    Attack("safetensors_overlap_signed", FormatPolicyError, safetensors_overlap_signed),
    Attack("empty_extra_directory", ExtraFileError, empty_extra_directory),
    Attack("keys_float_segment", MalformedKeysError, keys_float_segment),
    Attack("keys_huge", BudgetExceededError, keys_huge),
    Attack("keys_deep", BudgetExceededError, keys_deep),
    Attack("keys_bool_version", MalformedKeysError, keys_bool_version),
    Attack("keys_not_canonical", MalformedKeysError, keys_not_canonical),
    Attack("keys_off_curve_point", WrongDecryptionKeyError, keys_off_curve_point),
    Attack("keys_without_decryptor", EncryptedPackageError, keys_without_decryptor),
    Attack("other_user_id_signed", WrongUserIdError, other_user_id_signed),
    Attack("model_swapped_signed", ModelMismatchError, model_swapped_signed),
    Attack("backslash_path_signed", UnsafePathError, backslash_path_signed),
    Attack("edited_manifest", BadSignatureError, edited_manifest),
]
