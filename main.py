"""`wonderzoom`: the command-line entry point, and the only place that wires packages together.

Start-up stays fast: this module imports only the standard library at the top; each command
imports what it needs when it runs (torch, diffusers and transformers are never imported by
`--help`, `info`, `history`, `checkout`, `export` or `import`).
User mistakes (missing or corrupt files, wrong extensions, bad arguments) print one line and
exit with status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

WORLD_SUFFIX = ".wzs"
EXIT_USER_ERROR = 2
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # our own output only


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


# ---- helpers ----------------------------------------------------------------------------
def _world_path(path: str, must_exist: bool = True) -> Path:
    p = Path(path)
    if p.suffix.lower() != WORLD_SUFFIX:
        raise UserError(f"{path}: not a world file (expected a {WORLD_SUFFIX} file)")
    if must_exist and not p.exists():
        raise UserError(f"{path}: no such file")
    if must_exist and not p.is_file():
        raise UserError(f"{path}: not a regular file")
    return p


def _load(path: str):
    from saves import load_world

    return load_world(_world_path(path))


def _step_arg(loaded, step: int | None) -> int:
    history = loaded.history
    if step is None:
        if history.head is None:
            raise UserError("the world has no steps yet")
        return history.head
    if step not in history.steps:
        known = ", ".join(str(s) for s in sorted(history.steps))
        raise UserError(f"no step {step} in this world (steps: {known})")
    return step


def _world_summary(loaded, path: Path) -> dict[str, Any]:
    history = loaded.history
    levels: dict[int, dict[str, Any]] = {}
    steps = []
    for step in history:
        level = history.level_of(step.id)
        splats = sum(len(loaded.chunks[c]) for c in step.chunk_ids)
        entry = levels.setdefault(level, {"level": level, "steps": [], "chunks": 0, "splats": 0})
        entry["steps"].append(step.id)
        entry["chunks"] += len(step.chunk_ids)
        entry["splats"] += splats
        steps.append({"id": step.id, "parent": step.parent, "kind": step.kind, "level": level,
                      "prompt": step.prompt, "chunks": len(step.chunk_ids), "splats": splats})
    head_path = [s.id for s in history.path()] if history.head is not None else []
    return {
        "path": str(path),
        "valid": True,
        "file_bytes": path.stat().st_size,
        "format_version": loaded.format_version,
        "head": history.head,
        "head_path": head_path,
        "splats_at_head": sum(len(loaded.chunks[c]) for c in history.chunk_ids_at()) if head_path else 0,
        "splats_total": sum(len(c) for c in loaded.chunks.values()),
        "levels": [levels[k] for k in sorted(levels)],
        "steps": steps,
    }


# ---- commands ---------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    path = _world_path(args.world)
    loaded = _load(args.world)
    summary = _world_summary(loaded, path)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{path}  ({summary['file_bytes'] / 1e6:.2f} MB, valid)")
    print(f"head: step {summary['head']}  ({summary['splats_at_head']:,} splats on the path to it)")
    for lv in summary["levels"]:
        print(f"  level {lv['level']}: {lv['splats']:,} splats in {lv['chunks']} chunks "
              f"(steps {', '.join(map(str, lv['steps']))})")
    print("history:")
    print(loaded.history.render_tree())
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    loaded = _load(args.world)
    print(loaded.history.render_tree())
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    from saves import WorldWriter

    path = _world_path(args.world)
    loaded = _load(args.world)
    step = _step_arg(loaded, args.step)
    with WorldWriter.open(path) as writer:
        writer.set_head(step)
    print(f"head is now step {step}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from saves.ply import export_ply

    loaded = _load(args.world)
    step = _step_arg(loaded, args.step)
    out = Path(args.ply)
    if out.suffix.lower() != ".ply":
        raise UserError(f"{args.ply}: the output must end in .ply")
    chunks = [loaded.chunks[c] for c in loaded.history.chunk_ids_at(step)]
    n = export_ply(out, chunks)
    print(f"wrote {n:,} splats of step {step} to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from engine.chunking import split_level
    from engine.history import History, Step
    from saves import save_world
    from saves.ply import import_ply, import_ply_levels

    src = Path(args.ply)
    if not src.is_file():
        raise UserError(f"{args.ply}: no such file")
    out = _world_path(args.output, must_exist=False)
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    chunk = _one_level(src, import_ply_levels(src), args.level)
    if chunk is None:  # an empty file: an empty level-0 world
        chunk = import_ply(src)
    parts = split_level(chunk, keep_origin=True)  # origin stays 0: the import is lossless
    history = History()
    history.add(Step(0, None, "import", tuple(range(len(parts))), prompt="",
                     backend={"name": "ply-import", "source": src.name}, created=_now()))
    save_world(out, history, dict(enumerate(parts)), meta={"source": src.name})
    print(f"imported {len(chunk):,} splats into {out} ({len(parts)} chunks)")
    return 0


def _one_level(src: Path, levels: list, wanted: int | None):
    """The chunk to import from a PLY read as `levels` (one chunk per level): its only level,
    or level `wanted` of several. A multi-level export has lost the zoom cameras that link
    its levels, so it cannot come back as a multi-level world. None for an empty file."""
    found = [c.level for c in levels]
    names = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
    if wanted is not None:
        if wanted not in found:
            raise UserError(f"{src.name}: no splats of level {wanted} (levels: {names or 'none'})")
        return levels[found.index(wanted)]
    if len(levels) > 1:
        raise UserError(f"{src.name}: holds splats of {len(levels)} levels ({names}); import "
                        "makes a one-level world: choose one with --level N (a .wzs world "
                        "file keeps every level and its history)")
    return levels[0] if levels else None


def cmd_compact(args: argparse.Namespace) -> int:
    from saves import save_world

    loaded = _load(args.world)
    out = _world_path(args.output, must_exist=False)
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    used = {c for s in loaded.history for c in s.chunk_ids}
    save_world(out, loaded.history, {c: loaded.chunks[c] for c in sorted(used)}, meta=loaded.meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(loaded.history)} steps)")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    """Grow scene E0 (step 0 of a new world) from one image."""
    from generation.cli import UsageError, new_world

    out = _world_path(args.output, must_exist=False)
    try:
        return new_world(args, out, _now())
    except UsageError as exc:
        raise UserError(str(exc)) from None


def cmd_zoom(args: argparse.Namespace) -> int:
    """Zoom into a world at a pixel of a view and append the finer level as a new step."""
    from generation.cli import UsageError, zoom_world

    path = _world_path(args.world)
    loaded = _load(args.world)
    try:
        return zoom_world(args, loaded, path, _now())
    except UsageError as exc:
        raise UserError(str(exc)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a small procedural three-level world offline, save it, and export a PLY."""
    from engine.chunking import split_level
    from engine.history import History, Step
    from engine.synthetic import fractal_plane_world
    from saves import WorldWriter, save_world
    from saves.ply import export_ply

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    world_path = out_dir / "demo.wzs"
    levels = fractal_plane_world(levels=3, factor=4.0, size=args.size, seed=args.seed)
    history = History()
    next_chunk = 0
    for i, (camera, level) in enumerate(levels):
        parts = split_level(level, max_splats=16384)
        ids = tuple(range(next_chunk, next_chunk + len(parts)))
        next_chunk += len(parts)
        step = Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=camera,
                    prompt="" if i == 0 else f"procedural detail x{4 ** i}",
                    backend={"name": "procedural", "version": "1", "seed": args.seed + i},
                    created=_now())
        if i == 0:
            history.add(step)
            save_world(world_path, history, dict(zip(ids, parts)), meta={"demo": True})
        else:
            with WorldWriter.open(world_path) as writer:
                writer.append_step(step, dict(zip(ids, parts)))
            history.add(step)
        print(f"level {i}: {len(level):,} splats, {len(parts)} chunks, "
              f"pixel scale {float(level.s_native.mean()):.2e} world units")
    ply = out_dir / "demo.ply"
    n = export_ply(ply, [lv for _, lv in levels])
    print(f"saved {world_path} and {ply} ({n:,} splats)")
    print(f"next: wonderzoom info {world_path}")
    return cmd_info(argparse.Namespace(world=str(world_path), json=False))


