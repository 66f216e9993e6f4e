"""SM4-GCM segmented encryption: round trip into memory, several recipients, and its attacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paddle_mm.package import (
    EncryptedPackageError,
    LocalDecryptor,
    PrivateKey,
    SegmentAuthError,
    SegmentOrderError,
    SizeMismatchError,
    TruncatedSegmentError,
    WrongDecryptionKeyError,
    encrypt_package,
    load_verified,
)
from paddle_mm.package.encrypt import HEADER_SIZE, KEYS_NAME, SEGMENT_OVERHEAD, KeysFile, ciphertext_size

from .helpers import CHUNK, NOW

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def recipients() -> tuple[PrivateKey, PrivateKey]:
    return PrivateKey.generate(), PrivateKey.generate()


@pytest.fixture
def enc(pkg: Path, tmp_path: Path, recipients) -> Path:
    out = tmp_path / "enc"
    encrypt_package(pkg, out, [r.public_key for r in recipients])
    return out


def load(root: Path, trust, state, key: PrivateKey | None):
    return load_verified(root, trust, model="tiny-clip", state=state, now=NOW,
                         decryptor=LocalDecryptor(key) if key else None)


def segment_offset(i: int) -> int:
    return HEADER_SIZE + i * (CHUNK + SEGMENT_OVERHEAD)


def test_each_recipient_gets_the_same_tensors(pkg, enc, trust, state, recipients, loader_calls) -> None:
    plain = load(pkg, trust, None, None).state_dict
    for r in recipients:
        loaded = load(enc, trust, state, r)
        np.testing.assert_array_equal(loaded.state_dict["proj.weight"].numpy(), plain["proj.weight"].numpy())
        assert loaded.files["config.json"] == (pkg / "config.json").read_bytes()


def test_ciphertext_layout(pkg, enc) -> None:
    size = (pkg / WEIGHTS).stat().st_size
    assert (enc / WEIGHTS).stat().st_size == ciphertext_size(size, CHUNK) == HEADER_SIZE + size + 4 * SEGMENT_OVERHEAD
    assert (pkg / WEIGHTS).read_bytes()[1000:1100] not in (enc / WEIGHTS).read_bytes()
    keys = KeysFile.decode((enc / KEYS_NAME).read_bytes())
    assert keys.segment_size == CHUNK and len(keys.wrapped) == 2


def test_no_key_given(enc, trust, state, loader_calls) -> None:
    with pytest.raises(EncryptedPackageError):
        load(enc, trust, state, None)
    assert loader_calls == []


def test_wrong_decryption_key(enc, trust, state, loader_calls) -> None:
    with pytest.raises(WrongDecryptionKeyError, match="not a recipient"):
        load(enc, trust, state, PrivateKey.generate())
    assert loader_calls == []


def test_wrapped_key_for_another_key(enc, trust, state, recipients, loader_calls) -> None:
    keys = KeysFile.decode((enc / KEYS_NAME).read_bytes())
    first, second = (r.public_key.key_id for r in recipients)
    swapped = KeysFile(keys.segment_size, {first: keys.wrapped[second], second: keys.wrapped[first]})
    (enc / KEYS_NAME).write_bytes(swapped.encode())
    with pytest.raises(WrongDecryptionKeyError, match="does not unwrap"):
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_truncated_segments(enc, trust, state, recipients, loader_calls) -> None:
    path = enc / WEIGHTS
    path.write_bytes(path.read_bytes()[: segment_offset(3)])  # drop the last segment
    with pytest.raises(TruncatedSegmentError):
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_truncated_with_header_rewritten(enc, trust, state, recipients, loader_calls) -> None:
    path = enc / WEIGHTS
    data = path.read_bytes()[: segment_offset(3)]
    path.write_bytes(data[: HEADER_SIZE - 8] + (3 * CHUNK).to_bytes(8, "big") + data[HEADER_SIZE:])
    with pytest.raises(TruncatedSegmentError):  # still shorter than the signed size implies
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_reordered_segments(enc, trust, state, recipients, loader_calls) -> None:
    path = enc / WEIGHTS
    data = bytearray(path.read_bytes())
    a, b, n = segment_offset(0), segment_offset(1), CHUNK + SEGMENT_OVERHEAD
    data[a : a + n], data[b : b + n] = data[b : b + n], data[a : a + n]
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentOrderError, match="segment 1 found at position 0"):
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_reordered_segments_with_index_fixed(enc, trust, state, recipients, loader_calls) -> None:
    path = enc / WEIGHTS
    data = bytearray(path.read_bytes())
    a, b, n = segment_offset(0), segment_offset(1), CHUNK + SEGMENT_OVERHEAD
    data[a : a + n], data[b : b + n] = data[b : b + n], data[a : a + n]
    data[a : a + 4], data[b : b + 4] = (0).to_bytes(4, "big"), (1).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentAuthError, match="segment 0"):  # the nonce binds the position anyway
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_modified_ciphertext(enc, trust, state, recipients, loader_calls) -> None:
    path = enc / WEIGHTS
    data = bytearray(path.read_bytes())
    data[segment_offset(2) + 100] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentAuthError, match="segment 2"):
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_file_swapped_between_names(enc, trust, state, recipients, loader_calls, tmp_path) -> None:
    other = tmp_path / "enc2"
    encrypt_package(enc.parent / "pkg", other, [recipients[0].public_key])
    (enc / "config.json").write_bytes((other / "config.json").read_bytes())  # other data key
    with pytest.raises(SegmentAuthError):
        load(enc, trust, state, recipients[0])
    assert loader_calls == []


def test_keys_file_stripped(enc, trust, state, recipients, loader_calls) -> None:
    (enc / KEYS_NAME).unlink()
    with pytest.raises(SizeMismatchError):  # ciphertext is not the signed plaintext
        load(enc, trust, state, recipients[0])
    assert loader_calls == []
