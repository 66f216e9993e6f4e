"""Files on disk, safely: SHA-256 digests of weight and graph files, and directories swapped in only when complete.

    digests = file_digests(directory, ["image.pdiparams", "image.onnx"])   # {"image.pdiparams": "sha256:ab..."}
    check_digests(directory, digests)                    # DigestMismatch naming the first changed file

    with staged_directory(out_dir) as tmp:               # write and verify everything into tmp ...
        ...                                              # ... it replaces out_dir only if this block succeeds

Nothing here imports paddle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

DIGEST_ALGORITHM = "sha256"
_CHUNK = 1 << 20


class DigestMismatch(ValueError):
    """A file's bytes differ from the digest recorded when it was written; the message names the file."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes (the form inference.yml records)."""
    return f"{DIGEST_ALGORITHM}:{file_sha256(path)}"


def file_digests(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """``{name: "sha256:<hex>"}`` for files named relative to ``directory``, in the given order, once each."""
    return {name: file_digest(Path(directory) / name) for name in dict.fromkeys(names)}


def check_digests(directory: str | os.PathLike, digests: Mapping[str, str], names: Iterable[str] | None = None) -> None:
    """Raise :class:`DigestMismatch` naming the first file (of ``names``, default all) whose bytes changed.

    A name without a recorded digest is not checked (exports written before digests were recorded)."""
    for name in names if names is not None else digests:
        want = digests.get(name)
        if want is None:
            continue
        algorithm = want.split(":", 1)[0]
        if algorithm != DIGEST_ALGORITHM:
            raise DigestMismatch(f"{name}: unknown digest algorithm {algorithm!r}; expected {DIGEST_ALGORITHM}")
        path = Path(directory) / name
        got = file_digest(path)
        if got != want:
            raise DigestMismatch(
                f"{path}: SHA-256 {got[7:19]}... differs from the {want[7:19]}... recorded when it was written; "
                "the file is corrupt or was changed: copy it again or re-export"
            )


@contextmanager
def staged_directory(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh sibling directory of ``target`` that replaces ``target`` when the block ends without error.

    On an error the staged directory is removed and ``target`` is left exactly as it was. The swap is two
    renames on one file system (old aside, new in place), then the old copy is deleted; a crash between the
    renames leaves the previous directory as ``.<name>.old-<id>`` beside it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staged = target.with_name(f".{target.name}.tmp-{tag}")
    staged.mkdir()
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{tag}")
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)
