"""`wonderzoom play [WORLD]`: open a world (default: the sample world) in a window.

With no display it runs headless (SDL's offscreen driver) and writes a screenshot and a zoom
sweep down the world's zoom chain, so `make run` shows something on any machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.common import open_file, parse_size
from cli.common import add_ram_argument, add_renderer_argument, ram_budget, renderer_choice
from cli.genargs import add_cluster_argument, add_config_argument
from engine.camera import DEFAULT_VIEW_SIZE

HEADLESS_FRAMES = 90


def add_parser(sub) -> argparse.ArgumentParser:
    from ui.bindings import Bindings

    epilog = ("bindings (rebind with --bindings FILE.toml, sections [keyboard] and [gamepad]):\n  "
              + "\n  ".join(Bindings().help_lines()))
    p = sub.add_parser("play", help="open a world in a window and fly/zoom through it",
                       description="Open a world (or the sample world: a photo grown by three "
                                   "zooms, grown once and cached) in a window: fly, zoom, pick a "
                                   "point, type a prompt and watch it grow. With no display it "
                                   "runs headless and writes a screenshot and a zoom sweep.",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("world", nargs="?", help="world file (.wzs); default: the sample world")
    p.add_argument("--frames", type=int, default=None, help="run N frames, then exit")
    p.add_argument("--screenshot", metavar="PATH", help="write the last frame (with HUD) as PNG")
    p.add_argument("--bindings", metavar="TOML", help="rebind keys/buttons from a TOML file")
    p.add_argument("--size", default=None,
                   help="window size WIDTHxHEIGHT (default {}x{}; 960x540 headless)".format(
                       *DEFAULT_VIEW_SIZE))
    p.add_argument("--fps-cap", type=float, default=60.0, help="frame-rate cap (0 = none)")
    p.add_argument("--no-vsync", action="store_true", help="do not wait for the display refresh")
    p.add_argument("--out", default="out/play", help="folder for screenshots (default out/play)")
    add_renderer_argument(p)
    add_ram_argument(p)
    p.add_argument("--generator", choices=("builtin", "procedural"), default="builtin",
                   help="what grows new levels: the builtin pipeline (default) or a fast "
                        "procedural stand-in that only adds texture")
    add_config_argument(p)
    add_cluster_argument(p)
    return p


def has_display() -> bool:
    if os.environ.get("SDL_VIDEODRIVER"):
        return True  # the user chose a driver (offscreen included)
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def open_world_state(path: str):
    """The world at `path` for the app, opened by its index (the first frame does not wait
    for the payloads): chunks stream from the file, levels grown in the session stay in
    memory in front of it."""
    from engine.catalog import MemorySource
    from ui.session import WorldState

    world = open_file(path)
    return WorldState(world.history, {}, Path(path), Path(path).name,
                      source=MemorySource(world.source),
                      first_free_chunk_id=world.first_free_chunk_id, on_close=world.close)


def run(args: argparse.Namespace) -> int:
    from ui.bindings import load_bindings

    headless = not has_display()
    size = parse_size(args.size) if args.size else ((960, 540) if headless else DEFAULT_VIEW_SIZE)
    if args.frames is not None and args.frames < 1:
        from engine.errors import UserError

        raise UserError("--frames must be at least 1")
    bindings = load_bindings(args.bindings)  # refuse bad input before any work
    generator = make_generator(args.generator, args.config, args.cluster)
    if args.world is not None:
        state = open_world_state(args.world)  # refuse a bad file before opening a window
    else:
        from cli.sample import ensure_sample_world

        state = open_world_state(str(ensure_sample_world()))
        state.title, state.path = "sample world", None  # keep the cache pristine: Ctrl+S copies
    out_dir = Path(args.out)
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
        print(f"No display found: running headless (offscreen) and writing frames to {out_dir}/")
    return play(state, size, args, bindings, generator, headless)


def make_generator(kind: str, config_arg: str | None, cluster_arg: str | None = None):
    """What grows new levels: the pipeline in a worker process (a zoom takes tens of seconds
    on a CPU), on a Ray cluster's warm workers (`--cluster`, `$WONDERZOOM_CLUSTER` or the
    config's `[service]`), or the procedural stand-in."""
    if kind == "procedural":
        from generation.procedural import ProceduralGenerator

        return ProceduralGenerator()
    from cli.cluster import choose, make_service

    return make_service(choose(config_arg, cluster_arg), config_arg)


def play(state, size, args, bindings, generator, headless: bool) -> int:
    from saves.autosave import Autosaver
    from ui.app import App, AppConfig
    from ui.autopilot import ZoomAutopilot

    out_dir = Path(args.out)
    frames = args.frames if args.frames is not None else (HEADLESS_FRAMES if headless else None)
    autopilot = ZoomAutopilot(frames, out_dir) if headless and args.frames is None else None
    config = AppConfig(width=size[0], height=size[1], fps_cap=args.fps_cap or None,
                       vsync=not args.no_vsync, screenshot_dir=out_dir,
                       renderer=renderer_choice(args.renderer, args.config),
                       ram_bytes=ram_budget(args.ram_mb))
    try:
        app = App(state, config=config, bindings=bindings, generator=generator,
                  saver=Autosaver(state.path), open_world=open_world_state, on_frame=autopilot)
    except BaseException:
        generator.close()
        raise
    try:
        if frames is not None:
            app.run(frames - 1)
            shot = (Path(args.screenshot) if args.screenshot
                    else (out_dir / "screenshot.png" if headless else None))
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
