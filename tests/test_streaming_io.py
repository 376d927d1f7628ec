"""Worlds bigger than memory: a world opened by its index and streamed from its file draws the
same frames as the world loaded whole; the RAM pool stays under its budget; a chunk damaged
on disk after opening is refused alone; appends while streaming are safe; version-1 files
open through their migration. Loads are waited for on the store's completion signal with a
wall-clock deadline (`render_resident`), never a number of frames."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import derive_links
from engine.chunking import split_level
from engine.history import History, Step
from engine.lod import LodIndex
from engine.render.camera_path import zoom_sweep
from engine.scene import (ChunkStore, LoadState, build_scene, build_streamed_scene,
                          close_scene)
from engine.synthetic import nested_plane_world
from saves import SaveFormatError, WorldWriter, load_world, read_world_info, save_world
from saves.records import FILE_HEADER, RECORD_HEADER, encode_file_header
from saves.world_file import copy_world, open_world, upgrade_world
from tests.test_streaming import _opaque, _reference_in_draw_order, assert_matches

moderngl = pytest.importorskip("moderngl")
from engine.render.headless import render_resident  # noqa: E402
from engine.render.reference import render as reference_render  # noqa: E402
from engine.render.streaming import StreamingRenderer  # noqa: E402

DEADLINE_S = 60.0


def _world(levels=3, size=64, max_splats=700):
    """A nested-plane history, each level split into several chunks, and its cameras."""
    made = nested_plane_world(levels=levels, factor=4.0, size=size)
    history, chunks = History(), {}
    for i, (camera, level) in enumerate(made):
        parts = split_level(_opaque(level), max_splats=max_splats)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=camera))
    return history, chunks, [c for c, _ in made]


@pytest.fixture
def saved(tmp_path):
    history, chunks, cameras = _world()
    path = tmp_path / "w.wzs"
    save_world(path, history, chunks)
    return path, history, chunks, cameras


@pytest.fixture
def renderer(ctx):
    r = StreamingRenderer(ctx, resort=None)
    yield r
    r.release()


def _sweep(cameras, frames=9):
    target = cameras[-1].T_world_camera[:3, 3] + cameras[-1].T_world_camera[:3, 2] * 4.0
    target[2] = 0.0
    return zoom_sweep(cameras[0], target, float(cameras[-1].pixel_scale(target[None])[0]),
                      frames)


def _there_and_back(cameras):
    """The zoom sweep down to the deepest level and back up."""
    sweep = _sweep(cameras)
    return [*sweep, *reversed(sweep)]


def _draw_until_loaded(renderer, world, cam, fbo, check=lambda stats: None):
    """Draw `cam` until no visible chunk is loading (all in, or no room for the rest),
    calling `check(stats)` after every draw; fails after DEADLINE_S of waiting."""
    store = world.resource(ChunkStore)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        stats = renderer.draw(world, cam, fbo)
        check(stats)
        if stats.chunks_loading == 0:
            return
        assert time.monotonic() < deadline, "loads never finished"
        store.wait(1.0)


def _streamed(path, **kw):
    world_file = open_world(path)
    return world_file, build_streamed_scene(world_file.history, world_file.source, **kw)


# ---- what is stored --------------------------------------------------------------------
def test_stored_links_are_the_links_linking_from_every_chunk_gives(saved):
    """The writer links each level from the chunks its camera sees; the stored links equal
    the index rebuilt from all payloads (the old way) for every chunk of the path."""
    path, history, chunks, _ = saved
    loaded = load_world(path)
    assert loaded.format_version == 2 and set(loaded.links) == set(history.steps)
    stored = build_scene(loaded.history, loaded.chunks, links=loaded.links).resource(LodIndex)
    derived = build_scene(history, chunks).resource(LodIndex)
    assert set(stored.links) == set(derived.links)
    for cid, links in derived.links.items():
        np.testing.assert_array_equal(stored.links[cid].s_parent, links.s_parent)
        np.testing.assert_array_equal(stored.links[cid].s_child, links.s_child)
    assert any((links.s_child > 0).any() for links in stored.links.values())


# ---- drawing from the file ------------------------------------------------------------
def test_streamed_frames_equal_the_loaded_world_s_once_resident(saved, renderer, ctx):
    """Opening reads no payload; frames drawn while chunks stream in never wait; once the
    chunks are in RAM every frame of a zoom sweep equals the fully loaded world's, and one
    matches the numpy reference."""
    path, history, chunks, cameras = saved
    world_file, world = _streamed(path)
    loaded_world = build_scene(history, chunks)
    other = StreamingRenderer(ctx, resort=None)
    try:
        store = world.resource(ChunkStore)
        assert store.used_bytes == 0 and all(store.state(c) is LoadState.UNLOADED
                                             for c in chunks)
        first = renderer.render_offscreen(world, cameras[0])  # nothing in RAM yet: no wait
        assert renderer.last_stats.chunks_pending > 0 and first.alpha.max() == 0.0
        for cam in _sweep(cameras):
            streamed = render_resident(renderer, world, cam)
            assert renderer.last_stats.chunks_pending == 0
            whole = other.render_offscreen(loaded_world, cam)
            np.testing.assert_array_equal(streamed.rgb, whole.rgb)
            np.testing.assert_array_equal(streamed.alpha, whole.alpha)
        cam = cameras[1]
        gpu = render_resident(renderer, world, cam)
        assert_matches(gpu, reference_render(_reference_in_draw_order(renderer, world, cam), cam))
    finally:
        other.release()
        close_scene(world)
        world_file.close()


def test_the_ram_pool_never_exceeds_its_budget(saved, renderer):
    """A pool smaller than the world: the decoded bytes held (or being read) stay within the
    budget on every frame of a zoom there and back, chunks are evicted and read again, and
    the frames still come out whole where the view fits the budget."""
    path, history, chunks, cameras = saved
    sizes = {c: ch.nbytes() + 8 * len(ch) for c, ch in chunks.items()}
    budget = sum(sizes.values()) // 2
    world_file, world = _streamed(path, budget_bytes=budget)
    store = world.resource(ChunkStore)
    def within_budget(stats) -> None:
        held = sum(sizes[c] for c in store.ids())
        assert store.used_bytes + store.reserved_bytes <= budget
        assert held <= budget and store.peak_bytes <= budget

    try:
        fbo = renderer.ctx.simple_framebuffer((64, 64))
        for cam in _there_and_back(cameras):
            _draw_until_loaded(renderer, world, cam, fbo, within_budget)
        fbo.release()
        assert store.evictions > 0
        assert not store.failures
    finally:
        close_scene(world)
        world_file.close()


def test_a_chunk_damaged_on_disk_after_opening_is_refused_alone(saved, renderer):
    """One chunk's bytes are flipped on disk after the world was opened: that chunk is FAILED
    with a one-line message, every other chunk still loads and draws, the world stays open."""
    path, history, chunks, cameras = saved
    world_file, world = _streamed(path)
    store = world.resource(ChunkStore)
    try:
        victim = history.steps[0].chunk_ids[len(history.steps[0].chunk_ids) // 2]
        offset = world_file.index.chunks[victim][1].offset + RECORD_HEADER.size + 4000
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        render_resident(renderer, world, cameras[0])
        assert store.state(victim) is LoadState.FAILED
        failure, = store.failures
        assert failure.chunk_id == victim and "checksum" in failure.message
        assert "\n" not in failure.message
        others = [c for c in history.steps[0].chunk_ids if c != victim]
        assert all(store.state(c) is LoadState.READY for c in others)
        assert renderer.last_stats.splats_drawn > 0
        drawn = set(renderer.last_list.chunk_rows()[0].tolist())
        assert victim not in drawn and drawn
    finally:
        close_scene(world)
        world_file.close()


def test_appending_while_streaming_from_the_same_file_is_safe(saved, renderer):
    """A writer appends a step (its own descriptor and lock) while a world streams from the
    file: the open index still reads every chunk it knows, checked, and a new open sees the
    step."""
    path, history, chunks, cameras = saved
    world_file, world = _streamed(path)
    try:
        before = render_resident(renderer, world, cameras[1])
        made = nested_plane_world(levels=4, factor=4.0, size=64)
        cam3, level3 = made[3]
        with WorldWriter.open(path) as writer:
            base = max(writer.chunk_ids) + 1
            parts = split_level(_opaque(level3), max_splats=700)
            step = Step(3, 2, "zoom", tuple(range(base, base + len(parts))), camera=cam3)
            writer.append_step(step, dict(zip(step.chunk_ids, parts)))
        close_scene(world)
        world = build_streamed_scene(world_file.history, world_file.source)  # the old index
        again = render_resident(renderer, world, cameras[1])
        np.testing.assert_array_equal(before.rgb, again.rgb)
        for cid in chunks:
            world_file.read_chunk(cid)
        with open_world(path) as reopened:
            assert 3 in reopened.history.steps and reopened.history.head == 3
            assert set(step.chunk_ids) <= reopened.chunk_ids
    finally:
        close_scene(world)
        world_file.close()


# ---- version 1 ---------------------------------------------------------------------------
def _as_version_1(path: Path, out: Path) -> None:
    """The same world as a format-version-1 writer made it: no LINK records."""
    data = path.read_bytes()
    parts, pos = [encode_file_header(1)], FILE_HEADER.size
    while pos < len(data):
        tag, _, length, _, _ = RECORD_HEADER.unpack_from(data, pos)
        end = pos + RECORD_HEADER.size + length
        if tag != b"LINK":
            parts.append(data[pos:end])
        pos = end
    out.write_bytes(b"".join(parts))


def test_a_version_1_file_opens_through_its_migration_and_upgrades(saved, renderer, tmp_path):
    """An old file (no links stored) opens and streams with links derived from its payloads,
    drawing what the version-2 file draws; compact and an upgrading writer store the links."""
    path, history, chunks, cameras = saved
    old = tmp_path / "old.wzs"
    _as_version_1(path, old)
    assert read_world_info(old).format_version == 1
    assert load_world(old).links is None
    with open_world(old) as v1, open_world(path) as v2:
        assert v1.format_version == 1
        for sid in history.steps:
            a, b = v1.step_links(sid), v2.step_links(sid)
            assert set(a.children) == set(b.children) and a.bands == b.bands
            for cid in a.parents:
                np.testing.assert_array_equal(a.links_of(cid, len(chunks[cid])).s_parent,
                                              b.links_of(cid, len(chunks[cid])).s_parent)
        w1 = build_streamed_scene(v1.history, v1.source)
        w2 = build_streamed_scene(v2.history, v2.source)
        other = StreamingRenderer(renderer.ctx, resort=None)
        try:
            np.testing.assert_array_equal(render_resident(renderer, w1, cameras[2]).rgb,
                                          render_resident(other, w2, cameras[2]).rgb)
        finally:
            other.release()
            close_scene(w1)
            close_scene(w2)
        copy = tmp_path / "compacted.wzs"
        copy_world(v1, copy)
    upgraded = load_world(copy)
    assert upgraded.format_version == 2 and set(upgraded.links) == set(history.steps)
    with WorldWriter.open(old, upgrade=True) as writer:  # the app's autosave, zoom
        writer.set_head(1)
    assert read_world_info(old).format_version == 2 and load_world(old).history.head == 1
    assert upgrade_world(path, tmp_path / "same.wzs") > 0  # a current file copies too


def test_checkout_moves_the_head_of_a_version_1_file_without_rewriting_it(saved, tmp_path):
    """A HEAD record is the same in both versions: `checkout` appends one to an old file
    (no upgrade, which rewrites the whole history); appending a step still needs one."""
    from cli import main

    path, history, _, _ = saved
    old = tmp_path / "old.wzs"
    _as_version_1(path, old)
    before = old.read_bytes()
    head = min(s for s in history.steps if s != history.head)
    assert main(["checkout", str(old), str(head)]) == 0
    assert old.read_bytes().startswith(before)
    info = read_world_info(old)
    assert info.format_version == 1 and info.history.head == head
    with WorldWriter.open(old, heads_only=True) as writer:
        with pytest.raises(SaveFormatError, match="compact"):
            writer.append_step(Step(max(history.steps) + 1, head, "zoom", ()), {})
    assert old.read_bytes().startswith(before)


def test_derived_links_follow_each_branch(tmp_path):
    """Links depend on the path: two sibling zooms cover their parent differently, and
    each path shows its own child's links (stored per step, resolved per path)."""
    history, chunks, cameras = _world(levels=2, size=48)
    made = nested_plane_world(levels=2, factor=4.0, size=48, seed=5)
    base = max(chunks) + 1
    chunks[base] = _opaque(made[1][1])
    history.add(Step(2, 0, "zoom", (base,), camera=made[1][0]))
    derived = derive_links(history, chunks.__getitem__)
    assert derived[1].children.keys() & derived[2].children.keys()
    path = tmp_path / "branches.wzs"
    save_world(path, history, chunks)
    for head in (1, 2):
        history.checkout(head)
        whole = build_scene(history, chunks).resource(LodIndex)
        with open_world(path) as wf:
            wf.history.checkout(head)
            world = build_streamed_scene(wf.history, wf.source)
            store = world.resource(ChunkStore)
            held = store.load_now([c for s in history.path() for c in s.chunk_ids])
            close_scene(world)
        for cid, (_, links) in held.items():
            np.testing.assert_array_equal(links.s_child, whole.links[cid].s_child)
            assert math.isinf(links.s_parent[0]) == math.isinf(whole.links[cid].s_parent[0])