def _sample_world():
    """The bundled sample: a procedural four-level fractal landscape, built in memory."""
    from engine.chunking import split_level
    from engine.history import History, Step
    from engine.synthetic import fractal_plane_world
    from ui.app import WorldState

    history, chunks = History(), {}
    for i, (camera, level) in enumerate(fractal_plane_world(levels=4, factor=4.0, size=320)):
        parts = split_level(level, max_splats=16384)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=camera,
                         prompt="" if i == 0 else "procedural detail",
                         backend={"name": "procedural", "version": "1", "seed": i}))
    return WorldState(history, chunks, None, "sample world")


def _open_world_state(path: str):
    from ui.app import WorldState

    loaded = _load(path)
    return WorldState(loaded.history, loaded.chunks, Path(path), Path(path).name)


def _has_display() -> bool:
    if os.environ.get("SDL_VIDEODRIVER"):
        return True  # the user chose a driver (offscreen included)
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def cmd_models(args: argparse.Namespace) -> int:
    from generation.cli import UsageError, models_command

    try:
        return models_command(args)
    except UsageError as exc:
        raise UserError(str(exc)) from None


def cmd_play(args: argparse.Namespace) -> int:
    headless = not _has_display()
    size = _parse_size(args.size or ("960x540" if headless else "1280x720"))
    if args.world is not None:
        state = _open_world_state(args.world)  # refuse a bad file before opening a window
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
        out_dir = Path(args.out)
        print(f"No display found: running headless (offscreen) and writing frames to {out_dir}/")
    from generation.procedural import ProceduralGenerator
    from saves.autosave import Autosaver
    from ui.app import App, AppConfig
    from ui.bindings import load_bindings

    bindings = load_bindings(args.bindings)
    if args.world is None:
        state = _sample_world()
    frames = args.frames if args.frames is not None else (90 if headless else None)
    sweep: list[Path] = []

    def autopilot(app, frame: int) -> None:
        """Headless demo: zoom steadily toward the deepest level, keeping a frame every 15."""
        import pygame

        if frame == 0:
            target = _deepest_point(app.state)
            uv, z = app.camera.project(target[None])
            inside = z[0] > 0 and 0 <= uv[0, 0] < size[0] and 0 <= uv[0, 1] < size[1]
            pos = (int(uv[0, 0]), int(uv[0, 1])) if inside else (size[0] // 2, size[1] // 2)
            pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, pos=pos, rel=(0, 0), buttons=(0, 0, 0)))
        notches = _autopilot_notches(app.state) / max(frames - 10, 1)
        if frame < frames - 10:
            pygame.event.post(pygame.event.Event(pygame.MOUSEWHEEL, x=0, y=1, precise_x=0.0,
                                                 precise_y=notches, flipped=False, which=0))
        if frame % 15 == 14:
            sweep.append(app.request_screenshot(Path(args.out) / f"sweep_{len(sweep):03d}.png"))

    config = AppConfig(width=size[0], height=size[1], fps_cap=args.fps_cap or None,
                       vsync=not args.no_vsync, screenshot_dir=Path(args.out))
    if args.generator == "procedural":
        generator = ProceduralGenerator()
    else:  # the real pipeline in a worker process (a zoom takes tens of seconds on a CPU)
        from generation.service import GenerationService

        from generation.cli import UsageError, file_settings

        try:
            generator = GenerationService(file_settings(args.config))
        except UsageError as exc:
            raise UserError(str(exc)) from None
    app = App(state, config=config, bindings=bindings, generator=generator,
              saver=Autosaver(state.path), open_world=_open_world_state,
              on_frame=autopilot if headless and args.frames is None else None)
    try:
        if frames is not None:
            app.run(frames - 1)
            shot = Path(args.screenshot) if args.screenshot else (Path(args.out) / "screenshot.png" if headless else None)
            if shot is not None:
                app.request_screenshot(shot)
            app.step()
        else:
            app.run()
    finally:
        app.close()
    for path in app.screenshots_written:
        print(f"wrote {path}")
    return 0


