"""Benchmark of the web viewer (`wonderzoom export --web`) on a 1M-splat nested world.

Run from the repo root: `python bench/web.py [--json] [--spark]` (about 5 minutes on the
2-core CPU machines; needs node, `npm ci` in ui/web and Debian's chromium). All figures from
one run, the browser and the native renderer on the same machine and GL driver (Mesa
llvmpipe here: Chromium reaches it through ANGLE's GL ES on EGL).

The world: tests/web_world.py's rolling fractal landscape at the render bench's size, five
levels 6x apart, each 614x345 pixel-aligned splats (1.06M in all), chunks of 16k splats, LoD
links from the history. (Relief, not an exact plane: on a plane every splat of a level has the
same depth in a head-on view, so the depth order, and with it the image, is decided by float
noise and no two renderers agree.)

Figures:
- bytes_per_splat: chunk files / splats (15-byte records + a 256-byte header per chunk),
  before HTTP compression; export_s: the export's time;
- first_frame_s: loading the page on localhost (127.0.0.1, our server) to its first complete
  frame at 1280x720 (performance.now() at the first frame whose list was built for its camera
  with every visible chunk resident); native_first_frame_s: `wonderzoom render WORLD
  --zoom-sweep --frames 1` opening the world file and writing its first 1280x720 frame (wall
  clock of the process, start-up included); first_frame_ratio = first_frame_s / that;
- fps_deep: the deepest view (level 4 at its native scale at the zoom target, level 3 6x
  magnified around it) at 1280x720 in headless Chromium, each frame sorted anew (worker cull +
  sort, list upload, draw, GPU finished: a 1-pixel read); fps_app: the native streaming
  renderer on the same camera, same world, same driver (bench/render.py's frame: cull + sort +
  draw + glFinish); fps_ratio_vs_app = fps_deep / fps_app;
- image_error_*: mean abs error (0..255 scale) of the page vs the numpy reference renderer at
  320x180 for the root, a mid-zoom (between levels 0 and 1) and the deep camera;
- with --spark: the same deep frame and errors through the Spark 2.2 prototype
  (bench/web_spark_probe: one SplatMesh per visible chunk, the modulation as a dyno modifier),
  fed only the chunks our viewer would draw there.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine.camera import Camera  # noqa: E402
from engine.lod import LodIndex  # noqa: E402
from engine.modulation import chunk_render_scale_range, chunks_possibly_visible  # noqa: E402
from engine.render.camera_path import zoom_sweep  # noqa: E402
from engine.render.prepare import prepare  # noqa: E402
from engine.render.reference import render  # noqa: E402
from engine.scene import ChunkStore, build_scene  # noqa: E402
from tests.web_world import relief_world  # noqa: E402
from ui.web.export import export_web  # noqa: E402
from ui.web.serve import make_server  # noqa: E402

WIDTH, HEIGHT = 1280, 720
SMALL = (320, 180)  # image-error renders (the numpy reference is slow at full size)
LEVELS, FACTOR = 5, 6.0
LEVEL_W, LEVEL_H = 614, 345
DEEP_FRAMES = 7
WEB = ROOT / "ui" / "web"
PROBE = ROOT / "bench" / "web_spark_probe"


def run_driver(job: dict, work: Path) -> list[dict]:
    path = work / f"job-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run(["node", str(WEB / "tools" / "drive.mjs"), str(path)], cwd=WEB,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    pages = json.loads(proc.stdout)["pages"]
    for page in pages:
        if page["errors"]:
            raise RuntimeError(f"{page['url']}: {page['errors']}")
    return pages


def pixels(result: dict) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(result["pixels"]), np.uint8)
    return raw.reshape(result["height"], result["width"], 4)[..., :3].astype(np.float64) / 255.0


def visible_chunks(manifest: dict, camera: Camera, step: int) -> list[int]:
    """The chunk indices the viewer draws for `camera` (its own rule: AABB in the frustum and
    the band at `step` overlapping the s_render range in view)."""
    out = []
    for i, c in enumerate(manifest["chunks"]):
        if c["level"] > step:
            continue
        band = [b for b in c["bands"] if b[0] <= step][-1]
        lo, hi = np.array([c["lo"]]), np.array([c["hi"]])
        if not camera.aabbs_in_frustum(lo, hi)[0]:
            continue
        r_lo, r_hi = chunk_render_scale_range(camera, lo, hi)
        b_hi = np.inf if band[2] is None else band[2]
        if chunks_possibly_visible(r_lo, r_hi, np.array([band[1]]), np.array([b_hi]))[0]:
            out.append(i)
    return out


def native_fps(world, camera: Camera, frames: int) -> tuple[float, int]:
    """bench/render.py's deep-frame timing: everything resident first, then frames of a
    camera whose focal length differs in the 9th digit (so each sorts anew), GPU finished."""
    from engine.render.gl import create_headless_context, wait_for_gpu
    from engine.render.streaming import StreamingRenderer

    ctx = create_headless_context()
    fbo = ctx.simple_framebuffer((camera.width, camera.height))
    renderer = StreamingRenderer(ctx, resort=None)
    renderer.draw(world, camera, fbo, complete=True)
    wait_for_gpu(ctx)
    times, drawn = [], 0
    for k in range(1, frames + 1):
        cam = camera.with_fov_scale(1.0 + 1e-9 * k)
        t = time.perf_counter()
        stats = renderer.draw(world, cam, fbo)
        wait_for_gpu(ctx)
        times.append(time.perf_counter() - t)
        drawn = stats.splats_drawn
    renderer.release()
    ctx.release()
    return 1.0 / statistics.median(times), drawn


def native_first_frame(world_file: Path, work: Path) -> float:
    exe = Path(sys.executable).parent / "wonderzoom"
    cmd = [str(exe)] if exe.exists() else [sys.executable, str(ROOT / "main.py")]
    out = work / "native_frames"
    t = time.perf_counter()
    subprocess.run(cmd + ["render", str(world_file), "--zoom-sweep", "--frames", "1", "--out", str(out),
                          "--width", str(WIDTH), "--height", str(HEIGHT)],
                   check=True, capture_output=True, cwd=ROOT)
    elapsed = time.perf_counter() - t
    assert (out / "frame_0000.png").is_file()
    return elapsed


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def run(log, spark: bool) -> dict:
    from saves.format import save_world

    t0 = time.perf_counter()
    out: dict = {}
    history, chunks, cams, target = relief_world(levels=LEVELS, factor=FACTOR, width=LEVEL_W,
                                                 height=LEVEL_H, chunk_splats=16384)
    splats = sum(len(c) for c in chunks.values())
    out.update(splats_total=splats, levels=LEVELS, zoom_factor=FACTOR, width=WIDTH, height=HEIGHT,
               cpus=os.cpu_count(), machine=platform.machine())
    log(f"world: {splats:,} splats in {len(chunks)} chunks ({time.perf_counter() - t0:.0f} s)")
    work = Path(tempfile.mkdtemp(prefix="wz-bench-web-"))
    try:
        world_file = work / "world.wzs"
        save_world(world_file, history, chunks)
        t = time.perf_counter()
        result = export_web(history, chunks, work / "web", title="bench world")
        out["export_s"] = round(time.perf_counter() - t, 2)
        out.update(bytes_per_splat=round(result.bytes_per_splat, 3), web_chunks=result.chunks,
                   bytes_per_splat_splat_format=32, bytes_per_splat_spz_raw=20)
        manifest = json.loads((work / "web" / "manifest.json").read_text())
        out["quantization_bounds"] = manifest["quantization"]
        log(f"export: {result.bytes_per_splat:.2f} bytes/splat in {out['export_s']} s")

        start = cams[0].reframed(WIDTH, HEIGHT)
        native = [float(c.pixel_scale(target[None])[0]) for c in cams]
        deep = zoom_sweep(start, target, native[-1], 2)[-1]
        small = {name: cam.resampled(*SMALL) for name, cam in {
            "root": start, "mid": zoom_sweep(start, target, math.sqrt(native[0] * native[1]), 2)[-1],
            "deep": deep}.items()}

        server = make_server(work / "web", port=0)
        server.start_background()
        try:
            pages = run_driver({"width": WIDTH, "height": HEIGHT, "out": str(work), "pages": [
                {"url": server.url, "ops": [{"op": "first_frame"}]},
                {"url": server.url, "ops": [{"op": "ready"},
                                            {"op": "time", "camera": deep.to_dict(), "frames": DEEP_FRAMES}]
                 + [{"op": "eval", "expr": f"window.wonderzoom.render({json.dumps(c.to_dict())})"}
                    for c in small.values()]},
            ]}, work)
        finally:
            server.shutdown()
            server.server_close()
        first = pages[0]["results"][0]
        if first["error"]:
            raise RuntimeError(first["error"])
        out["first_frame_s"] = round(first["firstFrameMs"] / 1000.0, 3)
        out["gl_renderer_web"] = pages[1]["results"][0]["renderer"]
        timed = pages[1]["results"][1]
        out["fps_deep"] = round(1.0 / statistics.median(f["s"] for f in timed), 2)
        out["sort_ms_deep_web"] = round(statistics.median(f["sortMs"] for f in timed), 1)
        out["splats_drawn_deep_web"] = timed[-1]["drawn"]
        log(f"web: first frame {out['first_frame_s']} s, deep {out['fps_deep']} FPS")

        out["native_first_frame_s"] = round(native_first_frame(world_file, work), 3)
        out["first_frame_ratio"] = round(out["first_frame_s"] / out["native_first_frame_s"], 3)
        world = build_scene(history, chunks)
        fps_app, drawn = native_fps(world, deep, DEEP_FRAMES)
        out["fps_app"] = round(fps_app, 2)
        out["splats_drawn_deep_app"] = drawn
        out["fps_ratio_vs_app"] = round(out["fps_deep"] / fps_app, 3)
        log(f"native: first frame {out['native_first_frame_s']} s, deep {out['fps_app']} FPS")

        store, index = world.resource(ChunkStore), world.resource(LodIndex)
        pieces = [(store.get(c), index.links[c]) for c in store.ids()]
        references = {name: render(prepare(cam, pieces), cam).rgb for name, cam in small.items()}
        for (name, cam), result in zip(small.items(), pages[1]["results"][2:]):
            err = np.abs(pixels(result) - references[name])
            out[f"image_error_{name}"] = round(float(err.mean()) * 255, 3)
        log("image error vs reference: " + ", ".join(
            f"{n} {out[f'image_error_{n}']}/255" for n in small))

        if spark:
            out.update(spark_probe(work, manifest, deep, small, references, log))
            out["fps_ratio_spark_vs_app"] = round(out["fps_deep_spark"] / fps_app, 3)
            out["fps_ratio_spark_vs_web"] = round(out["fps_deep_spark"] / out["fps_deep"], 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["bench_s"] = round(time.perf_counter() - t0, 1)
    return out


def spark_probe(work: Path, manifest: dict, deep: Camera, small: dict, references: dict, log) -> dict:
    """The same frames through the Spark prototype (bench/web_spark_probe)."""
    if not (PROBE / "node_modules" / "@sparkjsdev" / "spark").is_dir():
        raise SystemExit("--spark needs `npm ci` in bench/web_spark_probe")
    site = work / "spark-site"
    site.mkdir()
    for name in ("index.html", "probe.js"):
        shutil.copyfile(PROBE / name, site / name)
    (site / "node_modules").symlink_to(PROBE / "node_modules")
    (site / "viewer").symlink_to(WEB / "viewer")
    (site / "world").symlink_to(work / "web")
    step = len(manifest["steps"]) - 1
    deep_chunks = sorted(set(visible_chunks(manifest, deep, step)))
    all_chunks = sorted({i for cam in small.values() for i in visible_chunks(manifest, cam, step)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?chunks="
    try:
        # the deep frame fed only what our viewer draws there; the images from every chunk
        # any of the three cameras needs
        timing = [{"op": "eval", "expr": "window.probe.ready"},
                  {"op": "eval", "expr": f"window.probe.time({json.dumps(deep.to_dict())}, {DEEP_FRAMES})"}]
        images = [{"op": "eval", "expr": "window.probe.ready"}]
        images += [{"op": "eval", "expr": f"window.probe.render({json.dumps(c.to_dict())})"} for c in small.values()]
        pages = run_driver({"width": WIDTH, "height": HEIGHT, "out": str(work), "pages": [
            {"url": url + ",".join(map(str, deep_chunks)), "ops": timing},
            {"url": url + ",".join(map(str, all_chunks)), "ops": images}]}, work)
    finally:
        server.shutdown()
        server.server_close()
    out = {"spark_chunks_deep": len(deep_chunks), "spark_splats_deep": int(pages[0]["results"][0]["splats"])}
    out["fps_deep_spark"] = round(1.0 / statistics.median(pages[0]["results"][1]), 2)
    out["fps_ratio_spark_vs_app"] = None  # filled by the caller
    for (name, _), result in zip(small.items(), pages[1]["results"][1:]):
        out[f"image_error_{name}_spark"] = round(float(np.abs(pixels(result) - references[name]).mean()) * 255, 3)
    log(f"spark: deep {out['fps_deep_spark']} FPS")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--spark", action="store_true",
                        help="also measure the Spark prototype (npm ci in bench/web_spark_probe first)")
    args = parser.parse_args()
    if shutil.which("node") is None or not (WEB / "node_modules" / "puppeteer-core").is_dir():
        raise SystemExit("needs node and `npm ci` in ui/web (make test does it)")

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    out = run(log, args.spark)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
