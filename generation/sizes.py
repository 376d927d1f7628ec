"""How many pixels a new level is made of: as many as the screen shows it with, within what
the machine affords.

Owns: the working-size rule of `new` and `zoom` (`working_long_side`). A level made at N
pixels across and shown N pixels across at its native scale draws one splat per screen pixel;
made smaller, every splat is magnified (a 320-px level in a 1280-px window: 4x4 pixels each).
- with an accelerator (CUDA), a level is made at the size it is shown at: a zoom at its
  request camera's size (the window's in `play`; `DISPLAY_LONG_SIDE`, `play`'s default window,
  for `wonderzoom zoom`), scene E0 at `DISPLAY_LONG_SIDE` (never above the photo's own size);
- on a CPU alone, at most `CPU_ZOOM_LONG_SIDE` / `CPU_NEW_LONG_SIDE`: the largest sizes whose
  `bench/generation.py` figures stay within the targets (zoom <= 30 s, new <= 45 s on 2 cores;
  docs/benchmarks.md);
- a size set explicitly (`--size`, `zoom_long_side` / `new_long_side` > 0) wins.
And the consequences of a level made smaller than it is shown: it is fitted with the viewers'
antialias term as the display applies it (`display_low_pass_px2`), and it gets less of the
synthesized texture (`detail_scale`).
Does not own: resampling cameras (`engine.camera`) or the other settings (`generation.config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.camera import DEFAULT_VIEW_SIZE
from engine.render.reference import LOW_PASS_PX2

DISPLAY_LONG_SIDE = max(DEFAULT_VIEW_SIZE)  # `play`'s window, `render`'s frames (1280x720)
CPU_ZOOM_LONG_SIDE = 480  # ~25 s a zoom on 2 cores (320: ~12 s, 640: ~45 s), see the module doc
CPU_NEW_LONG_SIDE = 640  # ~30 s for scene E0 on 2 cores
# how fast the synthesized texture's share falls with magnification: (working / shown) ** this,
# anchored on the measured points (docs/benchmarks.md "Detail at the size it is shown", "Twice
# the parent band on the GPU-size path"): a 480-px level in a 1280-px window is best at 0.5 of
# the parent band, a window-sized one at 2 (bounded: `generation.detail.bounded_target`), so
# the default share of 2 falls to a quarter at 480 in 1280
DETAIL_FALLOFF = math.log(0.25) / math.log(480 / 1280)  # ~1.41


@dataclass(frozen=True)
class WorkingSize:
    long_side: int
    rule: str  # why: "set", "shown size" or "CPU limit" (the HUD and `info` say it)


def display_low_pass_px2(working_px: int, shown_px: int) -> float:
    """The viewers' antialias term (`LOW_PASS_PX2`, 0.3 px^2 added to every splat's screen
    covariance) in the pixels of a level made `working_px` across and shown `shown_px` across:
    0.3 (working / shown)^2, never more than 0.3. The term widens each splat by a fixed
    amount of *screen*; a fit at a coarser grid with the full term leans on a widening that
    the display does not give, and the level shows its gaps (darker over black, 4 % less
    coverage at 480 px shown at 1280) once it is drawn full-size (issue 21, docs/benchmarks.md
    "A level fitted for the screen it is shown on")."""
    if working_px <= 0 or shown_px <= working_px:
        return LOW_PASS_PX2
    return LOW_PASS_PX2 * (working_px / shown_px) ** 2


def detail_scale(working_px: int, shown_px: int) -> float:
    """The share of `detail_strength` a level made `working_px` across and shown `shown_px`
    across gets: 1 at its own size (or smaller), (working / shown) ** `DETAIL_FALLOFF` when
    magnified (a quarter for 480 px in 1280). Detail synthesis gives a level its parent's
    finest band at the same cycles per *working* pixel; shown at its own size that band is
    the screen's grain, magnified 2.7x it is blobs several screen pixels across, which read
    as blotches (NIQE rises and the seam shows them) rather than as texture."""
    if working_px <= 0 or shown_px <= working_px:
        return 1.0
    return (working_px / shown_px) ** DETAIL_FALLOFF


def accelerated(device: str = "auto") -> bool:
    """Will the pipeline run on CUDA with this device setting?"""
    if device == "cpu":
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def working_long_side(kind: str, shown: int, configured: int = 0,
                      fast: bool | None = None, device: str = "auto") -> WorkingSize:
    """The long side a level of `kind` ("new" or "zoom") is made at, when it will be shown
    `shown` pixels across (the request camera's long side for a zoom, the photo's long side
    for `new`, which is never enlarged). `configured` > 0 wins; `fast`: an accelerator is
    there (None: ask torch about `device`)."""
    if kind not in ("new", "zoom"):
        raise ValueError(f"kind must be 'new' or 'zoom', got {kind!r}")
    if configured > 0:
        return WorkingSize(int(configured), "set")
    target = int(shown) if kind == "zoom" else min(int(shown), DISPLAY_LONG_SIDE)
    if fast is None:
        fast = accelerated(device)
    cap = CPU_ZOOM_LONG_SIDE if kind == "zoom" else CPU_NEW_LONG_SIDE
    if fast or target <= cap:
        return WorkingSize(max(16, target), "shown size")
    return WorkingSize(cap, "CPU limit")
