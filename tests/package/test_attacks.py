"""The attack suite: each tampering is refused with its own exception, and nothing is parsed or loaded."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import shutil
from pathlib import Path

import pytest

from paddle_mm.package import (
    AbsolutePathError,
    AlgorithmError,
    BadSignatureError,
    DigestMismatchError,
    DuplicatePathError,
    ExpiredError,
    ExtraFileError,
    FileEntry,
    LocalSigner,
    MalformedManifestError,
    Manifest,
    MissingFileError,
    ModelMismatchError,
    NotARegularFileError,
    PathTraversalError,
    PickleRefusedError,
    PrivateKey,
    RenamedFileError,
    RollbackError,
    RollbackStore,
    SizeMismatchError,
    SymlinkError,
    TrustAnchor,
    TrustStore,
    UnsignedPackageError,
    UntrustedKeyError,
    WrongUserIdError,
    load_verified,
    sign_message,
)
from paddle_mm.package.build import write_signed
from paddle_mm.package.manifest import MANIFEST_NAME, SIGNATURE_NAME, format_time
from paddle_mm.package.sm3 import sm3

from .helpers import CHUNK, NOW, make_model, sign


def refused(exc: type[Exception], pkg: Path, trust: TrustStore, state: RollbackStore | None, calls: list[str],
            model: str = "tiny-clip", now: dt.datetime = NOW) -> Exception:
    with pytest.raises(exc) as info:
        load_verified(pkg, trust, model=model, state=state, now=now)
    assert type(info.value) is exc, f"expected exactly {exc.__name__}, got {type(info.value).__name__}"
    assert calls == [], "a loader was reached for a refused package"
    return info.value


def signed_manifest(root: Path, key: PrivateKey, files: dict[str, bytes], **overrides) -> Manifest:
    """Sign an arbitrary manifest for ``files`` (path -> content), bypassing the signing-side policy:
    what a careless or compromised publisher could produce."""
    entries = tuple(FileEntry(p, len(data), tuple(sm3(data[i:i + CHUNK]).hex()
                                                  for i in range(0, max(len(data), 1), CHUNK)))
                    for p, data in sorted(files.items()))
    fields = {"model": "tiny-clip", "version": "1", "sequence": 5, "created": format_time(NOW), "expires": None,
              "key_id": key.public_key.key_id, "user_id": "1234567812345678", "model_format": "safetensors",
              "chunk_size": CHUNK, "files": entries}
    manifest = Manifest(**{**fields, **overrides})
    data = manifest.encode()
    write_signed(root, data, sign_message(LocalSigner(key), data, manifest.user_id.encode()))
    return manifest


def test_untampered_package_loads(pkg, trust, state, loader_calls) -> None:
    loaded = load_verified(pkg, trust, model="tiny-clip", state=state, now=NOW)
    assert loader_calls == ["safetensors"]
    assert list(loaded.state_dict["proj.weight"].shape) == [200, 256]
    assert loaded.files == {"config.json": b'{"embed_dim": 256, "context_length": 52}'}


def test_flipped_byte(pkg, trust, state, loader_calls) -> None:
    path = pkg / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[150_000] ^= 0x01
    path.write_bytes(bytes(data))
    err = refused(DigestMismatchError, pkg, trust, state, loader_calls)
    assert "chunk 2" in str(err)  # byte 150000 lies in the third 64 KiB chunk


def test_truncated_file(pkg, trust, state, loader_calls) -> None:
    path = pkg / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1])
    refused(SizeMismatchError, pkg, trust, state, loader_calls)


def test_extra_file(pkg, trust, state, loader_calls) -> None:
    (pkg / "notes.txt").write_text("unsigned")
    refused(ExtraFileError, pkg, trust, state, loader_calls)


def test_extra_file_in_hidden_directory(pkg, trust, state, loader_calls) -> None:
    (pkg / ".git").mkdir()
    (pkg / ".git" / "config").write_text("[core]")
    assert ".git/config" in str(refused(ExtraFileError, pkg, trust, state, loader_calls))


def test_missing_file(pkg, trust, state, loader_calls) -> None:
    (pkg / "config.json").unlink()
    refused(MissingFileError, pkg, trust, state, loader_calls)


def test_renamed_file(pkg, trust, state, loader_calls) -> None:
    (pkg / "config.json").rename(pkg / "config2.json")
    refused(RenamedFileError, pkg, trust, state, loader_calls)


def test_symlink_to_identical_content(pkg, trust, state, loader_calls, tmp_path) -> None:
    outside = tmp_path / "outside.json"
    shutil.copyfile(pkg / "config.json", outside)
    (pkg / "config.json").unlink()
    (pkg / "config.json").symlink_to(outside)
    refused(SymlinkError, pkg, trust, state, loader_calls)


def test_symlinked_directory(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root / "sub")
    sign(root, key)
    real = tmp_path / "real_sub"
    (root / "sub").rename(real)
    (root / "sub").symlink_to(real)
    refused(SymlinkError, root, trust, state, loader_calls)


def test_fifo(pkg, trust, state, loader_calls) -> None:
    os.mkfifo(pkg / "pipe.json")
    refused(NotARegularFileError, pkg, trust, state, loader_calls)


def test_dotdot_path_in_signed_manifest(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    weights = make_model(tmp_path / "src") and (tmp_path / "src" / "model.safetensors").read_bytes()
    (tmp_path / "outside.safetensors").write_bytes(weights)
    signed_manifest(root, key, {"../outside.safetensors": weights})
    refused(PathTraversalError, root, trust, state, loader_calls)


def test_absolute_path_in_signed_manifest(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    make_model(tmp_path / "src")
    target = tmp_path / "src" / "model.safetensors"
    signed_manifest(root, key, {str(target): target.read_bytes()})
    refused(AbsolutePathError, root, trust, state, loader_calls)


def test_case_fold_duplicates(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    (root / "CONFIG.json").write_text("{}")
    signed_manifest(root, key, {p.name: p.read_bytes() for p in root.iterdir()})
    refused(DuplicatePathError, root, trust, state, loader_calls)


def test_swapped_manifest(tmp_path, key, trust, state, loader_calls) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_model(a, seed=1)
    make_model(b, seed=2)
    sign(a, key)
    sign(b, key)
    shutil.copyfile(b / MANIFEST_NAME, a / MANIFEST_NAME)  # signature of a kept
    refused(BadSignatureError, a, trust, state, loader_calls)


def test_manifest_and_signature_from_other_release(tmp_path, key, trust, state, loader_calls) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_model(a, seed=1)
    make_model(b, seed=2)
    sign(a, key)
    sign(b, key, sequence=6)
    for name in (MANIFEST_NAME, SIGNATURE_NAME):  # mix and match: b's signed manifest over a's files
        shutil.copyfile(b / name, a / name)
    refused(DigestMismatchError, a, trust, state, loader_calls)


def test_edited_manifest_keeps_old_signature(pkg, trust, state, loader_calls) -> None:
    path = pkg / MANIFEST_NAME
    path.write_bytes(path.read_bytes().replace(b'"sequence":5', b'"sequence":9'))
    refused(BadSignatureError, pkg, trust, state, loader_calls)


def test_stripped_signature(pkg, trust, state, loader_calls) -> None:
    (pkg / SIGNATURE_NAME).unlink()
    refused(UnsignedPackageError, pkg, trust, state, loader_calls)


def test_unsigned_directory(tmp_path, trust, state, loader_calls) -> None:
    make_model(tmp_path / "plain")
    refused(UnsignedPackageError, tmp_path / "plain", trust, state, loader_calls)


def test_untrusted_key(tmp_path, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, PrivateKey.generate())
    refused(UntrustedKeyError, root, trust, state, loader_calls)


def test_wrong_user_id(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, key, user_id=b"ALICE123@example")
    refused(WrongUserIdError, root, trust, state, loader_calls)
    other_id = TrustStore([TrustAnchor(key.public_key, b"ALICE123@example")])
    assert load_verified(root, other_id, model="tiny-clip", state=state, now=NOW).manifest.user_id == "ALICE123@example"


def test_signature_made_with_other_user_id_than_claimed(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, key)
    data = (root / MANIFEST_NAME).read_bytes()
    (root / SIGNATURE_NAME).write_bytes(sign_message(LocalSigner(key), data, b""))  # OpenSSL's default empty ID
    refused(BadSignatureError, root, trust, state, loader_calls)


def test_rollback_to_older_sequence(tmp_path, key, trust, state, loader_calls) -> None:
    new, old = tmp_path / "new", tmp_path / "old"
    make_model(new, seed=1)
    make_model(old, seed=2)
    sign(new, key, sequence=7)
    sign(old, key, sequence=6)
    load_verified(new, trust, model="tiny-clip", state=state, now=NOW)
    loader_calls.clear()
    err = refused(RollbackError, old, trust, state, loader_calls)
    assert "sequence 6" in str(err) and "sequence 7" in str(err)


def test_expired_package(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, key, expires=NOW + dt.timedelta(days=30))
    assert load_verified(root, trust, model="tiny-clip", state=None, now=NOW + dt.timedelta(days=29))
    loader_calls.clear()
    refused(ExpiredError, root, trust, state, loader_calls, now=NOW + dt.timedelta(days=31))


def test_replay_of_another_models_package(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    sign(root, key, model="other-model")
    refused(ModelMismatchError, root, trust, state, loader_calls)


def test_pickle_format_in_signed_package(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    payload = pickle.dumps({"w": [1.0, 2.0]})
    (root / "model.pdparams").write_bytes(payload)
    signed_manifest(root, key, {"model.pdparams": payload})
    assert ".pdparams" in str(refused(PickleRefusedError, root, trust, state, loader_calls))


def test_pickle_disguised_as_safetensors(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    payload = pickle.dumps({"w": [1.0, 2.0]}, protocol=4)
    (root / "model.safetensors").write_bytes(payload)
    signed_manifest(root, key, {"model.safetensors": payload})
    assert "pickle header" in str(refused(PickleRefusedError, root, trust, state, loader_calls))


def test_signing_refuses_pickle_up_front(tmp_path, key) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    (root / "optimizer.pdopt").write_bytes(pickle.dumps({}))
    with pytest.raises(PickleRefusedError):
        sign(root, key)
    assert not (root / MANIFEST_NAME).exists()


def test_disallowed_algorithm(tmp_path, key, trust, state, loader_calls) -> None:
    root = tmp_path / "pkg"
    make_model(root)
    signed_manifest(root, key, {p.name: p.read_bytes() for p in root.iterdir()}, hash_algorithm="sha256")
    refused(AlgorithmError, root, trust, state, loader_calls)


def test_non_canonical_manifest(pkg, trust, state, loader_calls, key) -> None:
    original = (pkg / MANIFEST_NAME).read_bytes()
    data = original.replace(b'"chunk_size":', b'"chunk_size": ')  # same JSON value, not canonical bytes
    assert data != original
    write_signed(pkg, data, sign_message(LocalSigner(key), data, b"1234567812345678"))
    refused(MalformedManifestError, pkg, trust, state, loader_calls)


def test_refusal_records_no_sequence(pkg, trust, state, loader_calls) -> None:
    (pkg / "notes.txt").write_text("x")
    refused(ExtraFileError, pkg, trust, state, loader_calls)
    assert not state.path.exists()
