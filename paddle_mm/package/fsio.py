"""Reading a package directory without following links: listing, opening, chunked reads.

Every component below the package root is opened relative to its parent directory with
``O_NOFOLLOW``, so a symlink swapped in after the listing is still refused rather than followed.
The root itself is the operator's own path and may be a symlink (``/opt/models/current``).
"""

from __future__ import annotations

import errno
import os
import stat
import threading

from .errors import NotARegularFileError, SizeMismatchError, SymlinkError, UnsignedPackageError

_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_local = threading.local()


def open_root(path: str | os.PathLike) -> int:
    try:
        return os.open(path, _O_FLAGS | os.O_DIRECTORY)
    except FileNotFoundError as exc:
        raise UnsignedPackageError(f"package directory {os.fspath(path)!r} does not exist") from exc
    except NotADirectoryError as exc:
        raise UnsignedPackageError(f"{os.fspath(path)!r} is not a package directory") from exc


def list_files(root_fd: int) -> dict[str, int]:
    """Relative POSIX path -> size of every regular file under the root; refuses links and specials."""
    out: dict[str, int] = {}
    _walk(root_fd, "", out)
    return out


def _walk(dir_fd: int, prefix: str, out: dict[str, int]) -> None:
    for name in sorted(os.listdir(dir_fd)):
        rel = prefix + name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise SymlinkError(f"{rel!r} is a symbolic link; packages hold regular files only, copy the target in")
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _O_FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                _walk(sub, rel + "/", out)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            out[rel] = st.st_size
        else:
            raise NotARegularFileError(f"{rel!r} is not a regular file (mode {stat.filemode(st.st_mode)})")


def open_file(root_fd: int, relpath: str) -> tuple[int, int]:
    """Open ``relpath`` under the root without following any link; returns (fd, size)."""
    parts = relpath.split("/")
    dir_fd, opened = root_fd, []
    try:
        for part in parts[:-1]:
            dir_fd = _open_nofollow(part, os.O_DIRECTORY, dir_fd, relpath)
            opened.append(dir_fd)
        fd = _open_nofollow(parts[-1], os.O_NONBLOCK, dir_fd, relpath)
    finally:
        for d in opened:
            os.close(d)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotARegularFileError(f"{relpath!r} is not a regular file")
    return fd, st.st_size


def _open_nofollow(name: str, extra: int, dir_fd: int, relpath: str) -> int:
    try:
        return os.open(name, _O_FLAGS | os.O_NOFOLLOW | extra, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link, or a file where a directory was
            raise SymlinkError(f"{relpath!r} goes through a symbolic link or a non-directory") from exc
        raise


def read_small(root_fd: int, name: str, limit: int) -> bytes | None:
    """Whole content of a small top-level file, or None when it does not exist."""
    try:
        fd, size = open_file(root_fd, name)
    except FileNotFoundError:
        return None
    try:
        if size > limit:
            raise SizeMismatchError(f"{name!r} is {size} bytes, over the {limit}-byte limit for it")
        return read_exact(fd, 0, size, name)
    finally:
        os.close(fd)


def read_exact(fd: int, offset: int, length: int, name: str) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise SizeMismatchError(f"{name!r} shrank while it was read (expected {length} bytes at {offset})")
        data += more
    return data


def read_into(fd: int, offset: int, view: memoryview, name: str) -> None:
    """Fill ``view`` from ``fd`` at ``offset`` (no allocation: the view is the destination)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise SizeMismatchError(f"{name!r} shrank while it was read (short at offset {offset + done})")
        done += n


def scratch(size: int) -> memoryview:
    """A per-thread reusable buffer of at least ``size`` bytes (avoids a fresh allocation per chunk)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = bytearray(size)
    return memoryview(buf)[:size]
