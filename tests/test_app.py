"""The app end to end, headless: scripted keyboard, mouse and a real virtual gamepad drive
`play` frame by frame, one behaviour per test; a gated generator grows a level that hot-loads
and autosaves. Work done outside the frame is waited for on a wall-clock deadline
(`step_until`), never a number of frames."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pygame
import pytest

from engine.chunking import split_level
from engine.clock import FakeClock
from engine.history import History, Step
from engine.messages import ZoomResult
from engine.scene import LevelNode
from engine.synthetic import nested_plane_world, pixel_aligned_splats
from generation.procedural import ProceduralGenerator
from saves import load_world, save_world
from saves.autosave import Autosaver
from tests.procs import child_env
from ui.app import App, AppConfig, WorldState
from ui.hud import ACCENT

pytest.importorskip("moderngl")
W, H = 320, 240


def _world_file(tmp_path: Path) -> Path:
    levels = nested_plane_world(levels=2, factor=4.0, size=96)
    history, chunks = History(), {}
    for i, (cam, level) in enumerate(levels):
        level = level.take(slice(None))
        object.__setattr__(level, "opacity_logits", np.full(len(level), 3.0, np.float32))  # opaque
        parts = split_level(level, max_splats=4096)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=cam))
    path = tmp_path / "world.wzs"
    save_world(path, history, chunks)
    return path


def _post(*events):
    for ev in events:
        pygame.event.post(ev)


def key(k, down=True, mod=0):
    return pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=k, mod=mod, unicode="", scancode=0)


@pytest.fixture
def app_env(tmp_path):
    path = _world_file(tmp_path)
    loaded = load_world(path)
    gate = threading.Event()
    generator = ProceduralGenerator(gate=lambda req: gate.wait(30))
    saver = Autosaver(path)
    app = App(WorldState(loaded.history, loaded.chunks, path, path.name),
              config=AppConfig(width=W, height=H, fps_cap=30, vsync=False, screenshot_dir=tmp_path),
              generator=generator, saver=saver, clock=FakeClock())
    yield app, gate, path, saver, tmp_path
    gate.set()
    app.close()


def step_until(app, done, what: str, timeout_s: float = 60.0) -> None:
    """Step frames until `done()`, for work done outside the frame (a generator thread or
    process): a wall-clock deadline, and a short real sleep between frames that lets the
    worker run (the fake clock makes frames take no time). The failure says whether the
    work failed or was late."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            jobs = list(app.jobs.active.values()) if app.jobs is not None else []
            late = "; ".join(f"request {j.request.request_id} at {j.stage} {j.fraction:.0%}"
                             for j in jobs)
            failed = [t for _, t, err in app.messages.items if err]
            raise AssertionError(f"{what}: " + (f"late after {timeout_s:g} s ({late})" if jobs
                                                else f"failed ({failed or 'no message'})"))
        app.step()
        time.sleep(0.005)


def _pick_and_prompt(app, prompt: str = "a ladybug") -> None:
    """Click the surface, open the prompt box with Enter, type, and send it with Enter."""
    _post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(150, 110)))
    app.step()
    _post(key(pygame.K_RETURN))
    app.step()
    assert app.prompt == "" and app.input.text_mode
    _post(pygame.event.Event(pygame.TEXTINPUT, text=prompt), key(pygame.K_RETURN))
    app.step()
    assert app.prompt is None and len(app.jobs) == 1


def test_keyboard_flies_forward(app_env):
    app = app_env[0]
    app.run(3)
    start, forward = app.controller.position.copy(), app.controller.forward.copy()
    # hold W for 10 frames (1/3 s at 30 FPS on the fake clock)
    _post(key(pygame.K_w))
    app.run(app.loop.frame + 10)
    _post(key(pygame.K_w, down=False))
    app.run(app.loop.frame + 2)
    moved = app.controller.position - start
    assert np.dot(moved, forward) > 0.5 * np.linalg.norm(moved) > 0


def test_right_drag_looks_around(app_env):
    app = app_env[0]
    app.run(2)
    yaw0 = app.controller.yaw
    _post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=3, pos=(160, 120)),
          pygame.event.Event(pygame.MOUSEMOTION, pos=(200, 120), rel=(40, 0), buttons=(0, 0, 1)),
          pygame.event.Event(pygame.MOUSEBUTTONUP, button=3, pos=(200, 120)))
    app.step()
    assert app.controller.yaw == pytest.approx(yaw0 + 40 * app.input.mouse_radians_per_px)


