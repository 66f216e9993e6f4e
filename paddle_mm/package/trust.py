"""Local trust configuration: which SM2 keys may sign, and the highest sequence seen per model.

Trust anchors come only from files the operator names (public keys or X.509 certificates), never
from the package. The rollback store is a small JSON file, updated under an exclusive lock and
replaced atomically (write a temporary file, fsync, rename, fsync the directory), so a crash never
leaves it half-written and two verifiers never lose each other's update.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_open
from .errors import PackageConfigError, RollbackError, show
from .keys import MAX_PEM_BYTES, Certificate, PublicKey, pem_blocks
from .manifest import MAX_INT, Manifest
from .sm2 import DEFAULT_USER_ID


@dataclass(frozen=True)
class TrustAnchor:
    """A key allowed to sign packages, the SM2 user ID it signs with, and an optional validity window."""

    public_key: PublicKey
    user_id: bytes = DEFAULT_USER_ID
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    source: str = ""

    def valid_at(self, now: dt.datetime) -> bool:
        return (self.not_before is None or now >= self.not_before) and (self.not_after is None or now <= self.not_after)


class TrustStore:
    """Trust anchors by key id."""

    def __init__(self, anchors: Iterable[TrustAnchor]) -> None:
        self._anchors = {a.public_key.key_id: a for a in anchors}
        if not self._anchors:
            raise PackageConfigError(
                "no trust anchors configured; pass the signer's public key or certificate (--trust signer.pub)"
            )

    def __len__(self) -> int:
        return len(self._anchors)

    def find(self, key_id: str) -> TrustAnchor | None:
        return self._anchors.get(key_id)

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike], user_id: bytes = DEFAULT_USER_ID) -> TrustStore:
        """Anchors from PEM files holding ``PUBLIC KEY`` and/or ``CERTIFICATE`` blocks."""
        return cls(anchor for path in paths for anchor in _anchors_in(Path(path), user_id))


def _anchors_in(path: Path, user_id: bytes) -> Iterator[TrustAnchor]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise PackageConfigError(f"cannot read trust anchor {show(str(path))}: {exc.strerror}") from exc
    try:
        yield from _anchors_from(data, path, user_id)
    except PackageConfigError as exc:
        raise PackageConfigError(f"trust anchor {show(str(path))}: {exc}") from exc


def _anchors_from(data: bytes, path: Path, user_id: bytes) -> Iterator[TrustAnchor]:
    found = False
    for label, body in pem_blocks(data):
        if label == "PUBLIC KEY":
            found = True
            yield TrustAnchor(PublicKey.from_spki_der(body), user_id, source=str(path))
        elif label == "CERTIFICATE":
            found = True
            cert = Certificate.from_der(body)
            yield TrustAnchor(cert.public_key, user_id, cert.not_before, cert.not_after, f"{path} ({cert.subject})")
    if not found:
        raise PackageConfigError("holds no PUBLIC KEY or CERTIFICATE PEM block")


def default_state_path() -> Path:
    """``$PADDLE_MM_PACKAGE_STATE``, else ``$XDG_STATE_HOME/paddle_mm/package_sequences.json``."""
    if os.environ.get("PADDLE_MM_PACKAGE_STATE"):
        return Path(os.environ["PADDLE_MM_PACKAGE_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "paddle_mm" / "package_sequences.json"


class RollbackStore:
    """Highest accepted sequence (and its manifest digest) per model name, kept in ``path``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            raise PackageConfigError(
                f"rollback state {show(str(self.path))} is unreadable ({exc}); fix or restore it, "
                "never delete it to get past a refusal"
            ) from exc
        if not isinstance(data, dict) or not all(_entry_ok(v) for v in data.values()):
            raise PackageConfigError(
                f"rollback state {show(str(self.path))} is not a JSON object of model -> {{sequence, version, "
                "manifest_sm3}}; fix or restore it, never delete it to get past a refusal"
            )
        return data

    def check(self, manifest: Manifest, manifest_sm3: str) -> None:
        """Raise :class:`RollbackError` if ``manifest`` is older than (or conflicts with) what was accepted."""
        _check_entry(self._read().get(manifest.model), manifest, manifest_sm3)

    def record(self, manifest: Manifest, manifest_sm3: str) -> None:
        """Re-check under an exclusive lock, then store this sequence if it is the highest."""
        with self._locked():
            state = self._read()
            _check_entry(state.get(manifest.model), manifest, manifest_sm3)
            entry = state.get(manifest.model)
            if entry and entry["sequence"] == manifest.sequence:
                return
            state[manifest.model] = {
                "sequence": manifest.sequence,
                "version": manifest.version,
                "manifest_sm3": manifest_sm3,
            }
            self._write(state)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, state: dict[str, dict]) -> None:
        with atomic_open(self.path) as f:  # fsynced, then renamed over the old state
            json.dump(state, f, indent=1, sort_keys=True)
        dir_fd = os.open(self.path.parent, os.O_DIRECTORY)  # and the rename itself reaches the disk
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


_SM3_HEX = re.compile(r"[0-9a-f]{64}")


def _entry_ok(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"sequence", "version", "manifest_sm3"}
        and type(entry["sequence"]) is int
        and 0 <= entry["sequence"] <= MAX_INT
        and isinstance(entry["version"], str)
        and isinstance(entry["manifest_sm3"], str)
        and _SM3_HEX.fullmatch(entry["manifest_sm3"]) is not None
    )


def _check_entry(entry: dict | None, manifest: Manifest, manifest_sm3: str) -> None:
    if not entry:
        return
    seen = entry["sequence"]
    if manifest.sequence < seen:
        raise RollbackError(
            f"model {show(manifest.model)} sequence {manifest.sequence} (version {show(manifest.version)}) "
            f"is older than sequence {seen} (version {show(entry['version'])}) already accepted; "
            "sign the package again with a higher --sequence"
        )
    if manifest.sequence == seen and manifest_sm3 != entry.get("manifest_sm3"):
        raise RollbackError(
            f"model {show(manifest.model)} sequence {seen} was already accepted with a different "
            "manifest; a sequence number must never be reused, sign with a higher --sequence"
        )
