"""Benchmark of worlds bigger than memory: opening, RAM and frame times at 1M, 8M and 64M splats.

Run from the repo root: `python bench/scale.py [--json]` (headless EGL; ~15 minutes and ~5 GB
of temporary disk on the 2-core CPU machines; the files are removed at the end).

The worlds: one chain of zoom levels, written once per run into a temporary folder, the
first 1, 8 and 64 levels of it as three files. A level is a textured plane seen by its camera
C_i at 1333x750 pixel-aligned splats (999,750 splats, the 16:9 shape of the 1280x720 view, as
the app grows a level the shape of its window; opacity 0.95 as after optimisation, footprint
half the pixel spacing as the generator gives new splats), split into 16,384-splat chunks;
C_i looks from C_{i-1}'s position at a fixed point with a 1.25x narrower field of view, so 64
levels span 1.25^63 = 1.3e6 of zoom (the precision the engine promises). Each level is
appended with `WorldWriter.append_step`, which links it from the chunks its camera sees (read
back from the file), as the app's autosave does; the 8M and 1M files get the same links.
Colours come from one world-space pattern whose finer octaves appear only in finer levels.

Each world is measured in a fresh process (so its RSS is its own), with the default budgets
(`engine.chunkstore.DEFAULT_RAM_BYTES` of decoded chunks in RAM, `StreamingBudget()` for the
GPU arena and the per-frame upload and preparation caps), drawing as the app draws:
- open_s: from opening the file to the first frame drawn (the GL context and the renderer
  exist before: they do not depend on the file); first_full_frame_s: until a frame of the
  root view draws every chunk it shows (its chunks read from disk meanwhile);
- the fly-through: `zoom_sweep` from the root camera to the deepest level's native scale at
  the zoom target, FRAMES_PER_LEVEL frames a level, each frame one `draw` + glFinish while
  the chunks stream in (nothing waits for them); fly_ms_median, hitch_fraction (frames over
  2x the median), hitch_fraction_local (over 2x the median of the 21 frames around them:
  robust to the shared host's load drifting during minutes of flying), frames_with_pending
  (frames where a visible chunk was not in RAM or not on the GPU yet: its parent is drawn);
- rss_mb: the process's resident memory after the fly-through (rss_peak_mb: its high-water
  mark, VmHWM); ram_pool_peak_mb: the most decoded bytes the pool held;
- deep_ms: the median of DEEP_FRAMES frames at the deepest level's native scale once its
  chunks are resident, each culled and sorted anew (a focal length differing in the 9th
  digit);
then across worlds: deep_frame_ratio (the median deep frame of the 64M world over the 1M
world's, the two drawn alternately in one process so the machine's load is the same for
both; deep_frame_ratio_separate_processes: the same from the per-world deep_ms),
rss_over_smallest_mb per world, and
info_s (`read_world_info` + the summary `wonderzoom info` prints, on the 64M file, in this
process; info_cli_s: the command end to end, Python start-up included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

LEVEL_W, LEVEL_H = 1333, 750
VIEW_W, VIEW_H = 1280, 720
FOV_Y_DEG = 50.0
FACTOR = 1.25
CHUNK_SPLATS = 16384
FOOTPRINT = 0.5
OPACITY = 0.95
FRAMES_PER_LEVEL = 4
DEEP_FRAMES = 7
SIZES = (1, 8, 64)
TARGET = (0.0137, -0.0071, 0.0)  # the zoom target on the plane z = 0


# ---- building the worlds --------------------------------------------------------------------
def build_worlds(folder: Path, sizes: tuple[int, ...], log) -> dict[int, Path]:
    """The chain's first n levels as one file per n in `sizes`, each level generated once."""
    from bench.render import Pattern, plane_splats
    from engine.camera import Camera
    from engine.chunking import split_level
    from engine.history import History, Step
    from engine.zoom import zoom_camera
    from saves import WorldWriter, save_world

    paths = {n: folder / f"world_{n}m.wzs" for n in sizes}
    writers = {}
    for n, path in paths.items():
        save_world(path, History(), {}, {"app": "bench/scale.py", "target": list(TARGET)})
        writers[n] = WorldWriter.open(path)
    pattern = Pattern(0)
    target = np.array(TARGET)
    cam = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=FOV_Y_DEG, width=LEVEL_W,
                         height=LEVEL_H)
    next_id = 0
    t0 = time.perf_counter()
    try:
        for i in range(max(sizes)):
            if i:
                cam = zoom_camera(cam, target, FACTOR)
            parts = split_level(plane_splats(cam, pattern, target, FOOTPRINT, level=i,
                                             opacity=OPACITY), CHUNK_SPLATS)
            ids = tuple(range(next_id, next_id + len(parts)))
            next_id += len(parts)
            step = Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=cam,
                        point=tuple(TARGET) if i else None)
            chunks = dict(zip(ids, parts))
            links = None
            for n in sorted(sizes, reverse=True):  # the largest links it; the others copy
                if i < n:
                    links = writers[n].append_step(step, chunks, links=links)
            if i % 8 == 7 or i + 1 == max(sizes):
                log(f"  level {i + 1}/{max(sizes)} written ({time.perf_counter() - t0:.0f} s)")
    finally:
        for w in writers.values():
            w.close()
    return paths


