"""The app on a world streamed from its file (what `play WORLD` opens): the first frame does
not wait for payloads, a grown level is linked off the frame, shown and autosaved with its
links, and a chunk damaged on disk is a HUD message while the rest draws. Work outside the
frame is waited for on a wall-clock deadline (`step_until`), never a number of frames."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cli.play import open_world_state
from engine.clock import FakeClock
from engine.scene import ChunkStore, LevelNode, LoadState
from generation.procedural import ProceduralGenerator
from saves import load_world
from saves.autosave import Autosaver
from saves.records import RECORD_HEADER
from saves.world_file import open_world
from tests.test_app import H, W, _pick_and_prompt, _world_file, step_until
from ui.app import App, AppConfig

pytest.importorskip("moderngl")


def _resident(app) -> bool:
    stats = app.last_stats
    return stats is not None and stats.chunks_pending == 0 and stats.chunks_loading == 0


def test_a_streamed_world_grows_a_level_linked_off_the_frame_and_autosaves(tmp_path):
    path = _world_file(tmp_path)
    state = open_world_state(str(path))
    assert state.streamed and not state.chunks  # nothing decoded before the first frame
    gate = threading.Event()
    saver = Autosaver(path)
    app = App(state, config=AppConfig(width=W, height=H, fps_cap=30, vsync=False,
                                      screenshot_dir=tmp_path),
              generator=ProceduralGenerator(gate=lambda req: gate.wait(30)), saver=saver,
              clock=FakeClock())
    try:
        app.step()
        assert app.world.resource(ChunkStore).streaming
        step_until(app, lambda: _resident(app), "the first view's chunks")
        assert app.last_stats.splats_drawn > 0
        levels_before = len(list(app.world.query(LevelNode)))
        _pick_and_prompt(app, "a ladybug")
        gate.set()
        step_until(app, lambda: bool(app.hot_loaded_steps), "the generated level")
        assert len(list(app.world.query(LevelNode))) == levels_before + 1
        step_id = app.hot_loaded_steps[0]
        assert app.state.source.steps[step_id] is not None  # its links, held in memory
        assert saver.flush(30) and [m for m in saver.poll() if not m.ok] == []
        on_disk = load_world(path)
        assert on_disk.history.head == step_id and step_id in on_disk.links
        mine, stored = app.state.source.steps[step_id], on_disk.links[step_id]
        assert set(mine.children) == set(stored.children)
        for cid, s_child in mine.children.items():
            np.testing.assert_array_equal(stored.children[cid], s_child)
        step_until(app, lambda: _resident(app), "the new level on screen")
        assert app.last_stats.splats_drawn > 0
    finally:
        gate.set()
        app.close()
    assert state.on_close is None  # the file was let go


def test_a_chunk_damaged_on_disk_is_a_hud_message_and_the_rest_draws(tmp_path):
    path = _world_file(tmp_path)
    state = open_world_state(str(path))
    with open_world(path) as world_file:
        victim = world_file.history.path()[0].chunk_ids[0]
        offset = world_file.index.chunks[victim][1].offset + RECORD_HEADER.size + 2000
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    app = App(state, config=AppConfig(width=W, height=H, fps_cap=30, vsync=False),
              clock=FakeClock())
    try:
        app.step()
        store = app.world.resource(ChunkStore)
        step_until(app, lambda: store.state(victim) is LoadState.FAILED and _resident(app),
                   "the damaged chunk's refusal")
        app.step()
        errors = [text for _, text, err in app.messages.items if err]
        assert any(f"chunk {victim} refused" in text and "checksum" in text for text in errors)
        assert app.last_stats.splats_drawn > 0 and app.loop.running
    finally:
        app.close()
