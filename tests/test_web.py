"""The web viewer (`ui/web`): its node unit tests, the exporter and server, and the page in a
real headless Chromium compared with the numpy reference renderer.

The browser tests export a small three-level world (tests/web_world.py), serve it on
127.0.0.1 and drive the system's `chromium` through `ui/web/tools/drive.mjs` (puppeteer-core;
nothing downloads a browser), all pages in one browser session to keep CI short. They wait on
the page's completion signals (`wonderzoom.render` resolves after a complete frame, the
interactive loop counts `window.__frameDone`), never on a number of frames.
Skipped cleanly without node, without chromium, or without `npm install` in ui/web.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from engine.lod import LodIndex
from engine.render.camera_path import zoom_sweep
from engine.render.prepare import prepare
from engine.render.reference import render
from engine.scene import ChunkStore, build_scene
from tests.web_world import relief_world
from ui.web.chunkfile import decode_chunk
from ui.web.export import WebExportError, export_web, is_web_export
from ui.web.serve import ServeError, make_server, resolve

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "ui" / "web"
NODE = shutil.which("node")
CHROMIUM = os.environ.get("WONDERZOOM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_NODE_MODULES = (WEB / "node_modules" / "puppeteer-core").is_dir()
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")
needs_browser = pytest.mark.skipif(
    NODE is None or not Path(CHROMIUM).exists() or not HAVE_NODE_MODULES,
    reason="needs node, chromium (apt-get install chromium) and `npm ci` in ui/web")
NO_WEBGL2 = """{
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
    return kind === 'webgl2' ? null : getContext.call(this, kind, ...rest);
  };
}"""
PINCH = """(() => {
  const c = document.getElementById('view');
  window.__zoomBeforePinch = window.wonderzoom.state().zoom;
  const ev = (type, id, x, y) => c.dispatchEvent(new PointerEvent(type, {pointerId: id, pointerType: 'touch',
    clientX: x, clientY: y, bubbles: true, isPrimary: id === 1}));
  ev('pointerdown', 1, 380, 220); ev('pointerdown', 2, 420, 230);
  for (let k = 1; k <= 10; k++) { ev('pointermove', 1, 380 - 15 * k, 220 - 4 * k); ev('pointermove', 2, 420 + 15 * k, 230 + 4 * k); }
  ev('pointerup', 1, 230, 180); ev('pointerup', 2, 570, 270);
  return true;
})()"""
W, H = 160, 120  # the levels' own size: the root view shows level 0 at its native scale
MEAN_TOL = 2.0 / 255.0
POPPING_STEP, POPPING_SPAN, POPPING_FRAMES = 1.005, 1.1, 40  # as bench/render.py


# ---- node's test runner ---------------------------------------------------------------------
@needs_node
def test_viewer_math_under_node_test_runner():
    proc = subprocess.run([NODE, "--test", "test/"], cwd=WEB, capture_output=True, text=True,
                          env={**os.environ, "WONDERZOOM_PYTHON": sys.executable}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


# ---- exporter and server (no browser) -------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    history, chunks, cams, target = relief_world()
    return history, chunks, cams, target


FAR = np.array([3.0e6, -1.5e6, 2.0e5])  # float32 steps here are 0.25 world units: 100x a deep pixel


def _moved(history, chunks, offset):
    """The same world translated by `offset` (chunk origins and cameras in float64)."""
    from dataclasses import replace

    from engine.camera import Camera
    from engine.history import History
    from engine.splats import SplatChunk

    moved = {cid: SplatChunk(c.origin + offset, c.positions, c.rotations, c.log_scales,
                             c.opacity_logits, c.sh_dc, c.s_native, c.level) for cid, c in chunks.items()}
    out = History()
    for step in history.path():
        cam = step.camera
        if cam is not None:
            T = cam.T_world_camera.copy()
            T[:3, 3] += offset
            cam = Camera(T, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, cam.near, cam.far)
        point = None if step.point is None else tuple(np.asarray(step.point) + offset)
        out.add(replace(step, camera=cam, point=point))
    return out, moved


@pytest.fixture(scope="module")
def exported(world, tmp_path_factory):
    history, chunks, _, _ = world
    folder = tmp_path_factory.mktemp("web") / "world"
    result = export_web(history, chunks, folder, title="test world")
    return folder, result


def test_export_writes_a_folder_of_16_byte_splats(exported, world):
    folder, result = exported
    history, chunks, _, _ = world
    manifest = json.loads((folder / "manifest.json").read_text())
    assert is_web_export(folder)
    assert (folder / "index.html").is_file() and (folder / "viewer" / "main.js").is_file()
    assert result.splats == sum(len(c) for c in chunks.values())
    files = sorted((folder / "chunks").iterdir())
    assert len(files) == result.chunks == len(manifest["chunks"])
    strides = [f.read_bytes()[44] for f in files]  # bytes per record, 15 where fields fit
    assert sum(f.stat().st_size - 256 for f in files) == sum(
        s * c["count"] for s, c in zip(strides, sorted(manifest["chunks"], key=lambda c: c["file"])))
    assert set(strides) <= {15, 16} and result.bytes_per_splat < 16
    assert [s["prompt"] for s in manifest["steps"]] == [s.prompt for s in history.path()]
    assert manifest["steps"][2]["point"] == pytest.approx(list(world[3]))
    assert result.link_revisions == 0


def test_export_keeps_links_of_every_timeline_step(exported, world):
    """The level-0 splats under the level-1 patch get their child link at step 1, not 0."""
    folder, _ = exported
    manifest = json.loads((folder / "manifest.json").read_text())
    steps = set()
    for entry in manifest["chunks"]:
        d = decode_chunk((folder / entry["file"]).read_bytes())
        has_child = d.s_child > 0
        steps.update(d.child_step[has_child].tolist())
        assert (d.child_step[has_child] > entry["level"]).all()
    assert steps == {1, 2}


def test_export_refuses_to_overwrite_a_foreign_folder(world, tmp_path):
    history, chunks, _, _ = world
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(WebExportError, match="not empty"):
        export_web(history, chunks, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(WebExportError, match="step"):
        export_web(history, chunks, tmp_path / "new", step=99)
    export_web(history, chunks, tmp_path / "again", step=0)  # an earlier export is replaced
    export_web(history, chunks, tmp_path / "again", step=1)
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["step"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_server_serves_only_the_folder(exported, tmp_path):
    folder, _ = exported
    (folder.parent / "secret.txt").write_text("outside")
    root = folder.resolve()
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/viewer/../../secret.txt", "/chunks/",
                 "/.hidden", "/viewer\\..\\manifest.json", "/manifest.json%00", "//etc/passwd"):
        assert resolve(root, path) is None, path
    assert resolve(root, "/") == root / "index.html"
    assert resolve(root, "/viewer/main.js?x=1") == root / "viewer" / "main.js"
    server = make_server(folder, port=0)
    server.start_background()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "manifest.json") as r:
            assert r.headers["Content-Type"] == "application/json"
            assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
        for bad in ("../secret.txt", "%2e%2e/secret.txt", "chunks/"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(server.url + bad)
            assert err.value.code == 404
        req = urllib.request.Request(server.url + "manifest.json", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == 405
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ServeError):
        make_server(tmp_path)


# ---- the page in headless Chromium ------------------------------------------------------------
def _camera_at(start, target, scale):
    return zoom_sweep(start, target, scale, 2)[-1]


def _patch_mask(render_cam, level_cam, shrink=0.9):
    """[H, W] bool: pixels of `render_cam` inside the level's region (bench/render.py)."""
    corners = np.array([[0, 0], [level_cam.width, 0], [level_cam.width, level_cam.height],
                        [0, level_cam.height]], float)
    rays = np.stack([(corners[:, 0] - level_cam.cx) / level_cam.fx,
                     (corners[:, 1] - level_cam.cy) / level_cam.fy, np.ones(4)], 1)
    rays = rays @ level_cam.T_world_camera[:3, :3].T
    eye = level_cam.T_world_camera[:3, 3]
    points = eye + rays * (-eye[2] / rays[:, 2])[:, None]
    points = points.mean(0) + shrink * (points - points.mean(0))
    uv, _ = render_cam.project(points)
    v, u = np.mgrid[0:render_cam.height, 0:render_cam.width] + 0.5
    signs = [(b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0])
             for a, b in zip(uv, np.roll(uv, -1, axis=0))]
    return np.all([s >= 0 for s in signs], axis=0) | np.all([s <= 0 for s in signs], axis=0)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(world, exported, tmp_path_factory):
    """Everything the browser tests look at, from one Chromium session."""
    if NODE is None or not Path(CHROMIUM).exists() or not HAVE_NODE_MODULES:
        pytest.skip("needs node, chromium and `npm ci` in ui/web")
    history, chunks, cams, target = world
    folder, _ = exported
    work = tmp_path_factory.mktemp("browser")
    out = work / "frames"
    out.mkdir()

    # hostile variants, served by a plain http.server from their common parent
    site = work / "site"
    site.mkdir()
    (site / "secret.wzc").write_bytes(b"outside the world's folder")
    shutil.copytree(folder, site / "plain")
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, mutate in {
        "outside": lambda m: m["chunks"][0].update(file="../secret.wzc"),
        "absolute": lambda m: m["chunks"][0].update(file="http://127.0.0.1:9/secret.wzc"),
        "nan": lambda m: m["chunks"][0]["origin"].__setitem__(0, "NaN"),
    }.items():
        shutil.copytree(folder, site / name)
        m = json.loads(json.dumps(manifest))
        mutate(m)
        (site / name / "manifest.json").write_text(json.dumps(m))
    shutil.copytree(folder, site / "truncated")
    first = site / "truncated" / manifest["chunks"][0]["file"]
    first.write_bytes(first.read_bytes()[:-16])
    shutil.copytree(folder, site / "nanchunk")
    bad = site / "nanchunk" / manifest["chunks"][0]["file"]
    data = bytearray(bad.read_bytes())
    struct.pack_into("<d", data, 48, float("nan"))
    bad.write_bytes(bytes(data))
    shutil.copytree(folder, site / "missing")
    (site / "missing" / manifest["chunks"][0]["file"]).unlink()

    far_history, far_chunks = _moved(history, chunks, FAR)
    export_web(far_history, far_chunks, site / "far")
    far_cams = [s.camera for s in far_history.path()]
    far_target = target + FAR
    far_native = [float(c.pixel_scale(far_target[None])[0]) for c in far_cams]
    far_views = {"far_deep": _camera_at(far_cams[0], far_target, far_native[2]),
                 "far_mid": _camera_at(far_cams[0], far_target, math.sqrt(far_native[0] * far_native[1]))}

    server = make_server(folder, port=0)
    server.start_background()
    plain = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    plain_url = f"http://127.0.0.1:{plain.server_address[1]}/"

    start = cams[0]  # W x H: the levels' own size
    native = [float(c.pixel_scale(target[None])[0]) for c in cams]
    views = {"root": start, "mid": _camera_at(start, target, math.sqrt(native[0] * native[1])),
             "deep": _camera_at(start, target, native[2])}
    timeline = {"step0_deep": (views["deep"], 0), "step1_mid": (views["mid"], 1)}
    switches = [math.sqrt(a * b) for a, b in zip(native[:-1], native[1:])]
    segments = [[_camera_at(start, target, s * POPPING_SPAN * POPPING_STEP ** -k)
                 for k in range(POPPING_FRAMES)] for s in switches]
    ops = [{"op": "ready"}]
    ops += [{"op": "render", "camera": c.to_dict(), "save": f"{k}.rgba"} for k, c in views.items()]
    ops += [{"op": "render", "camera": c.to_dict(), "step": s, "save": f"{k}.rgba"}
            for k, (c, s) in timeline.items()]
    ops += [{"op": "render", "camera": c.to_dict(), "save": f"pop{i}_{k:03d}.rgba"}
            for i, seg in enumerate(segments) for k, c in enumerate(seg)]
    ops += [{"op": "sweep_cameras", "frames": 5, "width": W, "height": H}]
    interactive = [
        {"op": "first_frame"},
        {"op": "screenshot", "save": "page_first.png"},
        {"op": "eval", "expr": "window.wonderzoom.state()"},
        {"op": "wheel", "x": 400, "y": 200, "deltaY": -300},
        {"op": "wait", "expr": "window.wonderzoom.state().camera.T_world_camera[2][3] > -3.9"},
        {"op": "drag", "from": [300, 300], "to": [360, 300]},
        {"op": "key", "key": "KeyW", "ms": 300},
        {"op": "eval", "expr": "window.wonderzoom.state()"},
        # a gamepad (the Gamepad API, its standard mapping): left stick forward
        {"op": "eval", "expr": "window.__z0 = window.wonderzoom.state().camera.T_world_camera[2][3];"
                               "navigator.getGamepads = () => [{connected: true, axes: [0, -1, 0, 0],"
                               " buttons: Array.from({length: 17}, () => ({value: 0}))}]; true"},
        {"op": "wait", "expr": "window.wonderzoom.state().camera.T_world_camera[2][3] > window.__z0"},
        {"op": "eval", "expr": "navigator.getGamepads = () => []; true"},
        # two fingers moving apart: pinch zoom toward their midpoint
        {"op": "eval", "expr": PINCH},
        {"op": "wait", "expr": "window.wonderzoom.state().zoom > window.__zoomBeforePinch * 1.5"},
        {"op": "click", "selector": "#timeline button.step"},
        {"op": "wait", "expr": "window.wonderzoom.state().step === 0"},
        {"op": "click", "selector": "#sweep"},
        {"op": "wait", "expr": "window.__sweepDone >= 1"},
        {"op": "eval", "expr": "window.wonderzoom.state()"},
        {"op": "wait", "expr": "window.__frameDone >= 2"},
        {"op": "screenshot", "save": "page_after_sweep.png"},
        {"op": "message"},
    ]
    far = [{"op": "ready"}] + [{"op": "render", "camera": c.to_dict(), "save": f"{k}.rgba"}
                               for k, c in far_views.items()]
    hostile = [{"op": "ready"}, {"op": "wait", "expr": "window.__wzError !== null"}, {"op": "message"}]
    job = {"width": 800, "height": 450, "out": str(out), "timeout_ms": 120000, "pages": [
        {"url": server.url, "ops": ops},
        {"url": server.url + "?sweepSeconds=2", "ops": interactive},
        {"url": plain_url + "plain/", "ops": [{"op": "first_frame"}]},
        *({"url": plain_url + f"{name}/", "ops": hostile}
          for name in ("outside", "absolute", "nan", "truncated", "nanchunk", "missing")),
        {"url": plain_url + "far/", "ops": far},
        {"url": plain_url + "plain/", "ops": hostile, "init": NO_WEBGL2},
    ]}
    (work / "job.json").write_text(json.dumps(job))
    try:
        proc = subprocess.run([NODE, str(WEB / "tools" / "drive.mjs"), str(work / "job.json")],
                              capture_output=True, text=True, timeout=600, cwd=WEB)
    finally:
        server.shutdown()
        server.server_close()
        plain.shutdown()
        plain.server_close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = json.loads(proc.stdout)["pages"]

    world_at = {s: build_scene(history, chunks, s) for s in (0, 1, 2)}
    world_at["far"] = build_scene(far_history, far_chunks)

    def pieces(step):
        w = world_at[step]
        store, index = w.resource(ChunkStore), w.resource(LodIndex)
        return [(store.get(c), index.links[c]) for c in store.ids()]

    def frame(name):
        raw = np.frombuffer((out / name).read_bytes(), np.uint8).reshape(H, W, 4)
        return raw[..., :3].astype(np.float64) / 255.0

    return dict(pages=pages, views=views, far_views=far_views, timeline=timeline, segments=segments, cams=cams,
                switches=switches, pieces=pieces, frame=frame, out=out, target=target,
                native=native, server_requests=list(server.requests), manifest=manifest)