def test_export_and_compact_stream_without_loading_the_world(saved, tmp_path):
    """`export --ply` and `compact` go one chunk at a time: the same output as before, and
    their memory does not hold the world (traced peak well under its decoded size)."""
    import tracemalloc

    from saves.ply import export_ply, export_ply_stream

    path, history, chunks, _ = saved
    ids = history.chunk_ids_at()
    export_ply(tmp_path / "whole.ply", [chunks[c] for c in ids])
    with open_world(path) as wf:
        tracemalloc.start()
        export_ply_stream(tmp_path / "streamed.ply", sum(len(chunks[c]) for c in ids),
                          (wf.read_chunk(c) for c in ids))
        export_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        copy_world(wf, tmp_path / "copy.wzs")
        copy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    ply_bytes = (tmp_path / "whole.ply").stat().st_size
    assert (tmp_path / "streamed.ply").read_bytes() == (tmp_path / "whole.ply").read_bytes()
    assert export_peak < ply_bytes / 4, f"export peak {export_peak} for {ply_bytes} bytes"
    assert copy_peak < path.stat().st_size / 4, f"copy peak {copy_peak}"
    copied = load_world(tmp_path / "copy.wzs")
    assert copied.history.steps.keys() == history.steps.keys()
    for cid, chunk in chunks.items():
        assert copied.chunks[cid].positions.tobytes() == chunk.positions.tobytes()


