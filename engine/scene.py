"""The scene graph of a multi-scale world: levels and their chunks.

Owns: the components that describe a world (`LevelNode`, `ChunkHandle`, `ChunkBounds`),
building a `World` from a history at a step — in memory (`build_scene`: every chunk given) or
streamed from a `WorldSource` (`build_streamed_scene`: the chunks' metadata only; their data
loads on demand through the `ChunkStore`, `engine.chunkstore`) — and appending a level as
deferred commands. Chunk entities hang under their level's entity; each level hangs under
the level it refines.
Does not own: the history itself (its owner, the app's session or a command, adds steps to it;
the scene only mirrors the path to one step), the file format (`saves/`), the RAM pool and
the I/O thread (`engine.chunkstore`), generation, or drawing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from engine.camera import Camera
from engine.catalog import PathPlan, WorldSource, plan_path
from engine.chunkstore import DEFAULT_RAM_BYTES, ChunkFailure, ChunkStore, LoadState
from engine.history import History, Step
from engine.lod import LodIndex, LodLinks, StepLinks, build_lod_index, link_step, seen_by
from engine.splats import SplatChunk
from engine.world import Entity, World

__all__ = ["ChunkBounds", "ChunkFailure", "ChunkHandle", "ChunkStore", "LevelNode", "LoadState",
           "SceneSource", "append_level", "build_scene", "build_streamed_scene", "flat_scene",
           "head_level", "level_entities"]


@dataclass
class LevelNode:
    step_id: int
    level: int  # depth in the history tree: 0 = the scene from the input image
    camera: Camera | None  # C_i that created it (None for imports)
    prompt: str = ""


@dataclass
class ChunkHandle:
    """A handle: the chunk's data lives in the `ChunkStore`, keyed by `chunk_id`."""

    chunk_id: int


@dataclass
class ChunkBounds:
    lo: np.ndarray  # [3] float64 world AABB (padded by 3 sigma)
    hi: np.ndarray  # [3] float64
    count: int
    band_lo: float  # s_render below which no splat of the chunk is drawn (alpha <= cull)
    band_hi: float  # s_render above which no splat of the chunk is drawn
    # its splats' native scales: smallest, median, largest (what tools and the HUD ask of a
    # chunk without reading it)
    s_native_lo: float = math.nan
    s_native_mid: float = math.nan
    s_native_hi: float = math.nan


@dataclass
class SceneSource:
    """Resource of a streamed scene: where its chunks come from, and for each chunk on the
    path the step whose s_child it shows (None: none finer yet) — what its loader reads."""

    source: WorldSource
    child_step: dict[int, int | None] = field(default_factory=dict)

    def load(self, chunk_id: int) -> tuple[SplatChunk, LodLinks]:
        """Read one chunk and its links on this path (an I/O thread calls this)."""
        return (self.source.read_chunk(chunk_id),
                self.source.read_links(chunk_id, self.child_step.get(chunk_id)))


def _bounds(index: LodIndex, chunk_id: int, chunk: SplatChunk) -> ChunkBounds:
    lo, hi = chunk.bounds()
    band_lo, band_hi = index.band(chunk_id, chunk)
    s = chunk.s_native
    stats = (float(s.min()), float(np.median(s)), float(s.max())) if len(chunk) else (math.nan,) * 3
    return ChunkBounds(lo, hi, len(chunk), band_lo, band_hi, *stats)


def build_scene(history: History, chunks: Mapping[int, SplatChunk], step_id: int | None = None,
                links: Mapping[int, StepLinks] | None = None) -> World:
    """A World holding the levels on the path root -> step (default: head) of `history`, every
    chunk in memory. `links`: the steps' stored LoD links (`saves.LoadedWorld.links`); derived
    from the chunks when None."""
    world = World()
    path = history.path(step_id)
    levels = []
    for step in path:
        level_chunks = {cid: chunks[cid] for cid in step.chunk_ids}
        levels.append((step.camera if step.kind == "zoom" else None, level_chunks))
    index = build_lod_index(levels) if links is None else _stored_links(path, chunks, links)
    store = ChunkStore(index=index)
    for step in path:
        for cid in step.chunk_ids:
            store.insert(cid, chunks[cid])
    world.insert_resource(store)
    world.insert_resource(index)
    parent: Entity | None = None
    for i, step in enumerate(path):
        node = world.spawn(LevelNode(step.id, i, step.camera, step.prompt), parent=parent)
        for cid in step.chunk_ids:
            world.spawn(ChunkHandle(cid), _bounds(index, cid, chunks[cid]), parent=node)
        parent = node
    return world


def _stored_links(path: list[Step], chunks: Mapping[int, SplatChunk],
                  links: Mapping[int, StepLinks]) -> LodIndex:
    """The LoD index of a path from each step's stored links (the deepest cover wins)."""
    index = LodIndex()
    for step in path:
        own = links[step.id]
        for cid in step.chunk_ids:
            index.links[cid] = own.links_of(cid, len(chunks[cid]))
        for cid, s_child in own.children.items():
            if cid in index.links:
                index.links[cid] = LodLinks(index.links[cid].s_parent, s_child)
    return index


