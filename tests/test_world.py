"""The ECS-like World, its deferred commands and the scene graph built from history."""

import threading
import time

import numpy as np
import pytest

from engine.history import History, HistoryError, Step
from engine.lod import LodIndex
from engine.scene import (ChunkBounds, ChunkHandle, ChunkStore, LevelNode, LoadState,
                          append_level, build_scene)
from engine.synthetic import nested_plane_world
from engine.world import Children, Parent, World


class Pos:
    def __init__(self, x):
        self.x = x


class Vel:
    def __init__(self, v):
        self.v = v


def test_query_returns_entities_with_all_components():
    w = World()
    a = w.spawn(Pos(1), Vel(2))
    w.spawn(Pos(3))
    hits = list(w.query(Pos, Vel))
    assert [e for e, _ in hits] == [a]
    pos, vel = hits[0][1]
    assert (pos.x, vel.v) == (1, 2)


def test_commands_are_deferred_until_apply():
    w = World()
    a = w.spawn(Pos(0))
    e = w.commands.spawn(Pos(5), parent=a)
    w.commands.despawn(a)  # despawn after the spawn: takes the child with it
    assert not w.is_alive(e) and w.is_alive(a)
    assert len(list(w.query(Pos))) == 1
    assert w.apply_commands() == 2
    assert len(w) == 0


def test_despawn_is_recursive_and_unlinks_parent():
    w = World()
    root = w.spawn(Pos(0))
    mid = w.spawn(Pos(1), parent=root)
    leaf = w.spawn(Pos(2), parent=mid)
    other = w.spawn(Pos(3), parent=root)
    assert w.descendants(root) == [mid, leaf, other]
    w.despawn(mid)
    assert not w.is_alive(leaf)
    assert w.get(root, Children).entities == [other]
    assert w.get(other, Parent).entity == root


def _history_world():
    levels = nested_plane_world(levels=3, factor=4.0, size=48)
    h = History()
    chunks = {i: ch for i, (_, ch) in enumerate(levels)}
    h.add(Step(0, None, "image", (0,), camera=levels[0][0]))
    h.add(Step(1, 0, "zoom", (1,), camera=levels[1][0], prompt="a flower"))
    h.add(Step(2, 1, "zoom", (2,), camera=levels[2][0], prompt="a ladybug"))
    return h, chunks, levels


def test_scene_graph_levels_hang_under_the_level_they_refine():
    h, chunks, _ = _history_world()
    w = build_scene(h, chunks)
    levels = sorted(w.query(LevelNode), key=lambda x: x[1][0].level)
    assert [node.level for _, (node,) in levels] == [0, 1, 2]
    assert w.parent(levels[1][0]) == levels[0][0] and w.parent(levels[2][0]) == levels[1][0]
    for e, (handle, bounds) in w.query(ChunkHandle, ChunkBounds):
        assert w.has(w.parent(e), LevelNode)
        assert bounds.count == len(chunks[handle.chunk_id])
        assert w.resource(ChunkStore).state(handle.chunk_id) is LoadState.READY
    # the root never fades when zooming out; the deepest level disappears in coarse views
    b = {h_.chunk_id: bd for _, (h_, bd) in w.query(ChunkHandle, ChunkBounds)}
    assert b[0].band_hi == np.inf
    assert b[2].band_lo == 0 and np.isfinite(b[2].band_hi)


def test_world_at_an_earlier_step_and_branching():
    h, chunks, levels = _history_world()
    h.undo()
    assert h.head == 1
    w = build_scene(h, chunks)
    assert sorted(hd.chunk_id for _, (hd,) in w.query(ChunkHandle)) == [0, 1]
    chunks[3] = levels[2][1]
    h.add(Step(3, 1, "zoom", (3,), camera=levels[2][0], prompt="a bee"))  # a branch
    assert [s.id for s in h.children(1)] == [2, 3]
    assert h.chunk_ids_at(3) == [0, 1, 3] and h.chunk_ids_at(2) == [0, 1, 2]
    with pytest.raises(HistoryError):
        h.checkout(99)


def test_append_level_is_deferred_and_never_mutates_old_chunks():
    h, chunks, levels = _history_world()
    h.undo()
    w = build_scene(h, chunks)
    bounds_before = {hd.chunk_id: bd for _, (hd, bd) in w.query(ChunkHandle, ChunkBounds)}
    old_bytes = {cid: chunks[cid].s_native.tobytes() for cid in (0, 1)}
    child_before = w.resource(LodIndex).links[1].s_child.copy()
    assert (child_before == 0).all()
    step = h.add(Step(5, 1, "zoom", (7,), camera=levels[2][0], prompt="a ladybug"))
    append_level(w, step, {7: levels[2][1]})
    assert 7 not in w.resource(ChunkStore)  # nothing happens before the frame's apply point
    w.apply_commands()
    assert 7 in w.resource(ChunkStore)
    assert (w.resource(LodIndex).links[1].s_child > 0).any()  # level 1 now fades where 2 covers
    assert all(chunks[c].s_native.tobytes() == b for c, b in old_bytes.items())
    node = [n for _, (n,) in w.query(LevelNode) if n.step_id == 5][0]
    assert node.level == 2
    assert h.head == 5
    bounds = {hd.chunk_id: bd for _, (hd, bd) in w.query(ChunkHandle, ChunkBounds)}
    assert bounds[1] is not bounds_before[1]  # refreshed for the new links
    np.testing.assert_array_equal(bounds[1].lo, bounds_before[1].lo)


def test_chunk_store_loads_on_its_io_thread_and_refuses_a_bad_chunk_alone():
    """Asking never blocks: a gated loader holds the reads while the frame goes on; then
    one chunk arrives READY and the damaged one is FAILED with a one-line message."""
    gate = threading.Event()
    chunk = nested_plane_world(levels=1, size=8)[0][1]

    def loader(cid):
        gate.wait(30)
        if cid == 9:
            raise IOError("gone")
        return chunk, None

    store = ChunkStore(loader, sizes={1: chunk.nbytes(), 9: chunk.nbytes()})
    try:
        assert store.state(1) is LoadState.UNLOADED
        store.begin_frame()
        assert store.request([1, 9]) == 2
        assert store.state(1) is LoadState.LOADING and store.get(1) is None
        gate.set()
        deadline = time.monotonic() + 30
        while LoadState.LOADING in (store.state(1), store.state(9)):
            assert time.monotonic() < deadline, "the I/O thread never finished"
            store.wait(1.0)
            store.poll()
        assert len(store.get(1)) == 64 and store.state(1) is LoadState.READY
        assert store.state(9) is LoadState.FAILED
        assert [f.chunk_id for f in store.failures] == [9] and "gone" in store.failures[0].message
        assert store.used_bytes == chunk.nbytes() and store.reserved_bytes == 0
    finally:
        store.close()
