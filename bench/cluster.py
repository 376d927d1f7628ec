"""Benchmark of generation on a Ray cluster (docs/cluster.md).

Run from the repo root: `python bench/cluster.py [--json] [--frames N] [--size WxH]`.
Starts one Ray instance on this machine (`ray start --head` on 127.0.0.1, loopback only),
points `RayGenerationService` at it (so its workers share the machine with the app, as with
`--cluster local`), and measures:
- overhead_s: the same small builtin zoom (warm services, 1 thread each) through the Ray pool
  minus through the local worker process (`generation.service`); median of 3. Target <= 1.0.
- scaling_2: requests per second with 2 actors / with 1 actor, on requests whose work is a
  stage that waits 2 s (standing in for a GPU-bound model call). Target >= 1.8.
- result_mb_per_s: a 1M-splat result (60 MB) moved from the actor to the app: from the
  moment the runner returned to the moment `poll` hands the checked result over (packing,
  object store, the dispatcher's notice, the bridge's fetch and the loader's checks, the pipe
  to the app); median of 3.
- p99_ratio_ray: frame-time p99 of headless `play` on the sample world while a real builtin
  zoom runs on the pool / idle (same run, same scripted path). Target <= 1.5.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL = {"zoom_long_side": 96, "zoom_iterations": 4, "aux_views_zoom": 1,
         "sr_model": "realesr-animevideov3-x4"}
TINY_NEW = {"new_long_side": 96, "new_iterations": 2, "aux_views_new": 1}
FAKES = "tests.cluster_fakes:run"


# ---- the Ray instance -------------------------------------------------------------------------
def start_head(num_cpus: int) -> tuple[subprocess.Popen, str]:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port, client_port = ports
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p))
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled")
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--ray-client-server-port", str(client_port),
         "--num-cpus", str(num_cpus), "--include-dashboard=false", "--disable-usage-stats",
         "--object-store-memory", str(1 << 30), "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 120
    while True:
        if head.poll() is not None or time.monotonic() > end:
            raise RuntimeError("ray start failed")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return head, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)


def stop_head(head: subprocess.Popen) -> None:
    """Kill every process of the instance's session (`ray stop` would stop every Ray here)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == head.pid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass
    head.wait(30)


def ray_service(address: str, pool: str, **kw):
    from generation.cluster import RayGenerationService
    from saves.wire import LevelCodec

    return RayGenerationService(address, codec=LevelCodec(), pool=pool, **kw)


# ---- helpers ------------------------------------------------------------------------------------
def run_one(service, request, timeout: float = 600.0):
    """(seconds from submit to result, the result)."""
    from engine.messages import ZoomResult

    t = time.perf_counter()
    service.submit(request)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for ev in service.poll():
            if isinstance(ev, ZoomResult) and ev.request_id == request.request_id:
                if not ev.ok:
                    raise RuntimeError(f"request {ev.request_id} failed: {ev.error}")
                return time.perf_counter() - t, ev
        time.sleep(0.002)
    raise RuntimeError("timed out")


def fake_request(rid: int, **settings):
    from engine.camera import Camera
    from engine.messages import ZoomRequest

    cam = Camera.look_at([0, 0, -2.0], [0, 0, 0], fov_y_deg=20, width=32, height=32)
    return ZoomRequest(rid, 0, cam, (0.0, 0.0, 0.0), "a ladybug", settings=settings)


def small_world():
    from skimage.data import coffee

    from engine.lod import LodLinks
    from generation.config import GenerationConfig
    from generation.pipeline import run_new

    nw = run_new(coffee(), "a cup", 0, GenerationConfig.from_settings(TINY_NEW))
    return nw, tuple((c, LodLinks.root(len(c))) for c in nw.chunks)


