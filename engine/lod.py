"""The LoD index: each splat's links to the adjacent coarser and finer levels.

Owns: deriving `s_parent` and `s_child` for every splat from the history (the chunks of each
level and the camera C_i that created it). The links are *derived data*: chunks are never
mutated, the index is rebuilt from the history when a world is loaded and updated when a
level is appended. A level's links depend only on the older chunks C_i's frustum holds
(`seen_by`): `link_step` decides them at append time from those alone, as a `StepLinks`
that a world file stores with the step (saves' LINK record), so opening a world need not
read every payload (docs/streaming.md).
Does not own: the alpha formula (`engine.modulation`), rendering, or resolving stored links
on a path (`engine.catalog`).

Appending level i (camera C_i) over the world:
- coverage: the new splats are projected into C_i; the pixels they cover (closed to fill
  sampling gaps) with their front depth and native scale form the coverage maps. This stands
  in for the new level's rendered alpha mask: pixel-aligned splats cover about one pixel of
  C_i each, so their centres on a grid of their own footprint size tile the patch.
- older splats whose projection lands on a covered pixel, in front of the camera and within a
  relative depth tolerance of the new surface there, are "inside the region": their `s_child`
  becomes the new level's native scale at that pixel (if the new level is finer there). An
  older splat that already has a finer child keeps the coarser of the two children, which is
  the adjacent level. A coarse splat outside the patch keeps `s_child = 0` and never fades.
- the border: an older splat fades only where the new level covers its whole footprint
  (`BORDER_SIGMAS` std-devs around its centre, `CoveredInterior`). One whose footprint reaches
  past the edge of the new level stays whole at every finer scale, so the edge never shows the
  background through (a line of half-transparent pixels along it); the new level's image
  fades into the parent's look over its own border margin (the generator's harmonize stage),
  so there the two draw the same picture.
- new splats take as `s_parent` the native scale of the finest older level whose own coverage
  in C_i holds their pixel, at about their depth, and is coarser than they are; where no older
  surface is seen, the median of the parents found (they are still finer content), or +inf if
  nothing is seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from engine.camera import Camera
from engine.modulation import visible_band
from engine.splats import SplatChunk

DEPTH_TOLERANCE = 0.05  # relative depth difference still counted as "the same surface"
BORDER_SIGMAS = 2.0  # an older splat fades only where the new level covers this far around it
MAX_BORDER_CELLS = 256  # footprints wider than this many coverage cells count as this wide


@dataclass
class LodLinks:
    s_parent: np.ndarray  # [N] float32, inf where no coarser level
    s_child: np.ndarray  # [N] float32, 0 where no finer level

    @classmethod
    def root(cls, n: int) -> "LodLinks":
        return cls(np.full(n, np.inf, np.float32), np.zeros(n, np.float32))


@dataclass
class LodIndex:
    """chunk id -> per-splat links, plus the camera and level of each appended level."""

    links: dict[int, LodLinks] = field(default_factory=dict)

    def band(self, chunk_id: int, chunk: SplatChunk) -> tuple[float, float]:
        """(lo, hi) s_render interval outside which no splat of the chunk has alpha > cull."""
        if len(chunk) == 0:
            return (np.inf, 0.0)
        links = self.links[chunk_id]
        lo, hi = visible_band(chunk.s_native, links.s_parent, links.s_child)
        return float(lo.min()), float(hi.max())


@dataclass(frozen=True)
class _Maps:
    """Per-pixel maps of a set of splats seen from one camera (grid of `cell` pixels)."""

    cell: float
    shape: tuple[int, int]
    depth: np.ndarray  # [H, W] front depth, inf where empty
    s_native: np.ndarray  # [H, W] native scale at the front, nan where empty
    covered: np.ndarray  # [H, W] bool after closing


def _pixels(camera: Camera, points: np.ndarray, cell: float, shape: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat grid index [N], depth [N] and an in-view mask [N] for world points."""
    uv, z = camera.project(points)
    with np.errstate(invalid="ignore"):
        ij = np.floor(uv / cell)
        ok = (z > camera.near) & np.isfinite(ij).all(axis=1)
        ok &= (ij[:, 0] >= 0) & (ij[:, 0] < shape[1]) & (ij[:, 1] >= 0) & (ij[:, 1] < shape[0])
    flat = np.zeros(len(z), np.int64)
    flat[ok] = ij[ok, 1].astype(np.int64) * shape[1] + ij[ok, 0].astype(np.int64)
    return flat, z, ok


def _close(mask: np.ndarray) -> np.ndarray:
    """Binary closing with a 3x3 square: fills one-cell sampling gaps, keeps the outline."""
    def dilate(m: np.ndarray) -> np.ndarray:
        p = np.pad(m, 1)
        out = np.zeros_like(m)
        for dy in range(3):
            for dx in range(3):
                out |= p[dy:dy + m.shape[0], dx:dx + m.shape[1]]
        return out

    return ~dilate(~dilate(mask))