def _save_png(path, rgb):
    from PIL import Image
    Image.fromarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)).save(path)


@needs_browser
@pytest.mark.parametrize("view", ["root", "mid", "deep"])
def test_page_matches_the_reference_renderer(browser, view):
    cam = browser["views"][view]
    got = browser["frame"](f"{view}.rgba")
    ref = render(prepare(cam, browser["pieces"](2)), cam).rgb
    _save_png(browser["out"] / f"{view}_page_vs_reference.png", np.concatenate([got, ref], 1))
    err = np.abs(got - ref)
    assert err.mean() <= MEAN_TOL, f"{view}: mean abs error {err.mean() * 255:.2f}/255"
    assert np.percentile(err, 99) <= 24 / 255, f"{view}: 99th percentile {np.percentile(err, 99) * 255:.1f}/255"
    assert got.mean() > 0.1  # something was drawn


@needs_browser
@pytest.mark.parametrize("name", ["step0_deep", "step1_mid"])
def test_timeline_steps_match_the_world_at_that_step(browser, name):
    cam, step = browser["timeline"][name]
    got = browser["frame"](f"{name}.rgba")
    ref = render(prepare(cam, browser["pieces"](step)), cam).rgb
    err = np.abs(got - ref)
    assert err.mean() <= MEAN_TOL, f"{name}: mean abs error {err.mean() * 255:.2f}/255"


