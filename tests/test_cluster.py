"""Generation on a Ray cluster: `RayGenerationService` against a multi-node cluster on this
machine (`ray.cluster_utils.Cluster`: a head with no CPUs and two 2-CPU nodes, started and
stopped by a fixture), and the command line against a `ray start --head` process.

Fake runners (tests/cluster_fakes.py) drive progress, cancel, timeouts, deaths, two clients
and malformed results; the builtin pipeline at a tiny size checks that a zoom grown on the
cluster equals the one grown by the local worker process and that the app hot-loads it.
Everything binds 127.0.0.1 (Ray keeps the loopback address with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). Waits are on results or wall-clock deadlines.
Skipped when Ray is not installed (`pip install -e '.[cluster]'`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.camera import Camera
from engine.messages import ProgressEvent, ZoomRequest, ZoomResult
from generation.cluster_wire import Versions, local_versions
from generation.config import ConfigError
from generation.service_config import ServiceConfig, choose_service, parse_service_table
from tests.procs import ROOT, child_env

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# the test cluster runs without token authentication whatever ~/.ray holds; the command-line
# test's `ray start` head uses a token of its own
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}
FAKES = "tests.cluster_fakes:run"
TINY = {"new_long_side": 48, "zoom_long_side": 48, "new_iterations": 2, "aux_views_new": 1,
        "aux_views_zoom": 1, "sr_model": "realesr-animevideov3-x4"}


# ---- the [service] table and --cluster (no Ray needed) ---------------------------------------
def test_service_table_and_cluster_choice():
    cfg = parse_service_table({"kind": "ray", "address": "gpu-box:6379", "workers": 2,
                               "num_gpus": 1, "num_cpus": 4, "timeout_s": 300}, "w.toml")
    assert cfg == ServiceConfig("ray", "gpu-box:6379", 2, 1.0, 4.0, 300.0)
    for table, words in (({"wokers": 2}, "service.wokers: unknown key"),
                         ({"kind": "slurm"}, "service.kind"),
                         ({"kind": "ray"}, "service.address: required"),
                         ({"address": "gpu-box"}, "expected HOST:PORT"),
                         ({"workers": 0}, "service.workers = 0"),
                         ({"workers": 1.5}, "service.workers = 1.5"),
                         ({"timeout_s": "10"}, "service.timeout_s")):
        with pytest.raises(ConfigError) as err:
            parse_service_table(table, "w.toml")
        assert words in str(err.value) and str(err.value).startswith("w.toml: ")
        assert "\n" not in str(err.value)
    local = ServiceConfig(workers=3)
    assert choose_service(local, None, {}) == local
    assert choose_service(local, None, {"WONDERZOOM_CLUSTER": "10.0.0.2:6379"}) == \
        ServiceConfig("ray", "10.0.0.2:6379", 3)
    assert choose_service(local, "local", {"WONDERZOOM_CLUSTER": "10.0.0.2:6379"}).address == \
        "local"
    assert choose_service(local, "ray://head:10001", {}).address == "ray://head:10001"
    with pytest.raises(ConfigError, match="--cluster 'nope'"):
        choose_service(local, "nope", {})


def test_the_config_file_takes_a_service_table(tmp_path):
    from generation.model_config import file_service, read_settings

    path = tmp_path / "models.toml"
    path.write_text('zoom_iterations = 3\n[service]\nkind = "ray"\naddress = "local"\n'
                    'workers = 2\n')
    assert read_settings(path) == {"zoom_iterations": 3}  # not a generation setting
    assert file_service(str(path)) == ServiceConfig("ray", "local", 2)
    path.write_text('[service]\nkind = "ray"\naddress = "local"\nnum_gpu = 1\n')
    with pytest.raises(ConfigError, match="service.num_gpu: unknown key"):
        read_settings(path)


ray = pytest.importorskip("ray")

from generation.cluster import RayGenerationService  # noqa: E402
from saves.wire import LevelCodec  # noqa: E402


# ---- fixtures and helpers -----------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A head (no CPUs: it hosts the pools' dispatchers) and two 2-CPU nodes."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in (*LOOPBACK, *NO_AUTH, "PYTHONPATH")}
    os.environ.update(LOOPBACK)
    os.environ.update(NO_AUTH)
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]  # the workers import tests.*
    # the address given outright: Ray read RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it was
    # imported, before this fixture ran
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                      "node_ip_address": "127.0.0.1"})
    try:
        for _ in range(2):
            c.add_node(num_cpus=2, node_ip_address="127.0.0.1")
        yield c
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_service(cluster, pool: str, **kw) -> RayGenerationService:
    kw.setdefault("runner", FAKES)
    kw.setdefault("workers", 2)
    kw.setdefault("timeout_s", 60)
    return RayGenerationService(cluster.address, codec=LevelCodec(), pool=pool, **kw)


@pytest.fixture(scope="module")
def fakes(cluster):
    """A pool of two warm workers that run the fake runner (its first client)."""
    svc = make_service(cluster, "fakes")
    yield svc
    svc.stop_pool()
    svc.close()


def request(rid: int, prompt: str = "a ladybug", **settings) -> ZoomRequest:
    cam = Camera.look_at([0, 0, -2.0], [0, 0, 0], fov_y_deg=20, width=32, height=32)
    return ZoomRequest(rid, 0, cam, (0.0, 0.0, 0.0), prompt, seed=rid, settings=settings)


# Hang guards, not speed targets: beside two busy processes a Ray instance and its workers
# take minutes to start (a private instance's first result took over 120 s in a stress run).
HANG_S = 600.0


def wait_for(services, predicate, timeout: float = HANG_S) -> list:
    """Poll like a frame loop until predicate(events so far) holds; returns the events."""
    services = services if isinstance(services, (list, tuple)) else [services]
    seen: list = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for svc in services:
            seen.extend(svc.poll())
        if predicate(seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"timed out; events: {seen}")


def results(events) -> dict[int, ZoomResult]:
    return {e.request_id: e for e in events if isinstance(e, ZoomResult)}


def has_results(*rids):
    return lambda ev: set(rids) <= set(results(ev))


def is_running(svc, rid):
    """Placed on a worker and past its first stage."""
    return lambda ev: rid in svc.placements and any(
        isinstance(e, ProgressEvent) and e.request_id == rid and e.stage == "optimize" for e in ev)


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and len(text) <= 300


# ---- the protocol ---------------------------------------------------------------------------
def test_progress_in_order_and_results_from_warm_workers(fakes, tmp_path):
    gate = tmp_path / "gate"
    for rid in (1, 2, 3):
        fakes.submit(request(rid, _gate=str(gate), _hold_s=0.3))
    ev = wait_for(fakes, lambda ev: {1, 2} <= set(fakes.placements))
    assert not results(ev)  # gated: nothing finished, and poll never blocked
    gate.touch()
    ev += wait_for(fakes, has_results(1, 2, 3))
    res = results(ev)
    assert all(r.ok and len(r.chunks[0]) == 4 and r.request.prompt == "a ladybug"
               for r in res.values())
    for rid in (1, 2, 3):
        fractions = [e.fraction for e in ev if isinstance(e, ProgressEvent) and e.request_id == rid]
        assert fractions == sorted(fractions) and 0 <= fractions[0] < fractions[-1] <= 1
        stages = [e.stage for e in ev if isinstance(e, ProgressEvent) and e.request_id == rid]
        assert stages.index("observe") < stages.index("optimize")
    pids = {fakes.placements[rid].pid for rid in (1, 2, 3)}
    assert len(pids) == 2  # two warm workers; the third request reused one of them
    assert {res[rid].backend["pid"] for rid in (1, 2, 3)} == pids
    ray_pids = {p for p in session_pids(os.getsid(0)) if is_ray_process(p)}
    assert pids <= ray_pids  # the cluster runs in this session: check all of its sockets
    ports = listening_ports(ray_pids)
    assert ports and all(p.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for p in ports)


def is_ray_process(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ray::" in cmd or b"/ray/" in cmd or b"wonderzoom-ray" in cmd


def test_cancel_a_queued_and_a_running_request(fakes, tmp_path):
    gate = tmp_path / "gate"
    for rid in (11, 12, 13):
        fakes.submit(request(rid, _gate=str(gate)))
    wait_for(fakes, lambda ev: {11, 12} <= set(fakes.placements))
    fakes.cancel(13)  # still queued: both workers are busy
    fakes.cancel(11)  # running: its runner sees the flag between two steps
    res = results(wait_for(fakes, has_results(11, 13)))
    assert res[11].error == "cancelled" and res[13].error == "cancelled"
    assert 13 not in fakes.placements
    gate.touch()
    res = results(wait_for(fakes, has_results(12)))
    assert res[12].ok


def test_timeout_kills_and_replaces_the_worker(cluster, fakes):
    """A second client of the same pool with a short per-request timeout."""
    svc = make_service(cluster, "fakes", timeout_s=2.0)
    try:
        svc.submit(request(21, _hold_s=60, _ignore_cancel=True))
        ev = wait_for(svc, has_results(21))
        r = results(ev)[21]
        assert not r.ok and r.error == "timed out after 2 s"
        svc.submit(request(22))
        r = results(wait_for(svc, has_results(22)))[22]
        assert r.ok  # a fresh worker replaced the killed one (or the other one served it)
        assert svc.placements[21].pid not in live_worker_pids(svc)
    finally:
        svc.close()


def test_a_cancel_ignored_past_the_grace_period_kills_the_worker(cluster, fakes):
    svc = make_service(cluster, "fakes", cancel_grace_s=1.0)
    try:
        svc.submit(request(31, _hold_s=60, _ignore_cancel=True))
        wait_for(svc, is_running(svc, 31))
        t = time.monotonic()
        svc.cancel(31)
        r = results(wait_for(svc, has_results(31)))[31]
        assert r.error == "cancelled" and time.monotonic() - t < 15
        assert svc.placements[31].pid not in live_worker_pids(svc)
    finally:
        svc.close()


def live_worker_pids(svc) -> set[int]:
    return set(worker_pids(svc))


def worker_pids(svc) -> list[int]:
    """The pids of the pool's workers in slot order, once all of them are up again, asked
    through a throwaway driver in a subprocess (the test process never joins the cluster)."""
    code = ("import ray, sys, json; ray.init(address=sys.argv[1], namespace='wonderzoom', "
            "logging_level='ERROR', log_to_driver=False); "
            "d = ray.get_actor('wonderzoom-pool-' + sys.argv[2]); "
            "print(json.dumps([i.pid for s, i in ray.get(d.workers.remote()) if i]))")
    end = time.monotonic() + 60
    while True:  # the replacement may still be loading
        out = subprocess.run([sys.executable, "-c", code, svc.address, svc.pool],
                             capture_output=True, text=True, timeout=60,
                             env=child_env(**LOOPBACK, **NO_AUTH))
        pids = json.loads(out.stdout.strip().splitlines()[-1])
        if len(pids) == svc.spec.workers or time.monotonic() > end:
            return pids
        time.sleep(0.2)


def test_a_worker_killed_mid_request_is_a_failed_result_then_the_next_works(fakes):
    fakes.submit(request(41, _hold_s=60))
    wait_for(fakes, is_running(fakes, 41))
    dead = fakes.placements[41].pid
    os.kill(dead, signal.SIGKILL)
    r = results(wait_for(fakes, has_results(41)))[41]
    assert not r.ok and one_line(r.error) and "worker died" in r.error
    fakes.submit(request(42))
    fakes.submit(request(43))
    res = results(wait_for(fakes, has_results(42, 43)))
    assert res[42].ok and res[43].ok
    assert dead not in {fakes.placements[42].pid, fakes.placements[43].pid}


def test_a_worker_that_died_while_idle_hands_the_request_to_another(fakes):
    """Ray tells the pool of a dead idle worker only when a call to it fails (as when its node
    went away): the request it never began goes to the next worker, not back as a failure."""
    first = worker_pids(fakes)[0]  # the slot the next request is given to
    os.kill(first, signal.SIGKILL)
    fakes.submit(request(45))
    r = results(wait_for(fakes, has_results(45)))[45]
    assert r.ok and fakes.placements[45].pid != first


def test_a_request_that_kills_its_worker_at_once_is_tried_on_one_more_then_fails(fakes, tmp_path):
    pids = tmp_path / "pids"
    fakes.submit(request(47, _exit_at_start=str(pids)))
    r = results(wait_for(fakes, has_results(47)))[47]
    assert not r.ok and one_line(r.error) and "worker died" in r.error
    tried = pids.read_text().split()
    assert len(tried) == 2 and len(set(tried)) == 2  # two workers, not every one in turn
    fakes.submit(request(48))
    assert results(wait_for(fakes, has_results(48)))[48].ok


def test_two_clients_share_one_pool_in_arrival_order(cluster, fakes):
    a, b = fakes, make_service(cluster, "fakes")
    try:
        for rid in (51, 52, 53):
            a.submit(request(rid, _hold_s=0.5))
        wait_for(a, lambda ev: 51 in a.placements)  # A's requests are queued before B's
        for rid in (61, 62, 63):
            b.submit(request(rid, _hold_s=0.5))
        ev = wait_for([a, b], has_results(51, 52, 53, 61, 62, 63))
        res = results(ev)
        assert all(r.ok for r in res.values())
        order = {**a.start_order, **b.start_order}  # the pool's start order
        assert order[51] < order[52] < order[53]  # each client's own order
        assert order[61] < order[62] < order[63]
        assert order[53] < order[61]  # one queue, in arrival order across clients
        assert {r.request.request_id for r in res.values()} == {51, 52, 53, 61, 62, 63}
    finally:
        b.close()


def test_malformed_results_are_refused_and_the_world_is_untouched(fakes, tmp_path):
    from cli.cluster import GenerationFailed
    from cli.zoom import grow_zoom_on

    path = small_world_file(tmp_path)
    before = path.read_bytes()
    for rid, bad, words in ((71, "nan", "holds NaN"), (72, "shape", "rotations")):
        with pytest.raises(GenerationFailed) as err:
            grow_zoom_on(fakes, request(rid, _malformed=bad), path, quiet=True)
        text = str(err.value)
        assert one_line(text) and "refused the cluster's result" in text and words in text
        assert path.read_bytes() == before
    step, result = grow_zoom_on(fakes, request(73), path, quiet=True)  # a good one appends
    assert result.ok and path.read_bytes() != before


def small_world_file(tmp_path: Path) -> Path:
    from engine.history import History, Step
    from engine.synthetic import nested_plane_world
    from saves import save_world

    (cam, level), = nested_plane_world(levels=1, size=64)
    level = level.take(slice(None))
    object.__setattr__(level, "opacity_logits", np.full(len(level), 3.0, np.float32))  # opaque
    history = History()
    history.add(Step(0, None, "image", (0,), camera=cam))
    path = tmp_path / "world.wzs"
    save_world(path, history, {0: level})
    return path


def test_versions_that_differ_are_refused_in_one_line(cluster):
    theirs = local_versions()
    svc = make_service(cluster, "never-created",
                       versions=Versions("0.0.1", theirs.protocol, theirs.python, theirs.ray))
    try:
        svc.submit(request(81))
        r = results(wait_for(svc, has_results(81)))[81]
        assert not r.ok and one_line(r.error)
        assert r.error.startswith("version mismatch: the Ray cluster at ")
        assert "wonderzoom 0.0.1" in r.error and f"wonderzoom {theirs.package}" in r.error
    finally:
        svc.close()


def test_an_address_nobody_listens_on_fails_fast_in_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    svc = RayGenerationService(f"127.0.0.1:{port}", codec=LevelCodec(), runner=FAKES)
    try:
        t = time.monotonic()
        svc.submit(request(91))
        r = results(wait_for(svc, has_results(91), timeout=30))[91]
        assert not r.ok and one_line(r.error) and "cannot reach the Ray cluster" in r.error
        assert time.monotonic() - t < 20
    finally:
        svc.close()


def test_cluster_local_reads_the_model_config_on_the_worker_and_stops_with_the_app(
        tmp_path, monkeypatch):
    """`--cluster local`: a private Ray instance. Its workers read $WONDERZOOM_CONFIG where
    they run (a broken one is a one-line failure; fixed, the next request's fresh worker reads
    it again), and closing the service ends every process of the instance."""
    config = tmp_path / "models.toml"
    config.write_text('zoom_iterations = "many"\n')
    monkeypatch.setenv("WONDERZOOM_CONFIG", str(config))
    svc = RayGenerationService("local", codec=LevelCodec(), runner=FAKES)
    try:
        svc.submit(request(121))
        r = results(wait_for(svc, has_results(121)))[121]
        assert not r.ok and one_line(r.error)
        assert r.error.startswith("a generation worker could not start: ") and "many" in r.error
        config.write_text("zoom_iterations = 3\n")
        svc.submit(request(122))
        r = results(wait_for(svc, has_results(122)))[122]
        assert r.ok and svc.placements[122].config == str(config)
        instance = tree_pids(svc.bridge_pid)
        assert any(is_ray_process(p) for p in instance)
        ports = listening_ports(instance)
        assert ports and all(p.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for p in ports)
    finally:
        svc.close()
    end = time.monotonic() + 120
    while any(Path(f"/proc/{p}").exists() for p in instance):
        assert time.monotonic() < end, "the private Ray instance outlived the app's service"
        time.sleep(0.1)


# ---- the real pipeline --------------------------------------------------------------------
@pytest.fixture(scope="module")
def builtin(cluster):
    """A one-worker pool that runs the builtin pipeline (warm: backends built at start)."""
    svc = make_service(cluster, "builtin", runner="generation.pipeline:zoom", workers=1,
                       overrides=TINY, timeout_s=240)
    yield svc
    svc.stop_pool()
    svc.close()


@pytest.fixture(scope="module")
def small_world():
    from skimage.data import coffee

    from engine.lod import LodLinks
    from generation.config import GenerationConfig
    from generation.pipeline import run_new

    nw = run_new(coffee(), "a cup", 0, GenerationConfig.from_settings(TINY))
    return nw, tuple((c, LodLinks.root(len(c))) for c in nw.chunks)


def real_request(rid, small_world, iterations=2):
    from engine.zoom import zoom_camera

    nw, scene = small_world
    cam = nw.camera
    point = cam.unproject(np.array([[cam.cx, cam.cy]]),
                          np.array([nw.depth[cam.height // 2, cam.width // 2]]))[0]
    return ZoomRequest(rid, 0, zoom_camera(cam, point, 4.0), tuple(point), "a ladybug",
                       seed=7, settings={"zoom_iterations": iterations}, scene=scene, level=1,
                       context=("a cup",))


def test_a_builtin_zoom_on_the_cluster_equals_the_local_worker(builtin, small_world):
    from generation.service import GenerationService

    local = GenerationService(dict(TINY), threads=1, timeout_s=240)  # the worker's 1 CPU
    try:
        local.submit(real_request(101, small_world))
        builtin.submit(real_request(102, small_world))
        ev = wait_for([local, builtin], has_results(101, 102), timeout=240)
    finally:
        local.close()
    res = results(ev)
    a, b = res[101], res[102]
    assert a.ok and b.ok, (a.error, b.error)
    stages = [e.stage for e in ev if isinstance(e, ProgressEvent) and e.request_id == 102]
    assert {"observe", "super_resolve", "edit", "depth", "aux_views", "optimize"} <= set(stages)
    assert len(a.chunks) == len(b.chunks) > 0
    for ca, cb in zip(a.chunks.values(), b.chunks.values()):
        assert ca.level == cb.level == 1
        np.testing.assert_array_equal(ca.origin, cb.origin)
        for name in ("positions", "rotations", "log_scales", "opacity_logits", "sh_dc",
                     "s_native", "sh_rest"):
            np.testing.assert_array_equal(getattr(ca, name), getattr(cb, name), err_msg=name)
    assert b.backend["name"] == "builtin" and b.backend["seed"] == 7
    assert builtin.placements[102].loaded_s > 0  # the worker built its backends at start


def test_the_app_hot_loads_a_level_grown_on_the_cluster(cluster, builtin, tmp_path):
    """The app as `play --cluster` wires it (a client of the warm "builtin" pool), driven
    frame by frame with a fake clock: pick, prompt, and the level hot-loads and autosaves."""
    pytest.importorskip("moderngl")
    from engine.clock import FakeClock
    from saves import load_world
    from saves.autosave import Autosaver
    from ui.app import App, AppConfig, WorldState

    path = small_world_file(tmp_path)
    loaded = load_world(path)
    saver = Autosaver(path)
    service = make_service(cluster, "builtin", runner="generation.pipeline:zoom", workers=1,
                           overrides=TINY, timeout_s=240)
    app = App(WorldState(loaded.history, loaded.chunks, path, path.name),
              config=AppConfig(width=160, height=120, fps_cap=30, vsync=False),
              generator=service, saver=saver, clock=FakeClock())
    try:
        app.run(2)
        assert app.pick((80, 60), 0.0) is not None
        rid = app.request_zoom("a ladybug")
        assert rid is not None
        end = time.monotonic() + 240
        while not app.hot_loaded_steps:
            assert time.monotonic() < end, [t for _, t, err in app.messages.items if err]
            app.step()
            time.sleep(0.005)
        step = app.state.history.steps[app.hot_loaded_steps[0]]
        assert step.backend["name"] == "builtin" and step.kind == "zoom"
        assert saver.flush(30) and step.id in load_world(path).history.steps
    finally:
        app.close()  # closes its service; the pool stays for its other client


# ---- a node lost mid-request (last: it changes the cluster) -------------------------------------
def test_a_node_removed_mid_request_is_a_failed_result_then_the_next_works(cluster, fakes):
    fakes.submit(request(111, _hold_s=60))
    wait_for(fakes, is_running(fakes, 111))
    node = next(n for n in cluster.worker_nodes if n.node_id == fakes.placements[111].node_id)
    try:
        cluster.remove_node(node, allow_graceful=False)
        r = results(wait_for(fakes, has_results(111)))[111]
        assert not r.ok and one_line(r.error) and "worker died" in r.error
        fakes.submit(request(112))
        r = results(wait_for(fakes, has_results(112)))[112]
        assert r.ok and fakes.placements[112].node_id != node.node_id
    finally:
        cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")


# ---- the command line against `ray start --head` ---------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_ports(pids: set[int]) -> list[str]:
    """Local addresses the given processes listen on (from /proc; Linux)."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines()
            if any(f"pid={p}," in line for p in pids)]


