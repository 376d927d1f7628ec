"""The generation service: a worker process, progress, cancellation, timeouts and faults.

Most tests drive gated fake runners (tests/gen_fakes.py) in the real worker process; the last
two run the real builtin stages at a tiny size."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from engine.camera import Camera
from engine.messages import ProgressEvent, ZoomRequest, ZoomResult
from generation.service import GenerationService


def request(rid: int, gate=None, prompt: str = "a ladybug", settings=None, scene=()):
    cam = Camera.look_at([0, 0, -2.0], [0, 0, 0], fov_y_deg=20, width=32, height=32)
    s = dict(settings or {})
    if gate is not None:
        s["_gate"] = str(gate)
    return ZoomRequest(rid, 0, cam, (0.0, 0.0, 0.0), prompt, seed=rid, settings=s, scene=scene)


# Hang guards, not speed targets: the worker runs at nice 10, so beside two busy processes
# it gets ~10% of a core and a real stage or even its start-up takes minutes of wall time.
HANG_S = 600.0
REAL_HANG_S = 1800.0


def wait_for(service, predicate, timeout=HANG_S):
    """Poll like a frame loop until predicate(events so far) holds; returns all events."""
    seen: list = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        seen.extend(service.poll())
        if predicate(seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"timed out; events: {seen}")


def results(events):
    return [e for e in events if isinstance(e, ZoomResult)]


def has_result(rid):
    return lambda ev: any(isinstance(e, ZoomResult) and e.request_id == rid for e in ev)


def has_progress(rid):
    return lambda ev: any(isinstance(e, ProgressEvent) and e.request_id == rid for e in ev)


@pytest.fixture
def fake_service():
    svc = GenerationService(runner="tests.gen_fakes:crash", timeout_s=HANG_S, cancel_grace_s=60.0)
    yield svc
    svc.close()


def test_progress_then_result_in_a_reused_worker(fake_service, tmp_path):
    gate = tmp_path / "gate"
    fake_service.submit(request(1, gate))
    fake_service.submit(request(2, gate))
    ev = wait_for(fake_service, has_progress(1))
    assert not results(ev)  # gated: nothing finished, and poll did not block
    gate.touch()
    ev += wait_for(fake_service, has_result(2))
    res = results(ev)
    assert [r.request_id for r in res] == [1, 2] and all(r.ok for r in res)
    assert res[0].request.prompt == "a ladybug" and len(res[0].chunks[0]) == 4
    assert res[0].backend["pid"] == res[1].backend["pid"]  # one worker, reused
    assert fake_service.restarts == 0
    fractions = [e.fraction for e in ev if isinstance(e, ProgressEvent) and e.request_id == 1]
    assert fractions == sorted(fractions) and 0 <= fractions[0] <= fractions[-1] <= 1


def test_cancel_running_and_pending(fake_service, tmp_path):
    gate = tmp_path / "gate"
    fake_service.submit(request(1, gate))
    fake_service.submit(request(2, gate))
    wait_for(fake_service, has_progress(1))
    fake_service.cancel(2)  # pending: answered at once
    fake_service.cancel(1)  # running: the runner sees it between steps
    ev = wait_for(fake_service, lambda e: has_result(1)(e) and has_result(2)(e))
    assert {r.request_id: r.error for r in results(ev)} == {1: "cancelled", 2: "cancelled"}
    gate.touch()
    fake_service.submit(request(3, gate))
    ev = wait_for(fake_service, has_result(3))
    assert results(ev)[0].ok and fake_service.restarts == 0


def test_timeout_kills_a_hung_worker_and_the_next_request_works(tmp_path):
    svc = GenerationService(runner="tests.gen_fakes:hang", timeout_s=1.0)
    try:
        svc.submit(request(1))
        ev = wait_for(svc, has_result(1))
        (r,) = results(ev)
        assert not r.ok and r.error == "timed out after 1 s" and r.request.request_id == 1
        svc.runner = "tests.gen_fakes:gated"  # the next worker runs a healthy stage
        svc.timeout_s = HANG_S  # (a cold worker start under load can take minutes)
        svc.submit(request(2))
        ev = wait_for(svc, has_result(2))
        assert results(ev)[0].ok and svc.restarts == 1
    finally:
        svc.close()


def test_cancel_of_a_stage_that_ignores_it_kills_the_worker():
    svc = GenerationService(runner="tests.gen_fakes:hang", timeout_s=HANG_S, cancel_grace_s=0.5)
    try:
        svc.submit(request(1))
        wait_for(svc, has_progress(1))
        svc.cancel(1)
        ev = wait_for(svc, has_result(1))
        assert results(ev)[0].error == "cancelled" and svc.worker_pid is None
    finally:
        svc.close()


def test_worker_killed_mid_job_is_a_failed_result_and_state_is_intact(fake_service, tmp_path):
    gate = tmp_path / "gate"
    from tests.gen_fakes import tiny_chunk

    chunk = tiny_chunk(0)
    before = chunk.positions.copy()
    app_chunks = {0: chunk}
    fake_service.submit(request(1, gate, scene=((chunk, None),)))
    wait_for(fake_service, has_progress(1))
    pid = fake_service.worker_pid
    os.kill(pid, signal.SIGKILL)
    ev = wait_for(fake_service, has_result(1))
    (r,) = results(ev)
    assert not r.ok and "killed by SIGKILL" in r.error and "\n" not in r.error
    assert r.request.request_id == 1
    assert app_chunks == {0: chunk} and np.array_equal(chunk.positions, before)
    gate.touch()
    fake_service.submit(request(2, gate))
    ev = wait_for(fake_service, has_result(2))
    assert results(ev)[0].ok and fake_service.restarts == 1 and fake_service.worker_pid != pid


def test_a_stage_exception_is_one_line_and_the_worker_survives(fake_service, tmp_path):
    fake_service.submit(request(1, prompt="raise"))
    ev = wait_for(fake_service, has_result(1))
    (r,) = results(ev)
    assert not r.ok and r.error == "RuntimeError: the model exploded"
    pid = fake_service.worker_pid
    gate = tmp_path / "g"
    gate.touch()
    fake_service.submit(request(2, gate))
    assert results(wait_for(fake_service, has_result(2)))[0].ok
    assert fake_service.worker_pid == pid and fake_service.restarts == 0


def test_worker_exit_is_a_failed_result(fake_service, tmp_path):
    fake_service.submit(request(1, prompt="exit"))
    (r,) = results(wait_for(fake_service, has_result(1)))
    assert not r.ok and r.error == "the generation worker exited unexpectedly (exit code 3)"
    gate = tmp_path / "g"
    gate.touch()
    fake_service.submit(request(2, gate))
    assert results(wait_for(fake_service, has_result(2)))[0].ok


def test_bad_settings_are_refused_in_the_caller():
    from generation.config import ConfigError

    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        GenerationService({"nope": 1})


# ---- the real stages --------------------------------------------------------------------
TINY = {"new_long_side": 48, "zoom_long_side": 48, "new_iterations": 2, "aux_views_new": 1,
        "aux_views_zoom": 2}


@pytest.fixture(scope="module")
def small_world():
    from skimage.data import coffee

    from engine.lod import LodLinks
    from generation.config import GenerationConfig
    from generation.pipeline import run_new

    nw = run_new(coffee(), "a cup", 0, GenerationConfig.from_settings(TINY))
    return nw, tuple((c, LodLinks.root(len(c))) for c in nw.chunks)


def real_request(rid, small_world, iterations):
    from engine.zoom import zoom_camera

    nw, scene = small_world
    cam = nw.camera
    point = cam.unproject(np.array([[cam.cx, cam.cy]]), np.array([nw.depth[cam.height // 2, cam.width // 2]]))[0]
    return ZoomRequest(rid, 0, zoom_camera(cam, point, 4.0), tuple(point), "a ladybug", seed=rid,
                       settings={"zoom_iterations": iterations}, scene=scene, level=1,
                       context=("a cup",))


def test_real_stages_cancel_then_succeed(small_world):
    """The real stages notice a cancel themselves (`restarts == 0`): the grace before the
    service kills a worker that ignores it (tested with a hung fake) is set past any load."""
    svc = GenerationService(dict(TINY), timeout_s=REAL_HANG_S, cancel_grace_s=REAL_HANG_S)
    try:
        svc.submit(real_request(1, small_world, iterations=10_000))
        wait_for(svc, lambda ev: any(isinstance(e, ProgressEvent) and e.stage == "optimize"
                                     for e in ev), timeout=REAL_HANG_S)
        svc.cancel(1)
        (r,) = results(wait_for(svc, has_result(1), timeout=REAL_HANG_S))
        assert r.error == "cancelled"
        svc.submit(real_request(2, small_world, iterations=2))
        ev = wait_for(svc, has_result(2), timeout=REAL_HANG_S)
        (r,) = results(ev)
        assert r.ok, r.error
        stages = {e.stage for e in ev if isinstance(e, ProgressEvent)}
        assert {"observe", "super_resolve", "edit", "depth", "aux_views", "optimize"} <= stages
        # every progress event says the size the level is made at, and why (the HUD shows it)
        sizes = {(e.working_size, e.size_rule) for e in ev if isinstance(e, ProgressEvent)}
        assert sizes == {((48, 32), "set")}
        assert r.backend["working_size"] == [48, 32] and r.backend["size_rule"] == "set"
        assert all(c.level == 1 and len(c) > 0 for c in r.chunks.values())
        for c in r.chunks.values():
            c.validate()
        assert r.backend["name"] == "builtin"
        assert set(r.timings) >= {"observe", "optimize", "total"}
        assert svc.restarts == 0
    finally:
        svc.close()


def test_real_stages_worker_killed_then_next_request_works(small_world):
    svc = GenerationService(dict(TINY), timeout_s=REAL_HANG_S)
    nw, scene = small_world
    before = [c.positions.copy() for c, _ in scene]
    try:
        svc.submit(real_request(1, small_world, iterations=10_000))
        wait_for(svc, has_progress(1), timeout=REAL_HANG_S)
        os.kill(svc.worker_pid, signal.SIGKILL)
        (r,) = results(wait_for(svc, has_result(1), timeout=REAL_HANG_S))
        assert not r.ok and "SIGKILL" in r.error
        assert all(np.array_equal(c.positions, b) for (c, _), b in zip(scene, before))
        svc.submit(real_request(2, small_world, iterations=1))
        (r,) = results(wait_for(svc, has_result(2), timeout=REAL_HANG_S))
        assert r.ok, r.error
        assert svc.restarts == 1
    finally:
        svc.close()


_APP = """
import sys, time
from tests.test_generation_service import request, wait_for, has_result
from generation.service import GenerationService
svc = GenerationService(runner="tests.gen_fakes:crash", timeout_s=300)
gate = sys.argv[1]
svc.submit(request(1, gate=gate if gate != "-" else None))
if gate == "-":
    wait_for(svc, has_result(1))  # the worker is idle now, waiting for the next request
else:
    wait_for(svc, lambda ev: svc.worker_pid is not None and len(ev) > 0)  # mid-job
print(svc.worker_pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[1] == "Z" for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "mid-job"])
def test_the_worker_exits_when_the_app_is_killed(busy, tmp_path):
    """An app killed outright cannot send its worker the word to stop: the worker notices
    its parent is gone and exits, idle or mid-job (before, it waited for requests forever,
    holding the world and the models: three such workers held 10 GB after three killed apps)."""
    import subprocess
    import sys

    from tests.procs import ROOT, child_env

    gate = str(tmp_path / "never") if busy else "-"
    app = subprocess.Popen([sys.executable, "-c", _APP, gate], stdout=subprocess.PIPE,
                           text=True, cwd=ROOT, env=child_env())
    try:
        pid = int(app.stdout.readline())
    finally:
        app.kill()
        app.wait()
    end = time.monotonic() + HANG_S  # (it checks every second; a loaded host is slow)
    while not _gone(pid):
        assert time.monotonic() < end, f"worker {pid} still alive {HANG_S:g} s after its app died"
        time.sleep(0.1)