# ---- measuring one world (in its own process) ----------------------------------------------
def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0)


def measure(path: Path) -> dict:
    from bench.render import render_camera
    from engine.chunkstore import DEFAULT_RAM_BYTES
    from engine.render.camera_path import zoom_sweep
    from engine.render.gl import create_headless_context, wait_for_gpu
    from engine.render.streaming import StreamingRenderer
    from engine.scene import ChunkStore, build_streamed_scene, close_scene
    from saves.world_file import open_world

    ctx = create_headless_context()
    fbo = ctx.simple_framebuffer((VIEW_W, VIEW_H))
    renderer = StreamingRenderer(ctx, resort=None)
    rss_start = rss_mb()[0]

    t0 = time.perf_counter()
    world_file = open_world(path)
    world = build_streamed_scene(world_file.history, world_file.source)
    history = world_file.history
    root_cam = render_camera(history.path()[0].camera)
    renderer.draw(world, root_cam, fbo)
    wait_for_gpu(ctx)
    open_s = time.perf_counter() - t0
    store = world.resource(ChunkStore)
    while True:  # the root view complete (its chunks arrive from the I/O thread meanwhile)
        stats = renderer.draw(world, root_cam, fbo)
        wait_for_gpu(ctx)
        if stats.chunks_pending == 0:
            break
        store.wait(0.05)
    first_full_s = time.perf_counter() - t0

    target = np.array(world_file.meta.get("target", TARGET), np.float64)
    head = history.steps[history.head]
    s_end = float(head.camera.pixel_scale(target[None])[0])
    levels = len(history.path())
    path_cams = zoom_sweep(root_cam, target, s_end, max(2, FRAMES_PER_LEVEL * levels))
    times, pending = [], 0
    trace = open(os.environ["WZ_SCALE_TRACE"], "w") if os.environ.get("WZ_SCALE_TRACE") else None
    for cam in path_cams:
        t = time.perf_counter()
        grown = renderer.arena.version
        stats = renderer.draw(world, cam, fbo)
        wait_for_gpu(ctx)
        times.append(time.perf_counter() - t)
        pending += stats.chunks_pending > 0
        if trace is not None:  # per-frame figures, for looking into hitches
            trace.write(json.dumps({"ms": round(times[-1] * 1e3, 1),
                                    "arena_grew": renderer.arena.version != grown,
                                    "rss_mb": round(rss_mb()[0], 1),
                                    **dataclasses.asdict(stats)}) + "\n")
    rss_fly, hwm_fly = rss_mb()

    deep = path_cams[-1]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # resident first (not timed)
        stats = renderer.draw(world, deep, fbo, complete=True)
        wait_for_gpu(ctx)
        if stats.chunks_pending == 0:
            break
        store.wait(0.05)
    deep_times = []
    for k in range(DEEP_FRAMES):
        cam = deep.with_fov_scale(1.0 + 1e-9 * (k + 1))
        t = time.perf_counter()
        stats = renderer.draw(world, cam, fbo)
        wait_for_gpu(ctx)
        deep_times.append(time.perf_counter() - t)
    median = statistics.median(times)
    out = {
        "levels": levels,
        "splats": int(sum(world_file.chunk_meta(c).count for c in history.chunk_ids_at())),
        "file_gb": round(world_file.file_bytes / 1e9, 3),
        "open_s": round(open_s, 3),
        "first_full_frame_s": round(first_full_s, 3),
        "fly_frames": len(times),
        "fly_ms_median": round(median * 1e3, 1),
        "fly_ms_max": round(max(times) * 1e3, 1),
        "hitch_fraction": round(sum(t > 2 * median for t in times) / len(times), 4),
        "hitch_fraction_local": round(local_hitches(times), 4),
        "frames_with_pending": pending,
        "rss_mb": round(rss_fly, 1),
        "rss_peak_mb": round(hwm_fly, 1),
        "rss_before_open_mb": round(rss_start, 1),
        "ram_pool_budget_mb": DEFAULT_RAM_BYTES >> 20,
        "ram_pool_peak_mb": round(store.peak_bytes / 2 ** 20, 1),
        "ram_pool_evictions": store.evictions,
        "gpu_arena_mb": round(renderer.arena.capacity * 1024 * 76 / 2 ** 20, 1),
        "deep_ms": round(statistics.median(deep_times) * 1e3, 1),
        "deep_splats_drawn": stats.splats_drawn,
        "chunks_refused": len(store.failures),
    }
    renderer.release()
    close_scene(world)
    world_file.close()
    return out


