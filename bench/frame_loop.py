"""Frame-time benchmark of the app's frame loop: idle vs. with a generation job running.

Run from the repo root: `python bench/frame_loop.py [--json] [--frames N] [--size WxH]`.
Opens the app headless (SDL offscreen + llvmpipe here) on the bundled sample world, flies a
slow scripted path, and measures frame times (p50/p99) twice in one run: idle, then while a
generation job runs in a worker *process*. By default (`--generator service`) the job is the
real pipeline (generation.service: a zoom step on the sample world, measured once its worker
is busy); `--generator burn` is a process that keeps one core busy with single-threaded torch
matmuls at normal priority (the worst case: the real worker runs at nice 10).
Target: p99 ratio (busy / idle) <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
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
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
        t = time.perf_counter()
        app.step()
        app.ctx.finish()
        times.append(time.perf_counter() - t)
        pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0))
    return list(np.array(times) * 1000.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="960x540")
    parser.add_argument("--generator", choices=("burn", "service"), default="service")
    args = parser.parse_args()
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import numpy as np

    import main as cli
    from ui.app import App, AppConfig

    w, h = (int(v) for v in args.size.split("x"))
    state = cli._sample_world()
    app = App(state, config=AppConfig(width=w, height=h, fps_cap=None, vsync=False))
    try:
        idle = _measure(app, args.frames)
        if args.generator == "service":
            from generation.service import GenerationService  # the real pipeline

            gen = GenerationService()
            app.generator = gen
            app.pick((w // 2, h // 2), 0.0)
            rid = app.request_zoom("a ladybug")
            deadline = time.monotonic() + 60
            while rid in app.jobs and app.jobs[rid].stage == "queued" and time.monotonic() < deadline:
                app.step()  # the worker process is starting (imports torch)
            busy = _measure(app, args.frames)
            if rid not in app.jobs:
                print("warning: the generation job ended before the measurement did", file=sys.stderr)
            gen.close()
        else:
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
    out = {
        "generator": args.generator, "size": args.size, "frames": args.frames,
        "idle_p50_ms": round(p(idle, 50), 2), "idle_p99_ms": round(p(idle, 99), 2),
        "busy_p50_ms": round(p(busy, 50), 2), "busy_p99_ms": round(p(busy, 99), 2),
        "p50_ratio": round(p(busy, 50) / p(idle, 50), 3),
        "p99_ratio": round(p(busy, 99) / p(idle, 99), 3),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>14}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
