"""Predictor.from_package: verified first, runtimes fed from the verified bytes, refusals reach no runtime."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from paddle_mm.inference import ExportDirError, Predictor
from paddle_mm.inference.verified import NotAnExportError
from paddle_mm.package import (
    DigestMismatchError,
    EncryptedPackageError,
    ExpiredError,
    LocalDecryptor,
    LocalSigner,
    ModelMismatchError,
    PackageRefused,
    PrivateKey,
    RollbackStore,
    TrustAnchor,
    TrustStore,
    UnsignedPackageError,
    UntrustedKeyError,
    encrypt_package,
    sign_package,
)
from paddle_mm.package.manifest import UTC
from tests.package.attacks import ATTACKS
from tests.package.helpers import NOW as TINY_NOW
from tests.package.helpers import make_model
from tests.package.helpers import sign as sign_tiny

MODEL = "cn-clip-tiny"
NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)
TEXTS = ["左上角有一个红色的圆形", "图中有两个蓝色的三角形", "一只猫"]
BACKENDS = ["paddle_inference", "onnxruntime"]


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def trust(key) -> TrustStore:
    return TrustStore([TrustAnchor(key.public_key)])


@pytest.fixture(scope="module")
def signed(tower_export, key, tmp_path_factory) -> Path:
    """A signed copy of the tiny export (64 KiB chunks, so each weight file spans many chunks)."""
    root = tmp_path_factory.mktemp("signed") / "pkg"
    shutil.copytree(tower_export, root)
    sign_package(
        root,
        LocalSigner(key),
        model=MODEL,
        version="1.0",
        sequence=3,
        chunk_size=64 << 10,
        now=NOW,
        expires=NOW + dt.timedelta(days=30),
    )
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    rng = np.random.default_rng(1)
    out = tmp_path_factory.mktemp("images")
    paths = []
    for i, (h, w) in enumerate([(40, 56), (32, 32), (97, 61)]):
        paths.append(str(out / f"{i}.png"))
        cv2.imwrite(paths[-1], rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return paths


@pytest.fixture
def runtime_calls(monkeypatch) -> list[tuple[str, object]]:
    """Records what each runtime is asked to load: ('ort', model path or bytes) / ('paddle', program path)."""
    import onnxruntime
    import paddle.inference

    calls: list[tuple[str, object]] = []
    real_session, real_create = onnxruntime.InferenceSession, paddle.inference.create_predictor

    def session(model, *args, **kwargs):
        calls.append(("ort", model))
        return real_session(model, *args, **kwargs)

    def create(config):
        calls.append(("paddle", config.prog_file()))
        return real_create(config)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    monkeypatch.setattr(paddle.inference, "create_predictor", create)
    return calls


def features(predictor: Predictor, images: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return predictor.encode_images(images), predictor.encode_texts(TEXTS)


def from_package(path, trust, tmp_path, backend, **kw) -> Predictor:
    state = RollbackStore(tmp_path / "state.json")
    return Predictor.from_package(
        path, trust, model=MODEL, state=state, now=NOW, backend=backend, threads=1, cache_dir=tmp_path, **kw
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_package_gives_the_features_of_the_plain_export(
    tower_export, signed, trust, images, tmp_path, backend, runtime_calls
):
    plain = features(Predictor(tower_export, backend=backend, threads=1, cache_dir=tmp_path), images)
    runtime_calls.clear()
    predictor = from_package(signed, trust, tmp_path, backend)
    assert predictor.manifest.model == MODEL and predictor.manifest.sequence == 3
    packaged = features(predictor, images)
    np.testing.assert_array_equal(packaged[0], plain[0])
    np.testing.assert_array_equal(packaged[1], plain[1])
    assert abs(float(packaged[0][0] @ packaged[1][0])) < 1.0  # real features, not zeros
    # the runtimes read verified bytes, never the package directory
    assert [kind for kind, _ in runtime_calls] == [("ort" if backend == "onnxruntime" else "paddle")] * 2
    for _, model in runtime_calls:
        assert isinstance(model, bytes) if backend == "onnxruntime" else "paddle_mm_verified_" in model
    assert predictor._memory == {}  # verified bytes are released once both towers are built


def test_a_file_swapped_after_verification_is_never_loaded(signed, tower_export, trust, images, tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(signed, pkg)
    expected = features(Predictor(tower_export, backend="onnxruntime", threads=1, cache_dir=tmp_path), images)
    predictor = from_package(pkg, trust, tmp_path, "onnxruntime")  # verified now; runtimes built on first use
    (pkg / "image.onnx").write_bytes(b"not a model")
    (pkg / "text.onnx").unlink()
    np.testing.assert_array_equal(features(predictor, images)[0], expected[0])
    np.testing.assert_array_equal(features(predictor, images)[1], expected[1])


def flip_byte(root: Path) -> None:
    weights = root / "image.pdiparams"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))


def unsign(root: Path) -> None:
    (root / "PACKAGE.manifest").unlink()
    (root / "PACKAGE.sig").unlink()


@pytest.mark.parametrize(
    "attack, error",
    [
        (flip_byte, DigestMismatchError),
        (unsign, UnsignedPackageError),
        ("other_key", UntrustedKeyError),
        ("expired", ExpiredError),
        ("other_model", ModelMismatchError),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "paddle_inference"])
def test_a_refused_package_reaches_no_runtime(signed, trust, tmp_path, runtime_calls, attack, error, backend):
    pkg = tmp_path / "pkg"
    shutil.copytree(signed, pkg)
    state = RollbackStore(tmp_path / "state.json")
    kw = {"model": MODEL, "state": state, "now": NOW, "backend": backend, "cache_dir": tmp_path}
    if attack == "other_key":
        trust = TrustStore([TrustAnchor(PrivateKey.generate().public_key)])
    elif attack == "expired":
        kw["now"] = NOW + dt.timedelta(days=31)
    elif attack == "other_model":
        kw["model"] = "cn-clip-vit-b-16"
    else:
        attack(pkg)
    with pytest.raises(error):
        Predictor.from_package(pkg, trust, **kw).encode_texts(TEXTS)
    assert runtime_calls == []
    assert not state.path.exists()  # nothing recorded for a refused package


def test_a_verified_directory_that_is_not_an_export_is_refused_by_name(key, trust, tmp_path, runtime_calls):
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "model.json").write_text("{}")
    (root / "model.pdiparams").write_bytes(b"\0" * 16)
    sign_package(root, LocalSigner(key), model=MODEL, version="1", sequence=1, now=NOW)
    with pytest.raises(ExportDirError, match="inference.yml.*not in the package"):
        Predictor.from_package(root, trust, model=MODEL, state=None, now=NOW)
    assert runtime_calls == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_encrypted_package_runs_from_memory(signed, tower_export, trust, images, tmp_path, runtime_calls, backend):
    recipient = PrivateKey.generate()
    enc = tmp_path / "enc"
    encrypt_package(signed, enc, [recipient.public_key])
    with pytest.raises(EncryptedPackageError):
        from_package(enc, trust, tmp_path, backend)
    assert runtime_calls == []

    expected = features(Predictor(tower_export, backend=backend, threads=1, cache_dir=tmp_path), images)
    runtime_calls.clear()
    predictor = from_package(enc, trust, tmp_path, backend, decryptor=LocalDecryptor(recipient))
    got = features(predictor, images)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    for kind, model in runtime_calls:  # ORT gets bytes; Paddle a sealed memfd (set_model_buffer fails on PIR)
        assert isinstance(model, bytes) if kind == "ort" else "paddle_mm_verified_" in model
    assert len(runtime_calls) == 2


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_every_attack_replayed_through_from_package_is_a_refusal(attack, tmp_path, runtime_calls):
    """The hostile-package catalogue of tests/package/attacks.py through ``Predictor.from_package``: only a
    ``PackageRefused`` (the same class ``load_verified`` raises) escapes, in one line, and no runtime is reached."""
    key = PrivateKey.generate()
    root = tmp_path / "pkg"
    make_model(root)
    sign_tiny(root, key)
    kw = attack.build(root, key, tmp_path)
    path = kw.pop("path", root)
    state = RollbackStore(tmp_path / "state.json")
    with pytest.raises(PackageRefused) as info:
        Predictor.from_package(path, TrustStore([TrustAnchor(key.public_key)]), model="tiny-clip", state=state,
                               now=TINY_NOW, backend="onnxruntime", **kw)
    assert type(info.value) is attack.error, f"{attack.name}: {type(info.value).__name__}: {info.value}"
    assert f"{type(info.value).__name__}: {info.value}".isprintable()
    assert runtime_calls == [] and not state.path.exists()


def test_a_signed_package_with_a_broken_inference_yml_is_a_refusal(key, trust, tmp_path, runtime_calls):
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "inference.yml").write_bytes(b"\xff\xfe not utf-8")
    (root / "model.json").write_text("{}")
    (root / "model.pdiparams").write_bytes(b"\0" * 16)
    sign_package(root, LocalSigner(key), model=MODEL, version="1", sequence=1, now=NOW)
    with pytest.raises(NotAnExportError):
        Predictor.from_package(root, trust, model=MODEL, state=None, now=NOW)
    assert runtime_calls == []
