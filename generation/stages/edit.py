"""Stage 4, edit: insert the prompted structure at the picked point.

Owns: `EditInput` / `EditOutput` and the builtin backend, which draws a procedural structure
(`generation.structures`: a small vocabulary of nouns, colours, sizes and counts) centred on the
picked point (C_i looks at it, so it is the principal point), shades it from its own height
field, and casts a soft contact shadow on the surface around it. It returns the edited image,
the structure's coverage mask and its height toward the camera in *pixel footprints*, which the
depth stage turns into a depth that sits on the registered surface (depth-consistent).
An empty prompt is a pure refinement: the image passes through unchanged.
Does not own: depth (the depth stage) or any understanding beyond the listed words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from generation.imaging import blur
from generation.registry import Registry


@dataclass(frozen=True, eq=False)
class EditInput:
    rgb: np.ndarray  # [H, W, 3] float in [0, 1] (super-resolved view)
    prompt: str
    centre: tuple[float, float]  # (u, v) pixel of the picked point
    seed: int = 0
    size: float = 0.18  # structure radius / the image's short side


@dataclass(frozen=True, eq=False)
class EditOutput:
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]
    mask: np.ndarray  # [H, W] float coverage of the inserted structure in [0, 1]
    height: np.ndarray  # [H, W] height toward the camera in pixel footprints (0 off-structure)
    label: str  # what was drawn, e.g. "beetle (ladybug)" or "" for none
    understood: tuple[str, ...] = ()  # prompt words that shaped the result


class EditBackend(Protocol):
    def __call__(self, inp: EditInput) -> EditOutput: ...


REGISTRY: Registry[EditBackend] = Registry("edit")


@REGISTRY.register("builtin")
class ProceduralEditor:
    def __call__(self, inp: EditInput) -> EditOutput:
        from generation.structures import Canvas, draw, parse_prompt, shade

        H, W = inp.rgb.shape[:2]
        if not inp.prompt.strip():
            return EditOutput(inp.rgb, np.zeros((H, W)), np.zeros((H, W)), "")
        recipe = parse_prompt(inp.prompt)
        rng = np.random.default_rng(inp.seed)
        base_r = inp.size * min(H, W) * recipe.size
        canvas = Canvas(H, W)
        cu, cv = inp.centre
        n = recipe.count
        r = base_r if n == 1 else base_r * (0.75 if n == 2 else 0.6)
        ring = 0.0 if n == 1 else 1.25 * r
        for i in range(n):
            ang = 2 * math.pi * i / n + rng.uniform(-0.2, 0.2) - math.pi / 2
            draw(recipe, canvas, cu + ring * math.cos(ang), cv + ring * math.sin(ang),
                 r * rng.uniform(0.9, 1.1) if n > 1 else r, rng, inp.rgb, inp.prompt)
        lit = shade(canvas)
        # contact shadow: the coverage blurred and pushed away from the light, on the surface
        shadow_sigma = max(1.0, 0.15 * r)
        off = int(round(0.12 * r))
        sh = np.roll(np.roll(blur(canvas.alpha * canvas.shadow, shadow_sigma), off, axis=0), off,
                     axis=1)
        ground = inp.rgb * (1.0 - 0.45 * np.clip(sh, 0, 1))[..., None]
        a = canvas.alpha[..., None]
        out = np.clip(lit * a + ground * (1 - a), 0.0, 1.0)
        label = recipe.kind + (f" ({recipe.noun})" if recipe.noun else "")
        if n > 1:
            label += f" x{n}"
        return EditOutput(out, canvas.alpha, canvas.height, label, recipe.understood)


def run(inp: EditInput, backend: str = "builtin", **options) -> EditOutput:
    return REGISTRY.get(backend, **options)(inp)
