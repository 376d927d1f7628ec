"""Stage 1, observe: render the existing world E_{i-1} at the zoom camera C_i.

Owns: `ObserveInput` / `ObserveOutput` and the builtin backend, which renders the old world
(modulated at the render camera, i.e. at the target scale) with `generation.raster`:
- at C_i itself: alpha, expected depth and median depth (the coarse geometry the new level is
  registered to), and the RGB the blurry magnification shows;
- the colours the new level is made from (`seen_colours`): the old world *as seen* wherever
  it is at least `HOLE_ALPHA` opaque, see-through parts included, so that a level drawn
  over (or faded into) its parent shows the same picture; only a hole is filled;
- at C_i with `factor`x fewer pixels (same pose and field of view): the view at the parent
  level's own resolution, which super-resolution then enlarges: the render at C_i
  area-averaged (`parent_resolution_view`), so both views share one pixel grid.
Does not own: choosing C_i or which chunks are sent (the caller frustum-culls them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from engine.camera import Camera
from engine.render.reference import LOW_PASS_PX2, RenderOutput
from engine.splats import SplatChunk
from engine.zoom import Scene, scene_seen_by
from generation.imaging import inpaint_rgb, resize, unpremultiply
from generation.registry import Registry
from generation.tone import smoothstep


HOLE_ALPHA = 0.1  # below this opacity the old world is a hole that a new level fills


@dataclass(frozen=True, eq=False)
class ObserveInput:
    camera: Camera  # C_i at the working resolution
    scene: Scene  # the old world (chunk, links) pairs
    factor: float = 4.0  # how much narrower C_i is than the view it was picked in


@dataclass(frozen=True, eq=False)
class ObserveOutput:
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]: `seen_colours`, what the level is made from
    alpha: np.ndarray  # [H, W] accumulated opacity of the old world at C_i
    depth: np.ndarray  # [H, W] median depth (alpha crosses 0.5); nan where alpha < 0.5
    expected_depth: np.ndarray  # [H, W] expected depth; nan where alpha == 0
    low_camera: Camera  # C_i with `factor`x fewer pixels
    low_rgb: np.ndarray  # [h, w, 3] float, the parent-resolution view (`seen_colours`)
    low_alpha: np.ndarray  # [h, w]
    seen: np.ndarray | None = None  # [H, W, 3] the render at C_i over black (transparency in)


class ObserveBackend(Protocol):
    def __call__(self, inp: ObserveInput) -> ObserveOutput: ...


REGISTRY: Registry[ObserveBackend] = Registry("observe")


def render_view(camera: Camera, scene: Scene, low_pass_px2: float = LOW_PASS_PX2
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rgb over black [H, W, 3], alpha [H, W], expected depth, median depth) as float64.
    `low_pass_px2`: the rasterizer's antialias term (default: the viewers' own). Rendered
    where the fit runs (`generation.raster.default_device`: the device setting), since
    the level's own renders (`close_coverage` at twice the working grid, `correct_fit_tone`)
    and the old world's at C_i are the size the level is shown at on the GPU path."""
    from generation.raster import default_device, render_chunks

    H, W = camera.height, camera.width
    pairs = scene_seen_by(camera, scene)
    if not pairs:
        z = np.zeros((H, W))
        return np.zeros((H, W, 3)), z, z.copy(), z.copy()
    out = render_chunks(camera, list(pairs), device=default_device(), low_pass_px2=low_pass_px2)
    rgb = out.rgb.double().cpu().numpy()
    alpha = out.alpha.double().cpu().numpy()
    depth = out.depth.double().cpu().numpy()
    median = out.median_depth.double().cpu().numpy() if out.median_depth is not None else depth
    return rgb, alpha, depth, median


def depth_probe(scene: Scene) -> Callable[[Camera], RenderOutput]:
    """A renderer of `scene` for `engine.zoom.pick_surface`: alpha and the median depth
    (where alpha crosses 0.5: the surface, not a blend of what is in front and behind)."""
    def render(camera: Camera) -> RenderOutput:
        rgb, alpha, _, median = render_view(camera, scene)
        return RenderOutput(rgb, alpha, median)

    return render


