"""Probe of a design not built: would splitting the screen between single-threaded llvmpipe
instances draw the render bench's deep frame faster than one llvmpipe with its threads?

Run from the repo root: `python bench/render_split_probe.py [--json] [--strips N]` (about a
minute on the 2-core machines). It times the deep frame of `bench/render.py` (same world,
camera and frame timing) twice in one run:
- `frame_ms_single`: the app's renderer in this process, llvmpipe with its default threads;
- `frame_ms_strips`: N child processes at once, each with LP_NUM_THREADS=0 (llvmpipe
  rasterizes on the calling thread) pinned to its own core, each drawing one vertical strip
  of the frame through a camera cropped to it (splats across a strip edge are drawn by both).
  `frame_ms_split` is the slowest strip: a split frame before its strips are put together.

Why: on llvmpipe the frame thread writes each point's setup data and the rasterizer threads,
often on the other core, read it; a perf profile puts about a fifth of the deep frame's CPU
time there. A strip drawn wholly on one core has no such traffic. The probe bounds the gain;
it does not measure compositing, world syncing or anything else a real split renderer needs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FRAMES = 15
WARMUP = 3


def deep_setup(strip: int, strips: int):
    """(bench, world, camera of this strip, renderer): the render bench's deep frame."""
    import render as bench_render  # bench/render.py

    from engine.camera import Camera
    from engine.render.camera_path import zoom_sweep
    from engine.render.streaming import StreamingRenderer
    from generation.config import GenerationConfig

    # the bench's defaults: its world and the last camera of its zoom path
    world, cameras, _, target, native = bench_render.build_world(
        bench_render.SIZE, GenerationConfig().splat_footprint)
    deep = zoom_sweep(bench_render.render_camera(cameras[0]), target, native[-1],
                      bench_render.PATH_FRAMES)[-1]
    bench = bench_render.Bench()
    width = deep.width // strips
    if strips > 1:
        last = strip == strips - 1
        strip_width = deep.width - width * (strips - 1) if last else width
        deep = Camera(deep.T_world_camera, deep.fx, deep.fy, deep.cx - strip * width, deep.cy,
                      strip_width, deep.height, deep.near, deep.far)
        bench.fbo = bench.ctx.simple_framebuffer((strip_width, deep.height))
    return bench, world, deep, StreamingRenderer(bench.ctx, resort=None)


def time_frames(bench, world, cam, renderer) -> tuple[float, int]:
    """(median ms, splats drawn) over FRAMES frames, timed as bench/render.py times them."""
    out = [bench.frame(renderer, world, cam) for _ in range(FRAMES)]
    return statistics.median(t for t, _ in out) * 1e3, out[-1][1].splats_drawn


def child(strip: int, strips: int) -> None:
    if hasattr(os, "sched_setaffinity") and strip < len(os.sched_getaffinity(0)):
        os.sched_setaffinity(0, [sorted(os.sched_getaffinity(0))[strip]])
    bench, world, cam, renderer = deep_setup(strip, strips)
    for _ in range(WARMUP):
        bench.frame(renderer, world, cam)
    print("ready", flush=True)
    sys.stdin.readline()  # every strip starts timing together
    ms, drawn = time_frames(bench, world, cam, renderer)
    print(json.dumps({"ms": ms, "drawn": drawn}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--strips", type=int, default=2, help="strips (processes)")
    parser.add_argument("--strip", type=int, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.strip is not None:
        child(args.strip, args.strips)
        return 0

    bench, world, cam, renderer = deep_setup(0, 1)
    for _ in range(WARMUP):
        bench.frame(renderer, world, cam)
    single_ms, single_drawn = time_frames(bench, world, cam, renderer)
    gl_renderer = bench.ctx.info["GL_RENDERER"]
    renderer.release()
    bench.ctx.release()

    env = {**os.environ, "LP_NUM_THREADS": "0"}
    procs = [subprocess.Popen([sys.executable, __file__, "--strip", str(i), "--strips",
                               str(args.strips)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
             for i in range(args.strips)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("a strip process failed before its frames")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    strips = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait()
    out = {
        "gl_renderer": gl_renderer, "cpus": os.cpu_count(), "strips": args.strips,
        "frame_ms_single": round(single_ms, 1), "splats_drawn_single": single_drawn,
        "frame_ms_strips": [round(s["ms"], 1) for s in strips],
        "splats_drawn_strips": [s["drawn"] for s in strips],
        "frame_ms_split": round(max(s["ms"] for s in strips), 1),
    }
    out["split_over_single"] = round(out["frame_ms_split"] / out["frame_ms_single"], 3)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:22s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