def _deepest_point(state):
    """World point the head step's camera looks at (the centre of the deepest level)."""
    import numpy as np

    step = state.history.steps[state.history.head]
    chunks = [state.chunks[c] for c in step.chunk_ids]
    pts = np.concatenate([c.world_positions() for c in chunks])
    if step.camera is None:
        return pts.mean(axis=0)
    depth = float(np.median(step.camera.points_to_camera(pts)[:, 2]))
    cam = step.camera
    return cam.unproject(np.array([[cam.cx, cam.cy]]), np.array([depth]))[0]


def _autopilot_notches(state) -> float:
    """Wheel notches that zoom from the root level to a little past the deepest one."""
    import math

    import numpy as np

    path = state.history.path()
    scales = [float(np.median(np.concatenate([state.chunks[c].s_native for c in s.chunk_ids])))
              for s in (path[0], path[-1])]
    return math.log(max(scales[0] / scales[1], 1.0) * 1.5) / math.log(1.25)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise UserError(f"--size {text!r}: each side must be 64..8192 pixels")
    return w, h


def _play_epilog() -> str:
    from ui.bindings import Bindings

    return ("bindings (rebind with --bindings FILE.toml, sections [keyboard] and [gamepad]):\n  "
            + "\n  ".join(Bindings().help_lines()))


