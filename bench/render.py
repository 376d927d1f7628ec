"""Benchmark of the streaming splat renderer: a 5-level nested world flown through at 1280x720.

Run from the repo root: `python bench/render.py [--json]` (headless EGL; about 2 minutes on
the 2-core CPU machines). All figures come from one run.

The world: a textured plane and four zooms into it, each level 6x finer than its parent and
inside it, 614x345 pixel-aligned splats per level (1.06M in all; the levels have the view's
16:9 shape, as the app grows them), each with the standard deviation the generator gives new
splats (half the pixel spacing; `--footprint` to change it), opacity 0.95 as after
optimisation, split into 16k-splat chunks, LoD links from the history. Level colours come
from one world-space pattern whose finer octaves appear only in the finer levels (a child
refines its parent, as super-resolution does), so level transitions are comparable.
The path: straight from the level-0 camera toward the level-4 centre, the pixel scale at the
target shrinking geometrically until level 4 is seen at its native scale.

Figures (frame times include the GPU: glFinish; every timed frame sorts anew unless stated):
- fps_path_median, frame_ms_path_max, frames_with_pending_chunks: the 40-frame fly-through
  drawn as the app draws (uploads and chunk preparation under their per-frame limits);
- fps_mod_deep / fps_nomod_deep / ratio_mod: median FPS at the deepest level with
  modulation + streaming vs the ablation (every chunk resident and considered, alpha = 1);
- overhead_vs_flat: deep frame time / frame time of a world holding only the splats drawn
  there (same links), frames interleaved (target <= 1.25);
- splats_per_s: splats drawn per second on the deep frames (target >= 2.5M on llvmpipe);
  splats_per_s_native(_reused): a 1280x720 level seen at its native scale (~1 px splats),
  sorting every frame (or reusing the order); splats_per_s_v1: the per-frame re-packing
  instanced-quad renderer on the deep frame;
- resident_bytes_deep / _nomod / _path: GPU arena bytes for the deep view alone, for the
  ablation, and after flying the whole path with the default 512 MB budget;
- popping_mod / popping_hard: largest mean abs change across a level switch / median change
  (both over the pixels where the finer level lies), zooming 1.005x per frame through each
  switch point, with modulation and with hard level switching (target <= 1.5 with it);
- sort_ms_sync (cull + sort of the deep frame), sort_ms_reused (0: the order is reused when
  the camera is still), frame_ms_pan_sync / _async and fresh_order_frames_pan_*: a 3 px per
  frame pan sorted on the frame thread vs on a worker thread (which draws the last order
  meanwhile); sort_winner: the faster, if it also delivers a new order on most frames.

The GPU-driven path (`StreamingRenderer(path="gpu")`, forced where `auto` would not take it):
- cpu_ms_frame_gpu: CPU time per frame in our code on the GPU path, deep frame: the frame's
  wall time minus the time inside its dispatch, barrier and draw calls
  (`FrameStats.launch_ms`: on llvmpipe the software GPU's work runs inside them; on a GPU
  they only queue it), not
  waiting for the GPU; frame_ms_gpu_path: the same frames' wall time with the GPU finished
  (on llvmpipe: the software GPU's cull, sort and draw);
- cpu_ms_frame_ratio: cpu_ms_frame_gpu for a 1M-splat visible set / a 100k-splat one (a
  plane at its native scale, both in 16 chunks), target <= 1.2 (flat in the splat count);
- with a hardware GL (else null): fps_deep_1080p (the deep frame at 1920x1080, target
  >= 300), fps_native_5m_1080p (a 5M-splat level, 2982x1677, seen at its native scale
  through a 1920x1080 view, target >= 60); with CUDA and gsplat too: fps_ratio_vs_gsplat
  (our GPU path / gsplat's `rasterization` on the same splats, opacities modulated and
  culled as ours, and the same camera, deep frame at 1080p; target >= 1.0) and
  psnr_vs_gsplat (dB between the two images, target >= 35).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from engine.camera import Camera  # noqa: E402
from engine.chunking import split_level  # noqa: E402
from engine.history import History, Step  # noqa: E402
from engine.lod import LodIndex, LodLinks  # noqa: E402
from engine.render.camera_path import zoom_sweep  # noqa: E402
from engine.render.gl import SplatRenderer, create_headless_context, wait_for_gpu  # noqa: E402
from engine.render.prepare import prepare  # noqa: E402
from engine.render.streaming import ResortPolicy, StreamingRenderer  # noqa: E402
from engine.scene import ChunkStore, build_scene, flat_scene  # noqa: E402
from engine.splats import SplatChunk  # noqa: E402
from engine.synthetic import pixel_aligned_splats  # noqa: E402
from engine.zoom import zoom_camera  # noqa: E402
from generation.config import GenerationConfig  # noqa: E402
from engine.world import World  # noqa: E402

WIDTH, HEIGHT = 1280, 720
FOV_Y_DEG = 50.0
LEVELS = 5
FACTOR = 6.0
OPACITY = 0.95
CHUNK_SPLATS = 16384
DEEP_FRAMES = 7
POPPING_STEP = 1.005  # zoom per frame on the popping segments
POPPING_SPAN = 1.1  # each segment runs from 1.1x above a switch point to 1.1x below
POPPING_SEGMENT_FRAMES = 40
NOMOD_FRAMES = 3
SIZE = 345  # splats per level, vertically (--size)
PATH_FRAMES = 40  # frames on the timed zoom path (--frames)


# ---- the world ----------------------------------------------------------------------------
class Pattern:
    """A colourful world-space pattern on the plane z = 0: sinusoids in octaves of
    wavelength 1, 1/2, 1/4, ...; a level of pixel size s shows the octaves >= 8 s."""

    def __init__(self, seed: int = 0, octaves: int = 18, waves: int = 3) -> None:
        rng = np.random.default_rng(seed)
        k = np.repeat(np.arange(octaves), waves)
        angle = rng.uniform(0, 2 * np.pi, len(k))
        self.wavelength = 2.0 ** -k.astype(float)  # [K]
        self.direction = np.stack([np.cos(angle), np.sin(angle)], 1)  # [K, 2]
        self.phase = rng.uniform(0, 2 * np.pi, len(k))
        self.colour = rng.uniform(-0.09, 0.09, (len(k), 3))

    def rgb(self, xy: np.ndarray, pixel_size: float) -> np.ndarray:
        """[N, 2] plane points -> [N, 3] colours with the octaves a pixel of this size shows."""
        out = np.full((len(xy), 3), 0.5)
        for w, d, ph, c in zip(self.wavelength, self.direction, self.phase, self.colour):
            if w < 8.0 * pixel_size:
                break
            out += np.sin(2 * np.pi / w * (xy @ d) + ph)[:, None] * c
        return np.clip(out, 0.0, 1.0)


def plane_depth(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """([H, W] depth, [H, W, 2] plane point) of the plane z = 0 under each pixel centre."""
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64) + 0.5
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy,
                     np.ones_like(u)], -1)
    R, o = camera.T_world_camera[:3, :3], camera.T_world_camera[:3, 3]
    t = -o[2] / (rays @ R[2])
    points = o + (rays @ R.T) * t[..., None]
    return t, points[..., :2]


def plane_splats(cam: Camera, pattern: Pattern, target: np.ndarray, footprint: float,
                 level: int = 0, opacity: float = OPACITY) -> SplatChunk:
    """The bench worlds' level: one splat per pixel of `cam` on the plane z = 0, coloured by
    `pattern` with the octaves finer than the pixel scale at `target` left out."""
    depth, xy = plane_depth(cam)
    pixel = float(cam.pixel_scale(np.asarray(target, np.float64)[None])[0])
    rgb = pattern.rgb(xy.reshape(-1, 2), pixel).reshape(cam.height, cam.width, 3)
    return pixel_aligned_splats(cam, depth, rgb, level=level, opacity=opacity,
                                footprint=footprint)


def build_world(size: int, footprint: float, seed: int = 0):
    """(World, level cameras, splats per level, the path target, level native scales).
    Each level is `size` pixels high and the shape of the 1280x720 view (as the app grows a
    level the shape of its window), so a view at a level's native scale is covered by it."""
    pattern = Pattern(seed)
    width = round(size * WIDTH / HEIGHT)
    cam = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=FOV_Y_DEG, width=width,
                         height=size)
    rng = np.random.default_rng(seed)
    target = np.zeros(3)
    history, chunks, cameras, counts = History(), {}, [], []
    for i in range(LEVELS):
        if i > 0:
            target = target + rng.uniform(-0.1, 0.1, 3) * cam.pixel_scale(target[None])[0] * size
            target[2] = 0.0
            cam = zoom_camera(cam, target, FACTOR)
        parts = split_level(plane_splats(cam, pattern, target, footprint, level=i),
                            max_splats=CHUNK_SPLATS)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=cam))
        cameras.append(cam)
        counts.append(sum(len(p) for p in parts))
    native = [float(c.pixel_scale(target[None])[0]) for c in cameras]
    return build_scene(history, chunks), cameras, counts, target, native