@needs_browser
def test_page_has_no_console_errors_and_fetches_only_its_files(browser):
    page = browser["pages"][0]
    assert page["errors"] == [] and page["failed"] == []
    assert [c for c in page["console"] if c["type"] in ("error", "warning")] == []
    ready = page["results"][0]
    assert ready["steps"] == 3 and "error" not in ready
    base = page["url"]
    allowed = {base, base + "manifest.json"} | {base + c["file"] for c in browser["manifest"]["chunks"]}
    for request in page["requests"]:
        assert request in allowed or request.startswith(base + "viewer/"), request


@needs_browser
def test_zoom_sweep_has_no_popping(browser):
    """bench/render.py's measure: the largest mean change over the finer level's region at a
    level switch, over the median change of the whole slow zoom (<= 1.5 means no pop)."""
    changes, jumps = [], []
    for i, (segment, s_switch) in enumerate(zip(browser["segments"], browser["switches"])):
        images = [browser["frame"](f"pop{i}_{k:03d}.rgba") for k in range(len(segment))]
        masks = [_patch_mask(cam, browser["cams"][i + 1]) for cam in segment]
        scales = [np.linalg.norm(c.position - browser["target"]) / c.focal for c in segment]
        for k in range(len(segment) - 1):
            m = masks[k] & masks[k + 1]
            d = float(np.abs(images[k + 1][m] - images[k][m]).mean())
            changes.append(d)
            if scales[k] >= s_switch > scales[k + 1]:
                jumps.append(d)
    assert len(jumps) == len(browser["segments"])
    popping = max(jumps) / float(np.median(changes))
    assert popping <= 1.5, f"popping {popping:.2f}"


