"""Where a zoom happens: the one home of the maths the app, the CLI and the tools share.

A zoom starts from a view (the window's camera in `play`, a step's camera for `wonderzoom
zoom`) and a pixel of it. This module turns those into a `ZoomRequest`:
1. `pick_surface`: the world point under the pixel, from the depth of a tiny crop rendered
   around it (the caller injects the renderer: OpenGL in the app, the torch rasterizer in the
   CLI, so this module needs neither);
2. `zoom_camera`: C_i, looking at that point from the view's position with a `factor`x
   narrower field of view (the pixel scale there shrinks by `factor`);
3. `scene_seen_by`: the chunks of the old world (with their LoD links) the parent view sees,
   which travel with the request so the generator can observe and link without the world;
4. `zoom_request`: all of it packed with the history's context (parent step, level, the
   prompts on the path).
Does not own: running the pipeline (`generation`), appending the result (`engine.scene.
append_level` in the app, `saves` in the CLI) or rendering.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from engine.camera import Camera
from engine.history import History
from engine.lod import LodIndex, LodLinks
from engine.messages import Observation, ZoomRequest
from engine.scene import ChunkBounds, ChunkHandle, ChunkStore
from engine.splats import SplatChunk
from engine.world import World

# the old world a zoom sees: (chunk, its LoD links; None = a root chunk) pairs
Scene = tuple[tuple[SplatChunk, LodLinks | None], ...]

MIN_PICK_ALPHA = 0.5  # a pixel is solid once the accumulated opacity passes this
PROBE_RADIUS_PX = 4  # a depth probe renders (2r + 1)^2 pixels around the pixel


class DepthImage(Protocol):
    """What a depth probe returns: any rendered frame with these two arrays."""

    alpha: np.ndarray  # [H, W] accumulated opacity
    depth: np.ndarray  # [H, W] camera depth (z); <= 0 or non-finite where nothing is


Render = Callable[[Camera], DepthImage]  # renders the world at a camera


# ---- 1. picking ---------------------------------------------------------------------------
def crop_camera(camera: Camera, pixel: tuple[float, float], radius: int = PROBE_RADIUS_PX
                ) -> Camera:
    """A (2 radius + 1)^2-pixel camera whose centre pixel is `pixel` of `camera` (same pose
    and focal lengths: the crop's pixels are exactly the full image's pixels there)."""
    x, y = int(math.floor(pixel[0])), int(math.floor(pixel[1]))
    size = 2 * radius + 1
    return Camera(camera.T_world_camera, camera.fx, camera.fy, camera.cx - (x - radius),
                  camera.cy - (y - radius), size, size, camera.near, camera.far)


def surface_point(frame: DepthImage, camera: Camera, pixel: tuple[float, float],
                  nearest: bool = False) -> np.ndarray | None:
    """The world point [3] under `pixel` of `camera`, from a frame of it (the frame may have
    another size than the camera: it is taken as a resampling of the same view). None where
    the pixel is not solid; with `nearest` the nearest solid pixel is used instead."""
    h, w = frame.alpha.shape
    sx, sy = w / camera.width, h / camera.height
    u, v = pixel[0] * sx, pixel[1] * sy
    if not (0 <= u < w and 0 <= v < h):
        return None
    with np.errstate(invalid="ignore"):
        solid = (frame.alpha >= MIN_PICK_ALPHA) & np.isfinite(frame.depth) & (frame.depth > 0)
    r, c = min(int(v), h - 1), min(int(u), w - 1)
    if solid[r, c]:
        at = np.array([[u, v]])
    elif nearest and solid.any():
        rows, cols = np.nonzero(solid)
        k = int(np.argmin((cols + 0.5 - u) ** 2 + (rows + 0.5 - v) ** 2))
        r, c = int(rows[k]), int(cols[k])
        at = np.array([[c + 0.5, r + 0.5]])
    else:
        return None
    return camera.unproject(at / [sx, sy], np.array([float(frame.depth[r, c])]))[0]


def pick_surface(camera: Camera, pixel: tuple[float, float], render: Render,
                 radius: int = PROBE_RADIUS_PX) -> np.ndarray | None:
    """The world point under `pixel` (at the pixel's centre), or None where nothing solid
    is there: only a tiny crop around it is rendered."""
    crop = crop_camera(camera, pixel, radius)
    return surface_point(render(crop), crop, (radius + 0.5, radius + 0.5))


def probe_depth(camera: Camera, pixel: tuple[float, float], render: Render,
                radius: int = PROBE_RADIUS_PX) -> float | None:
    """Camera depth of the surface under `pixel`, or None (the fly camera's focus)."""
    point = pick_surface(camera, pixel, render, radius)
    return None if point is None else float(camera.points_to_camera(point[None])[0, 2])


# ---- 2. the zoom camera -------------------------------------------------------------------
def zoom_camera(view: Camera, target: np.ndarray, factor: float,
                long_side: int | None = None) -> Camera:
    """C_i: from the view's position, looking at `target` with a `factor`x narrower field
    of view (so the pixel scale at the target shrinks by `factor`), the view's up direction
    and image shape; `long_side` resamples it (the generator's working size)."""
    fov_y = 2 * math.degrees(math.atan(0.5 * view.height / view.fy))
    new_fov = 2 * math.degrees(math.atan(math.tan(math.radians(fov_y) / 2) / factor))
    camera = Camera.look_at(view.position, target, up=-view.T_world_camera[:3, 1],
                            fov_y_deg=new_fov, width=view.width, height=view.height,
                            near=view.near / factor, far=view.far)
    return camera if long_side is None else camera.resampled_long_side(long_side, min_side=16)


# ---- 3. what a camera sees ----------------------------------------------------------------
def scene_seen_by(camera: Camera, pairs: Sequence[tuple[SplatChunk, LodLinks | None]],
                  bounds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> Scene:
    """The non-empty (chunk, links) pairs whose AABB may intersect `camera`'s frustum
    (`bounds`: their (lo, hi) when known, else computed from the chunks)."""
    if not pairs:
        return ()
    if bounds is None:
        bounds = [chunk.bounds() for chunk, _ in pairs]
    keep = camera.aabbs_in_frustum(np.stack([lo for lo, _ in bounds]),
                                   np.stack([hi for _, hi in bounds]))
    return tuple(pair for pair, k in zip(pairs, keep) if k and len(pair[0]))


def world_scene(world: World, camera: Camera | None = None, load: bool = True
                ) -> tuple[list[tuple[SplatChunk, LodLinks]], list[tuple[np.ndarray, np.ndarray]]]:
    """The chunk entities of `world` as (chunk, links) pairs, and their bounds: those whose
    box `camera`'s frustum may hold (every one when None). In a streamed world the ones not in
    RAM are read now with `load` (blocking: tools), else left out (the app: what it holds)."""
    store, index = world.resource(ChunkStore), world.resource(LodIndex)
    entries = [(handle.chunk_id, box) for _, (handle, box) in world.query(ChunkHandle, ChunkBounds)]
    if camera is not None and entries:
        keep = camera.aabbs_in_frustum(np.stack([b.lo for _, b in entries]),
                                       np.stack([b.hi for _, b in entries]))
        entries = [e for e, k in zip(entries, keep) if k]
    missing = [cid for cid, box in entries if box.count and cid not in store]
    read = store.load_now(missing) if load and missing else {}
    pairs, bounds = [], []
    for cid, box in entries:
        if cid in read:
            pairs.append(read[cid])
        elif (chunk := store.get(cid)) is not None:
            pairs.append((chunk, index.links[cid]))
        else:
            continue
        bounds.append((box.lo, box.hi))
    return pairs, bounds


# ---- 4. the request -----------------------------------------------------------------------
def zoom_request(request_id: int, history: History, world: World, view: Camera,
                 point: np.ndarray, prompt: str, *, factor: float, seed: int,
                 long_side: int | None = None,
                 observe: Callable[[Camera], Observation] | None = None,
                 load: bool = True) -> ZoomRequest:
    """The request for growing a level at `point` (picked in `view`) on the history's head.

    `world` holds the scene at the head (its chunks and LoD index); the chunks the parent
    view sees travel along (the auxiliary cameras orbit the target inside it): in a streamed
    world only those are read (`load`; the app sends what it holds instead). `observe`,
    for generators that cannot render, renders C_i's view to send with the request."""
    if history.head is None:
        raise ValueError("the world has no steps to zoom from")
    c_i = zoom_camera(view, point, factor, long_side)
    wide = c_i.with_fov_scale(1.0 / factor)
    pairs, bounds = world_scene(world, wide, load)
    scene = scene_seen_by(wide, pairs, bounds)
    return ZoomRequest(request_id, history.head, c_i, tuple(float(x) for x in point), prompt,
                       seed=seed, scene=scene, level=history.level_of(history.head) + 1,
                       context=tuple(s.prompt for s in history.path() if s.prompt),
                       observation=observe(c_i) if observe is not None else None)