def visible_only(world: World, renderer: StreamingRenderer) -> World:
    """A world holding only the splats of the renderer's last list (same links, same chunks
    boundaries): what a renderer without history would have to draw for that view."""
    store, index = world.resource(ChunkStore), world.resource(LodIndex)
    ids, rows = renderer.last_list.chunk_rows()
    pieces = []
    for cid in np.unique(ids).tolist():
        keep = np.sort(rows[ids == cid])
        links = index.links[cid]
        pieces.append((store.get(cid).take(keep),
                       LodLinks(links.s_parent[keep], links.s_child[keep])))
    return flat_scene(pieces)


# ---- timing -------------------------------------------------------------------------------
class Bench:
    def __init__(self) -> None:
        self.ctx = create_headless_context()
        self.fbo = self.ctx.simple_framebuffer((WIDTH, HEIGHT))
        self._jitter = 0

    def jittered(self, cam: Camera) -> Camera:
        """The same view with a focal length differing in the 9th digit: a different camera,
        so a renderer without a reuse policy sorts again (what a moving camera costs)."""
        self._jitter += 1
        return cam.with_fov_scale(1.0 + 1e-9 * self._jitter)

    def frame(self, renderer: StreamingRenderer, world: World, cam: Camera):
        """(seconds, stats) of one frame, everything resident first (not timed)."""
        renderer.draw(world, cam, self.fbo, complete=True)
        wait_for_gpu(self.ctx)  # llvmpipe rasterizes asynchronously: not into the timed frame
        cam = self.jittered(cam)
        t = time.perf_counter()
        stats = renderer.draw(world, cam, self.fbo)
        wait_for_gpu(self.ctx)
        return time.perf_counter() - t, stats

    def frames(self, renderer, world, cam, n):
        out = [self.frame(renderer, world, cam) for _ in range(n)]
        return statistics.median(t for t, _ in out), [s for _, s in out], [t for t, _ in out]

    def image(self) -> np.ndarray:
        raw = self.fbo.read(components=3)
        return np.frombuffer(raw, np.uint8).reshape(HEIGHT, WIDTH, 3)


