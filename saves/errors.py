"""Errors raised by the save-file layer.

Owns: `SaveFormatError` (a world file cannot be trusted or understood) and `WorldBusyError`
(another writer holds the file). Does not own: any I/O or parsing.
"""

from __future__ import annotations

from engine.errors import UserError

_MAX_MESSAGE_CHARS = 300


def one_line(text: str, limit: int = _MAX_MESSAGE_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters (hostile bytes escaped)."""
    flat = " ".join(str(text).split())
    flat = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class SaveFormatError(UserError):
    """A world file is unreadable, corrupt, hostile or too big. `str()` is one readable line.

    This is the only exception `load_world` raises."""

    def __init__(self, reason: str) -> None:
        super().__init__(one_line(reason))


class WorldBusyError(UserError, OSError):
    """Another `WorldWriter` (maybe in another process) has the world file open for appending."""