def build_streamed_scene(history: History, source: WorldSource, step_id: int | None = None,
                         *, budget_bytes: int = DEFAULT_RAM_BYTES) -> World:
    """A World of the path root -> step (default: head) built from `source`'s metadata alone
    (time and memory independent of the payloads): every chunk starts UNLOADED, and its data
    and links load when a frame asks for them, into a RAM pool of `budget_bytes`."""
    plan: PathPlan = plan_path(history, source, step_id)
    world = World()
    index = LodIndex()
    scene_source = SceneSource(source, dict(plan.child_step))
    metas = {cid: source.meta(cid) for cid in plan.child_step}
    store = ChunkStore(scene_source.load, budget_bytes=budget_bytes,
                       sizes={cid: m.nbytes for cid, m in metas.items()}, index=index)
    world.insert_resource(store)
    world.insert_resource(index)
    world.insert_resource(scene_source)
    parent: Entity | None = None
    for i, step in enumerate(plan.steps):
        node = world.spawn(LevelNode(step.id, i, step.camera, step.prompt), parent=parent)
        for cid in step.chunk_ids:
            m = metas[cid]
            band_lo, band_hi = plan.bands[cid]
            world.spawn(ChunkHandle(cid),
                        ChunkBounds(m.lo, m.hi, m.count, band_lo, band_hi, *m.s_native),
                        parent=node)
        parent = node
    return world


def close_scene(world: World) -> None:
    """Stop a streamed world's I/O thread (a world built in memory has none running)."""
    store = world.try_resource(ChunkStore)
    if store is not None:
        store.close()


def flat_scene(pieces: list[tuple[SplatChunk, LodLinks | None]]) -> World:
    """A World of the given chunks with the given links and no history (a flat scene: one
    chunk entity each; None links make a root chunk). For tests, benchmarks and tools."""
    world = World()
    index = LodIndex()
    store = ChunkStore(index=index)
    world.insert_resource(store)
    world.insert_resource(index)
    for cid, (chunk, links) in enumerate(pieces):
        store.insert(cid, chunk, links if links is not None else LodLinks.root(len(chunk)))
        world.spawn(ChunkHandle(cid), _bounds(index, cid, chunk))
    return world


def level_entities(world: World) -> list[tuple[Entity, LevelNode]]:
    return [(e, node) for e, (node,) in world.query(LevelNode)]


def head_level(world: World) -> Entity | None:
    levels = level_entities(world)
    return max(levels, key=lambda x: x[1].level)[0] if levels else None


def older_seen(world: World, camera: Camera) -> dict[int, tuple[SplatChunk, LodLinks]]:
    """The chunks of `world` whose box `camera`'s frustum may hold (`engine.lod.seen_by`),
    with their links: what linking a level grown at `camera` needs. Held ones come from the
    store; the others are read now (blocking: tools, tests and the app's link thread)."""
    boxes = {h.chunk_id: (b.lo, b.hi) for _, (h, b) in world.query(ChunkHandle, ChunkBounds)
             if b.count}
    return world.resource(ChunkStore).load_now(seen_by(camera, boxes))


def append_level(world: World, step: Step, chunks: Mapping[int, SplatChunk],
                 links: StepLinks | None = None) -> None:
    """Queue a generated level for the frame's apply point: its chunks go into the store
    (pinned: they live in memory), its links into the LoD index — older chunks' links change
    where it covers them (their data never does) — then a level entity with its chunk entities
    is spawned under the current deepest level, and the bands of the older chunks it covers
    are refreshed. `links`: what `engine.lod.link_step` decided, when the caller linked the
    level already (off the frame thread); else it is linked here from the older chunks its
    camera sees (reading the ones not held: use that only on worlds held in memory). `step`
    must already be in the history (its owner adds it at once, so step ids never collide).
    In a streamed world the covered chunks' new s_child stays pinned in the store, which
    applies it to every later load of them (their source predates this level)."""

    def apply(w: World) -> None:
        store = w.resource(ChunkStore)
        index = w.resource(LodIndex)
        step_links = links
        if step_links is None:
            camera = None if head_level(w) is None or step.kind != "zoom" else step.camera
            step_links = link_step(camera, chunks, older_seen(w, camera) if camera else {})
        for cid, chunk in chunks.items():
            store.insert(cid, chunk, step_links.links_of(cid, len(chunk)))
        for cid, s_child in step_links.children.items():
            store.override_child(cid, s_child)
        parent = head_level(w)
        level = 0 if parent is None else w.get(parent, LevelNode).level + 1
        node = w.spawn(LevelNode(step.id, level, step.camera, step.prompt), parent=parent)
        for cid, chunk in chunks.items():
            w.spawn(ChunkHandle(cid), _bounds(index, cid, chunk), parent=node)
        for e, (handle, bounds) in w.query(ChunkHandle, ChunkBounds):
            band = step_links.bands.get(handle.chunk_id)
            if handle.chunk_id in step_links.children and band is not None:
                w.insert(e, replace(bounds, band_lo=band[0], band_hi=band[1]))

    world.commands.run(apply)