@needs_browser
def test_page_sweep_is_the_engine_zoom_sweep(browser):
    page = browser["pages"][0]
    cams = page["results"][-1]
    start = browser["cams"][0]
    manifest = browser["manifest"]
    expected = zoom_sweep(start, np.array(manifest["sweep"]["target"]), manifest["sweep"]["s_end"], 5)
    assert manifest["sweep"]["target"] == pytest.approx(list(browser["target"]))
    assert manifest["sweep"]["s_end"] == pytest.approx(browser["native"][2])
    for got, want in zip(cams, expected):
        assert np.allclose(got["T_world_camera"], want.T_world_camera, rtol=1e-9, atol=1e-12)


@needs_browser
def test_page_flies_zooms_steps_and_sweeps_for_a_user(browser):
    page = browser["pages"][1]
    assert page["errors"] == [], page["errors"]
    assert [c for c in page["console"] if c["type"] == "error"] == []
    results = page["results"]
    first = results[0]
    assert first["error"] is None and first["firstFrameMs"] > 0
    before, after = results[2], results[7]
    assert after["camera"]["T_world_camera"] != before["camera"]["T_world_camera"]
    swept = results[17]
    assert swept["sweeping"] is False and swept["step"] == 2  # the sweep shows the whole world
    assert results[-1] is None  # no message shown


