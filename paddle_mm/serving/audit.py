"""An append-only audit log of every request: JSON lines, hash-chained with SM3, rotated by size.

Each record says who (token name, never the token), when, from where, which endpoint, which model name,
version and package sequence, the HTTP status and result, the latency and the number of items; never a
payload (no text, no image, no vector) and no secret. ``prev`` is the SM3 of the previous line, carried
across rotations, so a deleted or edited line breaks the chain (:func:`verify_chain`).

The file is opened with ``O_APPEND`` (mode 0640) and every line is written with one ``write`` call under a
lock, then flushed to the OS; rotation renames ``audit.log`` -> ``audit.log.1`` -> ... and drops the
oldest beyond ``backups``. Shipping to a central log store (the 等保 ask) is the node agent's job.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..package.sm3 import sm3

GENESIS = "0" * 64
FIELDS = (
    "ts",
    "id",
    "who",
    "role",
    "client",
    "method",
    "endpoint",
    "status",
    "result",
    "model",
    "version",
    "sequence",
    "latency_ms",
    "items",
)


class AuditError(RuntimeError):
    """The audit log cannot be written; the service then refuses requests rather than serve unaudited."""


class AuditLog:
    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 << 20, backups: int = 20):
        self.path = Path(path)
        self.max_bytes, self.backups = int(max_bytes), int(backups)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prev = _last_hash(self.path)
        self._fd = self._open()
        self.records = 0

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as err:
            raise AuditError(
                f"cannot open audit log {str(self.path)!r}: {err.strerror}; point Audit.path at a writable volume"
            ) from None

    def write(self, record: dict[str, Any]) -> None:
        unknown = set(record) - set(FIELDS)
        assert not unknown, f"audit fields {sorted(unknown)} are not in FIELDS (no payloads in the audit log)"
        with self._lock:
            body = {"ts": _now(), **record, "prev": self._prev}
            line = (json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n").encode()
            if os.fstat(self._fd).st_size + len(line) > self.max_bytes:
                self._rotate()
            try:
                os.write(self._fd, line)
            except OSError as err:
                raise AuditError(f"audit log {str(self.path)!r} write failed: {err.strerror}") from None
            self._prev = sm3(line.rstrip(b"\n")).hex()
            self.records += 1

    def _rotate(self) -> None:
        os.close(self._fd)
        for i in range(self.backups, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i}"))
        self._fd = self._open()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _last_hash(path: Path) -> str:
    """SM3 of the last line of the newest existing file, so the chain continues across restarts."""
    for candidate in (path, path.with_name(path.name + ".1")):
        if candidate.exists() and candidate.stat().st_size:
            with open(candidate, "rb") as f:
                f.seek(max(0, candidate.stat().st_size - 65536))
                lines = f.read().rstrip(b"\n").split(b"\n")
            return sm3(lines[-1]).hex()
    return GENESIS


def audit_files(path: str | os.PathLike) -> list[Path]:
    """The rotated files oldest first, then the live file."""
    path = Path(path)
    rotated = sorted(
        path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0
    )
    return [p for p in rotated if p.suffix[1:].isdigit()] + ([path] if path.exists() else [])


def read_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    for file in audit_files(path):
        with open(file, "rb") as f:
            for line in f:
                yield json.loads(line)


def verify_chain(path: str | os.PathLike) -> int:
    """Check the hash chain over every kept file; return the number of records, raise AuditError at a break."""
    prev, count = None, 0
    for file in audit_files(path):
        with open(file, "rb") as f:
            for number, line in enumerate(f, 1):
                record = json.loads(line)
                if prev is not None and record["prev"] != prev:
                    raise AuditError(
                        f"{file}:{number}: chain broken (prev {record['prev'][:12]}..., expected "
                        f"{prev[:12]}...): a line before it was removed or edited"
                    )
                prev = sm3(line.rstrip(b"\n")).hex()
                count += 1
    return count
