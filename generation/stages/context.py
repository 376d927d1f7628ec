"""Stage 2, context: a short description of what the zoom is looking at.

Owns: `ContextInput` / `ContextOutput` and the builtin backend. A captioning model (BLIP, the
`transformers` backend in `generation.backends`) describes the observed view; the builtin
backend has no weights, so it writes the description from what it knows: the prompts of the
levels above (root first), the new prompt, and the dominant colour of the observed view.
Does not own: prompt validation (the CLI / app) or how the caption is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from generation.registry import Registry

MAX_CAPTION_CHARS = 300

# a few named colours, sRGB in [0, 1]; the nearest names the view's median colour
_COLOURS = {
    "black": (0.05, 0.05, 0.05), "white": (0.95, 0.95, 0.95), "grey": (0.5, 0.5, 0.5),
    "red": (0.75, 0.15, 0.12), "orange": (0.9, 0.5, 0.1), "yellow": (0.92, 0.85, 0.2),
    "green": (0.25, 0.55, 0.2), "blue": (0.2, 0.35, 0.75), "purple": (0.5, 0.25, 0.6),
    "pink": (0.95, 0.6, 0.7), "brown": (0.45, 0.3, 0.18), "beige": (0.85, 0.78, 0.62),
}


@dataclass(frozen=True, eq=False)
class ContextInput:
    rgb: np.ndarray  # [H, W, 3] the observed view, float in [0, 1]
    prompt: str  # what the user asked for at this level ("" = only refine)
    history: tuple[str, ...] = ()  # prompts of the levels above, root first
    level: int = 1


@dataclass(frozen=True)
class ContextOutput:
    caption: str


class ContextBackend(Protocol):
    def __call__(self, inp: ContextInput) -> ContextOutput: ...


REGISTRY: Registry[ContextBackend] = Registry("context")


def dominant_colour(rgb: np.ndarray) -> str:
    med = np.median(rgb.reshape(-1, 3), axis=0)
    names = list(_COLOURS)
    dist = [float(np.sum((med - np.array(_COLOURS[n])) ** 2)) for n in names]
    return names[int(np.argmin(dist))]


@REGISTRY.register("builtin")
class PromptHistoryCaptioner:
    def __call__(self, inp: ContextInput) -> ContextOutput:
        scene = [p.strip() for p in inp.history if p and p.strip()]
        where = " > ".join(scene) if scene else "the scene"
        text = f"close-up (level {inp.level}) of {where}, mostly {dominant_colour(inp.rgb)}"
        if inp.prompt.strip():
            text += f"; adding {inp.prompt.strip()}"
        return ContextOutput(" ".join(text.split())[:MAX_CAPTION_CHARS])


def run(inp: ContextInput, backend: str = "builtin", **options) -> ContextOutput:
    return REGISTRY.get(backend, **options)(inp)
