"""Random but realistic test data: splat chunks and cameras (deterministic given an rng)."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.camera import Camera
from engine.lod import LodLinks
from engine.splats import SH_REST_COUNTS, SplatChunk, rgb_to_sh_dc, normalize_quaternions


def random_chunk(rng: np.random.Generator, n: int, level: int = 0, sh_degree: int = 0,
                 origin: np.ndarray | None = None) -> SplatChunk:
    """`n` splats a few units around `origin`: unit quats, log-scales near -5, colours in range."""
    origin = rng.normal(0.0, 10.0, 3) if origin is None else np.asarray(origin, np.float64)
    m = SH_REST_COUNTS[sh_degree]
    return SplatChunk(
        origin=np.asarray(origin, np.float64).reshape(3),
        positions=rng.normal(0.0, 2.0, (n, 3)).astype(np.float32),  # [n, 3]
        rotations=normalize_quaternions(rng.normal(size=(n, 4))),  # [n, 4]
        log_scales=rng.normal(-5.0, 0.7, (n, 3)).astype(np.float32),  # [n, 3]
        opacity_logits=rng.normal(0.0, 2.0, n).astype(np.float32),  # [n]
        sh_dc=rgb_to_sh_dc(rng.uniform(0.0, 1.0, (n, 3))),  # [n, 3]
        s_native=np.exp(rng.normal(-6.0, 0.5, n)).astype(np.float32),  # [n]
        level=level,
        sh_rest=rng.normal(0.0, 0.1, (n, m, 3)).astype(np.float32),  # [n, m, 3]
    )


def random_camera(rng: np.random.Generator) -> Camera:
    eye = rng.normal(0.0, 3.0, 3)
    target = eye + rng.normal(0.0, 1.0, 3) + np.array([0.0, 0.0, 2.0])
    return Camera.look_at(eye, target, fov_y_deg=float(rng.uniform(20, 80)),
                          width=int(rng.integers(64, 1280)), height=int(rng.integers(64, 720)))


def random_linked_scene(seed: int, n: int = 1500, half_extent: tuple[float, float] = (2.0, 1.5)
                        ) -> tuple[Camera, SplatChunk, LodLinks]:
    """Anisotropic random splats 2.5-6 in front of an off-centre, non-square 96x72 camera,
    spread over +-`half_extent` (x, y; wider than the view puts many across its border), with
    half of them faded toward a parent and half toward a child by their LoD links."""
    rng = np.random.default_rng(seed)
    cam = Camera.look_at(rng.normal(0, 0.3, 3), [0.0, 0.0, 4.0], fov_y_deg=55, width=96,
                         height=72)
    cam = dataclasses.replace(cam, cx=cam.cx + 3.3, cy=cam.cy - 2.7)
    hx, hy = half_extent
    pts = np.stack([rng.uniform(-hx, hx, n), rng.uniform(-hy, hy, n), rng.uniform(2.5, 6, n)], 1)
    chunk = SplatChunk.from_world(
        pts, normalize_quaternions(rng.normal(size=(n, 4))),
        rng.uniform(-4.5, -2.0, (n, 3)), rng.normal(0.0, 1.5, n),
        rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))),
        s_native=cam.pixel_scale(pts) * np.exp(rng.uniform(-2.0, 2.0, n)), origin=[0.3, -0.2, 4.0])
    s_parent = np.where(rng.uniform(size=n) < 0.5, chunk.s_native * 3, np.inf)
    s_child = np.where(rng.uniform(size=n) < 0.5, chunk.s_native / 3, 0.0)
    return cam, chunk, LodLinks(s_parent.astype(np.float32), s_child.astype(np.float32))
