"""Stage 4b, masks: the coverage of the inserted structure, for piecewise depth alignment.

Owns: `MasksInput` / `MasksOutput` and the builtin backend, which keeps the edit stage's own
mask (the builtin editor draws the structure, so it knows its coverage exactly). A model
backend (`transformers`: SAM, optionally prompted by Grounding DINO's box for the prompt)
segments the structure in the edited image instead, which an image editor that only returns
pixels needs. The depth stage aligns the region of this mask on its own.
Does not own: editing (the edit stage) or depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from generation.registry import Registry


@dataclass(frozen=True, eq=False)
class MasksInput:
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]: the edited view
    prompt: str  # what was inserted ("" = nothing)
    centre: tuple[float, float]  # (u, v) pixel of the picked point
    hint: np.ndarray  # [H, W] float in [0, 1]: the edit stage's own estimate of the coverage


@dataclass(frozen=True, eq=False)
class MasksOutput:
    mask: np.ndarray  # [H, W] float in [0, 1]
    source: str  # how it was found, e.g. "edit" or "sam box from grounding-dino"


class MasksBackend(Protocol):
    def __call__(self, inp: MasksInput) -> MasksOutput: ...


REGISTRY: Registry[MasksBackend] = Registry("masks")


@REGISTRY.register("builtin")
class EditMask:
    def __call__(self, inp: MasksInput) -> MasksOutput:
        return MasksOutput(np.clip(np.asarray(inp.hint, np.float64), 0.0, 1.0), "edit")


def run(inp: MasksInput, backend: str = "builtin", **options) -> MasksOutput:
    if not inp.prompt.strip() or not np.any(np.asarray(inp.hint) > 0.05):
        return MasksOutput(np.zeros(inp.rgb.shape[:2]), "none")  # nothing was inserted
    return REGISTRY.get(backend, **options)(inp)
