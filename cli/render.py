"""`wonderzoom render WORLD --out DIR (--camera-path PATH.json | --zoom-sweep)`: PNG frames
of a world, headless (EGL), and optionally an mp4."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import (add_ram_argument, add_renderer_argument, open_file, parse_pixel,
                        ram_budget, renderer_choice, step_arg)
from engine.atomic import atomic_write, write_all
from engine.camera import DEFAULT_VIEW_SIZE
from engine.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help="render frames of a world headless (PNG frames, optional mp4)",
                       description="Render frames of a world headless (EGL; no display needed) "
                                   "along a camera path or a zoom sweep. The camera-path format "
                                   "is in docs/camera-paths.md.")
    p.add_argument("world", help="world file (.wzs)")
    path = p.add_mutually_exclusive_group(required=True)
    path.add_argument("--camera-path", metavar="PATH.json",
                      help="camera path file (docs/camera-paths.md: keyframes or explicit cameras)")
    path.add_argument("--zoom-sweep", action="store_true",
                      help="fly straight from the root camera toward the point at the image "
                           "centre (or --at; default for a zoomed world: the point of its "
                           "deepest zoom) down to the finest level there")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for frame_0000.png ...")
    w, h = DEFAULT_VIEW_SIZE
    p.add_argument("--width", type=int, default=None,
                   help=f"image width (default: the path's, or {w}: play's window)")
    p.add_argument("--height", type=int, default=None,
                   help=f"image height (default: the path's, or {h})")
    p.add_argument("--step", type=int, default=None, help="render the world at this step (default: head)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames of the zoom sweep (default 60) or of a keyframe path")
    p.add_argument("--at", metavar="U,V", default=None,
                   help="zoom-sweep target pixel of the start camera, or percentages of "
                        "its frame, e.g. 30%%,60%% (default: the centre)")
    p.add_argument("--mp4", action="store_true", help="also write render.mp4 (needs imageio-ffmpeg)")
    p.add_argument("--fps", type=float, default=30.0, help="mp4 frame rate (default 30)")
    add_renderer_argument(p)
    add_ram_argument(p)
    return p


def zoom_chain_point(history, step: int):
    """(point, pixel scale) of the deepest zoom on the path to `step`, or (None, None) if it
    never zoomed: by default a zoom sweep flies down the chain of zooms the world was grown by,
    to that zoom's own scale there (the level's native scale at its target; the nearest splats
    in 3D may belong to a coarser level, e.g. under a structure raised over the target)."""
    import numpy as np

    zooms = [s for s in history.path(step) if s.point is not None]
    if not zooms:
        return None, None
    point = np.array(zooms[-1].point, np.float64)
    cam = zooms[-1].camera
    scale = float(cam.pixel_scale(point[None])[0]) if cam is not None else None
    return point, scale if scale is not None and np.isfinite(scale) and scale > 0 else None


def run(args: argparse.Namespace) -> int:
    from engine.render.camera_path import load_camera_path
    from engine.render.gl import create_headless_context
    from engine.render.headless import (render_resident, start_camera, to_uint8, write_png,
                                        zoom_sweep_path)
    from engine.render.streaming import StreamingRenderer
    from engine.scene import ChunkStore, build_streamed_scene, close_scene

    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and not 0 < value <= 8192:
            raise UserError(f"--{name} must be in 1..8192")
    if args.frames is not None and not 0 < args.frames <= 100_000:
        raise UserError("--frames must be in 1..100000")
    at = None
    if args.at is not None:  # percentages are of the start camera's frame
        at = parse_pixel(args.at, args.width or DEFAULT_VIEW_SIZE[0],
                         args.height or DEFAULT_VIEW_SIZE[1])
    path_choice = renderer_choice(args.renderer)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    budget = ram_budget(args.ram_mb)
    source = open_file(args.world)  # the index alone: chunks are read as frames need them
    try:
        step = step_arg(source.history, args.step)
        cameras = None
        if args.camera_path is not None:
            cameras = load_camera_path(args.camera_path, args.width, args.height, args.frames)
        world = build_streamed_scene(source.history, source.source, step, budget_bytes=budget)
        try:
            ctx = create_headless_context()
            try:
                renderer = StreamingRenderer(ctx, path=path_choice)
            except BaseException:
                ctx.release()
                raise
            try:
                if cameras is None:
                    start = start_camera(world, args.width or DEFAULT_VIEW_SIZE[0],
                                         args.height or DEFAULT_VIEW_SIZE[1])
                    point, scale = ((None, None) if at is not None
                                    else zoom_chain_point(source.history, step))
                    cameras = zoom_sweep_path(renderer, world, start, args.frames or 60, at,
                                              target=point, s_end=scale)
                out_dir.mkdir(parents=True, exist_ok=True)
                written = []
                for i, camera in enumerate(cameras):
                    ahead = cameras[i + 1] if i + 1 < len(cameras) else None
                    frame = render_resident(renderer, world, camera, ahead)
                    written.append(out_dir / f"frame_{i:04d}.png")
                    write_png(written[-1], to_uint8(frame.rgb))
                drawn_by = renderer.path
                refused = list(world.resource(ChunkStore).failures)
            finally:
                renderer.release()
                ctx.release()
        finally:
            close_scene(world)
    finally:
        source.close()
    for failure in refused[:5]:
        print(f"note: {failure.message}")
    with atomic_write(out_dir / "cameras.json") as fd:
        write_all(fd, json.dumps({"version": 1, "cameras": [c.to_dict() for c in cameras]})
                  .encode())
    print(f"wrote {len(written)} frames ({cameras[0].width}x{cameras[0].height}, {drawn_by} "
          f"renderer) of step {step} to {out_dir}/frame_0000.png ... and the cameras to "
          f"{out_dir}/cameras.json")
    if args.mp4:
        _write_mp4(out_dir, written, cameras, args.fps)
    return 0


def _write_mp4(out_dir: Path, written: list[Path], cameras, fps: float) -> None:
    from engine.render.headless import mp4_writer_available, write_mp4

    if len({(c.width, c.height) for c in cameras}) > 1:
        print("note: frames differ in size; no mp4 written")
    elif mp4_writer_available():
        try:
            write_mp4(out_dir / "render.mp4", written, fps=fps)
            print(f"wrote {out_dir / 'render.mp4'}")
        except Exception as exc:  # the PNG frames are written; the video is optional
            print(f"note: no mp4 written ({str(exc).splitlines()[0] if str(exc) else exc!r})")
    else:
        print("note: --mp4 needs imageio and imageio-ffmpeg (pip install -e '.[video]', "
              "which make installs); wrote the PNG frames only")