def zoom_request(rid: int, world):
    import numpy as np

    from engine.messages import ZoomRequest
    from engine.zoom import zoom_camera

    nw, scene = world
    cam = nw.camera
    point = cam.unproject(np.array([[cam.cx, cam.cy]]),
                          np.array([nw.depth[cam.height // 2, cam.width // 2]]))[0]
    return ZoomRequest(rid, 0, zoom_camera(cam, point, 4.0), tuple(point), "a ladybug",
                       seed=7, settings=dict(SMALL), scene=scene, level=1, context=("a cup",))


# ---- the figures -----------------------------------------------------------------------
def overhead(address: str) -> dict:
    from generation.service import GenerationService

    world = small_world()
    local = GenerationService(dict(SMALL), threads=1)
    ray = ray_service(address, "bench-builtin", runner="generation.pipeline:zoom", workers=1,
                      num_cpus=1)
    try:
        local_first, _ = run_one(local, zoom_request(1, world))
        ray_first, _ = run_one(ray, zoom_request(1, world))
        local_s, ray_s = [], []
        for rid in range(2, 5):  # alternate, so both see the same machine load
            local_s.append(run_one(local, zoom_request(rid, world))[0])
            ray_s.append(run_one(ray, zoom_request(rid, world))[0])
    finally:
        local.close()
        ray.stop_pool()
        ray.close()
    lo, rs = statistics.median(local_s), statistics.median(ray_s)
    return {"overhead_s": round(rs - lo, 3), "zoom_local_s": round(lo, 3),
            "zoom_ray_s": round(rs, 3), "first_zoom_local_s": round(local_first, 2),
            "first_zoom_ray_s": round(ray_first, 2)}


def throughput(address: str, workers: int, n: int, hold_s: float) -> float:
    svc = ray_service(address, f"bench-{workers}", runner=FAKES, workers=workers, num_cpus=1,
                      warm=False)
    try:
        for rid in range(1, workers + 1):  # every actor up before the clock starts
            svc.submit(fake_request(rid))
        from engine.messages import ZoomResult

        got, end = 0, time.monotonic() + 120
        while got < workers and time.monotonic() < end:
            got += sum(isinstance(e, ZoomResult) for e in svc.poll())
            time.sleep(0.01)
        t = time.perf_counter()
        for rid in range(100, 100 + n):
            svc.submit(fake_request(rid, _hold_s=hold_s))
        done = 0
        while done < n:
            for ev in svc.poll():
                if isinstance(ev, ZoomResult):
                    if not ev.ok:
                        raise RuntimeError(ev.error)
                    done += 1
            time.sleep(0.005)
        return n / (time.perf_counter() - t)
    finally:
        svc.stop_pool()
        svc.close()


def transfer(address: str, splats: int = 1_000_000) -> dict:
    svc = ray_service(address, "bench-transfer", runner=FAKES, workers=1, num_cpus=1,
                      warm=False)
    try:
        run_one(svc, fake_request(1))
        rates, secs = [], []
        for rid in range(2, 5):
            _, res = run_one(svc, fake_request(rid, _splats=splats))
            s = time.time() - res.backend["done_at"]
            mb = sum(c.nbytes() for c in res.chunks.values()) / 1e6
            rates.append(mb / s)
            secs.append(s)
    finally:
        svc.stop_pool()
        svc.close()
    return {"result_mb_per_s": round(statistics.median(rates), 1), "result_mb": round(mb, 1),
            "result_s": round(statistics.median(secs), 3)}


def frame_times(address: str, frames: int, size: str, local: bool = False,
                rounds: int = 2) -> dict:
    """Frame-time ratios (busy / idle, p99 and p50) of headless `play` on the sample world
    while the Ray pool grows a zoom; with `local`, the same with the local worker process,
    alternating with the Ray rounds (the machine is shared: only phases close in time
    compare). Each round measures its own idle phase right before its busy one."""
    from generation.service import GenerationService

    busy = {"zoom_iterations": 10000}  # still running when the measurement ends
    ray = ray_service(address, "bench-frames", runner="generation.pipeline:zoom", workers=1,
                      num_cpus=1, overrides=busy)
    kinds = ("ray", "local") if local else ("ray",)
    per: dict = {k: [] for k in kinds}
    try:
        for _ in range(rounds):
            for kind in kinds:
                service = ray if kind == "ray" else GenerationService(busy)
                per[kind].append(_round(service, frames, size, close=kind == "local"))
    finally:
        ray.stop_pool()
        ray.close()
    out: dict = {"frames": frames, "size": size}
    for kind, rows in per.items():
        for q in ("p99", "p50"):
            ratios = [r[f"busy_{q}_ms"] / r[f"idle_{q}_ms"] for r in rows]
            out[f"{q}_ratio_{kind}"] = round(statistics.median(ratios), 3)
            out[f"{q}_ratios_{kind}"] = [round(x, 3) for x in ratios]
        out[f"rounds_{kind}"] = rows
    return out


def _round(service, frames: int, size: str, close: bool) -> dict:
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import numpy as np
    import pygame

    from cli.play import open_world_state
    from cli.sample import ensure_sample_world
    from ui.app import App, AppConfig

    class Keep:  # the app closes its generator; the Ray pool's client lives on between rounds
        needs_observation = False

        def __init__(self, inner) -> None:
            self.inner = inner

        def submit(self, request) -> None:
            self.inner.submit(request)

        def poll(self) -> list:
            return self.inner.poll()

        def cancel(self, request_id: int) -> None:
            self.inner.cancel(request_id)

        def close(self) -> None:
            if close:
                self.inner.close()

    w, h = (int(v) for v in size.split("x"))
    app = App(open_world_state(str(ensure_sample_world(quiet=True))),
              config=AppConfig(width=w, height=h, fps_cap=None, vsync=False),
              generator=Keep(service))

    def fly() -> list[float]:
        times = []
        app.controller = app._initial_controller()  # every pass flies the same path
        for i in range(frames):
            key = (pygame.K_a, pygame.K_d)[(i // 20) % 2]
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="",
                                                 scancode=0))
            t = time.perf_counter()
            app.step()
            app.ctx.finish()
            times.append((time.perf_counter() - t) * 1000.0)
            pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="",
                                                 scancode=0))
        return times

    def measure() -> list[float]:
        fly()  # warm-up over the whole path: uploads and shaders are not measured
        return fly()

    try:
        idle = measure()
        app.controller = app._initial_controller()  # the start view: the cup fills it
        for _ in range(3):
            app.step()
        app.pick((w // 2, h // 2), 0.0)
        rid = app.request_zoom("a ladybug")
        if rid is None:
            raise RuntimeError(f"no zoom was sent: {app.messages.items}")
        end = time.monotonic() + 180
        while rid in app.jobs.active and app.jobs.active[rid].stage == "queued" \
                and time.monotonic() < end:
            app.step()  # the worker starts (imports torch, builds the backends)
        busy = measure()
        ended_early = rid not in app.jobs.active
        failed = [text for _, text, error in app.messages.items if error]
        app.jobs.cancel_all()
        end = time.monotonic() + 60
        while rid in app.jobs.active and time.monotonic() < end:
            app.step()  # the worker is free again before the next phase
    finally:
        app.close()
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    if os.environ.get("WZ_BENCH_TRACE"):  # where the slow frames are (a diagnosis aid)
        print(json.dumps({"idle": [round(x) for x in idle], "busy": [round(x) for x in busy]}),
              file=sys.stderr)
    return {"idle_p99_ms": round(p(idle, 99), 2), "busy_p99_ms": round(p(busy, 99), 2),
            "idle_p50_ms": round(p(idle, 50), 2), "busy_p50_ms": round(p(busy, 50), 2),
            "zoom_ended_before_measurement": ended_early, "zoom_errors": failed,
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="960x540")
    parser.add_argument("--requests", type=int, default=6, help="per scaling run")
    parser.add_argument("--rounds", type=int, default=2, help="idle/busy rounds per kind")
    parser.add_argument("--compare-local", action="store_true",
                        help="also measure the frame-time ratios with the local worker process")
    args = parser.parse_args()
    head, address = start_head(num_cpus=4)  # logical CPUs: room for every pool of the bench
    out: dict = {"machine": f"{os.cpu_count()} CPUs, local Ray instance (ray start, 127.0.0.1)",
                 "loadavg_1m_start": round(os.getloadavg()[0], 2)}
    try:
        out.update(overhead(address))
        one = throughput(address, 1, args.requests, 2.0)
        two = throughput(address, 2, args.requests, 2.0)
        out.update({"scaling_2": round(two / one, 3), "rps_1": round(one, 3),
                    "rps_2": round(two, 3)})
        out.update(transfer(address))
        out.update(frame_times(address, args.frames, args.size, args.compare_local,
                               args.rounds))
    finally:
        stop_head(head)
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)  # other work on the machine skews it
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>30}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