def render_camera(eye_cam: Camera) -> Camera:
    return Camera.look_at(eye_cam.position, eye_cam.position + eye_cam.T_world_camera[:3, 2],
                          up=-eye_cam.T_world_camera[:3, 1], fov_y_deg=FOV_Y_DEG, width=WIDTH,
                          height=HEIGHT, near=1e-7)


def patch_mask(render: Camera, level: Camera, shrink: float = 0.9) -> np.ndarray:
    """[H, W] bool: pixels of `render` inside the plane region `level` covers (its image
    corners on z = 0, pulled 10% toward their centre): where that level can replace its
    parent, i.e. where a transition to it is visible."""
    corners = np.array([[0, 0], [level.width, 0], [level.width, level.height],
                        [0, level.height]], float)
    rays = np.stack([(corners[:, 0] - level.cx) / level.fx, (corners[:, 1] - level.cy) / level.fy,
                     np.ones(4)], 1) @ level.T_world_camera[:3, :3].T
    eye = level.T_world_camera[:3, 3]
    points = eye + rays * (-eye[2] / rays[:, 2])[:, None]
    points = points.mean(0) + shrink * (points - points.mean(0))
    uv, _ = render.project(points)  # [4, 2], a convex quad
    v, u = np.mgrid[0:render.height, 0:render.width] + 0.5
    inside = np.ones(u.shape, bool)
    signs = []
    for a, b in zip(uv, np.roll(uv, -1, axis=0)):
        signs.append((b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0]))
    inside = np.all([x >= 0 for x in signs], axis=0) | np.all([x <= 0 for x in signs], axis=0)
    return inside


