"""The one way cachectl opens a file where someone else may have put something.

cachectl is often run as root, on paths another user can write to: CACHE_DIR belongs to
the app's user, an audit log or a ``config --write`` target may sit in a shared directory,
a config file is found by walking up from the current directory. A symbolic link planted
there would make root write the first bytes of ``/etc/passwd``; a FIFO would block the
command forever; a file someone else owns could name code to import. So every such path
is opened here, and only a regular file is used:

- never through a symbolic link (``O_NOFOLLOW``), never blocking on a FIFO or a device
  (``O_NONBLOCK``, and an ``lstat`` first so that a special file is not even opened),
  not inherited by a child process (``O_CLOEXEC``);
- what was opened is checked on the descriptor (``fstat``), so a path replaced between a
  check and the open is still caught;
- a file cachectl creates is 0600, never replaces an existing file unless told, and is
  replaced atomically when told (written beside, ``fsync``, ``rename``).

A refusal is an ``UnsafeFile``, an ``OSError``: every caller already turns an ``OSError``
into one line and its exit status, so a new caller gets the refusal reported for free.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import suppress
from typing import IO

#: Added to every open: no link followed, no wait on a FIFO, no leak into a child.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: A file cachectl creates is read and written by its owner only.
PRIVATE_MODE = 0o600

_KINDS = (
    (stat.S_ISLNK, "a symbolic link (cachectl does not follow links here)"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnsafeFile(OSError):
    """The path is not a regular file cachectl may use: refused, nothing read or written.

    ``strerror`` says what the path is (``is a symbolic link ...``) and ``filename`` is
    the path, as for any other ``OSError``."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__(errno.EPERM, why, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def kind_of(mode: int) -> str | None:
    """What a file of ``mode`` is, when it is not a regular file (None when it is)."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def _refusal(info: os.stat_result, single_link: bool) -> str | None:
    kind = kind_of(info.st_mode)
    if kind is not None:
        return f"is {kind}, not a regular file"
    if single_link and info.st_nlink > 1:
        return (
            f"has {info.st_nlink} names (hard links): another of them may be a file "
            "cachectl must not touch"
        )
    return None


def _explain(path: str | os.PathLike[str], error: OSError) -> OSError:
    """The error an open failed with, as a refusal when the path turns out to be a
    link, a FIFO or a directory (``O_NOFOLLOW`` says ``ELOOP``, a FIFO without a reader
    ``ENXIO``): the operator reads what the path is, not an errno."""
    if error.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EWOULDBLOCK):
        with suppress(OSError):
            why = _refusal(os.lstat(path), single_link=False)
            if why is not None:
                return UnsafeFile(path, why)
    return error


def existing_regular(path: str | os.PathLike[str], *, single_link: bool = False) -> bool:
    """Whether a regular file is at ``path`` (False: nothing is); ``UnsafeFile`` for a
    link, a FIFO, a directory or another special file. For a path about to be replaced
    by a rename, which never writes through what it replaces: the refusal is that the
    operator meant a file, and something else is there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    why = _refusal(info, single_link)
    if why is not None:
        raise UnsafeFile(path, why)
    return True


def open_regular(
    path: str | os.PathLike[str],
    flags: int = os.O_RDONLY,
    mode: int = PRIVATE_MODE,
    *,
    follow_symlinks: bool = False,
    single_link: bool = False,
) -> int:
    """A descriptor of the regular file at ``path``, opened with ``flags`` (``O_CREAT``
    creates it with ``mode``), or ``UnsafeFile``. ``follow_symlinks`` only for a path
    the operator named (``--config``); ``single_link`` where a hard link to another file
    would be an attack (the entries of a directory another user writes to). ``O_TRUNC``
    is applied only once the file is known to be the right one."""
    truncate = bool(flags & os.O_TRUNC)
    flags &= ~os.O_TRUNC
    with suppress(FileNotFoundError):  # a special file is refused before it is opened
        before = os.stat(path) if follow_symlinks else os.lstat(path)
        why = _refusal(before, single_link=False)
        if why is not None:
            raise UnsafeFile(path, why)
    extra = _OPEN_FLAGS & ~(os.O_NOFOLLOW if follow_symlinks else 0)
    try:
        descriptor = os.open(path, flags | extra, mode)
    except OSError as exc:
        raise _explain(path, exc) from None
    try:
        why = _refusal(os.fstat(descriptor), single_link)  # what was opened, not the name
        if why is not None:
            raise UnsafeFile(path, why)
        os.set_blocking(descriptor, True)
        if truncate:
            os.ftruncate(descriptor, 0)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_regular(
    path: str | os.PathLike[str],
    limit: int | None = None,
    *,
    follow_symlinks: bool = False,
    single_link: bool = False,
) -> bytes:
    """The bytes of the regular file at ``path`` (the first ``limit`` of them)."""
    descriptor = open_regular(path, follow_symlinks=follow_symlinks, single_link=single_link)
    with os.fdopen(descriptor, "rb") as stream:
        return stream.read() if limit is None else stream.read(limit)