def test_wheel_zooms_toward_the_cursor(app_env):
    """The pixel scale at the surface under the cursor (depth there / focal length) shrinks
    by ZOOM_PER_STEP per notch."""
    app = app_env[0]
    _post(pygame.event.Event(pygame.MOUSEMOTION, pos=(140, 100), rel=(0, 0), buttons=(0, 0, 0)))
    app.run(2)
    cursor = app.input.cursor
    depth0 = app.probe_depth(cursor)
    zoom0 = app.controller.zoom_factor
    _post(pygame.event.Event(pygame.MOUSEWHEEL, x=0, y=3, precise_x=0.0, precise_y=3.0,
                             flipped=False, which=0))
    app.run(app.loop.frame + 25)  # the eased zoom lands within ~0.5 s of fake-clock time
    assert depth0 / app.probe_depth(cursor) == pytest.approx(1.25 ** 3, rel=0.01)
    assert app.controller.zoom_factor > zoom0


def test_virtual_gamepad_flies_zooms_and_picks(app_env):
    """A real virtual game controller: hot-plugged, left stick forward, right trigger zooms,
    A picks at the screen centre."""
    from tests.virtual_gamepad import VirtualGamepad

    app = app_env[0]
    app.run(2)
    pad = VirtualGamepad()
    try:
        app.run(app.loop.frame + 2)
        assert app.input.controller_count() == 1
        pos0, zoom1 = app.controller.position.copy(), app.controller.zoom_factor
        pad.axis(1, -1.0)  # left stick up = forward
        pad.axis(5, 1.0)  # right trigger = zoom in
        app.run(app.loop.frame + 6)
        pad.axis(1, 0.0)
        pad.axis(5, 0.0)
        app.run(app.loop.frame + 10)
        assert np.dot(app.controller.position - pos0, app.controller.forward) > 0
        assert app.controller.zoom_factor > zoom1 * 1.5
        pad.button(0, True)  # A: pick at the screen centre
        app.run(app.loop.frame + 2)
        pad.button(0, False)
        app.run(app.loop.frame + 1)
        assert app.poi is not None
        assert abs(app.poi[2]) < 1e-2 * np.linalg.norm(app.poi - app.controller.position)  # on z = 0
    finally:
        pad.detach()


def test_click_picks_the_surface_under_the_cursor(app_env):
    app = app_env[0]
    app.run(2)
    _post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(150, 110)))
    app.step()
    assert app.poi is not None
    distance = np.linalg.norm(app.poi - app.controller.position)
    assert abs(app.poi[2]) < 1e-3 * distance  # the picked point lies on the world's surface
    uv, _ = app.camera.project(app.poi[None])
    np.testing.assert_allclose(uv[0], [150.5, 110.5], atol=0.5)


def test_a_prompted_level_hot_loads_while_the_frame_runs_and_autosaves(app_env):
    app, gate, path, saver, _ = app_env
    app.run(2)
    _pick_and_prompt(app, "a ladybug")
    levels_before = len(list(app.world.query(LevelNode)))
    app.run(app.loop.frame + 5)
    assert len(app.jobs) == 1 and not app.hot_loaded_steps  # gated: the frame keeps running
    gate.set()
    step_until(app, lambda: bool(app.hot_loaded_steps), "the generated level")
    # the frame it arrived in applied it at its apply_deferred stage
    assert len(list(app.world.query(LevelNode))) == levels_before + 1
    assert saver.flush(30)
    on_disk = load_world(path)
    assert app.hot_loaded_steps[0] in on_disk.history.steps
    assert on_disk.history.steps[app.hot_loaded_steps[0]].prompt == "a ladybug"


