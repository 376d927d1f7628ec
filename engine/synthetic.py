"""Pixel-aligned splats from an image + depth + camera, and small synthetic worlds.

Owns: the numpy pixel-aligned initialisation of idea 1 in docs/design.md (position
back-projected from depth, orientation from the depth map's normal, scale from the pixel
footprint, colour from the pixel, opacity 0.1, `s_native` from depth and the camera) and
procedural multi-level worlds (and their histories) used by `wonderzoom demo`, the tests and
the benchmarks.
Does not own: optimisation of the splats (generation) or any model inference.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from engine.camera import Camera
from engine.chunking import split_level
from engine.history import History, Step
from engine.splats import SplatChunk, matrices_to_quaternions, rgb_to_sh_dc
from engine.zoom import zoom_camera

INIT_OPACITY = 0.1
THIN_RATIO = 0.1  # splat thickness along the surface normal, relative to its footprint


def pixel_aligned_splats(
    camera: Camera,
    depth: np.ndarray,  # [H, W] camera-space depth (z), H, W = camera.height, camera.width
    rgb: np.ndarray,  # [H, W, 3] colours in [0, 1]
    level: int = 0,
    stride: int = 1,
    mask: np.ndarray | None = None,  # [H, W] bool: only these pixels get splats
    footprint: float = 1.0,  # sigma in units of the neighbour spacing (Nyquist ~ 1)
    opacity: float = INIT_OPACITY,
) -> SplatChunk:
    """One splat per `stride`-th pixel, in the chunk's float64 frame centred on the points."""
    H, W = depth.shape
    if (H, W) != (camera.height, camera.width) or rgb.shape[:2] != (H, W):
        raise ValueError(f"depth {depth.shape} / rgb {rgb.shape} do not match camera "
                         f"{camera.width}x{camera.height}")
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    uv = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], 1)
    z = depth.astype(np.float64).ravel()
    pts = camera.unproject(uv, z).reshape(H, W, 3)  # [H, W, 3]
    # tangents from neighbours one `stride` apart (central differences inside, one-sided at edges)
    du = np.gradient(pts, axis=1) * stride
    dv = np.gradient(pts, axis=0) * stride
    n = np.cross(du, dv)
    n_norm = np.linalg.norm(n, axis=-1, keepdims=True)
    du_len = np.linalg.norm(du, axis=-1)
    dv_len = np.linalg.norm(dv, axis=-1)
    t1 = du / np.maximum(du_len[..., None], 1e-300)
    nrm = n / np.maximum(n_norm, 1e-300)
    t2 = np.cross(nrm, t1)
    R = np.stack([t1, t2, nrm], axis=-1)  # columns: tangent, bitangent, normal
    sigma_u = footprint * du_len
    sigma_v = footprint * dv_len
    sigma_n = THIN_RATIO * np.minimum(sigma_u, sigma_v)
    keep = np.zeros((H, W), bool)
    keep[stride // 2::stride, stride // 2::stride] = True
    if mask is not None:
        keep &= mask.astype(bool)
    keep &= (depth > 0) & np.isfinite(depth) & (n_norm[..., 0] > 0)
    rows = keep.ravel()
    log_scales = np.log(np.maximum(np.stack([sigma_u, sigma_v, sigma_n], -1).reshape(-1, 3)[rows],
                                   1e-30))
    s_native = z[rows] / camera.focal
    logit = math.log(opacity / (1 - opacity))
    return SplatChunk.from_world(
        positions_world=pts.reshape(-1, 3)[rows],
        rotations=matrices_to_quaternions(R.reshape(-1, 3, 3)[rows]),
        log_scales=log_scales,
        opacity_logits=np.full(rows.sum(), logit),
        sh_dc=rgb_to_sh_dc(rgb.reshape(-1, 3)[rows]),
        s_native=s_native,
        level=level,
    )


def procedural_texture(h: int, w: int, seed: int, detail: float = 1.0) -> np.ndarray:
    """A colourful, deterministic texture [h, w, 3] in [0, 1] (sum of random sinusoids)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.zeros((h, w, 3))
    for _ in range(6):
        f = rng.uniform(2, 12) * detail
        ang = rng.uniform(0, 2 * np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * f * (np.cos(ang) * x + np.sin(ang) * y) + phase)
        out += wave[..., None] * rng.uniform(-0.15, 0.15, 3)
    return np.clip(0.5 + out, 0.0, 1.0)


def nested_plane_world(
    levels: int = 3,
    factor: float = 4.0,
    size: int = 96,
    depth: float = 4.0,
    seed: int = 0,
) -> list[tuple[Camera, SplatChunk]]:
    """A textured plane seen head-on, then `levels - 1` zooms each `factor`x finer into the
    middle of the previous view: [(C_i, level i splats)], root first."""
    cam = Camera.look_at([0.0, 0.0, -depth], [0.0, 0.0, 0.0], fov_y_deg=50, width=size, height=size)
    out = []
    target = np.zeros(3)
    rng = np.random.default_rng(seed)
    for i in range(levels):
        if i > 0:
            target = target + rng.uniform(-0.1, 0.1, 3) * cam.pixel_scale(target[None])[0] * size
            target[2] = 0.0
            cam = zoom_camera(cam, target, factor)
        d = _plane_depth(cam)
        rgb = procedural_texture(size, size, seed + i, detail=1.0 + i)
        out.append((cam, pixel_aligned_splats(cam, d, rgb, level=i)))
    return out


def _plane_depth(camera: Camera) -> np.ndarray:
    """[H, W] depth of the world plane z = 0 seen by `camera`."""
    H, W = camera.height, camera.width
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)
    R = camera.T_world_camera[:3, :3]
    o = camera.T_world_camera[:3, 3]
    dir_world_z = rays @ R[2]  # z component of the world ray per unit camera depth
    with np.errstate(divide="ignore"):
        t = -o[2] / dir_world_z
    return np.where(t > 0, t, np.inf)


# ---- a fractal world for the bundled sample ----------------------------------------------
_PALETTE = np.array([  # (position, r, g, b): water -> shore -> meadow -> rock -> snow
    [0.00, 0.05, 0.12, 0.35], [0.35, 0.10, 0.45, 0.65], [0.45, 0.85, 0.78, 0.50],
    [0.52, 0.25, 0.55, 0.20], [0.68, 0.12, 0.38, 0.12], [0.80, 0.45, 0.38, 0.30],
    [0.92, 0.92, 0.92, 0.95], [1.00, 1.00, 1.00, 1.00]])


def _value_noise(x: np.ndarray, y: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] at float64 points, periodic with the table size."""
    n = table.shape[0]
    xi, yi = np.floor(x), np.floor(y)
    fx, fy = x - xi, y - yi
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = xi.astype(np.int64) % n, yi.astype(np.int64) % n
    x1, y1 = (x0 + 1) % n, (y0 + 1) % n
    top = table[y0, x0] * (1 - sx) + table[y0, x1] * sx
    bottom = table[y1, x0] * (1 - sx) + table[y1, x1] * sx
    return top * (1 - sy) + bottom * sy


def fractal_colour(points: np.ndarray, finest: float, seed: int = 0) -> np.ndarray:
    """[N, 3] colours of a fractal landscape texture at world points (x, y used), with octaves
    down to the world length `finest`: the same place has the same colour at every level, and
    finer levels add finer octaves, so zooming reveals new detail that matches the coarse view."""
    rng = np.random.default_rng(seed)
    table = rng.random((256, 256))
    x, y = points[:, 0], points[:, 1]
    height = np.zeros(len(points))
    detail = np.zeros(len(points))
    amplitude, wavelength, total = 1.0, 2.0, 0.0
    octave = 0
    while wavelength > 2 * finest and octave < 40:
        offset = 17.31 * octave  # decorrelate octaves
        value = _value_noise(x / wavelength + offset, y / wavelength - offset, table)
        if octave < 4:
            height += amplitude * value
            total += amplitude
        else:  # fine octaves modulate brightness: texture inside each region
            detail += (value - 0.5) * 0.8 ** (octave - 4) * 0.5
        amplitude *= 0.5
        wavelength *= 0.5
        octave += 1
    h = height / max(total, 1e-12)
    h = np.clip((h - 0.2) / 0.6, 0.0, 1.0)
    rgb = np.stack([np.interp(h, _PALETTE[:, 0], _PALETTE[:, c]) for c in (1, 2, 3)], axis=1)
    return np.clip(rgb * (1.0 + detail[:, None]), 0.0, 1.0)


def fractal_plane_world(levels: int = 3, factor: float = 4.0, size: int = 256, seed: int = 0,
                        opacity: float = 0.95, relief: float = 0.0,
                        join: Callable[[Camera, np.ndarray, list[tuple[Camera, SplatChunk]]],
                                       np.ndarray] | None = None,
                        ) -> list[tuple[Camera, SplatChunk]]:
    """Like `nested_plane_world` but coloured by `fractal_colour`, consistent across levels;
    opaque splats stand in for optimised ones. The world of `wonderzoom demo`. `relief`: each
    splat's depth is scaled by 1 + relief x a standard normal draw. Seen head-on, a flat plane
    gives all its splats one depth, the ties are drawn in row order, and overlapping opaque
    splats show the last one drawn; a camera turned a little (C_i, towards its target) orders
    them by depth instead, so the same splats look shifted by a splat or two. A small relief
    (along the rays from the eye the levels share) gives them one order from every camera.
    `join(C_i, colours [size, size, 3], the coarser levels made so far)` -> the colours level
    i is made of, e.g. faded into how the coarser levels look at its border
    (`generation.procedural.fade_into_parent`); None: as drawn."""
    cam = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=size, height=size)
    out = []
    target = np.array([0.0137, -0.0071, 0.0])  # off the lattice of the noise, not centred on a cell
    relief_rng = np.random.default_rng(seed + 1)
    for i in range(levels):
        if i > 0:
            cam = zoom_camera(cam, target, factor)
        depth = _plane_depth(cam)
        if relief > 0:
            depth = depth * (1.0 + relief * relief_rng.standard_normal(depth.shape))
        v, u = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        pts = cam.unproject(np.stack([u.ravel(), v.ravel()], 1), depth.ravel())
        finest = float(cam.pixel_scale(target[None])[0])
        rgb = fractal_colour(pts, finest, seed).reshape(size, size, 3)
        if join is not None and out:
            rgb = join(cam, rgb, list(out))
        out.append((cam, pixel_aligned_splats(cam, depth, rgb, level=i, opacity=opacity)))
    return out


def levels_history(levels: list[tuple[Camera, SplatChunk]], max_chunk_splats: int = 16384,
                   name: str = "procedural", seed: int = 0, created: str = ""
                   ) -> tuple[History, dict[int, SplatChunk]]:
    """A history of the synthetic `levels` (root first; each level a zoom of the one before),
    with each level split into chunks: what the demo world and the tests save or open."""
    history, chunks = History(), {}
    for i, (camera, level) in enumerate(levels):
        parts = split_level(level, max_splats=max_chunk_splats)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=camera,
                         prompt="" if i == 0 else f"{name} detail x{round(4 ** i)}",
                         backend={"name": name, "version": "1", "seed": seed + i},
                         created=created))
    return history, chunks
