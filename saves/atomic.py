"""Durable, all-or-nothing file writes: the one home of temp files, fsync and rename.

Owns: `atomic_write` (write a whole new file next to its target, fsync it, `os.replace` it
into place, fsync the directory; on any failure the temp file is removed and the target is
the old file or absent) and `fsync_dir`. World files (`saves.format.save_world`) and PLY
exports (`saves.ply.export_ply`) are both written through it.
Does not own: appending to an existing world file (`saves.format.WorldWriter`, which is
crash-safe by its record layout, not by renaming).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

# a directory fsync that the filesystem does not support is not a failed write
_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF}


def temp_sibling(path: Path) -> Path:
    """A hidden, unique name next to `path` for its replacement while it is being written."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable. Platforms without directory file descriptors
    and filesystems that cannot sync one are skipped; a real I/O error is raised."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # no directory fds on this platform
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[int]:
    """Yields a file descriptor open for writing a new file that replaces `path` when the
    block ends without an exception (fsynced before and after the rename)."""
    target = Path(os.fspath(path))
    tmp = temp_sibling(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        try:
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        view = view[os.write(fd, view):]
