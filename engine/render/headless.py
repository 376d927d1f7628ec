"""Headless rendering for automation: frames of a world along a camera path, as images.

Owns: the start camera of a world (its root level's camera, or one framing the splats when
the world carries none, e.g. an import), the zoom-sweep target (a depth pick on a rendered
frame) and its end scale (the finest native scale near the target), and writing frames as
PNG (a small zlib encoder: no imaging library needed) and optionally as mp4 (imageio with
ffmpeg, when installed).
In a streamed world these read only what they need: the start camera and the sweep's end
scale come from the chunks' metadata and the few chunks near the target, and
`render_resident` waits (a tool may) until the chunks a frame shows are in RAM.
Does not own: loading worlds (`saves/`, wired by `cli.render`), the camera-path file format
(`engine.render.camera_path`) or drawing (`engine.render.streaming`).
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.atomic import atomic_write, write_all
from engine.camera import Camera, aabb_corners
from engine.render.camera_path import CameraPathError, default_camera, zoom_sweep
from engine.render.reference import RenderOutput
from engine.render.visibility import chunk_table, visible_chunks
from engine.scene import ChunkBounds, ChunkHandle, ChunkStore, level_entities
from engine.world import World
from engine.zoom import surface_point

SAMPLE_SPLATS = 200_000  # enough centres to frame a world
NEAR_TARGET_PX = 16.0  # splats within this many of their own native pixels count as "there"
RESIDENT_WAIT_S = 120.0  # `render_resident` gives up waiting for chunks after this long


def world_chunks(world: World) -> list:
    store = world.resource(ChunkStore)
    out = []
    for _, (handle,) in world.query(ChunkHandle):
        chunk = store.get(handle.chunk_id)
        if chunk is not None and len(chunk):
            out.append(chunk)
    return out


def start_camera(world: World, width: int, height: int) -> Camera:
    """The root level's camera at this image size as `play` opens it (same pose and
    horizontal field of view: a photo's width fills the frame), or, for a world without
    cameras, one looking at the bulk of its splats."""
    levels = sorted(level_entities(world), key=lambda e: e[1].level)
    for _, node in levels:
        if node.camera is not None:
            return node.camera.reframed(width, height, keep="fov_x")
    return framing_camera(world, width, height)


def framing_camera(world: World, width: int, height: int) -> Camera:
    """A camera looking along +z at the bulk of the world's splats, far enough back that they
    fill the frame (`engine.render.camera_path.default_camera`, which the web export applies to
    the splats too): where `render` and `play` open a world without cameras."""
    if world.resource(ChunkStore).streaming:  # the boxes' corners, 8 per 1000 splats
        boxes = [b for _, (b,) in world.query(ChunkBounds) if b.count]
        if not boxes:
            raise CameraPathError("the world holds no splats to look at")
        # corners, not centres: a world of one chunk (a small import) would be one point, and
        # a camera framing a point stands inside the splats it should look at
        points = np.concatenate([np.repeat(aabb_corners(b.lo, b.hi)[0], max(1, b.count // 1000), 0)
                                 for b in boxes])
        return default_camera(points, width, height)
    chunks = world_chunks(world)
    total = sum(len(c) for c in chunks)
    if total == 0:
        raise CameraPathError("the world holds no splats to look at")
    step = max(1, total // SAMPLE_SPLATS)
    points = np.concatenate([c.world_positions()[::step] for c in chunks])
    return default_camera(points, width, height)


def sweep_target(frame: RenderOutput, camera: Camera, uv: tuple[float, float] | None = None
                 ) -> np.ndarray:
    """World point under pixel `uv` of `camera` (default: the image centre) from a frame of
    it; where nothing solid is under it, the nearest solid pixel is used."""
    u, v = (camera.width / 2.0, camera.height / 2.0) if uv is None else (float(uv[0]), float(uv[1]))
    if not (0 <= u < camera.width and 0 <= v < camera.height):
        raise CameraPathError(f"pixel ({u:g}, {v:g}) is outside the "
                              f"{camera.width}x{camera.height} image")
    point = surface_point(frame, camera, (u, v), nearest=True)
    if point is None:
        raise CameraPathError("nothing is visible from the start camera")
    return point


def finest_scale_near(world: World, point: np.ndarray) -> float:
    """The smallest native scale among splats at `point` (within NEAR_TARGET_PX of their own
    native pixels): where a zoom toward `point` reaches the deepest level there. Only the
    chunks whose box reaches the point are read."""
    best = np.inf
    overall = np.inf
    point = np.asarray(point, np.float64)
    near = []
    for _, (handle, box) in world.query(ChunkHandle, ChunkBounds):
        if not box.count:
            continue
        overall = min(overall, box.s_native_lo)
        reach = NEAR_TARGET_PX * box.s_native_hi
        if not (np.any(point < box.lo - reach) or np.any(point > box.hi + reach)):
            near.append(handle.chunk_id)
    for chunk, _ in world.resource(ChunkStore).load_now(near).values():
        dist = np.linalg.norm(chunk.world_positions() - point, axis=1)
        near = dist <= NEAR_TARGET_PX * chunk.s_native
        if near.any():
            best = min(best, float(chunk.s_native[near].min()))
    return best if np.isfinite(best) else overall


def zoom_sweep_path(renderer, world: World, start: Camera, frames: int,
                    uv: tuple[float, float] | None = None,
                    target: np.ndarray | None = None,
                    s_end: float | None = None) -> list[Camera]:
    """A straight zoom from `start` toward `target` (a world point) or else the world point
    under `uv`, down to `s_end` or else the finest level there (`renderer`: a
    `StreamingRenderer`, used for the depth pick)."""
    if target is None:
        frame = render_resident(renderer, world, start)
        target = sweep_target(frame, start, uv)
    if s_end is None:
        s_end = finest_scale_near(world, target)
    return zoom_sweep(start, target, s_end, frames)


def render_resident(renderer, world: World, camera: Camera,
                    next_camera: Camera | None = None) -> RenderOutput:
    """`renderer.render_offscreen` of the whole view: in a streamed world, frames are drawn
    again until no chunk the view shows is still loading (the store's I/O thread reads them
    meanwhile; `next_camera`'s are asked for too, so the next frame's load overlaps this
    one). A chunk refused as damaged or left out by the RAM budget is simply not drawn.
    For tools that record frames (`render`, benchmarks): the app never waits."""
    store = world.resource(ChunkStore)
    deadline = time.monotonic() + RESIDENT_WAIT_S
    while True:
        out = renderer.render_offscreen(world, camera)
        if next_camera is not None and store.streaming:
            table = chunk_table(world)
            if len(table):
                store.request(table.chunk_id[visible_chunks(table, next_camera)].tolist(),
                              prefetch=True)
        if renderer.last_stats.chunks_pending == 0 or store.pending() == 0 \
                or time.monotonic() > deadline:
            return out
        store.wait(1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(rgb, np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """[H, W, 3] uint8 -> an 8-bit RGB PNG file."""
    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
           + chunk(b"IEND", b""))
    with atomic_write(path, durable=False) as fd:  # a full disk leaves no half a frame
        write_all(fd, png)


def read_png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from a PNG header (used by tests and sanity checks)."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return struct.unpack(">II", head[16:24])


def read_png(path: str | Path) -> np.ndarray:
    """[H, W, 3] uint8 from a PNG as `write_png` writes it (8-bit RGB, no row filters)."""
    data = Path(path).read_bytes()
    w, h = read_png_size(path)
    if data[24:27] != bytes([8, 2, 0]):
        raise ValueError(f"{path}: not an 8-bit RGB PNG")
    pos, idat = 8, b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    if rows[:, 0].any():
        raise ValueError(f"{path}: filtered rows are not supported")
    return rows[:, 1:].reshape(h, w, 3).copy()


def mp4_writer_available() -> bool:
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except Exception:
        return False
    return True


def write_mp4(path: str | Path, frames: Sequence[Path], fps: float = 30.0) -> None:
    """Encode PNG frames (same size) into an H.264 mp4 with imageio + ffmpeg (odd sizes are
    padded by one edge pixel: the yuv420p format needs even ones)."""
    import imageio.v2 as imageio

    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            image = np.asarray(imageio.imread(frame))[..., :3]
            h, w = image.shape[:2]
            writer.append_data(np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