def test_a_streamed_store_only_asks_for_what_it_draws_and_never_blocks(saved, renderer):
    """A frame asks the store for the visible chunks only (the prefetch adds the views
    around it): the coarse level's chunks stay unread when zoomed deep."""
    path, history, chunks, cameras = saved
    world_file, world = _streamed(path)
    store = world.resource(ChunkStore)
    try:
        deep = dataclasses.replace(cameras[2])
        render_resident(renderer, world, deep)
        read = {c for c in chunks if store.state(c) is not LoadState.UNLOADED}
        assert read and read != set(chunks)
    finally:
        close_scene(world)
        world_file.close()


def test_on_a_software_gl_the_arena_holds_no_more_than_the_pool(saved, renderer):
    """Where the GPU arena is host RAM, its budget is what the RAM pool can hold (GPU
    residency is a subset of the pool): a zoom there and back with a pool of half the world
    never grows it past that, and every frame still draws (a chunk left out: its parent)."""
    from engine.render.visibility import PAGE_SPLATS

    if not renderer.residency.host_memory:
        pytest.skip("the arena is GPU memory here")
    path, history, chunks, cameras = saved
    budget = sum(ch.nbytes() + 8 * len(ch) for ch in chunks.values()) // 2
    world_file, world = _streamed(path, budget_bytes=budget)
    store = world.resource(ChunkStore)
    try:
        fbo = renderer.ctx.simple_framebuffer((64, 64))
        for cam in _there_and_back(cameras):
            _draw_until_loaded(renderer, world, cam, fbo)
            stats = renderer.draw(world, cam, fbo, complete=True)
            assert stats.splats_drawn > 0
            pages = -(-store.max_splats // PAGE_SPLATS)  # below its first 16 pages here
            assert renderer.arena.max_pages == pages < renderer.arena.capacity
            assert renderer.residency.splats_ready <= store.max_splats
        fbo.release()
    finally:
        close_scene(world)
        world_file.close()