def _deep_view(world, history, meta):
    """The deepest level seen at its native scale at the zoom target (the fly's last camera)."""
    from bench.render import render_camera
    from engine.render.camera_path import zoom_sweep

    target = np.array(meta.get("target", TARGET), np.float64)
    root = render_camera(history.path()[0].camera)
    s_end = float(history.steps[history.head].camera.pixel_scale(target[None])[0])
    return zoom_sweep(root, target, s_end, 2)[-1]


def deep_interleaved(small: Path, big: Path) -> dict:
    """Median deep frame of two worlds drawn alternately in one process (the same load on
    a shared machine for both), each culled and sorted anew: their ratio."""
    from engine.render.gl import create_headless_context, wait_for_gpu
    from engine.render.streaming import StreamingRenderer
    from engine.scene import ChunkStore, build_streamed_scene
    from saves.world_file import open_world

    ctx = create_headless_context()
    fbo = ctx.simple_framebuffer((VIEW_W, VIEW_H))
    sides = []
    for path in (small, big):
        wf = open_world(path)
        world = build_streamed_scene(wf.history, wf.source)
        renderer = StreamingRenderer(ctx, resort=None)
        cam = _deep_view(world, wf.history, wf.meta)
        store = world.resource(ChunkStore)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stats = renderer.draw(world, cam, fbo, complete=True)
            wait_for_gpu(ctx)
            if stats.chunks_pending == 0:
                break
            store.wait(0.05)
        sides.append((wf, world, renderer, cam, []))
    for k in range(2 * DEEP_FRAMES):
        for wf, world, renderer, cam, times in sides:
            t = time.perf_counter()
            renderer.draw(world, cam.with_fov_scale(1.0 + 1e-9 * (k + 1)), fbo)
            wait_for_gpu(ctx)
            times.append(time.perf_counter() - t)
    a, b = (statistics.median(s[4]) for s in sides)
    return {"deep_ms_small": round(a * 1e3, 1), "deep_ms_big": round(b * 1e3, 1),
            "deep_frame_ratio": round(b / a, 3),
            "deep_ratio_spread": [round(min(y / x for x, y in zip(sides[0][4], sides[1][4])), 3),
                                  round(max(y / x for x, y in zip(sides[0][4], sides[1][4])), 3)]}