def open_append(path: str | os.PathLike[str]) -> int:
    """A log opened for appending (``O_APPEND``: each ``write`` lands whole at the end),
    created 0600 if new; never through a link, never a FIFO, never a file with another
    name elsewhere."""
    return open_regular(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE, single_link=True
    )


def private_spool() -> IO[str]:
    """A scratch file no other user can reach, for what a command must hold until it
    has read all of its input (``delete-memoized --each`` keeps the keys there, so its
    memory stays flat): created 0600 with ``O_EXCL`` in the temporary directory and
    unlinked at once (``tempfile.TemporaryFile``), so no name of it can be replaced or
    read, and it is gone when closed or when the process ends, however it ends."""
    return tempfile.TemporaryFile(  # the caller closes it
        "w+", encoding="utf-8", errors="surrogateescape", newline="\n"
    )


def create_new(path: str | os.PathLike[str], mode: int = PRIVATE_MODE) -> int:
    """A new file opened for writing, created with ``mode``; ``FileExistsError`` when
    anything (a link included) is at ``path`` already."""
    return open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


class UntrustedFile(UnsafeFile):
    """A regular file that was found rather than named, and that someone other than the
    current user or root owns or may write to: not used."""


def trust_problem(info: os.stat_result) -> str | None:
    """Why a file found rather than named (a config file in a parent directory) must not
    be trusted, or None: it must be owned by the current user or root, and writable by no
    one else, as git trusts a repository (CVE-2022-24765). Give it the ``fstat`` of the
    opened descriptor, never of the name."""
    if info.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {info.st_uid}, neither you (uid {os.geteuid()}) nor root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"may be written by users other than its owner (mode {info.st_mode & 0o777:o})"
    return None


def read_trusted(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file found rather than named: a regular file, reached through no
    link, that passes ``trust_problem`` on its descriptor; ``UntrustedFile`` (or
    ``UnsafeFile``) otherwise."""
    with os.fdopen(open_regular(path), "rb") as stream:
        why = trust_problem(os.fstat(stream.fileno()))
        if why is not None:
            raise UntrustedFile(path, why)
        return stream.read()


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (where the platform allows it)."""
    with suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomically(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool, mode: int = PRIVATE_MODE
) -> None:
    """``data`` as the file at ``path``, whole or not at all: written to a new file beside
    it (``mode``, 0600 by default), flushed to disk, then renamed over ``path``.

    Without ``overwrite`` an existing path is ``FileExistsError`` (the new file is linked
    into place, which fails rather than replaces). With it, a regular file is replaced (a
    new inode: no other name of the old file sees the new content); a link, a FIFO or a
    directory is ``UnsafeFile`` even then, since the operator meant a file."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    if existing_regular(path) and not overwrite:
        raise FileExistsError(errno.EEXIST, "exists already", path)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            _link_without_replacing(temporary, path, data, mode)
    finally:
        with suppress(FileNotFoundError):
            os.remove(temporary)
    fsync_directory(directory)


def _link_without_replacing(temporary: str, path: str, data: bytes, mode: int) -> None:
    """``temporary`` under the name ``path`` only if nothing has it: a hard link fails
    with ``FileExistsError`` where a rename would replace. A filesystem without hard
    links gets the data written under its own name, still never over another file."""
    try:
        os.link(temporary, path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        with os.fdopen(create_new(path, mode), "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
