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

from .errors import (
    BudgetExceededError,
    MissingFileError,
    NotARegularFileError,
    SizeMismatchError,
    SymlinkError,
    UnreadableFileError,
    UnsignedPackageError,
    show,
)
from .manifest import MAX_FILES, MAX_PATH_DEPTH

_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
MAX_ENTRIES = MAX_FILES + 1024  # directory entries walked in one package (files and directories)
_local = threading.local()


def open_root(path: str | os.PathLike) -> int:
    try:
        return os.open(path, _O_FLAGS | os.O_DIRECTORY)
    except FileNotFoundError as exc:
        raise UnsignedPackageError(f"package directory {show(os.fspath(path))} does not exist") from exc
    except NotADirectoryError as exc:
        raise UnsignedPackageError(f"{show(os.fspath(path))} is not a package directory") from exc
    except OSError as exc:
        raise UnreadableFileError(f"cannot open package directory {show(os.fspath(path))}: {exc.strerror}") from exc


def list_files(root_fd: int) -> tuple[dict[str, int], list[str]]:
    """(relative POSIX path -> size of every regular file, every sub-directory) under the root.

    Refuses links and special files. Walks iteratively, within the budget: at most ``MAX_PATH_DEPTH``
    levels and ``MAX_ENTRIES`` entries, so a hostile tree cannot exhaust the stack or memory.
    """
    files: dict[str, int] = {}
    dirs: list[str] = []
    stack: list[tuple[int, str]] = [(os.dup(root_fd), "")]
    count = 0
    try:
        while stack:
            dir_fd, prefix = stack.pop()
            try:
                names = _listdir(dir_fd, prefix)
                count += len(names)
                if count > MAX_ENTRIES:
                    raise BudgetExceededError(f"package holds over {MAX_ENTRIES} entries; the budget is {MAX_ENTRIES}")
                for name in names:
                    rel = prefix + name
                    st = _lstat(name, dir_fd, rel)
                    if stat.S_ISLNK(st.st_mode):
                        raise SymlinkError(
                            f"{show(rel)} is a symbolic link; packages hold regular files only, copy the target in"
                        )
                    if stat.S_ISDIR(st.st_mode):
                        if rel.count("/") + 1 >= MAX_PATH_DEPTH:
                            raise BudgetExceededError(f"directory {show(rel)} is over {MAX_PATH_DEPTH} levels deep")
                        dirs.append(rel)
                        stack.append((_open_nofollow(name, os.O_DIRECTORY, dir_fd, rel), rel + "/"))
                    elif stat.S_ISREG(st.st_mode):
                        files[rel] = st.st_size
                    else:
                        raise NotARegularFileError(
                            f"{show(rel)} is not a regular file (mode {stat.filemode(st.st_mode)})"
                        )
            finally:
                os.close(dir_fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return files, dirs


def _listdir(dir_fd: int, prefix: str) -> list[str]:
    try:
        return sorted(os.listdir(dir_fd))
    except OSError as exc:
        raise UnreadableFileError(f"cannot list {show(prefix or '.')}: {exc.strerror}") from exc


def _lstat(name: str, dir_fd: int, rel: str) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise MissingFileError(f"{show(rel)} vanished while the package was listed") from exc
    except (OSError, UnicodeEncodeError) as exc:
        raise UnreadableFileError(f"cannot stat {show(rel)}: {getattr(exc, 'strerror', exc)}") from exc


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
        raise NotARegularFileError(f"{show(relpath)} is not a regular file")
    return fd, st.st_size


def _open_nofollow(name: str, extra: int, dir_fd: int, relpath: str) -> int:
    try:
        return os.open(name, _O_FLAGS | os.O_NOFOLLOW | extra, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise MissingFileError(f"{show(relpath)} is listed in the manifest but missing; re-copy the package") from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link, or a file where a directory was
            raise SymlinkError(f"{show(relpath)} goes through a symbolic link or a non-directory") from exc
        raise UnreadableFileError(f"cannot open {show(relpath)}: {exc.strerror}") from exc
    except (UnicodeEncodeError, ValueError) as exc:  # a lone surrogate or NUL cannot name a file
        raise UnreadableFileError(f"{show(relpath)} cannot name a file here") from exc


def read_small(root_fd: int, name: str, limit: int) -> bytes | None:
    """Whole content of a small top-level file, or None when it does not exist. Its size is checked
    against ``limit`` before a byte is read: larger is :class:`BudgetExceededError`."""
    try:
        fd, size = open_file(root_fd, name)
    except MissingFileError:
        return None
    try:
        if size > limit:
            raise BudgetExceededError(f"{name} is {size} bytes; at most {limit} are read")
        return read_exact(fd, 0, size, name)
    finally:
        os.close(fd)


def pread(fd: int, length: int, offset: int, name: str) -> bytes:
    try:
        return os.pread(fd, length, offset)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {show(name)} at offset {offset}: {exc.strerror}") from exc


def read_exact(fd: int, offset: int, length: int, name: str) -> bytes:
    data = pread(fd, length, offset, name)
    while len(data) < length:
        more = pread(fd, length - len(data), offset + len(data), name)
        if not more:
            raise SizeMismatchError(f"{show(name)} shrank while it was read (expected {length} bytes at {offset})")
        data += more
    return data


def read_into(fd: int, offset: int, view: memoryview, name: str) -> None:
    """Fill ``view`` from ``fd`` at ``offset`` (no allocation: the view is the destination)."""
    done = 0
    while done < len(view):
        try:
            n = os.preadv(fd, [view[done:]], offset + done)
        except OSError as exc:
            raise UnreadableFileError(f"cannot read {show(name)} at offset {offset + done}: {exc.strerror}") from exc
        if n == 0:
            raise SizeMismatchError(f"{show(name)} shrank while it was read (short at offset {offset + done})")
        done += n


def scratch(size: int) -> memoryview:
    """A per-thread reusable buffer of at least ``size`` bytes (avoids a fresh allocation per chunk)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = bytearray(size)
    return memoryview(buf)[:size]