def coverage_maps(camera: Camera, chunks: Sequence[SplatChunk]) -> _Maps:
    """Coverage, front depth and native scale of `chunks` as seen from `camera`."""
    pts = np.concatenate([c.world_positions() for c in chunks])
    s_nat = np.concatenate([c.s_native for c in chunks]).astype(np.float64)
    sigma = np.exp(np.concatenate([c.log_scales.astype(np.float64).mean(axis=1) for c in chunks]))
    uv, z = camera.project(pts)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_px = sigma * camera.focal / z
        # the cell follows the splats inside the image only, so the maps of the chunks in
        # C_i's frustum (`seen_by`) are the maps of the whole world
        front = ((z > camera.near) & np.isfinite(sigma_px) & (uv[:, 0] >= 0)
                 & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height))
    cell = float(np.clip(np.median(sigma_px[front]), 1.0, 64.0)) if front.any() else 1.0
    shape = (int(np.ceil(camera.height / cell)), int(np.ceil(camera.width / cell)))
    flat, z, ok = _pixels(camera, pts, cell, shape)
    depth = np.full(shape[0] * shape[1], np.inf)
    np.minimum.at(depth, flat[ok], z[ok])
    # native scale of the front-most splat per cell: among splats within tolerance of the front
    near_front = ok.copy()
    near_front[ok] = z[ok] <= depth[flat[ok]] * (1 + DEPTH_TOLERANCE)
    s_map = np.full(shape[0] * shape[1], np.inf)
    np.minimum.at(s_map, flat[near_front], s_nat[near_front])
    hit = np.isfinite(depth).reshape(shape)
    covered = _close(hit)
    depth = depth.reshape(shape)
    s_map = np.where(np.isfinite(s_map), s_map, np.nan).reshape(shape)
    # cells filled by the closing take the values of a covered neighbour
    depth, s_map = _fill_from_neighbours(depth, s_map, covered & ~hit)
    return _Maps(cell, shape, depth, s_map, covered)


