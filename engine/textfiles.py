"""Small text files a user names: model configs, key bindings, camera paths, camera JSON.

Owns: `read_text_file`, the one safe way to read them: only a regular file (a FIFO would
block forever, `/dev/zero` would never end), opened without blocking, at most `max_bytes`
read, strict UTF-8; and `parse_toml`, which turns a TOML file nested too deeply for the
parser into the same one-line error as any other mistake. Every failure raises the caller's
`UserError` subclass with one line naming the file (control characters escaped).
Does not own: what the files mean (`generation.model_config`, `ui.bindings`,
`engine.render.camera_path`, `cli.common.parse_view`) or world files (`saves`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.history import printable


def open_regular(path: str | os.PathLike[str], flags: int, max_bytes: int,
                 error: type[UserError], what: str = "file") -> tuple[int, int]:
    """(fd, size) of the regular file at `path`, opened without blocking (a FIFO or a device
    is refused before anything is read) and at most `max_bytes` big. OSError from opening
    is the caller's to report (a missing file, no permission)."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{printable(os.fspath(path))}: not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{printable(os.fspath(path))}: {st.st_size} bytes, more than "
                        f"{max_bytes} for a {what}")
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path: str | os.PathLike[str], max_bytes: int, error: type[UserError],
                   what: str = "file") -> str:
    """The UTF-8 text of the regular file at `path`, at most `max_bytes` long."""
    name = printable(os.fspath(path))
    try:
        fd, _ = open_regular(path, os.O_RDONLY, max_bytes, error, what)
    except FileNotFoundError:
        raise error(f"{name}: no such {what}") from None
    except OSError as exc:
        raise error(f"{name}: cannot open it ({exc.strerror or exc})") from None
    try:
        data = os.read(fd, max_bytes + 1)
    except OSError as exc:
        raise error(f"{name}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while being read
        raise error(f"{name}: more than {max_bytes} bytes for a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{name}: not UTF-8 text") from None


def parse_toml(text: str, where: str, error: type[UserError]) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(text)
    except RecursionError:
        raise error(f"{printable(where)}: TOML nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{printable(where)}: not valid TOML ({str(exc).splitlines()[0]})") from None


def display_name(path: str | os.PathLike[str] | Path) -> str:
    """A path as it may be shown in a message."""
    return printable(os.fspath(path))