@needs_browser
def test_folder_works_from_a_plain_http_server(browser):
    page = browser["pages"][2]
    assert page["errors"] == [] and page["failed"] == []
    assert page["results"][0]["error"] is None


@needs_browser
@pytest.mark.parametrize("index,name", [(3, "outside"), (4, "absolute"), (5, "nan"), (6, "truncated"),
                                        (7, "nanchunk"), (8, "missing")])
def test_hostile_or_broken_worlds_show_a_message_and_fetch_nothing_outside(browser, index, name):
    page = browser["pages"][index]
    message = page["results"][-1]
    assert message, f"{name}: no message shown"
    assert "cannot be shown" in message or "could not be loaded" in message
    assert page["errors"] == []  # no uncaught exceptions
    folder = page["url"]
    for request in page["requests"]:
        assert request.startswith(folder), f"{name}: fetched {request}"
    if name in ("outside", "absolute", "nan"):  # refused before any chunk is fetched
        assert not any("/chunks/" in r for r in page["requests"])


@needs_browser
@pytest.mark.parametrize("view", ["far_deep", "far_mid"])
def test_page_keeps_precision_far_from_the_world_origin(browser, view):
    """The same world 3e6 units from the origin, where float32 steps are 0.25 units and a deep
    pixel is 0.002: only float64 chunk origins and camera-relative drawing keep the image."""
    page = browser["pages"][-2]
    assert page["errors"] == [], page["errors"]
    cam = browser["far_views"][view]
    got = browser["frame"](f"{view}.rgba")
    ref = render(prepare(cam, browser["pieces"]("far")), cam).rgb
    err = np.abs(got - ref)
    assert err.mean() <= MEAN_TOL, f"{view}: mean abs error {err.mean() * 255:.2f}/255"


@needs_browser
def test_without_webgl2_the_page_says_so(browser):
    page = browser["pages"][-1]
    assert page["errors"] == []
    assert "needs WebGL2" in page["results"][-1]
    assert not any("/chunks/" in r or r.endswith("manifest.json") for r in page["requests"])
