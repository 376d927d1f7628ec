"""Stage 5, harmonize: the new level's image joins its parent without a visible edge.

Owns: `HarmonizeInput` / `HarmonizeOutput` and the builtin backend. What shifts tone between
the old world's view O_i and the image the new level is made from (super-resolution, detail
synthesis, an image editor) is corrected against O_i *as it is seen* (the coarse world
rendered at C_i over black, transparency included), wherever the user did not ask for new
content, and the level's spatial border fades into O_i:
1. fade: `generation.tone.border_weight` over `border_fade` x the short side; the image
   becomes fade x edited + (1 - fade) x (O_i's colours + the edited detail finer than
   `fade_detail_px`): at the edge the parent's coarse look with the level's fine texture
   (`generation.tone.feather_keeping_detail`; an inserted structure never fades);
2. tone: `generation.tone.match_low_frequencies` with a Gaussian of `tone_sigma` parent
   pixels (detail finer than that, what super-resolution adds, is kept), listening wherever
   the coarse world is seen (alpha >= `observe.HOLE_ALPHA`: see-through parts too, as they
   look) and away from the inserted structure and its contact shadow, applied everywhere
   but on the structure: it keeps its own colours.
After the splat fit, `correct_fit_tone` takes out the fit's own tone shift the same way
(against the image the level was made from; the structure untouched).
The LoD links stay the paper's: the fade is in the level's content, so parent + child
opacity stays 1 on the band between their native scales everywhere, border included
(docs/design.md, "seamless joins").
Does not own: rendering O_i (observe), the edit or its mask (edit, masks), or the maths
(`generation.tone`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np
from scipy import ndimage

from engine.camera import Camera
from engine.render.reference import LOW_PASS_PX2
from engine.splats import SplatChunk, rgb_to_sh_dc, sh_dc_to_rgb
from engine.zoom import Scene
from generation.registry import Registry
from generation.stages.observe import HOLE_ALPHA, splat_pixels
from generation.tone import (border_weight, feather_keeping_detail, low_frequency_correction,
                             match_low_frequencies)

SOLID_ALPHA = 0.5  # the fitted level's render counts where it is at least this opaque
STRUCTURE = 0.02  # mask values above this are the inserted structure
SHADOW_REACH = 0.6  # a structure of radius r darkens the ground up to 0.6 r beyond its edge


@dataclass(frozen=True, eq=False)
class HarmonizeInput:
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]: the edited view
    seen: np.ndarray  # [H, W, 3] O_i as seen: the coarse world at C_i over black
    colour: np.ndarray  # [H, W, 3] the colours the level copies (`observe.seen_colours`)
    alpha: np.ndarray  # [H, W] the coarse world's accumulated opacity at C_i
    mask: np.ndarray  # [H, W] float in [0, 1]: the inserted structure
    parent_px: float = 4.0  # working pixels per parent pixel (the zoom factor)
    tone_sigma: float = 0.5  # low-pass of the tone match, in parent pixels; 0 = no match
    border_fade: float = 0.05  # width of the border fade / the short side; 0 = a hard edge
    fade_detail_px: float = 0.0  # the fade keeps the edited detail finer than this Gaussian
    # (working pixels); 0 = it fades everything, detail included


@dataclass(frozen=True, eq=False)
class HarmonizeOutput:
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]: what the new level is made from
    correction: np.ndarray  # [H, W, 3] the tone field that was added
    fade: np.ndarray  # [H, W] in [0, 1]: 1 = the edited image, 0 = O_i's colours
    reference: np.ndarray  # [H, W] the weights the tone match listened to


class HarmonizeBackend(Protocol):
    def __call__(self, inp: HarmonizeInput) -> HarmonizeOutput: ...


REGISTRY: Registry[HarmonizeBackend] = Registry("harmonize")


def shadow_zone(mask: np.ndarray) -> np.ndarray:  # [H, W] float -> [H, W] bool
    """The structure and the ground its contact shadow may darken: within SHADOW_REACH x its
    radius (from its area) of its edge."""
    solid = np.asarray(mask) > STRUCTURE
    if not solid.any():
        return solid
    reach = SHADOW_REACH * math.sqrt(solid.sum() / math.pi) + 1.0
    return ndimage.distance_transform_edt(~solid) <= reach


@REGISTRY.register("builtin")
class ToneAndFade:
    def __call__(self, inp: HarmonizeInput) -> HarmonizeOutput:
        H, W = inp.rgb.shape[:2]
        mask = np.clip(np.asarray(inp.mask, np.float64), 0.0, 1.0)
        fade = np.maximum(border_weight(H, W, inp.border_fade * min(H, W)), mask)
        image = feather_keeping_detail(inp.rgb, inp.colour, fade, inp.fade_detail_px)
        reference = ((np.asarray(inp.alpha) >= HOLE_ALPHA) & ~shadow_zone(mask)).astype(np.float64)
        if inp.tone_sigma > 0 and reference.any():
            sigma = inp.tone_sigma * max(float(inp.parent_px), 1.0)
            image, field = match_low_frequencies(image, inp.seen, reference, sigma, keep=mask)
        else:
            field = np.zeros_like(image)
        return HarmonizeOutput(np.clip(image, 0.0, 1.0), field, fade, reference)


def run(inp: HarmonizeInput, backend: str = "builtin", **options) -> HarmonizeOutput:
    return REGISTRY.get(backend, **options)(inp)


def correct_fit_tone(chunks: Sequence[SplatChunk],  # the fitted new level
                     camera: Camera,  # C_i, the camera the level was made at
                     target: np.ndarray,  # [H, W, 3] the image it was made from
                     old_scene: Scene,  # the old world, links as after the append
                     reference: np.ndarray,  # [H, W] where to listen (HarmonizeOutput)
                     keep: np.ndarray,  # [H, W] in [0, 1]: 1 = colours untouched (structure)
                     sigma: float,  # the tone match's low-pass, working pixels
                     steps: int = 2,
                     low_pass_px2: float = LOW_PASS_PX2,  # the fit's antialias term
                     ) -> tuple[tuple[SplatChunk, ...], np.ndarray]:
    """The splat fit's own tone shift, corrected against the image the level was made from
    (issue 21: whatever shifts tone, the fit included, is corrected outside the edit). The
    optimiser moves opacity, scale and rotation only, and compositing overlapping opaque
    splats is not linear (at an edge the near side's splats spread over the far side's), so
    the fitted render's low frequencies miss the image's by a few 1/255 along edges. A
    render is linear in the colours, so the smooth field that brings the render (old world
    included, as the optimiser sees it) to the image, added to each splat's colour at the
    pixel it projects to, removes it; `steps` rounds of render and correct. Colours change
    by a smooth field only: detail finer than `sigma` and the structure stay as fitted.
    Returns (corrected chunks, the total field added [H, W, 3])."""
    from generation.stages.observe import render_view

    H, W = camera.height, camera.width
    chunks = tuple(chunks)
    total = np.zeros((H, W, 3))
    free = (1.0 - np.clip(np.asarray(keep, np.float64), 0.0, 1.0))[..., None]
    for _ in range(max(0, int(steps))):
        rgb, alpha, _, _ = render_view(camera, tuple(old_scene) + tuple((c, None) for c in chunks),
                                       low_pass_px2)
        weight = np.asarray(reference, np.float64) * (alpha >= SOLID_ALPHA)
        if not weight.any():
            break
        field = low_frequency_correction(rgb, target, weight, sigma) * free
        total += field
        chunks = tuple(_add_colour(c, camera, field) for c in chunks)
    return chunks, total


def _add_colour(chunk: SplatChunk, camera: Camera, field: np.ndarray) -> SplatChunk:
    """`chunk` with `field` [H, W, 3] at the pixel each splat projects to added to its colour
    (splats outside the view or behind the camera unchanged)."""
    rows, v, u = splat_pixels(camera, chunk)
    add = field[v, u]  # [n, 3]
    moved = (add != 0).any(axis=1)  # the others keep their colour bit for bit
    rows, add = rows[moved], add[moved]
    sh_dc = chunk.sh_dc.copy()
    sh_dc[rows] = rgb_to_sh_dc(np.clip(sh_dc_to_rgb(sh_dc[rows]) + add, 0.0, 1.0))
    return replace(chunk, sh_dc=sh_dc)
