"""How many CPU cores generation may use: the one place that asks the operating system.

Owns: `usable_cores` (the cores this process may run on: its affinity mask, not the
machine's count, so a container or `taskset` limit is respected) and `background_threads`
(all of them but one, at least one: what a generator running beside the frame loop takes,
so the app keeps a core to draw on).
Does not own: setting thread counts in torch / OpenCV / ncnn (the pipeline and the worker do).
Imports nothing of the project, so any module may use it without an import cycle.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def background_threads() -> int:
    """All usable cores but one (at least one)."""
    return max(1, usable_cores() - 1)
