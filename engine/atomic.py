"""Durable, all-or-nothing file writes: the one home of temp files, fsync and rename.

Owns: `atomic_write` (write a whole new file next to its target, fsync it, `os.replace` it
into place, fsync the directory; on any failure the temp file is removed and the target is
the old file or absent), `fsync_dir`, and cleaning up after writers that were killed: a
temp file is named `.NAME.PID.HEX.tmp`, and the next write of NAME removes the ones whose
process is gone (and nameless legacy `.NAME.HEX.tmp` ones older than an hour). World files,
PLY exports, rendered frames and web exports are all written through it.
Does not own: appending to an existing world file (`saves.format.WorldWriter`, which is
crash-safe by its record layout, not by renaming).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

# a directory fsync that the filesystem does not support is not a failed write
_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF}


LEGACY_TEMP_AGE_S = 3600.0


def temp_sibling(path: Path) -> Path:
    """A hidden, unique name next to `path` for its replacement while it is being written."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temp siblings of `path` that a killed writer left behind; the removed paths."""
    removed = []
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent or ".") if n.startswith(prefix)
                 and n.endswith(".tmp")]
    except OSError:
        return removed
    for name in names:
        middle = name[len(prefix):-len(".tmp")].split(".")
        other = path.with_name(name)
        try:
            if len(middle) == 2 and middle[0].isdigit() and len(middle[1]) == 12:
                if _alive(int(middle[0])):
                    continue
            elif len(middle) == 1 and len(middle[0]) == 12:  # before the pid was in the name
                if time.time() - other.stat().st_mtime < LEGACY_TEMP_AGE_S:
                    continue
            else:
                continue
            other.unlink()
            removed.append(other)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours
        return True
    return True


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
def atomic_write(path: str | os.PathLike[str], durable: bool = True) -> Iterator[int]:
    """Yields a file descriptor open for writing a new file that replaces `path` when the
    block ends without an exception. `durable`: fsynced before and after the rename (a world
    file); without it the file is still whole or absent if the process dies, only not
    across a power cut (rendered frames: one fsync each would dominate their cost)."""
    target = Path(os.fspath(path))
    remove_stale_temps(target)
    tmp = temp_sibling(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:  # name the file the user asked for, not our temp file
        raise OSError(exc.errno, exc.strerror, os.fspath(target)) from None
    try:
        try:
            yield fd
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        view = view[os.write(fd, view):]
