"""Stage 6, auxiliary views: a few cameras around C_i, so small camera moves show no holes.

Owns: `AuxViewsInput` / `AuxViewsOutput`, `orbit_cameras`, `forward_warp`, and the builtin
backend: for each camera orbiting the target by +-`angle_deg` (yaw, pitch, then diagonals),
- warp what exists: the new main view (its pixels back-projected with the registered depth and
  z-buffered into the camera) composited with the old world as it will look once the new level
  is linked (old splats inside the new patch faded out, the rest as they are);
- fill the holes: RGB with OpenCV inpainting (Telea); depth from the depth stage with the
  known depth as its coarse geometry (so holes get background-side depth plus relief,
  registered to what is around them);
- report the hole mask (where the new level needs extra splats) and a loss mask.
A model backend (a camera-conditioned video or inpainting model) would replace the fill.
Does not own: the provisional LoD links of the old world (the pipeline passes them in) or
making splats (splat_init).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from engine.camera import Camera
from engine.zoom import Scene
from generation.imaging import inpaint_rgb, unpremultiply
from generation.registry import Registry
from generation.stages import depth as depth_stage
from generation.stages.observe import render_view

OCCLUSION_TOLERANCE = 0.02  # relative depth: the old world in front of the warp wins beyond it


@dataclass(frozen=True, eq=False)
class AuxViewsInput:
    camera: Camera  # C_i (working resolution)
    rgb: np.ndarray  # [H, W, 3] the final main-view image
    depth: np.ndarray  # [H, W] its registered depth
    target: np.ndarray  # [3] world point the cameras orbit around
    old_scene: Scene = ()  # the old world with provisional links (as after the append)
    count: int = 4
    angle_deg: float = 12.0
    relief: float = 1.0
    depth_backend: str = "builtin"
    depth_options: tuple[tuple[str, object], ...] = ()  # the depth backend's options
    caption: str = ""  # the context caption (an inpainting model uses it)


@dataclass(frozen=True, eq=False)
class AuxView:
    camera: Camera
    rgb: np.ndarray  # [H, W, 3] warped + composited + inpainted target image
    depth: np.ndarray  # [H, W] depth (warped where known, registered fill in the holes)
    holes: np.ndarray  # [H, W] bool: nothing covers these pixels -> new splats there
    loss_mask: np.ndarray  # [H, W] float: where the optimiser compares this view

    @property
    def hole_fraction(self) -> float:
        return float(self.holes.mean())


@dataclass(frozen=True, eq=False)
class AuxViewsOutput:
    views: tuple[AuxView, ...]


class AuxViewsBackend(Protocol):
    def __call__(self, inp: AuxViewsInput) -> AuxViewsOutput: ...


REGISTRY: Registry[AuxViewsBackend] = Registry("aux_views")


def orbit_offsets(count: int, angle_deg: float) -> list[tuple[float, float]]:
    """(yaw, pitch) in degrees: right, left, up, down, then the four diagonals."""
    a = angle_deg
    d = a / math.sqrt(2)
    pattern = [(a, 0.0), (-a, 0.0), (0.0, a), (0.0, -a), (d, d), (-d, -d), (d, -d), (-d, d)]
    return [pattern[i % len(pattern)] for i in range(count)]


def orbit_camera(camera: Camera, target: np.ndarray, yaw_deg: float, pitch_deg: float) -> Camera:
    """`camera` moved on the sphere around `target` (same distance and intrinsics), looking at
    it: yaw about the camera's up axis, pitch about its right axis."""
    from dataclasses import replace

    T = camera.T_world_camera
    right, down = T[:3, 0], T[:3, 1]
    target = np.asarray(target, np.float64)
    offset = camera.position - target

    def rot(axis: np.ndarray, deg: float) -> np.ndarray:
        axis = axis / np.linalg.norm(axis)
        t = math.radians(deg)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K

    R = rot(right, pitch_deg) @ rot(-down, yaw_deg)
    eye = target + R @ offset
    up = -(R @ down)
    look = Camera.look_at(eye, target, up=up, width=camera.width, height=camera.height,
                          near=camera.near, far=camera.far)
    # keep the exact intrinsics (look_at sets a centred principal point and one focal)
    return replace(camera, T_world_camera=look.T_world_camera)