def splat_pixels(camera: Camera, chunk: SplatChunk
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # rows, v, u: [n] int64
    """The splats of `chunk` whose centre lies in front of `camera` and inside its image, and
    the pixel (row v, column u) each centre falls in."""
    uv, z = camera.project(chunk.world_positions())
    H, W = camera.height, camera.width
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(uv).all(axis=1) & (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) \
            & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    rows = np.nonzero(ok)[0]
    return (rows, np.clip(np.floor(uv[rows, 1]).astype(np.int64), 0, H - 1),
            np.clip(np.floor(uv[rows, 0]).astype(np.int64), 0, W - 1))


def seen_colours(rgb: np.ndarray,  # [H, W, 3] the old world rendered over black
                 alpha: np.ndarray,  # [H, W] its accumulated opacity
                 ) -> np.ndarray:  # [H, W, 3] in [0, 1]
    """The colours a new level copies: the render itself (over black, the background every
    viewer clears to) wherever the old world is at least `HOLE_ALPHA` opaque, the
    un-premultiplied colours with holes inpainted where it is not, a smoothstep of alpha
    between. A level is opaque, and parent + child draw w child + (1 - w) parent as it is
    seen, so only a level that copies the see-through parts as they look (a half-transparent
    streak along a depth edge looks dark) joins its parent without showing a patch at every
    scale between them (issue 21, docs/benchmarks.md "A see-through parent"); where nothing
    of the old world is there, the level fills the hole. Solid pixels come out unchanged."""
    rgb = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    alpha = np.clip(np.asarray(alpha, np.float64), 0.0, 1.0)
    filled = inpaint_rgb(unpremultiply(rgb, alpha), alpha < 0.02)
    r = smoothstep(alpha / HOLE_ALPHA)[..., None]
    return r * rgb + (1.0 - r) * filled


def parent_resolution_view(rgb: np.ndarray,  # [H, W, 3] premultiplied (over black)
                           alpha: np.ndarray,  # [H, W]
                           width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The view at the parent's resolution: `rgb` and `alpha` area-averaged to `width` x
    `height` pixels (what a sensor with that many pixels records), then `seen_colours`.
    Averaging the render at C_i keeps the two views on one pixel grid. A
    second render at the low resolution does not: its 0.3 px^2 low-pass is 3-4 working pixels
    wide there, and alpha compositing is not linear, so the splats in front (along a tilted
    surface, the near side's) spread over the ones behind and the whole view moved 1.5-1.7
    working pixels towards the far side (docs/benchmarks.md, issue 21, "The parent view
    was off by a pixel"); super-resolution carried that offset into every new level."""
    low_rgb = np.clip(resize(rgb, width, height), 0.0, None)
    low_alpha = np.clip(resize(alpha, width, height), 0.0, 1.0)
    return seen_colours(low_rgb, low_alpha), low_alpha


@REGISTRY.register("builtin")
class RasterObserver:
    """Renders with the differentiable rasterizer (torch on CPU, gsplat on CUDA), no grads."""

    def __call__(self, inp: ObserveInput) -> ObserveOutput:
        cam = inp.camera
        rgb, alpha, expected, median = render_view(cam, inp.scene)
        colour = seen_colours(rgb, alpha)
        depth = np.where((alpha >= 0.5) & (median > 0), median, np.nan)
        expected = np.where(alpha > 0, expected, np.nan)
        factor = inp.factor if math.isfinite(inp.factor) and inp.factor > 1.0 else 1.0
        low_cam = cam.resampled_by(factor) if factor > 1.0 else cam
        if low_cam is cam:
            low_rgb, low_alpha = colour, alpha
        else:
            low_rgb, low_alpha = parent_resolution_view(rgb, alpha, low_cam.width,
                                                        low_cam.height)
        return ObserveOutput(colour, alpha, depth, expected, low_cam, low_rgb, low_alpha,
                             np.clip(rgb, 0.0, 1.0))


def run(inp: ObserveInput, backend: str = "builtin", **options) -> ObserveOutput:
    return REGISTRY.get(backend, **options)(inp)