def run(size: int, path_frames: int, log, footprint: float) -> dict:
    t_start = time.perf_counter()
    out: dict = {}
    world, cameras, counts, target, native = build_world(size, footprint)
    store = world.resource(ChunkStore)
    out.update(levels=LEVELS, zoom_factor=FACTOR, footprint=footprint,
               splats_total=int(sum(counts)),
               chunks=len(store.ids()), width=WIDTH, height=HEIGHT,
               build_world_s=round(time.perf_counter() - t_start, 2))
    log(f"world: {out['splats_total']:,} splats in {out['chunks']} chunks")
    bench = Bench()
    out["gl_renderer"] = bench.ctx.info["GL_RENDERER"]
    out["cpus"] = __import__("os").cpu_count()
    out["machine"] = platform.machine()

    start = render_camera(cameras[0])
    path = zoom_sweep(start, target, native[-1], path_frames)
    deep = path[-1]
    scales = np.array([np.linalg.norm(c.position - target) / c.focal for c in path])

    # -- the zoom path as the app flies it: streaming under the per-frame limits -------------
    r_mod = StreamingRenderer(bench.ctx, resort=None)
    times, drawn, pending = [], [], []
    for cam in path:
        t = time.perf_counter()
        st = r_mod.draw(world, cam, bench.fbo)
        wait_for_gpu(bench.ctx)
        times.append(time.perf_counter() - t)
        drawn.append(st.splats_drawn)
        pending.append(st.chunks_pending)
    out.update(path_frames=path_frames, path_zoom=round(float(scales[0] / scales[-1]), 1),
               fps_path_median=round(1.0 / statistics.median(times), 2),
               frame_ms_path_max=round(max(times) * 1e3, 1),
               frames_with_pending_chunks=int(sum(p > 0 for p in pending)),
               splats_drawn_path_max=int(max(drawn)),
               resident_bytes_path=r_mod.residency.bytes_resident)
    log(f"path: median {statistics.median(times) * 1e3:.0f} ms, worst {max(times) * 1e3:.0f} ms")

    # -- popping: slow zoom (1.005x per frame) across each level switch, soft vs hard -------
    switches = [math.sqrt(a * b) for a, b in zip(native[:-1], native[1:])]
    segments = []
    for s_switch in switches:
        steps = np.arange(POPPING_SEGMENT_FRAMES)
        seg_scales = s_switch * POPPING_SPAN * POPPING_STEP ** -steps.astype(float)
        segments.append([zoom_sweep(start, target, float(x), 2)[-1] for x in seg_scales])
    masks = [[patch_mask(cam, cameras[k + 1]) for cam in segment]
             for k, segment in enumerate(segments)]
    pops = {}
    for mode in ("soft", "hard"):
        r = StreamingRenderer(bench.ctx, lod_mode=mode, resort=None)
        changes, jumps = [], []
        for s_switch, segment, seg_masks in zip(switches, segments, masks):
            images, scales_seg = [], []
            for cam in segment:
                r.draw(world, cam, bench.fbo, complete=True)
                images.append(bench.image())
                scales_seg.append(np.linalg.norm(cam.position - target) / cam.focal)
            # mean abs change (0..1) over the pixels where the finer level lies in both frames
            d = [np.abs(b[m].astype(np.int16) - a[m]).mean() / 255.0
                 for a, b, m in zip(images[:-1], images[1:],
                                    (m0 & m1 for m0, m1 in zip(seg_masks[:-1], seg_masks[1:])))]
            changes += d
            scales_seg = np.array(scales_seg)
            jumps += [c for c, hi, lo in zip(d, scales_seg[:-1], scales_seg[1:])
                      if hi >= s_switch > lo]
        r.release()
        pops[mode] = max(jumps) / float(np.median(changes))
    out.update(popping_mod=round(pops["soft"], 3), popping_hard=round(pops["hard"], 3),
               popping_frames=len(switches) * POPPING_SEGMENT_FRAMES,
               popping_zoom_per_frame=POPPING_STEP)
    log(f"popping: soft {out['popping_mod']}, hard {out['popping_hard']}")

    # -- the deepest level: modulation + streaming, every splat, and a flat world ------------
    # frames of the three are interleaved, so load from elsewhere hits them alike
    bench.frame(r_mod, world, deep)
    flat = visible_only(world, r_mod)
    r_flat = StreamingRenderer(bench.ctx, resort=None)
    nomod = StreamingRenderer(bench.ctx, modulation=False, resort=None)
    runs = {"mod": [], "flat": [], "nomod": []}
    for k in range(DEEP_FRAMES):
        runs["mod"].append(bench.frame(r_mod, world, deep))
        runs["flat"].append(bench.frame(r_flat, flat, deep))
        if k < NOMOD_FRAMES:
            runs["nomod"].append(bench.frame(nomod, world, deep))

    def median_s(name):
        return statistics.median(t for t, _ in runs[name])

    deep_s, flat_s, nomod_s = median_s("mod"), median_s("flat"), median_s("nomod")
    deep_stats = [st for _, st in runs["mod"]]
    out.update(fps_mod_deep=round(1.0 / deep_s, 2), frame_ms_deep=round(deep_s * 1e3, 1),
               splats_drawn_deep=deep_stats[-1].splats_drawn,
               splats_per_s=round(statistics.median(st.splats_drawn / t for t, st in runs["mod"])),
               sort_ms_sync=round(statistics.median(st.sort_ms for st in deep_stats), 1),
               submit_ms_deep=round(statistics.median(st.draw_ms for st in deep_stats), 1),
               fps_nomod_deep=round(1.0 / nomod_s, 3),
               splats_drawn_nomod=runs["nomod"][-1][1].splats_drawn,
               splats_quads_nomod=runs["nomod"][-1][1].splats_quads,
               resident_bytes_nomod=nomod.residency.bytes_resident,
               frame_ms_flat=round(flat_s * 1e3, 1),
               splats_drawn_flat=runs["flat"][-1][1].splats_drawn,
               overhead_vs_flat=round(deep_s / flat_s, 3))
    out["ratio_mod"] = round(out["fps_mod_deep"] / out["fps_nomod_deep"], 2)
    for r in (r_mod, r_flat, nomod):
        r.release()
    fresh = StreamingRenderer(bench.ctx, resort=None)
    fresh.draw(world, deep, bench.fbo, complete=True)
    out["resident_bytes_deep"] = fresh.residency.bytes_resident
    out["chunks_resident_deep"] = fresh.residency.chunks_ready
    fresh.release()
    log(f"deep: {out['fps_mod_deep']} FPS ({out['splats_drawn_deep']:,} splats), "
        f"no modulation {out['fps_nomod_deep']} FPS, flat world {flat_s * 1e3:.0f} ms")

    # -- sorting: every frame (sync), reused while still, or on a worker thread --------------
    pan = []
    for k in range(8):  # a slow pan: 3 px per frame, beyond the 1 px reuse threshold
        T = deep.T_world_camera.copy()
        T[:3, 3] += T[:3, 0] * (3.0 * k / deep.fx) * np.linalg.norm(deep.position - target)
        pan.append(Camera(T, deep.fx, deep.fy, deep.cx, deep.cy, WIDTH, HEIGHT, deep.near,
                          deep.far))
    fresh = {}
    for mode in ("sync", "async"):
        r = StreamingRenderer(bench.ctx, sort_mode=mode, resort=ResortPolicy())
        r.draw(world, pan[0], bench.fbo, complete=True)
        wait_for_gpu(bench.ctx)
        ts, sorted_frames = [], 0
        for cam in pan[1:]:
            t = time.perf_counter()
            st = r.draw(world, cam, bench.fbo)
            wait_for_gpu(bench.ctx)
            ts.append(time.perf_counter() - t)
            sorted_frames += st.sorted_this_frame
        out[f"frame_ms_pan_{mode}"] = round(statistics.median(ts) * 1e3, 1)
        out[f"fresh_order_frames_pan_{mode}"] = f"{sorted_frames}/{len(ts)}"
        fresh[mode] = sorted_frames / len(ts)
        if mode == "sync":
            still = []
            for _ in range(4):
                t = time.perf_counter()
                st = r.draw(world, pan[-1], bench.fbo)
                wait_for_gpu(bench.ctx)
                still.append((time.perf_counter() - t, st))
            out["sort_ms_reused"] = round(statistics.median(s.sort_ms for _, s in still), 2)
            out["prepare_ms_reused"] = round(statistics.median(s.prepare_ms for _, s in still), 1)
            out["frame_ms_still"] = round(statistics.median(t for t, _ in still) * 1e3, 1)
        r.release()
    # a frame drawn with a stale order is cheaper but wrong where the camera moved: the
    # worker wins only if it is faster and delivers a new order on most moving frames
    async_wins = (out["frame_ms_pan_async"] < out["frame_ms_pan_sync"] and fresh["async"] >= 0.5)
    out["sort_winner"] = "async" if async_wins else "sync"
    log(f"sorting: pan sync {out['frame_ms_pan_sync']} ms, async {out['frame_ms_pan_async']} ms")

    # -- references: the per-frame re-packing renderer, and splats at native density ---------
    store, index = world.resource(ChunkStore), world.resource(LodIndex)
    pieces = [(store.get(c), index.links[c]) for c in store.ids()]
    v1 = SplatRenderer(bench.ctx)
    wait_for_gpu(bench.ctx)
    v1_times = []
    for _ in range(2):
        cam = bench.jittered(deep)
        t = time.perf_counter()
        prepared = prepare(cam, pieces)
        v1.render(prepared, cam, bench.fbo)
        wait_for_gpu(bench.ctx)
        v1_times.append(time.perf_counter() - t)
    v1.release()
    out["splats_per_s_v1"] = round(prepared.count / statistics.median(v1_times))
    out["frame_ms_v1_deep"] = round(statistics.median(v1_times) * 1e3, 1)

    native_cam = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=FOV_Y_DEG,
                                width=WIDTH, height=HEIGHT)
    level = plane_splats(native_cam, Pattern(0), np.zeros(3), footprint)
    native_world = flat_scene([(c, None) for c in split_level(level, max_splats=CHUNK_SPLATS)])
    r_native = StreamingRenderer(bench.ctx, resort=None)
    nat_s, nat_stats, nat_times = bench.frames(r_native, native_world, native_cam, 3)
    out["splats_per_s_native"] = round(statistics.median(
        s.splats_drawn / t for s, t in zip(nat_stats, nat_times)))
    out["frame_ms_native"] = round(nat_s * 1e3, 1)
    out["splats_drawn_native"] = nat_stats[-1].splats_drawn
    wait_for_gpu(bench.ctx)
    reused = []
    for _ in range(3):
        t = time.perf_counter()
        st = r_native.draw(world=native_world, camera=native_cam, framebuffer=bench.fbo)
        wait_for_gpu(bench.ctx)
        reused.append(time.perf_counter() - t)
    out["splats_per_s_native_reused"] = round(st.splats_drawn / statistics.median(reused))
    r_native.release()
    log(f"native density: {out['splats_per_s_native'] / 1e6:.2f} M splats/s")

    out.update(gpu_path_figures(bench, world, deep, footprint, log))
    out.update(hardware_gpu_figures(bench, world, start, target, native, footprint, log))
    out["bench_s"] = round(time.perf_counter() - t_start, 1)
    return out


