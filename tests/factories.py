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


def matrix_icc_profile(primaries_xyz: np.ndarray,  # [3, 3]: columns R, G, B in XYZ (D50)
                       gamma: float, description: str) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix and pure-gamma curves), as a camera or a
    phone embeds in its JPEGs; no profile files ship with the system or with Pillow."""
    import struct

    def s15(v: float) -> bytes:
        return struct.pack(">i", int(round(v * 65536)))

    def xyz(v) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    text = description.encode("ascii") + b"\0"
    desc = (b"desc" + bytes(4) + struct.pack(">I", len(text)) + text
            + bytes(8) + bytes(3) + bytes(67))
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, int(round(gamma * 256))) + bytes(2)
    m = np.asarray(primaries_xyz, np.float64)
    tags = [(b"desc", desc), (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", xyz(m[:, 0])),
            (b"gXYZ", xyz(m[:, 1])), (b"bXYZ", xyz(m[:, 2])), (b"rTRC", curve),
            (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text" + bytes(4) + b"none\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"none" + struct.pack(">I", 0x02100000) + b"mntr"
              + b"RGB " + b"XYZ " + bytes(12) + b"acsp" + bytes(4) + bytes(4) + bytes(8)
              + bytes(8) + struct.pack(">I", 0) + xyz((0.9642, 1.0, 0.8249))[8:] + bytes(4)
              + bytes(16) + bytes(28))
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + data