def local_hitches(times: list[float], half: int = 10) -> float:
    """Frames over 2x the median of the 2 * half + 1 frames around them: hitches against
    the frames next to them, so a change of the shared machine's load over minutes of
    flying is not counted as one."""
    out = 0
    for i, t in enumerate(times):
        around = times[max(0, i - half):i + half + 1]
        out += t > 2 * statistics.median(around)
    return out / len(times)


def info_seconds(path: Path) -> tuple[float, float]:
    """(in-process `read_world_info` + the info summary, the `info` command end to end)."""
    from cli.info import summary
    from saves import read_world_info

    t = time.perf_counter()
    summary(read_world_info(path), path)
    inproc = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "main.py", "info", "--json", str(path)], check=True,
                   stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    return inproc, time.perf_counter() - t


# ---- the run ----------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="levels (millions of splats) per world, comma-separated")
    ap.add_argument("--dir", default=None, help="folder for the worlds (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the worlds afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="measure the worlds a --keep run left in --dir instead of building")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # a child process
    ap.add_argument("--deep", nargs=2, default=None, help=argparse.SUPPRESS)  # a child process
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return 0
    if args.deep:
        print(json.dumps(deep_interleaved(Path(args.deep[0]), Path(args.deep[1]))))
        return 0
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    sizes = tuple(sorted(int(s) for s in args.sizes.split(",")))
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="wz-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {"sizes_m": list(sizes), "level_splats": LEVEL_W * LEVEL_H,
                 "zoom_factor_per_level": FACTOR, "chunk_splats": CHUNK_SPLATS,
                 "view": f"{VIEW_W}x{VIEW_H}", "cpus": os.cpu_count()}
    try:
        t = time.perf_counter()
        if args.reuse:
            paths = {n: folder / f"world_{n}m.wzs" for n in sizes}
        else:
            log(f"building {', '.join(f'{n}M' for n in sizes)} in {folder}")
            paths = build_worlds(folder, sizes, log)
            out["build_s"] = round(time.perf_counter() - t, 1)
        worlds = {}
        for n in sizes:
            log(f"measuring {n}M ...")
            proc = subprocess.run([sys.executable, __file__, "--measure", str(paths[n])],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"measuring {n}M failed: {proc.stderr[-3000:]}")
            worlds[f"{n}M"] = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"  {worlds[f'{n}M']}")
        out["worlds"] = worlds
        small, big = worlds[f"{sizes[0]}M"], worlds[f"{sizes[-1]}M"]
        log("deep frames of the smallest and the largest world, interleaved ...")
        proc = subprocess.run([sys.executable, __file__, "--deep", str(paths[sizes[0]]),
                               str(paths[sizes[-1]])], check=True, capture_output=True, text=True)
        out["deep_interleaved"] = json.loads(proc.stdout.strip().splitlines()[-1])
        out["deep_frame_ratio"] = out["deep_interleaved"]["deep_frame_ratio"]
        out["deep_frame_ratio_separate_processes"] = round(big["deep_ms"] / small["deep_ms"], 3)
        out["rss_over_smallest_mb"] = {k: round(w["rss_mb"] - small["rss_mb"], 1)
                                       for k, w in worlds.items()}
        out["open_s_largest"] = big["open_s"]
        out["hitch_fraction_largest"] = big["hitch_fraction"]
        info_s, info_cli_s = info_seconds(paths[sizes[-1]])
        out["info_s"] = round(info_s, 3)
        out["info_cli_s"] = round(info_cli_s, 3)
    finally:
        if not (args.keep or args.reuse):
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
