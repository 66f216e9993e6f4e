"""``load_verified``: verify a package, then hand Paddle the very bytes that were verified.

Files are read once into memory, hashed there and parsed from there, so nothing can swap a file
between the check and the load (no TOCTOU). Safetensors weights are parsed from bytes; a Paddle
inference model is put in sealed memfds (no write, grow or shrink possible once sealed) and Paddle
reads it through paths that point at them. Paddle is imported here only, on first use.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import FormatPolicyError
from .keys import Decryptor
from .manifest import Manifest
from .trust import RollbackStore, TrustStore
from .verify import verify_package

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


@dataclass
class LoadedPackage:
    """A verified package, parsed.

    ``state_dict`` (safetensors packages): tensor name -> ``paddle.Tensor``, merged over all shards.
    ``inference_config`` (Paddle inference packages): a ``paddle.inference.Config`` reading sealed
    in-memory copies; create the predictor before :meth:`close`. ``files``: verified bytes of every
    other file (configs, vocabularies), by package path.
    """

    manifest: Manifest
    files: dict[str, bytes]
    state_dict: dict[str, Any] | None = None
    inference_config: Any | None = None
    _fds: list[int] = field(default_factory=list, repr=False)
    _tmpdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def close(self) -> None:
        """Release the sealed in-memory model files (after the predictor is created)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def load_verified(
    path: str | os.PathLike,
    trust: TrustStore,
    *,
    model: str,
    state: RollbackStore | None,
    decryptor: Decryptor | None = None,
    now: dt.datetime | None = None,
) -> LoadedPackage:
    """Verify the package at ``path`` (see :func:`verify_package`), then parse it from the verified bytes.

    Raises a :class:`PackageRefused` subclass before anything is parsed if any check fails.
    """
    verified = verify_package(path, trust, model=model, state=state, decryptor=decryptor, now=now, keep=True)
    files = dict(verified.files or {})
    if verified.manifest.model_format == "safetensors":
        weights = {p: files.pop(p) for p in sorted(files) if p.lower().endswith(".safetensors")}
        return LoadedPackage(verified.manifest, files, state_dict=_load_safetensors(weights))
    loaded = LoadedPackage(verified.manifest, files)
    loaded.inference_config = _inference_config(files, loaded)
    return loaded


def _load_safetensors(weights: dict[str, bytes]) -> dict[str, Any]:
    from safetensors.paddle import load

    merged: dict[str, Any] = {}
    for path, data in weights.items():
        tensors = load(data)
        clash = sorted(set(tensors) & set(merged))
        if clash:
            raise FormatPolicyError(f"{path!r} repeats tensors {clash[:5]} from another shard; shards must be disjoint")
        merged.update(tensors)
    return merged


def _inference_pair(files: dict[str, bytes]) -> tuple[str, str]:
    params = [p for p in files if p.lower().endswith(".pdiparams")]
    programs = [
        p
        for p in files
        if p.lower().endswith((".json", ".pdmodel")) and os.path.splitext(p)[0] + ".pdiparams" in params
    ]
    if len(params) != 1 or len(programs) != 1:
        raise FormatPolicyError(
            f"a Paddle inference package needs exactly one X.pdiparams with X.json or X.pdmodel; "
            f"found params {params}, programs {programs}"
        )
    return programs[0], params[0]


def _inference_config(files: dict[str, bytes], loaded: LoadedPackage) -> Any:
    import paddle.inference

    program, params = _inference_pair(files)
    loaded._tmpdir = tempfile.TemporaryDirectory(prefix="paddle_mm_verified_")
    paths = [_sealed_path(files.pop(p), os.path.basename(p), loaded) for p in (program, params)]
    return paddle.inference.Config(*paths)


def _sealed_path(data: bytes, name: str, loaded: LoadedPackage) -> str:
    """A path (with the original file name, which Paddle uses to tell PIR JSON from .pdmodel) whose
    target is a sealed memfd holding ``data``."""
    return _seal(data, name, loaded._tmpdir.name, loaded._fds)


def _seal(data: bytes, name: str, directory: str, fds: list[int]) -> str:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    fds.append(fd)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    link = os.path.join(directory, name)
    os.symlink(f"/proc/{os.getpid()}/fd/{fd}", link)
    return link


@contextmanager
def sealed_paths(files: dict[str, bytes]) -> Iterator[dict[str, str]]:
    """Paths to sealed in-memory copies of verified ``files`` (package path -> bytes), valid inside the block.

    For runtimes that read only by path (Paddle Inference, ONNX Runtime's external weights, a vocabulary
    reader): each file becomes a sealed memfd reached through a link with the file's base name, all in one
    private directory, so files that refer to each other by name (``x.onnx`` -> ``x.onnx.data``) still do.
    Build the runtime inside the block; the memfds and links are gone after it.
    """
    names = [p.rsplit("/", 1)[-1] for p in files]
    if len(set(names)) != len(names):
        raise FormatPolicyError(f"{sorted(files)}: files loaded together need distinct base names")
    fds: list[int] = []
    with tempfile.TemporaryDirectory(prefix="paddle_mm_verified_") as tmpdir:
        try:
            yield {p: _seal(data, n, tmpdir, fds) for (p, data), n in zip(files.items(), names)}
        finally:
            for fd in fds:
                os.close(fd)