def test_a_screenshot_shows_the_world_the_hud_and_the_picked_point(app_env):
    app, _, _, _, tmp_path = app_env
    app.run(2)
    _post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(150, 110)))
    app.step()
    shot = app.request_screenshot(tmp_path / "shot.png")
    app.step()
    assert shot.exists()
    img = pygame.surfarray.array3d(pygame.image.load(str(shot))).transpose(1, 0, 2)  # [H, W, 3]
    assert img.shape == (H, W, 3)
    centre = img[H // 2 - 20:H // 2 + 20, W // 2 - 20:W // 2 + 20].astype(float)
    assert centre.std() > 5  # textured world, not a flat background
    px = app.poi_on_screen()
    assert px is not None
    x, y = int(px[0]), int(px[1])
    ring = img[max(0, y - 14):y + 15, max(0, x - 14):x + 15].reshape(-1, 3).astype(int)
    accent = np.abs(ring - np.array(ACCENT)).sum(axis=1) < 60
    assert accent.sum() > 20  # the POI marker is drawn
    panel = img[8:60, 8:300].astype(float)
    assert (panel.mean(axis=2) > 200).sum() > 50  # HUD text (light) on its panel


def test_an_unchanged_view_is_not_redrawn_but_a_change_is(app_env):
    """Once the camera is still and every chunk is on the GPU, frames draw nothing (the
    window keeps its picture); a new message redraws only the HUD over the kept image of the
    world, a camera move the world; a screenshot taken while idle still shows the world."""
    from engine.loop import DRAW_NOTHING, DRAW_OVERLAY, DRAW_WORLD

    app, _, _, _, tmp_path = app_env
    plans = []
    deadline = time.monotonic() + 60
    while not plans or plans[-1] != DRAW_NOTHING:  # uploads finish within a few frames
        assert time.monotonic() < deadline, plans
        plans.append(app.step().draw)
    assert plans[0] == DRAW_WORLD
    drawn = app.last_stats
    assert [app.step().draw for _ in range(5)] == [DRAW_NOTHING] * 5
    assert app.last_stats is drawn  # the renderer was not asked
    app.messages.add(app.loop.clock.now(), "hello")
    assert app.step().draw == DRAW_OVERLAY and app.last_stats is drawn
    assert app.step().draw == DRAW_NOTHING
    _post(key(pygame.K_w))
    assert app.step().draw == DRAW_WORLD and app.last_stats is not drawn
    _post(key(pygame.K_w, down=False))
    while app.step().draw != DRAW_NOTHING:
        assert time.monotonic() < deadline
    shot = app.request_screenshot(tmp_path / "idle.png")
    assert app.step().draw == DRAW_OVERLAY and shot.exists()
    img = pygame.surfarray.array3d(pygame.image.load(str(shot))).transpose(1, 0, 2)
    assert img[H // 2 - 20:H // 2 + 20, W // 2 - 20:W // 2 + 20].astype(float).std() > 5


class Capture:
    """A generator that only keeps what it is sent (it renders the old world itself)."""

    needs_observation = False

    def __init__(self) -> None:
        self.requests: list = []

    def submit(self, request) -> None:
        self.requests.append(request)

    def poll(self) -> list:
        return []

    def cancel(self, request_id: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_zoom_is_asked_for_at_the_window_s_size_and_the_hud_says_the_level_s_size(tmp_path):
    """C_i has the window's size (the generator makes the level at the size it is shown at
    where the machine affords it); the progress line and the grown message say the size."""
    from engine.messages import ProgressEvent
    from ui.app import size_note
    from ui.jobs import Job, Jobs

    path = _world_file(tmp_path)
    loaded = load_world(path)
    capture = Capture()
    app = App(WorldState(loaded.history, loaded.chunks, path, path.name),
              config=AppConfig(width=W, height=H, fps_cap=30, vsync=False), generator=capture,
              clock=FakeClock())
    try:
        app.run(2)
        _pick_and_prompt(app)
        (request,) = capture.requests
        assert (request.camera.width, request.camera.height) == (W, H)
    finally:
        app.close()
    jobs = Jobs(capture)
    jobs.active[7] = Job(request)
    capture.poll = lambda: [ProgressEvent(7, "optimize", 0.5, 3.0, (480, 270), "CPU limit")]
    jobs.poll()
    assert 'at 480\u00d7270 (CPU limit): optimize 50%' in jobs.progress_line()[0]
    assert size_note({"working_size": [480, 270], "size_rule": "CPU limit"}, (1280, 720)) == \
        " at 480\u00d7270 (CPU limit; window 1280\u00d7720)"
    assert size_note({}, (1280, 720)) == ""


class TwoAtOnce:
    """A generator that holds its results until both requests are in, then delivers both
    in one poll: two results arriving in the same frame."""

    needs_observation = True

    def __init__(self) -> None:
        self.requests: list = []

    def submit(self, request) -> None:
        self.requests.append(request)

    def poll(self) -> list:
        if len(self.requests) < 2:
            return []
        out = []
        for req in self.requests:
            obs = req.observation
            chunk = pixel_aligned_splats(req.camera, obs.depth, obs.rgb, level=req.level,
                                         mask=np.isfinite(obs.depth), opacity=0.9)
            out.append(ZoomResult(req.request_id, True, {0: chunk}, backend={"name": "two"},
                                  request=req))
        self.requests = []
        return out

    def cancel(self, request_id: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_two_results_in_one_frame_become_two_steps(tmp_path):
    path = _world_file(tmp_path)
    loaded = load_world(path)
    saver = Autosaver(path)
    app = App(WorldState(loaded.history, loaded.chunks, path, path.name),
              config=AppConfig(width=W, height=H, fps_cap=30, vsync=False),
              generator=TwoAtOnce(), saver=saver, clock=FakeClock())
    try:
        app.run(2)
        head = app.state.history.head
        for pixel, prompt in (((100, 90), "a ladybug"), ((220, 150), "a flower")):
            assert app.pick(pixel, 0.0) is not None
            assert app.request_zoom(prompt) is not None
        app.step()  # both results arrive in this frame
        first, second = app.hot_loaded_steps
        assert first != second
        steps = app.state.history.steps
        assert steps[first].parent == steps[second].parent == head
        assert {steps[first].prompt, steps[second].prompt} == {"a ladybug", "a flower"}
        assert not set(steps[first].chunk_ids) & set(steps[second].chunk_ids)
        assert app.state.history.head == second  # the newer one is shown (a branch)
        assert saver.flush(30)
        assert [m for m in saver.poll() if not m.ok] == []
        on_disk = load_world(path).history
        assert {first, second} <= set(on_disk.steps) and on_disk.head == second
    finally:
        app.close()


def test_undo_redo_and_a_hostile_dropped_file(app_env):
    app, gate, path, saver, tmp_path = app_env
    app.run(2)
    head = app.state.history.head
    _post(key(pygame.K_z, mod=pygame.KMOD_CTRL))
    app.step()
    assert app.state.history.head == app.state.history.steps[head].parent
    assert len(list(app.world.query(LevelNode))) == 1
    _post(key(pygame.K_y, mod=pygame.KMOD_CTRL))
    app.step()
    assert app.state.history.head == head
    assert saver.flush(30) and load_world(path).history.head == head

    bad = tmp_path / "evil.wzs"
    bad.write_bytes(b"\x89WZS\r\n\x1a\n" + b"\xff" * 100)
    app.open_world = lambda p: (_ for _ in ()).throw(ValueError("not a WonderZoom world file (bad header)"))
    world_before = app.world
    _post(pygame.event.Event(pygame.DROPFILE, file=str(bad)))
    app.step()
    assert app.world is world_before  # the current world is kept
    assert any("could not open evil.wzs" in text for text, err in app.messages.visible(app.loop.clock.now()))


def _cli(*args, env_extra=None):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = child_env(**(env_extra or {}))
    return subprocess.run([sys.executable, str(root / "main.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_world_without_cameras_opens_where_render_frames_it(tmp_path):
    """An import (no camera) opens at `render`'s start view (and the web page's), with its
    splats in view: before, `play` had a framing of its own, from the bounding box's
    diagonal, and showed an imported photo world small in the middle of the window."""
    from cli.play import open_world_state
    from engine.render.headless import start_camera
    from engine.scene import build_streamed_scene, close_scene
    from saves.ply import export_ply
    from saves.world_file import open_world
    from tests.factories import random_chunk

    chunk = random_chunk(np.random.default_rng(8), 5000, origin=np.array([1.0, 2.0, 20.0]))
    ply, path = tmp_path / "blob.ply", tmp_path / "blob.wzs"
    export_ply(ply, [chunk])
    assert _cli("import", ply, "-o", path).returncode == 0
    with open_world(path) as world:
        scene = build_streamed_scene(world.history, world.source)
        try:
            expected = start_camera(scene, W, H)
        finally:
            close_scene(scene)
    app = App(open_world_state(str(path)),
              config=AppConfig(width=W, height=H, fps_cap=30, vsync=False, screenshot_dir=tmp_path),
              generator=ProceduralGenerator(), clock=FakeClock())
    try:
        camera = app.controller.camera
    finally:
        app.close()
    np.testing.assert_allclose(camera.position, expected.position, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(camera.fy, expected.fy, rtol=1e-6)
    uv, depth = camera.project(chunk.world_positions())
    seen = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    assert seen.mean() > 0.95


def test_play_cli_runs_frames_and_writes_a_screenshot(tmp_path):
    path = _world_file(tmp_path)
    shot = tmp_path / "last.png"
    r = _cli("play", path, "--frames", 5, "--screenshot", shot, "--size", "320x240", "--out", tmp_path,
             env_extra={"SDL_VIDEODRIVER": "offscreen"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.exists() and pygame.image.load(str(shot)).get_size() == (320, 240)


def test_play_without_a_display_grows_the_sample_world_once_and_writes_a_zoom_sweep(tmp_path):
    """`make run` on a fresh machine: no world given, no display. The sample world (a photo
    grown by three zooms) is grown once into the data folder, then the headless demo zooms
    down its chain and writes the sweep; the next run opens the cached world at once."""
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    out = tmp_path / "out"
    # the sample world is ~10 CPU-minutes: the deadline only catches a hang (it took longer
    # than 900 s on a 2-core machine under a load of 10)
    r = _cli_env(env, "play", "--size", "320x240", "--out", out, timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "No display found" in r.stdout and "Growing the sample world" in r.stdout
    cached = list((tmp_path / "data" / "wonderzoom").glob("sample-*.wzs"))
    assert len(cached) == 1
    history = load_world(cached[0]).history
    assert [s.prompt for s in history.path()][1:] == ["a red flower", "a ladybug", "a dew drop"]
    sweep = sorted(out.glob("sweep_*.png"))
    assert len(sweep) >= 5 and (out / "screenshot.png").exists()
    first, last = (pygame.image.load(str(p)) for p in (sweep[0], sweep[-1]))
    assert first.get_size() == last.get_size() == (320, 240)
    again = _cli_env(env, "play", "--frames", "2", "--size", "320x240", "--out", out)
    assert again.returncode == 0 and "Growing" not in again.stdout, again.stderr[-2000:]


def _cli_env(env, *args, timeout=300):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(root / "main.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=child_env(env))


def test_play_cli_refuses_bad_worlds_and_documents_bindings(tmp_path):
    (tmp_path / "bad.wzs").write_bytes(b"nope")
    for target in (tmp_path / "missing.wzs", tmp_path / "bad.wzs"):
        r = _cli("play", target, "--frames", 1)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    bad_bindings = tmp_path / "b.toml"
    bad_bindings.write_text("[keyboard]\nfly = ['w']\n")
    r = _cli("play", "--frames", 1, "--bindings", bad_bindings, env_extra={"SDL_VIDEODRIVER": "offscreen"})
    assert r.returncode == 2 and "unknown action" in r.stderr
    help_text = _cli("play", "--help").stdout
    from ui.bindings import ACTIONS, DESCRIPTIONS
    for action in ACTIONS:
        assert DESCRIPTIONS[action] in help_text
    for pad in ("left stick", "right stick", "trigger", "wheel", "right button"):
        assert pad in help_text


def test_the_app_grows_a_level_with_the_real_pipeline(tmp_path):
    """The builtin pipeline in its worker process, driven from the app: pick, prompt, and the
    finer level hot-loads and autosaves. Small working size and few iterations keep it quick."""
    from generation.service import GenerationService

    path = _world_file(tmp_path)
    loaded = load_world(path)
    service = GenerationService({"zoom_long_side": 96, "zoom_iterations": 2, "aux_views_zoom": 1,
                                 "sr_model": "realesr-animevideov3-x4"}, timeout_s=1200)
    saver = Autosaver(path)
    app = App(WorldState(loaded.history, loaded.chunks, path, path.name),
              config=AppConfig(width=W, height=H, fps_cap=30, vsync=False), generator=service,
              saver=saver, clock=FakeClock())
    try:
        app.run(2)
        assert app.pick((W // 2, H // 2), 0.0) is not None
        rid = app.request_zoom("a ladybug")
        assert rid is not None and app.jobs.active[rid].request.scene  # the world travels along
        # (deadlines here only catch a hang: on a 2-core machine under a load of 10 the
        # request took over 240 s)
        step_until(app, lambda: bool(app.hot_loaded_steps), "the level grown by the pipeline",
                   timeout_s=1200)
        step = app.state.history.steps[app.hot_loaded_steps[0]]
        assert step.backend["name"] == "builtin" and step.kind == "zoom"
        assert saver.flush(30) and step.id in load_world(path).history.steps
    finally:
        app.close()


def test_a_display_without_vsync_is_no_warning_and_other_warnings_pass(monkeypatch):
    """Xvfb and some drivers cannot wait for the refresh: SDL warns, the frame cap paces the
    loop instead, so the window says nothing of it; any other warning still reaches the user."""
    import warnings

    from ui.window import Window

    real = pygame.display.set_mode

    def set_mode(size, flags, vsync=0):
        if vsync:
            warnings.warn("regular vsync for OpenGL not available", Warning)
        warnings.warn("something else", UserWarning)
        return real(size, flags)

    monkeypatch.setattr(pygame.display, "set_mode", set_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = Window((64, 48), "test", vsync=True)
        try:
            assert w.vsync is False
        finally:
            w.close()
        w = Window((64, 48), "test", vsync=False)
        assert w.vsync is False
        w.close()
    assert [str(c.message) for c in caught] == ["something else", "something else"]