# ---- the GPU-driven path ------------------------------------------------------------------
GPU_FRAMES = 5  # timed GPU-path frames per figure on llvmpipe (each is a software cull+sort)
RATIO_SPLATS = (100_000, 1_000_000)  # visible splats of the two cpu_ms_frame_ratio worlds
RATIO_CHUNKS = 16
HD_WIDTH, HD_HEIGHT = 1920, 1080
NATIVE_5M = (2982, 1677)  # a 16:9 level of 5.0M splats
HD_FRAMES = 50
GSPLAT_FRAMES = 50


def plane_level(width: int, height: int, footprint: float, seed: int = 0
                ) -> tuple[Camera, SplatChunk]:
    """A width x height level of pixel-aligned splats on the plane z = 0 and its camera."""
    cam = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=FOV_Y_DEG, width=width,
                         height=height)
    return cam, plane_splats(cam, Pattern(seed), np.zeros(3), footprint)


def gpu_path_frames(bench: Bench, renderer: StreamingRenderer, world: World, cam: Camera,
                    n: int) -> tuple[float, float, object]:
    """(median CPU ms in our code, median wall ms with the GPU finished, last stats) of `n`
    GPU-path frames, each for a new camera (so each culls and sorts)."""
    renderer.draw(world, cam, bench.fbo, complete=True)
    wait_for_gpu(bench.ctx)
    cpu, wall = [], []
    for _ in range(n):
        cam_k = bench.jittered(cam)
        t = time.perf_counter()
        stats = renderer.draw(world, cam_k, bench.fbo)
        t_cpu = time.perf_counter() - t
        wait_for_gpu(bench.ctx)
        wall.append(time.perf_counter() - t)
        cpu.append(t_cpu * 1e3 - stats.launch_ms)
    return statistics.median(cpu), statistics.median(wall) * 1e3, stats


