"""Frame-time benchmark of the app's frame loop, and how long a zoom asked for in the app takes.

Run from the repo root: `python bench/frame_loop.py [--json] [--frames N] [--size WxH]
[--zooms N] [--threads N]`. Opens the app headless (SDL offscreen + llvmpipe here) on the
sample world (`cli.sample`, grown once and cached) and measures, in one run:
- flying: frame times (p50/p99) of a slow scripted strafe, first with no generation running,
  then while a generation job runs in a worker *process* (`--generator service`, default: the
  real pipeline growing a zoom on the sample world; `--generator burn`: a process that keeps
  one core busy with torch matmuls at normal priority, the worst case: the real worker runs
  at nice 10). With the service, `--rounds` idle / busy flights alternate (the machine is
  shared: a drift in its load falls on both). Target: p99 ratio (busy / idle) <= 1.5.
- `zoom_in_app_s` (with `--generator service`): a zoom at the centre of the start view asked
  for from the app with the camera still, until its level is hot-loaded (the frame loop keeps
  running: it draws nothing while nothing changes), then `zoom_cli_s`: the same request run
  in-process on every core, as `wonderzoom zoom` runs it; `--zooms N` pairs, app first.
  Target: zoom_in_app_s <= 1.5 x zoom_cli_s (the ratio of each pair; the median is reported).
`--threads` sets the worker's torch threads (default: the service's own choice).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _burn(stop: "mp.synchronize.Event") -> None:  # runs in the worker process
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while not stop.is_set():
        for _ in range(20):
            a = torch.tanh(a @ a)


def _measure(app, frames: int) -> list[float]:
    import numpy as np
    import pygame

    times = []
    app.controller = app._initial_controller()  # both phases fly the same path
    for _ in range(20):  # warm-up: streaming uploads, shader compilation
        app.step()
    for i in range(frames):
        # strafe left and right, like a user looking around a spot: the same path every phase
        key = (pygame.K_a, pygame.K_d)[(i // 20) % 2]
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="",
                                             scancode=0))
        t = time.perf_counter()
        app.step()
        app.ctx.finish()
        times.append(time.perf_counter() - t)
        pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0))
    return list(np.array(times) * 1000.0)


def _start_view(app) -> None:
    """Back to the start view (the cup fills it), once its chunks have streamed in."""
    app.controller = app._initial_controller()
    deadline = time.perf_counter() + 120
    app.step()
    while (app.last_stats is None or app.last_stats.chunks_pending
           or not app.last_stats.splats_drawn):
        if time.perf_counter() > deadline:  # the world streams in from its file
            raise RuntimeError("the start view's chunks did not load within 120 s")
        app.step()


def _zoom_in_app(app, prompt: str, timeout_s: float = 1200.0):
    """Ask for a zoom at the centre of the start view, keep the camera still and step frames
    until its level is hot-loaded: (seconds, the request, frames stepped, frames that drew)."""
    from engine.loop import DRAW_NOTHING

    w, h = app.size
    _start_view(app)
    app.pick((w // 2, h // 2), app.loop.clock.now())
    before = len(app.hot_loaded_steps)
    t0 = time.perf_counter()
    rid = app.request_zoom(prompt)
    if rid is None:
        raise RuntimeError(f"no zoom was sent: {app.messages.items}")
    request = app.jobs.active[rid].request
    frames = drawn = 0
    while len(app.hot_loaded_steps) == before:  # a streamed world links it off the frame first
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"the zoom did not arrive within {timeout_s:g} s")
        failed = [text for _, text, error in app.messages.items
                  if error and text.startswith("generation failed")]
        if failed:
            raise RuntimeError(failed[-1])
        drawn += app.step().draw != DRAW_NOTHING
        frames += 1
    return time.perf_counter() - t0, request, frames, drawn


def _cli_child(request, out: "mp.Queue") -> None:  # a fresh process, as `wonderzoom zoom` is
    from generation.config import GenerationConfig
    from generation.cores import usable_cores
    from generation.pipeline import run_zoom

    t0 = time.perf_counter()
    run_zoom(request, GenerationConfig(num_threads=usable_cores()))
    out.put(time.perf_counter() - t0)


def _zoom_cli(request) -> float:
    """The same request as `wonderzoom zoom` runs it: the pipeline in a fresh process on every
    core (in this process, beside the closed app's GL and SDL, it ran 2.5x slower)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_cli_child, args=(request, out))
    proc.start()
    seconds = out.get(timeout=3600)
    proc.join(60)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="960x540")
    parser.add_argument("--generator", choices=("burn", "service"), default="service")
    parser.add_argument("--zooms", type=int, default=1, help="app / CLI zoom pairs (0: none)")
    parser.add_argument("--threads", type=int, default=None, help="the worker's threads")
    parser.add_argument("--rounds", type=int, default=2, help="idle / busy flight rounds")
    args = parser.parse_args()
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import numpy as np

    from cli.play import open_world_state
    from cli.sample import ensure_sample_world
    from ui.app import App, AppConfig

    w, h = (int(v) for v in args.size.split("x"))
    sample = str(ensure_sample_world(quiet=True))
    out: dict = {"generator": args.generator, "size": args.size, "frames": args.frames,
                 "cpus": os.cpu_count()}
    app = App(open_world_state(sample),
              config=AppConfig(width=w, height=h, fps_cap=None, vsync=False))
    load_before = os.getloadavg()
    idle: list[float] = []
    busy: list[float] = []
    try:
        if args.generator == "service":
            from generation.service import GenerationService
            from ui.jobs import Jobs

            # interleaved rounds (idle, busy, idle, busy, ...): the machine is shared, so a
            # drift in its load falls on both sides; the job is still running when each
            # busy flight ends (it is cancelled before the next idle one)
            gen = GenerationService({"zoom_iterations": 10000}, threads=args.threads)
            app.jobs = Jobs(gen)
            for _ in range(args.rounds):
                idle += _measure(app, args.frames)
                _start_view(app)
                app.pick((w // 2, h // 2), 0.0)
                rid = app.request_zoom("a ladybug")
                if rid is None:
                    raise RuntimeError(f"no zoom was sent: {app.messages.items}")
                deadline = time.monotonic() + 120
                while (rid in app.jobs.active and time.monotonic() < deadline
                       and app.jobs.active[rid].stage in ("queued", "observe")):
                    app.step()  # the worker process is starting (imports torch)
                busy += _measure(app, args.frames)
                if rid not in app.jobs.active:
                    print("warning: the generation job ended before the measurement did",
                          file=sys.stderr)
                app.jobs.cancel_all()
                deadline = time.monotonic() + 60
                while rid in app.jobs.active and time.monotonic() < deadline:
                    app.step()
                    time.sleep(0.01)
            gen.close()
            out["worker_threads"] = gen.threads
        else:
            idle = _measure(app, args.frames)
            ctx = mp.get_context("spawn")
            stop = ctx.Event()
            proc = ctx.Process(target=_burn, args=(stop,), daemon=True)
            proc.start()
            time.sleep(2.0)  # let it import torch and get busy
            busy = _measure(app, args.frames)
            stop.set()
            proc.join(10)
    finally:
        app.close()
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    out.update({
        "idle_p50_ms": round(p(idle, 50), 2), "idle_p99_ms": round(p(idle, 99), 2),
        "busy_p50_ms": round(p(busy, 50), 2), "busy_p99_ms": round(p(busy, 99), 2),
        "p50_ratio": round(p(busy, 50) / p(idle, 50), 3),
        "p99_ratio": round(p(busy, 99) / p(idle, 99), 3),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    })
    print(json.dumps(out), file=sys.stderr)  # the flight's figures, before the zooms
    if args.generator == "service" and args.zooms > 0:
        from generation.service import GenerationService
        from ui.jobs import Jobs

        pairs = []
        for k in range(args.zooms):
            app = App(open_world_state(sample),
                      config=AppConfig(width=w, height=h, fps_cap=60, vsync=False))
            gen = GenerationService(threads=args.threads)
            app.jobs = Jobs(gen)
            try:
                in_app, request, frames, drawn = _zoom_in_app(app, "a ladybug")
                step = app.state.history.steps[app.hot_loaded_steps[-1]]
                size = (step.backend or {}).get("working_size")
            finally:
                app.close()
            cli = _zoom_cli(request)
            pairs.append({"zoom_in_app_s": round(in_app, 1), "zoom_cli_s": round(cli, 1),
                          "ratio": round(in_app / cli, 3), "working_size": size,
                          "app_frames": frames, "app_frames_drawn": drawn,
                          "worker_threads": gen.threads})
            print(json.dumps(pairs[-1]), file=sys.stderr)
        out["zoom_pairs"] = pairs
        out["zoom_in_app_s"] = statistics.median(q["zoom_in_app_s"] for q in pairs)
        out["zoom_cli_s"] = statistics.median(q["zoom_cli_s"] for q in pairs)
        out["zoom_ratio"] = statistics.median(q["ratio"] for q in pairs)
        out["targets"] = {"p99_ratio": 1.5, "zoom_ratio": 1.5}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>14}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
