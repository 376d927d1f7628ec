"""The one base class of every mistake a user can fix.

Owns: `UserError`. Every package raises subclasses of it for bad input (a hostile world file,
a malformed camera, an unknown setting, a missing model, a busy file); the command line
prints `str(exc)` as one `wonderzoom: error: ...` line and exits with status 2, the app shows
it as a HUD message, and the generation worker passes it back as a failed result's one line.
Anything that is not a `UserError` is a bug and keeps its traceback.
Does not own: the messages themselves (each subclass writes its own, one line).

It lives in `engine` because every other package imports `engine` and nothing else in common.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; `str()` is one readable line."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