def session_pids(sid: int) -> set[int]:
    """The processes of a session (the test cluster runs in the test's own)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def tree_pids(root: int) -> set[int]:
    """`root` and every process below it: a `ray start --block` and all Ray started for it
    (its workers get process groups of their own)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in found} - found
        found |= new
        grew = bool(new)
    return found


def kill_tree(root: int) -> None:
    """What `ray stop --force` does, to this Ray instance only (a plain `ray stop` would also
    stop every other Ray on the machine)."""
    for pid in tree_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running_a_request(root: int) -> bool:
    """A worker of that Ray instance is inside `GenerationWorker.run` (Ray names the process
    after the method it runs)."""
    for pid in tree_pids(root):
        try:
            if b"GenerationWorker.run" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def test_cli_new_and_zoom_on_a_ray_head_then_the_head_stops(tmp_path):
    """`new` as a driver on a node of the cluster (HOST:PORT), `zoom` through Ray Client
    (ray://HOST:PORT, as from a laptop), then a `zoom` whose cluster disappears."""
    from saves import load_world

    port, client_port = free_port(), free_port()
    env = child_env(**LOOPBACK, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--ray-client-server-port", str(client_port),
         "--num-cpus", "1", "--include-dashboard=false", "--disable-usage-stats",
         "--object-store-memory", str(200 << 20), "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # in the test's session
    try:
        end = time.monotonic() + 120
        while True:  # up when its GCS port answers
            assert head.poll() is None and time.monotonic() < end, "ray start failed"
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.2)
        addr = f"127.0.0.1:{port}"
        world = tmp_path / "world.wzs"

        def wz(*args, timeout=300):
            return subprocess.run([sys.executable, str(ROOT / "main.py"), *args],
                                  capture_output=True, text=True, env=env, timeout=timeout)

        from skimage.data import coffee
        from PIL import Image

        Image.fromarray(coffee()).save(tmp_path / "photo.png")
        out = wz("new", str(tmp_path / "photo.png"), "-o", str(world), "--cluster", addr,
                 "--size", "48", "--iterations", "2", "--set", "aux_views_new=1", "--quiet")
        assert out.returncode == 0, out.stderr
        out = wz("zoom", str(world), "--at", "24,16", "--prompt", "a ladybug",
                 "--cluster", f"ray://127.0.0.1:{client_port}",  # Ray Client, as from a laptop
                 "--size", "48", "--iterations", "2", "--set", "aux_views_zoom=1", "--quiet")
        assert out.returncode == 0, out.stderr
        steps = load_world(world).history.steps
        assert len(steps) == 2 and steps[1].prompt == "a ladybug" and steps[1].parent == 0
        assert steps[1].backend["name"] == "builtin"
        # everything this Ray started listens on the loopback interface only
        ports = listening_ports(tree_pids(head.pid))
        assert ports and all(p.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for p in ports)

        before = world.read_bytes()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "zoom", str(world), "--at", "24,16",
             "--prompt", "a ladybug", "--cluster", addr, "--size", "48", "--iterations",
             "10000", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        end = time.monotonic() + 120
        while not running_a_request(head.pid):
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the optimiser
        kill_tree(head.pid)  # the whole Ray instance goes away mid-request
        t = time.monotonic()
        _, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, err
        assert len(lines) == 1 and lines[0].startswith("wonderzoom: error: "), err
        assert time.monotonic() - t < 60
        assert world.read_bytes() == before
    finally:
        kill_tree(head.pid)
        head.wait(30)


def test_a_stage_bar_from_the_cluster_ends_at_exactly_one():
    """The CLI's bars for a cluster request are rebuilt from the overall fraction; each stage's
    end must come back as 1.0 (rich finishes a task, and stops its clock, only at its total:
    context, super_resolve, edit and aux_views came back 0.9999999999999994 and their clocks
    showed the whole request's time)."""
    from cli.cluster import stage_fraction
    from generation.pipeline import NEW_STAGES, ZOOM_STAGES, overall_fraction

    for stages in (ZOOM_STAGES, NEW_STAGES):
        for stage in stages:
            assert stage_fraction(stages, stage, overall_fraction(stages, stage, 1.0)) == 1.0
            assert stage_fraction(stages, stage, overall_fraction(stages, stage, 0.0)) == 0.0
            half = stage_fraction(stages, stage, overall_fraction(stages, stage, 0.5))
            assert half == pytest.approx(0.5)