def gpu_path_figures(bench: Bench, world: World, deep: Camera, footprint: float, log) -> dict:
    """cpu_ms_frame_gpu on the deep frame and cpu_ms_frame_ratio (1M / 100k visible)."""
    from engine.render.gpu_driven import gpu_support

    support = gpu_support(bench.ctx)
    if not support.available:
        log(f"GPU path: not measured ({support.reason})")
        return {"cpu_ms_frame_gpu": None, "cpu_ms_frame_ratio": None}
    out = {}
    r = StreamingRenderer(bench.ctx, resort=None, path="gpu")
    cpu_ms, wall_ms, stats = gpu_path_frames(bench, r, world, deep, GPU_FRAMES)
    counts = r.read_gpu_counts()
    r.release()
    out.update(cpu_ms_frame_gpu=round(cpu_ms, 2), frame_ms_gpu_path=round(wall_ms, 1),
               splats_drawn_gpu_path=counts["drawn"], splats_culled_on_gpu=counts["candidates"])
    per_size = {}
    for n in RATIO_SPLATS:
        width = round(math.sqrt(n * WIDTH / HEIGHT))
        height = round(n / width)
        cam, level = plane_level(width, height, footprint)
        chunks = split_level(level, max_splats=-(-len(level) // RATIO_CHUNKS))
        plane = flat_scene([(c, None) for c in chunks])
        r = StreamingRenderer(bench.ctx, resort=None, path="gpu")
        per_size[n] = gpu_path_frames(bench, r, plane, cam, GPU_FRAMES)[0]
        out[f"cpu_ms_frame_gpu_{n // 1000}k"] = round(per_size[n], 2)
        out[f"splats_drawn_gpu_{n // 1000}k"] = r.read_gpu_counts()["drawn"]
        out[f"chunks_gpu_{n // 1000}k"] = len(chunks)
        r.release()
    out["cpu_ms_frame_ratio"] = round(per_size[RATIO_SPLATS[1]] / per_size[RATIO_SPLATS[0]], 3)
    log(f"GPU path: {cpu_ms:.2f} ms of CPU a deep frame ({wall_ms:.0f} ms with the GPU's "
        f"work on {support.renderer}); 1M / 100k visible: {out['cpu_ms_frame_ratio']}")
    return out


def hardware_gpu_figures(bench: Bench, world: World, start: Camera, target: np.ndarray,
                         native: list[float], footprint: float, log) -> dict:
    """fps_deep_1080p, fps_native_5m_1080p and the gsplat comparison; null without a
    hardware GL (gsplat's also without CUDA)."""
    from engine.render.gpu_driven import gpu_support

    out = {"fps_deep_1080p": None, "fps_native_5m_1080p": None, "fps_ratio_vs_gsplat": None,
           "psnr_vs_gsplat": None, "gpu_figures_device": None}
    support = gpu_support(bench.ctx)
    if not support.available or support.software:
        log(f"GPU figures: not measured (no hardware GL: {support.renderer})")
        return out
    out["gpu_figures_device"] = support.renderer
    fbo = bench.ctx.simple_framebuffer((HD_WIDTH, HD_HEIGHT))
    hd = Bench.__new__(Bench)
    hd.ctx, hd.fbo, hd._jitter = bench.ctx, fbo, 0
    start_hd = Camera.look_at(start.position, start.position + start.T_world_camera[:3, 2],
                              up=-start.T_world_camera[:3, 1], fov_y_deg=FOV_Y_DEG,
                              width=HD_WIDTH, height=HD_HEIGHT, near=start.near)
    deep_hd = zoom_sweep(start_hd, target, native[-1], PATH_FRAMES)[-1]
    r = StreamingRenderer(bench.ctx, resort=None, path="gpu")
    wall_ms = gpu_path_frames(hd, r, world, deep_hd, HD_FRAMES)[1]
    out["fps_deep_1080p"] = round(1e3 / wall_ms, 1)
    ours = r.render_offscreen(world, deep_hd)
    r.release()
    cam5, level5 = plane_level(*NATIVE_5M, footprint)
    world5 = flat_scene([(c, None) for c in split_level(level5, max_splats=CHUNK_SPLATS)])
    view5 = dataclasses.replace(cam5, width=HD_WIDTH, height=HD_HEIGHT, cx=HD_WIDTH / 2,
                                cy=HD_HEIGHT / 2)  # the level's focal: its native scale
    r = StreamingRenderer(bench.ctx, resort=None, path="gpu")
    out["fps_native_5m_1080p"] = round(1e3 / gpu_path_frames(hd, r, world5, view5,
                                                             HD_FRAMES)[1], 1)
    r.release()
    fbo.release()
    log(f"GPU figures on {support.renderer}: deep 1080p {out['fps_deep_1080p']} FPS, "
        f"5M native {out['fps_native_5m_1080p']} FPS")
    gsplat = gsplat_deep_frame(world, deep_hd)
    if gsplat is not None:
        gsplat_ms, image, device = gsplat
        out["fps_ratio_vs_gsplat"] = round(gsplat_ms / wall_ms, 3)
        mse = float(np.mean((np.clip(ours.rgb, 0, 1) - image) ** 2))
        out["psnr_vs_gsplat"] = round(10 * math.log10(1.0 / max(mse, 1e-12)), 2)
        out["gsplat_device"] = device
        log(f"gsplat: {gsplat_ms:.2f} ms a frame, ratio {out['fps_ratio_vs_gsplat']}, "
            f"PSNR {out['psnr_vs_gsplat']} dB")
    return out


def gsplat_deep_frame(world: World, cam: Camera):
    """(median ms, [H, W, 3] image, device name) of gsplat's CUDA `rasterization` on the
    splats our renderer draws for `cam` (prepare's cull, opacity times the modulation), or
    None without CUDA or gsplat."""
    try:
        import torch
        from gsplat import rasterization
    except Exception:
        return None
    if not torch.cuda.is_available():
        return None
    from engine.render.reference import project

    store, index = world.resource(ChunkStore), world.resource(LodIndex)
    ids = store.ids()
    prepared = prepare(cam, [(store.get(c), index.links.get(c)) for c in ids])
    opacity = project(prepared, cam).opacity  # [M] opacity * modulation, float64
    means = _world_means(store, ids, prepared)
    dev = torch.device("cuda")

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a, np.float32), device=dev)

    viewmat = np.linalg.inv(cam.T_world_camera)  # world -> camera (OpenCV axes, as gsplat)
    K = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]])
    packed = prepared.packed
    args = dict(means=tensor(means), quats=tensor(packed[:, 3:7]), scales=tensor(packed[:, 7:10]),
                opacities=tensor(opacity), colors=tensor(packed[:, 10:13]),
                viewmats=tensor(viewmat[None]), Ks=tensor(K[None]), width=cam.width,
                height=cam.height, near_plane=cam.near, far_plane=cam.far, eps2d=0.3)
    image, _, _ = rasterization(**args)  # first call: kernels built / warmed up
    torch.cuda.synchronize()
    times = []
    for _ in range(GSPLAT_FRAMES):
        t = time.perf_counter()
        image, _, _ = rasterization(**args)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return (statistics.median(times) * 1e3, image[0].clamp(0, 1).cpu().numpy(),
            torch.cuda.get_device_name())


def _world_means(store: ChunkStore, ids: list[int], prepared) -> np.ndarray:
    """[M, 3] world positions of the prepared splats (float64), chunk by chunk."""
    out = np.empty((prepared.count, 3))
    for c in np.unique(prepared.source_chunk).tolist():
        sel = prepared.source_chunk == c
        out[sel] = store.get(ids[c]).world_positions()[prepared.source_row[sel]]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--size", type=int, default=SIZE,
                        help="pixels per level, vertically (16:9 like the view: 614x345)")
    parser.add_argument("--frames", type=int, default=PATH_FRAMES,
                        help="frames on the timed zoom path")
    parser.add_argument("--footprint", type=float, default=GenerationConfig().splat_footprint,
                        help="splat std-dev / pixel spacing (default: what the generator makes)")
    args = parser.parse_args()

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    out = run(args.size, args.frames, log, args.footprint)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