def _zoom_chain_point(loaded, step: int):
    """(point, pixel scale) of the deepest zoom on the path to `step`, or (None, None) if it
    never zoomed: by default a zoom sweep flies down the chain of zooms the world was grown by,
    to that zoom's own scale there (the level's native scale at its target; the nearest splats
    in 3D may belong to a coarser level, e.g. under a structure raised over the target)."""
    import numpy as np

    zooms = [s for s in loaded.history.path(step) if s.point is not None]
    if not zooms:
        return None, None
    point = np.array(zooms[-1].point, np.float64)
    cam = zooms[-1].camera
    scale = float(cam.pixel_scale(point[None])[0]) if cam is not None else None
    return point, scale if scale is not None and np.isfinite(scale) and scale > 0 else None


def cmd_render(args: argparse.Namespace) -> int:
    """Render frames of a world headless (EGL) along a camera path or a zoom sweep."""
    from engine.render.camera_path import CameraPathError, load_camera_path
    from engine.render.gl import HeadlessContextError, create_headless_context
    from engine.render.headless import (mp4_writer_available, start_camera, to_uint8,
                                        write_mp4, write_png, zoom_sweep_path)
    from engine.render.streaming import StreamingRenderer
    from engine.scene import build_scene

    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and not 0 < value <= 8192:
            raise UserError(f"--{name} must be in 1..8192")
    if args.frames is not None and not 0 < args.frames <= 100_000:
        raise UserError("--frames must be in 1..100000")
    at = None
    if args.at is not None:
        try:
            u, v = (float(x) for x in args.at.split(","))
        except ValueError:
            raise UserError(f"--at {args.at!r}: expected two numbers U,V (pixels)") from None
        at = (u, v)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    loaded = _load(args.world)
    step = _step_arg(loaded, args.step)
    try:
        cameras = None
        if args.camera_path is not None:
            cameras = load_camera_path(args.camera_path, args.width, args.height, args.frames)
        world = build_scene(loaded.history, loaded.chunks, step)
        try:
            ctx = create_headless_context()
        except HeadlessContextError as exc:
            raise UserError(str(exc)) from None
        renderer = StreamingRenderer(ctx)
        try:
            if cameras is None:
                start = start_camera(world, args.width or 640, args.height or 480)
                point, scale = (None, None) if at is not None else _zoom_chain_point(loaded, step)
                cameras = zoom_sweep_path(renderer, world, start, args.frames or 60, at,
                                          target=point, s_end=scale)
            out_dir.mkdir(parents=True, exist_ok=True)
            written = []
            for i, camera in enumerate(cameras):
                frame = renderer.render_offscreen(world, camera)
                written.append(out_dir / f"frame_{i:04d}.png")
                write_png(written[-1], to_uint8(frame.rgb))
        finally:
            renderer.release()
            ctx.release()
    except CameraPathError as exc:
        raise UserError(str(exc)) from None
    (out_dir / "cameras.json").write_text(json.dumps(
        {"version": 1, "cameras": [c.to_dict() for c in cameras]}))
    print(f"wrote {len(written)} frames ({cameras[0].width}x{cameras[0].height}) of step {step} "
          f"to {out_dir}/frame_0000.png ... and the cameras to {out_dir}/cameras.json")
    if args.mp4:
        if len({(c.width, c.height) for c in cameras}) > 1:
            print("note: frames differ in size; no mp4 written")
        elif mp4_writer_available():
            try:
                write_mp4(out_dir / "render.mp4", written, fps=args.fps)
                print(f"wrote {out_dir / 'render.mp4'}")
            except Exception as exc:  # the PNG frames are written; the video is optional
                print(f"note: no mp4 written ({str(exc).splitlines()[0] if str(exc) else exc!r})")
        else:
            print("note: --mp4 needs imageio and imageio-ffmpeg (pip install imageio "
                  "imageio-ffmpeg); wrote the PNG frames only")
    return 0


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wonderzoom",
        description="WonderZoom engine: a multi-scale 3D Gaussian-splat world you can zoom into "
                    "without limit. Worlds are .wzs files holding their whole append-only history.",
        epilog="Run 'wonderzoom COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("info", cmd_info, "show a world's levels, splat counts, history and validity")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    p = add("history", cmd_history, "print the history tree of a world (* marks the head)")
    p.add_argument("world", help="world file (.wzs)")

    p = add("checkout", cmd_checkout, "move the world's head to another step (undo / branch point)")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("step", type=int, help="step id (see 'wonderzoom history')")

    p = add("export", cmd_export, "export the world at a step as a 3DGS PLY other viewers open")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--ply", required=True, metavar="OUT", help="output .ply path")
    p.add_argument("--step", type=int, default=None, help="step to export (default: the head)")

    p = add("import", cmd_import, "import a standard 3DGS PLY (any SH degree) as a one-level world")
    p.add_argument("ply", help="input .ply file")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--level", type=int, default=None, metavar="N",
                   help="the level to import from a multi-level WonderZoom export (the file's "
                        "`level` property)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")

    p = add("compact", cmd_compact, "write a clean copy of a world (drops orphaned data)")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")

    from generation.cli import add_config_argument  # argparse only, no torch

    p = sub.add_parser("play", help="open a world in a window and fly/zoom through it",
                       description="Open a world (or the bundled sample) in a window: fly, zoom, pick a "
                                   "point, type a prompt and watch it grow. With no display it runs "
                                   "headless and writes a screenshot and a zoom sweep.",
                       epilog=_play_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(fn=cmd_play)
    p.add_argument("world", nargs="?", help="world file (.wzs); default: the bundled sample world")
    p.add_argument("--frames", type=int, default=None, help="run N frames, then exit")
    p.add_argument("--screenshot", metavar="PATH", help="write the last frame (with HUD) as PNG")
    p.add_argument("--bindings", metavar="TOML", help="rebind keys/buttons from a TOML file")
    p.add_argument("--size", default=None,
                   help="window size WIDTHxHEIGHT (default 1280x720; 960x540 headless)")
    p.add_argument("--fps-cap", type=float, default=60.0, help="frame-rate cap (0 = none)")
    p.add_argument("--no-vsync", action="store_true", help="do not wait for the display refresh")
    p.add_argument("--out", default="out/play", help="folder for screenshots (default out/play)")
    p.add_argument("--generator", choices=("builtin", "procedural"), default="builtin",
                   help="what grows new levels: the builtin pipeline (default) or a fast "
                        "procedural stand-in that only adds texture")

    add_config_argument(p)

    from generation.cli import add_new_arguments, add_zoom_arguments  # argparse only, no torch

    add_new_arguments(add("new", cmd_new, "grow a world from one image (JPEG/PNG/WebP): step 0"))
    add_zoom_arguments(add("zoom", cmd_zoom, "zoom into a pixel of a view and grow a finer level "
                                             "there (appends a step)"))

    p = add("models", cmd_models, "list the backend and model each generation stage uses, "
                                  "which are on this machine, and how to fetch the missing ones")
    add_config_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    p = add("demo", cmd_demo, "build a procedural 3-level world offline (no models needed)")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--size", type=int, default=192, help="pixels per side of each level")
    p.add_argument("--seed", type=int, default=0)

    p = add("render", cmd_render, "render frames of a world headless (PNG frames, optional mp4)")
    p.add_argument("world", help="world file (.wzs)")
    path = p.add_mutually_exclusive_group(required=True)
    path.add_argument("--camera-path", metavar="PATH.json",
                      help="camera path file (format in README: keyframes or explicit cameras)")
    path.add_argument("--zoom-sweep", action="store_true",
                      help="fly straight from the root camera toward the point at the image "
                           "centre (or --at; default for a zoomed world: the point of its "
                           "deepest zoom) down to the finest level there")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for frame_0000.png ...")
    p.add_argument("--width", type=int, default=None, help="image width (default: the path's, or 640)")
    p.add_argument("--height", type=int, default=None, help="image height (default: the path's, or 480)")
    p.add_argument("--step", type=int, default=None, help="render the world at this step (default: head)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames of the zoom sweep (default 60) or of a keyframe path")
    p.add_argument("--at", metavar="U,V", default=None,
                   help="zoom-sweep target pixel of the start camera (default: the centre)")
    p.add_argument("--mp4", action="store_true", help="also write render.mp4 (needs imageio-ffmpeg)")
    p.add_argument("--fps", type=float, default=30.0, help="mp4 frame rate (default 30)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.fn(args) or 0)
    except UserError as exc:
        print(f"wonderzoom: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("wonderzoom: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # file-format and input errors from the packages, as one line
        message = _user_message(exc)
        if message is None:
            raise
        print(f"wonderzoom: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


def _user_message(exc: Exception) -> str | None:
    """One line for errors caused by the user's files; None for real bugs (re-raised)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"SaveFormatError", "WorldBusyError", "PlyError", "HistoryError", "CameraError",
                 "BindingsError", "HeadlessContextError"}:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
        return f"{exc.filename}: {os.strerror(exc.errno) if exc.errno else exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
