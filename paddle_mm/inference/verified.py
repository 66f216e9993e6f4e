"""An export directory shipped as an SM-signed package (docs/model_package.md), verified before any use.

:func:`verify_export` runs every check of :func:`paddle_mm.package.verify_package` (signature, trust
anchor, model name, rollback, expiry, file policy, the SM3 digest of every file, SM4-GCM decryption of an
encrypted package) and keeps the verified bytes in memory. A :class:`~paddle_mm.inference.Predictor` built
from the result reads nothing from the package directory again, so a file swapped after the check is never
seen, and a package that fails a check raises before any byte reaches Paddle Inference or ONNX Runtime.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..package.errors import FormatPolicyError, show
from ..package.keys import Decryptor
from ..package.manifest import Manifest
from ..package.trust import RollbackStore, TrustStore
from ..package.verify import verify_package
from .model_dir import INFERENCE_YML, ExportDirError, ExportInfo, parse_inference_yml, referenced_files


class NotAnExportError(ExportDirError, FormatPolicyError):
    """A package whose signature and contents verified but which is not an export directory (no or a broken
    ``inference.yml``, files it names missing): refused like any package, so callers catching
    :class:`paddle_mm.package.PackageRefused` catch it, and still an :class:`ExportDirError`."""


@dataclass(frozen=True)
class VerifiedExport:
    """A verified package of an export directory: its parsed ``inference.yml``, the verified bytes of every
    file (package path -> bytes; decrypted for an encrypted package) and the signed manifest."""

    info: ExportInfo
    files: dict[str, bytes]
    manifest: Manifest


def verify_export(
    path: str | os.PathLike,
    trust: TrustStore,
    *,
    model: str,
    state: RollbackStore | None,
    decryptor: Decryptor | None = None,
    now: dt.datetime | None = None,
) -> VerifiedExport:
    """Verify the package at ``path`` as ``model`` and parse its ``inference.yml`` from the verified bytes.

    Raises a :class:`paddle_mm.package.PackageRefused` subclass when any check fails (nothing is parsed
    then), and :class:`NotAnExportError` (both a refusal and an :class:`ExportDirError`) when the verified
    package is not an export directory.
    ``state``: the rollback store (``RollbackStore(default_state_path())``); None turns rollback
    protection off (tests only). ``decryptor``: a recipient key for an encrypted package.
    """
    verified = verify_package(path, trust, model=model, state=state, decryptor=decryptor, now=now, keep=True)
    files = dict(verified.files or {})
    where = f"{show(os.fspath(path))}/{INFERENCE_YML} (verified)"
    if INFERENCE_YML not in files:
        raise NotAnExportError(
            f"{where}: not in the package; sign the directory tools/export_model.py wrote "
            "(-o Global.save_inference_dir=...), with inference.yml at its root"
        )
    try:
        info = parse_inference_yml(files[INFERENCE_YML].decode("utf-8"), Path(path), where)
        missing = [n for n in referenced_files(info) if n not in files]
    except (ExportDirError, UnicodeDecodeError, yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
        raise NotAnExportError(f"{where}: not a valid export description ({type(exc).__name__}: {exc})") from exc
    if missing:
        raise NotAnExportError(f"{where} names files the package does not hold: {show(missing)}; sign the whole export")
    return VerifiedExport(info, files, verified.manifest)