def _fill_from_neighbours(depth: np.ndarray, s_map: np.ndarray, holes: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    if not holes.any():
        return depth, s_map
    near, s = neighbour_extreme(depth, s_map, deepest=False)
    return np.where(holes, near, depth), np.where(holes, s, s_map)


def neighbour_extreme(depth: np.ndarray,  # [H, W]
                      carried: np.ndarray,  # [H, W] or [H, W, C], what goes with each depth
                      deepest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the nearest (or the deepest) depth of its 3x3 neighbourhood, itself
    included, and the `carried` values of the pixel it came from; outside the image counts
    as nothing (never chosen). Ties keep the pixel's own, then the first in row-major order.
    The one neighbourhood step of the coverage maps' filling here and of the strip of far
    surface the generator carries under depth edges (`generation.splat_opt.pixel_init`)."""
    H, W = depth.shape
    sign = 1.0 if deepest else -1.0
    key = sign * np.asarray(depth, np.float64)
    pk = np.pad(key, 1, constant_values=-np.inf)
    pc = np.pad(carried, ((1, 1), (1, 1)) + ((0, 0),) * (carried.ndim - 2))
    best, out = key.copy(), carried.copy()
    for dy in range(3):
        for dx in range(3):
            cand = pk[dy:dy + H, dx:dx + W]
            take = cand > best
            best = np.where(take, cand, best)
            out = np.where(take.reshape(take.shape + (1,) * (carried.ndim - 2)),
                           pc[dy:dy + H, dx:dx + W], out)
    return sign * best, out


def _erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion with a 3x3 square; outside the image counts as uncovered."""
    out = mask.copy()
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[:, 0] = out[:, -1] = False
    rows = out.copy()
    out[1:] &= rows[:-1]
    out[:-1] &= rows[1:]
    out[0] = out[-1] = False
    return out


class CoveredInterior:
    """How deep inside a coverage map each cell is: `depth[c]` = the number of 3x3 erosions
    cell c survives (0 where uncovered, 1 next to an uncovered cell or the image edge), i.e.
    its Chebyshev distance in cells to the nearest uncovered cell. Erodes lazily, only as
    deep as the footprints asked about."""

    def __init__(self, covered: np.ndarray) -> None:  # [H, W] bool
        self._mask = np.asarray(covered, bool).copy()
        self.depth = np.zeros(self._mask.shape, np.int32)  # [H, W]
        self._k = 0  # depth resolved so far

    def _resolve(self, k: int) -> None:
        while self._k < k and self._mask.any():
            self._k += 1
            self.depth[self._mask] = self._k
            self._mask = _erode(self._mask)
        if not self._mask.any():
            self._k = max(self._k, k)

    def holds(self, flat: np.ndarray, radius_cells: np.ndarray) -> np.ndarray:
        """[M] bool: does the coverage reach `radius_cells` [M] around a centre in cell
        `flat` [M] (flat indices)? The centre may sit anywhere in its cell, so the nearest
        uncovered cell must be at least radius + 1/2 cells away."""
        radius = np.minimum(np.asarray(radius_cells, np.float64), MAX_BORDER_CELLS)
        need = np.maximum(np.ceil(radius + 0.5), 1).astype(np.int64)
        if len(need):
            self._resolve(int(need.max()))
        return self.depth.reshape(-1)[flat] >= need


def footprint_cells(camera: Camera, chunk: SplatChunk, rows: np.ndarray, z: np.ndarray,
                    cell: float) -> np.ndarray:
    """[M] radius in coverage cells of `BORDER_SIGMAS` std-devs (the largest axis) of the
    splats `rows` of `chunk`, at camera depths `z` [M]."""
    sigma = np.exp(chunk.log_scales[rows].astype(np.float64).max(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = BORDER_SIGMAS * sigma * camera.focal / (z * cell)
    return np.where(np.isfinite(r), r, MAX_BORDER_CELLS)


def link_level(
    index: LodIndex,
    camera: Camera,  # C_i, the camera that created the new level
    new_chunks: Mapping[int, SplatChunk],
    older_chunks: Mapping[int, SplatChunk],
) -> None:
    """Add the new level's links to `index` and update older splats' `s_child` (in the index,
    never in the chunks). `older_chunks` must already be in the index."""
    if not new_chunks:
        return
    new_maps = coverage_maps(camera, list(new_chunks.values()))
    cov_depth = new_maps.depth.reshape(-1)
    cov_s = new_maps.s_native.reshape(-1)
    covered = new_maps.covered.reshape(-1)
    interior = CoveredInterior(new_maps.covered)

    # children: older splats on the surface the new level covers, coarser than it there
    for cid, chunk in older_chunks.items():
        if len(chunk) == 0:
            continue
        flat, z, ok = _pixels(camera, chunk.world_positions(), new_maps.cell, new_maps.shape)
        rows = np.flatnonzero(ok)
        f = flat[rows]
        front_d = cov_depth[f]
        on_surface = covered[f] & (np.abs(z[rows] - front_d) <= DEPTH_TOLERANCE * front_d)
        # the border: only where the new level covers the splat's whole footprint
        radius = footprint_cells(camera, chunk, rows, z[rows], new_maps.cell)
        on_surface &= interior.holds(f, radius)
        finer_here = on_surface & (cov_s[f] < chunk.s_native[rows])
        if finer_here.any():
            links = index.links[cid]
            r = rows[finer_here]
            s_child = links.s_child.copy()
            s_child[r] = np.maximum(s_child[r], cov_s[f[finer_here]].astype(np.float32))
            index.links[cid] = LodLinks(links.s_parent, s_child)

    # parents: per older level, finest first, the level's own coverage of the new surface
    # (only the splats still without a parent are projected: a deep world's coarse levels
    # are seldom reached)
    new_pts = {cid: c.world_positions() for cid, c in new_chunks.items()}
    s_parent = {cid: np.full(len(c), np.inf) for cid, c in new_chunks.items()}
    todo = {cid: np.arange(len(c)) for cid, c in new_chunks.items()}
    for group in _levels_finest_first(older_chunks):
        if not any(len(rows) for rows in todo.values()):
            break
        maps = coverage_maps(camera, group)
        depth, s_map, cov = maps.depth.reshape(-1), maps.s_native.reshape(-1), maps.covered.reshape(-1)
        for cid, chunk in new_chunks.items():
            rows = todo[cid]
            flat, z, ok = _pixels(camera, new_pts[cid][rows], maps.cell, maps.shape)
            k = np.flatnonzero(ok)
            r, f = rows[k], flat[k]
            hit = cov[f] & (np.abs(z[k] - depth[f]) <= DEPTH_TOLERANCE * depth[f])
            hit &= s_map[f] > chunk.s_native[r]
            s_parent[cid][r[hit]] = s_map[f[hit]]
            todo[cid] = rows[np.isinf(s_parent[cid][rows])]
    found = np.concatenate([v[np.isfinite(v)] for v in s_parent.values()])
    fallback = float(np.median(found)) if len(found) else np.inf
    for cid, chunk in new_chunks.items():
        sp = np.where(np.isfinite(s_parent[cid]), s_parent[cid], fallback)
        # a parent must be coarser than the splat; otherwise the link is meaningless
        sp = np.where(sp > chunk.s_native, sp, np.inf)
        index.links[cid] = LodLinks(sp.astype(np.float32), np.zeros(len(chunk), np.float32))


def _levels_finest_first(chunks: Mapping[int, SplatChunk]) -> list[list[SplatChunk]]:
    by_level: dict[int, list[SplatChunk]] = {}
    for chunk in chunks.values():
        if len(chunk):
            by_level.setdefault(chunk.level, []).append(chunk)
    groups = list(by_level.values())
    groups.sort(key=lambda g: float(np.median(np.concatenate([c.s_native for c in g]))))
    return groups


def build_lod_index(
    levels: Sequence[tuple[Camera | None, Mapping[int, SplatChunk]]],
) -> LodIndex:
    """Rebuild the index from a path of levels, root first: (C_i or None, chunks of level i).

    A level without a camera (an import) and the first level are roots (no parent links).
    Each level is linked from the older chunks its camera sees (`seen_by`), as `link_step`
    links one at append time, so the two agree."""
    index = LodIndex()
    older: dict[int, SplatChunk] = {}
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, (camera, chunks) in enumerate(levels):
        if i == 0 or camera is None:
            for cid, chunk in chunks.items():
                index.links[cid] = LodLinks.root(len(chunk))
        else:
            seen = seen_by(camera, boxes)
            link_level(index, camera, chunks, {cid: older[cid] for cid in seen})
        older.update(chunks)
        boxes.update((cid, chunk.bounds()) for cid, chunk in chunks.items())
    return index


# ---- links decided at append time (persisted, so opening never recomputes them) -------------
@dataclass(frozen=True, eq=False)
class StepLinks:
    """What appending one level decided: the links of its own chunks (`parents`: s_parent
    [N] float32, None for a root level: all +inf; their s_child is 0 until a finer level
    comes) and the whole new s_child [N] float32 of each older chunk it covers, as it is on
    the path to this step (`children`). `bands` holds the LoD band (`LodIndex.band`) of
    every chunk named, with these links. A world file keeps one per step (saves' LINK
    record): opening a world then reads the links of the chunks it shows, instead of
    recomputing them from every payload."""

    parents: Mapping[int, np.ndarray | None]
    children: Mapping[int, np.ndarray]
    bands: Mapping[int, tuple[float, float]]

    def links_of(self, chunk_id: int, count: int) -> LodLinks:
        """The links a chunk of this step was made with (no finer level yet)."""
        s_parent = self.parents[chunk_id]
        if s_parent is None:
            return LodLinks.root(count)
        return LodLinks(s_parent, np.zeros(count, np.float32))


def seen_by(camera: Camera, boxes: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """Ids of the chunks whose AABB ((lo, hi) [3] each, `SplatChunk.bounds`) may hold a splat
    in front of `camera` and inside its image: the only older chunks linking a level made by
    `camera` reads (`link_level` projects into the image alone). Conservative."""
    if not boxes:
        return []
    ids = list(boxes)
    lo = np.stack([boxes[c][0] for c in ids])
    hi = np.stack([boxes[c][1] for c in ids])
    sel = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], bool)  # [8, 3]
    corners = np.where(sel[None], hi[:, None, :], lo[:, None, :])  # [M, 8, 3]
    cam = camera.points_to_camera(corners.reshape(-1, 3)).reshape(-1, 8, 3)
    planes = camera.frustum_planes_camera()[:5]  # the four sides and near; no far plane
    outside = ((cam @ planes[:, :3].T + planes[:, 3]) < 0).all(axis=1).any(axis=1)
    return [cid for cid, out in zip(ids, outside) if not out]


def link_step(camera: Camera | None, new_chunks: Mapping[int, SplatChunk],
              older: Mapping[int, tuple[SplatChunk, LodLinks]]) -> StepLinks:
    """The links appending `new_chunks` (grown at `camera`, None for an import) decides.
    `older`: the chunks on the path to the new step's parent that the camera sees (`seen_by`;
    more are harmless, fewer would miss links) with their links on that path. A level with no
    camera or nothing older is a root. Pure: the given links are not changed."""
    if camera is None or not any(len(c) for c, _ in older.values()):
        return StepLinks({cid: None for cid in new_chunks}, {},
                         {cid: LodIndex({cid: LodLinks.root(len(c))}).band(cid, c)
                          for cid, c in new_chunks.items()})
    index = LodIndex({cid: links for cid, (_, links) in older.items()})
    link_level(index, camera, new_chunks, {cid: chunk for cid, (chunk, _) in older.items()})
    parents: dict[int, np.ndarray | None] = {}
    for cid in new_chunks:
        s_parent = index.links[cid].s_parent
        parents[cid] = None if np.isinf(s_parent).all() else s_parent
    children = {cid: index.links[cid].s_child for cid, (_, links) in older.items()
                if index.links[cid] is not links}
    bands = {cid: index.band(cid, new_chunks[cid]) for cid in new_chunks}
    bands.update((cid, index.band(cid, older[cid][0])) for cid in children)
    return StepLinks(parents, children, bands)