def forward_warp(src: Camera, depth: np.ndarray, rgb: np.ndarray, dst: Camera
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffered nearest-pixel warp of a view into `dst`:
    (rgb [H', W', 3], depth [H', W'] (inf where nothing lands), hit [H', W'] bool)."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    ok = (np.isfinite(depth) & (depth > 0)).ravel()
    uv = np.stack([u.ravel(), v.ravel()], 1)[ok]
    pts = src.unproject(uv, depth.ravel()[ok])
    puv, z = dst.project(pts)
    with np.errstate(invalid="ignore"):
        iu = np.floor(puv[:, 0]).astype(np.int64, copy=False)
        iv = np.floor(puv[:, 1]).astype(np.int64, copy=False)
        inside = (z > dst.near) & (iu >= 0) & (iu < dst.width) & (iv >= 0) & (iv < dst.height)
    flat = iv[inside] * dst.width + iu[inside]
    zz = z[inside]
    cols = rgb.reshape(-1, 3)[ok][inside]
    order = np.lexsort((zz, flat))  # by pixel, nearest first
    first = np.unique(flat[order], return_index=True)[1]
    win = order[first]
    out_rgb = np.zeros((dst.height * dst.width, 3))
    out_z = np.full(dst.height * dst.width, np.inf)
    out_rgb[flat[win]] = cols[win]
    out_z[flat[win]] = zz[win]
    hit = np.isfinite(out_z)
    return (out_rgb.reshape(dst.height, dst.width, 3), out_z.reshape(dst.height, dst.width),
            hit.reshape(dst.height, dst.width))


@REGISTRY.register("builtin")
class WarpInpaint:
    def __call__(self, inp: AuxViewsInput) -> AuxViewsOutput:
        views = []
        for yaw, pitch in orbit_offsets(inp.count, inp.angle_deg):
            cam = orbit_camera(inp.camera, inp.target, yaw, pitch)
            views.append(self.view(inp, cam))
        return AuxViewsOutput(tuple(views))

    def view(self, inp: AuxViewsInput, cam: Camera) -> AuxView:
        w_rgb, w_z, hit = forward_warp(inp.camera, inp.depth, inp.rgb, cam)
        covered = ndimage.binary_closing(hit, structure=np.ones((3, 3)), border_value=1) | hit
        o_rgb, o_alpha, _, o_med = render_view(cam, inp.old_scene)
        old = (o_alpha >= 0.5) & (o_med > 0)
        old_colour = unpremultiply(o_rgb, o_alpha)
        old_in_front = old & (o_med < np.where(hit, w_z, np.inf) * (1 - OCCLUSION_TOLERANCE))
        use_new = hit & ~old_in_front
        use_old = old & ~use_new
        rgb = np.where(use_new[..., None], w_rgb, np.where(use_old[..., None], old_colour, 0.0))
        known_z = np.where(use_new, w_z, np.where(use_old, o_med, np.nan))
        holes = ~covered & ~old
        unknown = ~(use_new | use_old)
        rgb = self.fill(inp, cam, rgb, unknown)
        dep = depth_stage.run(depth_stage.DepthInput(
            cam, rgb, coarse_depth=known_z, relief=inp.relief, finetune=False),
            inp.depth_backend, **dict(inp.depth_options))
        depth = np.where(np.isfinite(known_z), known_z, dep.depth)
        loss = ndimage.binary_dilation(covered | holes, iterations=2).astype(np.float64)
        return AuxView(cam, rgb, depth, holes, loss)

    def fill(self, inp: AuxViewsInput, cam: Camera, rgb: np.ndarray, unknown: np.ndarray
             ) -> np.ndarray:
        """The view with its `unknown` pixels filled (builtin: OpenCV Telea inpainting)."""
        return inpaint_rgb(rgb, unknown)


def run(inp: AuxViewsInput, backend: str = "builtin", **options) -> AuxViewsOutput:
    return REGISTRY.get(backend, **options)(inp)
