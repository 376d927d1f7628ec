"""A small nested world for the web viewer's tests: three levels of a gently rolling fractal
landscape, each zoom 4x finer at one point, splats with varied scales, rotations and
opacities (so every quantized field is exercised) and a surface with relief (so the depth
order of neighbouring splats is well defined, unlike on an exact plane, where float noise
alone would decide it and two correct renderers could disagree)."""

from __future__ import annotations

import numpy as np

from engine.camera import Camera
from engine.chunking import split_level
from engine.history import History, Step
from engine.splats import SplatChunk, normalize_quaternions
from engine.synthetic import fractal_colour, pixel_aligned_splats, zoom_camera

TARGET = np.array([0.0137, -0.0071, 0.0])


def plane_hits(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """([H, W] depth, [H, W, 3] world point) where pixel centres' rays meet z = 0."""
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64) + 0.5
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    R, o = cam.T_world_camera[:3, :3], cam.T_world_camera[:3, 3]
    t = -o[2] / (rays @ R[2])
    return t, o + (rays @ R.T) * t[..., None]


def relief(xy: np.ndarray) -> np.ndarray:
    """[N, 2] -> [N] relative depth change: octaves whose height is 0.4x their wavelength."""
    h = np.zeros(len(xy))
    for k, w in enumerate([0.9, 0.31, 0.083, 0.021, 0.0053, 0.0013]):
        angle = 1.3 * k + 0.4
        h += 0.4 * w * np.sin(2 * np.pi / w * (xy[:, 0] * np.cos(angle) + xy[:, 1] * np.sin(angle)) + k)
    return h


def relief_world(levels: int = 3, factor: float = 4.0, width: int = 160, height: int = 120,
                 seed: int = 0, amplitude: float = 0.01, chunk_splats: int = 16384):
    """(history, chunks, level cameras, zoom target)."""
    rng = np.random.default_rng(seed)
    cam = Camera.look_at([0.3, -0.4, -4.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=width, height=height)
    history, chunks, cams = History(), {}, []
    for i in range(levels):
        if i:
            cam = zoom_camera(cam, TARGET, factor)
        depth, pts = plane_hits(cam)
        depth = depth * (1 + amplitude * relief(pts.reshape(-1, 3)[:, :2]).reshape(depth.shape))
        finest = float(cam.pixel_scale(TARGET[None])[0])
        rgb = fractal_colour(pts.reshape(-1, 3), finest, seed).reshape(height, width, 3)
        lv = pixel_aligned_splats(cam, depth, rgb, level=i, opacity=0.9, footprint=0.5)
        n = len(lv)
        lv = SplatChunk(lv.origin, lv.positions,
                        normalize_quaternions(lv.rotations + rng.normal(0, 0.03, (n, 4)).astype(np.float32)),
                        (lv.log_scales + rng.normal(0, 0.15, (n, 3))).astype(np.float32),
                        rng.normal(2.5, 1.0, n).astype(np.float32), lv.sh_dc, lv.s_native, lv.level)
        parts = split_level(lv, max_splats=chunk_splats)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=cam,
                         point=None if i == 0 else tuple(TARGET),
                         prompt="a fractal landscape" if i == 0 else f"detail, level {i}"))
        cams.append(cam)
    return history, chunks, cams, TARGET.copy()
