"""What a camera can see, decided on the CPU: the first half of the streaming renderer.

Owns:
- `ChunkTable` / `visible_chunks`: every chunk entity's `ChunkBounds` as numpy arrays, and the
  chunk-level visible set for a camera (AABB in the frustum AND the chunk's LoD band overlapping
  the s_render range the chunk can take in view), computed for all chunks at once;
- `ChunkLayout` (from a chunk alone): the renderer's row order of a chunk's splats (Morton
  order, so each run of consecutive rows is spatially compact: an arena page of `PAGE_SPLATS`
  rows, a cull group of `GROUP_SPLATS`), positions relative to the chunk's own centre, 3-sigma
  radii, and a bounding sphere per cull group;
- `ChunkBands` (from a chunk and its LoD links): per splat, the open interval of
  x = log s_render where it can show (alpha > ALPHA_CULL and opacity * alpha >= 1/255: the
  closed-form inverse of the modulation ramps, like `engine.modulation.visible_band`), and its
  hull per cull group;
- `build_draw_list`: group-level then splat-level culling of the visible resident chunks, and
  the back-to-front sort on 16-bit log-depth keys (the keys of
  `engine.render.prepare.depth_sort_keys`, in float32, with a stable radix argsort), giving
  the arena rows the GPU draws, in order. Groups whose bounding sphere is inside the frustum
  and the band of every splat cost one dot product per splat (the depth); only groups on
  an edge get the per-splat tests.
Does not own: GPU residency (`engine.render.residency`), drawing (`engine.render.streaming`),
the alpha formula (`engine.modulation`).

Exactness: a list built with `Guard()` keeps exactly the splats `engine.render.prepare`
keeps (up to float32 rounding at a threshold: a 1e-5 log-scale epsilon makes the CPU side
the superset; the GPU applies the exact rules). A list built with a guard also keeps every
splat that could become visible while the camera stays within the guard (turns by at most
`angle`, moves or zooms by at most `log_scale` in relative terms), so it can be reused for
such cameras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from engine.camera import Camera, aabb_corners
from engine.lod import LodLinks
from engine.modulation import ALPHA_CULL, chunk_render_scale_range, chunks_possibly_visible
from engine.render.prepare import MIN_FRAGMENT_ALPHA, SORT_KEY_MAX, margin_per_depth
from engine.render.reference import LOW_PASS_PX2
from engine.scene import ChunkBounds, ChunkHandle
from engine.splats import SplatChunk
from engine.world import World

PAGE_BITS = 10
PAGE_SPLATS = 1 << PAGE_BITS  # rows per page: the unit of GPU allocation
GROUP_SPLATS = 128  # rows per cull group: the unit of CPU culling (bounding sphere, band hull)
BAND_EPS = 1e-5  # log-scale slack so float32 rounding never culls what the GPU would draw
FOOTPRINT_SIGMAS = 3.0


# ---- chunk level --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ChunkTable:
    """The chunk entities of a world, row-aligned (world query order: oldest level first)."""

    chunk_id: np.ndarray  # [M] int64
    lo: np.ndarray  # [M, 3] float64 world AABB
    hi: np.ndarray  # [M, 3] float64
    count: np.ndarray  # [M] int64 splats
    band_lo: np.ndarray  # [M] float64 s_render below which nothing of the chunk shows
    band_hi: np.ndarray  # [M] float64 s_render above which nothing of the chunk shows

    def __len__(self) -> int:
        return len(self.chunk_id)


def chunk_table(world: World) -> ChunkTable:
    rows = [(h.chunk_id, b) for _, (h, b) in world.query(ChunkHandle, ChunkBounds)]
    m = len(rows)
    lo = np.zeros((m, 3))
    hi = np.zeros((m, 3))
    for i, (_, b) in enumerate(rows):
        lo[i], hi[i] = b.lo, b.hi
    return ChunkTable(
        chunk_id=np.array([cid for cid, _ in rows], np.int64),
        lo=lo, hi=hi,
        count=np.array([b.count for _, b in rows], np.int64),
        band_lo=np.array([b.band_lo for _, b in rows], np.float64),
        band_hi=np.array([b.band_hi for _, b in rows], np.float64))


def visible_chunks(table: ChunkTable, camera: Camera) -> np.ndarray:
    """[M] bool: AABB in the frustum and LoD band overlapping the chunk's s_render range."""
    if len(table) == 0:
        return np.zeros(0, bool)
    in_frustum = aabbs_in_frustum(camera, table.lo, table.hi)
    render_lo, render_hi = chunk_render_scale_range(camera, table.lo, table.hi)
    in_band = chunks_possibly_visible(render_lo, render_hi, table.band_lo, table.band_hi)
    return in_frustum & in_band & (table.count > 0)


def aabbs_in_frustum(camera: Camera, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[M] bool: may each AABB ([M, 3] lo / hi) reach the image? Like
    `Camera.aabbs_in_frustum`, with the side planes widened by FRUSTUM_MARGIN_PX pixels at
    every depth (the low-pass dilation lets a 3-sigma box just outside the frustum still
    touch the image; `prepare` keeps such splats). A widened side is still a half-space
    through the eye, n.p + m p_z >= 0, so "all 8 corners outside one plane" stays exact."""
    corners = aabb_corners(lo, hi)  # [M, 8, 3]
    cam = camera.points_to_camera(corners.reshape(-1, 3)).reshape(-1, 8, 3)
    planes = camera.frustum_planes_camera()  # [6, 4]
    planes[:4, 2] += margin_per_depth(camera)
    dist = cam @ planes[:, :3].T + planes[:, 3]  # [M, 8, 6]
    return ~(dist < 0).all(axis=1).any(axis=1)


# ---- per-chunk derived arrays -------------------------------------------------------------
def _spread_bits(v: np.ndarray) -> np.ndarray:
    """10-bit integers -> the same bits at every third position (Morton interleave)."""
    v = v.astype(np.uint64)
    v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x09249249)
    return v


def morton_order(points: np.ndarray) -> np.ndarray:
    """[N, 3] -> [N] permutation along a Z-order curve over the points' bounding cube."""
    return _morton_order_T(np.ascontiguousarray(np.asarray(points, np.float64).T))


def _morton_order_T(pT: np.ndarray) -> np.ndarray:
    """Same, for coordinates stored [3, N] (fast reductions along contiguous rows)."""
    if pT.shape[1] == 0:
        return np.zeros(0, np.int64)
    lo = pT.min(axis=1)
    span = float((pT.max(axis=1) - lo).max())
    scale = 1023.0 / span if span > 0 else 0.0
    q = np.clip((pT - lo[:, None]) * scale, 0, 1023).astype(np.uint64)  # [3, N]
    code = (_spread_bits(q[0]) | (_spread_bits(q[1]) << np.uint64(1))
            | (_spread_bits(q[2]) << np.uint64(2)))
    return np.argsort(code, kind="stable")


def _group_starts(n: int) -> np.ndarray:
    return np.arange(0, n, GROUP_SPLATS, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ChunkLayout:
    """How the renderer stores one chunk: rows in Morton order, relative to its own centre."""

    chunk: SplatChunk  # the source (identity: a different object is a different chunk)
    order: np.ndarray  # [N] int32: layout row -> chunk row (held for every resident chunk)
    centre: np.ndarray  # [3] float64 world point the local positions are relative to
    local: np.ndarray  # [N, 3] float32 splat centre - centre (world axes)
    radius: np.ndarray  # [N] float32 3 sigma of the largest axis (world units)
    group_centre: np.ndarray  # [G, 3] float32 bounding sphere of each cull group (local frame)
    group_radius: np.ndarray  # [G] float32 (splat radii included)
    group_splat_radius: np.ndarray  # [G] float32 largest splat radius in the group

    @property
    def count(self) -> int:
        return len(self.order)

    @property
    def groups(self) -> int:
        return len(self.group_radius)


def chunk_layout(chunk: SplatChunk) -> ChunkLayout:
    n = len(chunk)
    # coordinates as [3, N] rows: numpy reduces contiguous rows much faster than columns
    worldT = chunk.origin[:, None] + chunk.positions.T.astype(np.float64, order="C")
    order = _morton_order_T(worldT)
    worldT = worldT[:, order]
    centre = 0.5 * (worldT.min(axis=1) + worldT.max(axis=1)) if n else chunk.origin.copy()
    localT = worldT - centre[:, None]
    ls = chunk.log_scales[order]
    largest = np.maximum(np.maximum(ls[:, 0], ls[:, 1]), ls[:, 2])
    radius64 = FOOTPRINT_SIGMAS * np.exp(largest.astype(np.float64))
    starts = _group_starts(n)
    if n:
        lo = np.minimum.reduceat(localT, starts, axis=1)
        hi = np.maximum.reduceat(localT, starts, axis=1)
        group_centre = 0.5 * (lo + hi)  # [3, G]
        d = localT - np.repeat(group_centre, np.diff(np.append(starts, n)), axis=1)
        dist = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) + radius64
        group_radius = np.maximum.reduceat(dist, starts) * (1 + 1e-6)  # float32 rounding
        group_splat_radius = np.maximum.reduceat(radius64, starts)
    else:
        group_centre = np.zeros((3, 0))
        group_radius = group_splat_radius = np.zeros(0)
    return ChunkLayout(chunk, order.astype(np.int32), centre,
                       np.ascontiguousarray(localT.T, np.float32),
                       radius64.astype(np.float32), np.ascontiguousarray(group_centre.T, np.float32),
                       group_radius.astype(np.float32), group_splat_radius.astype(np.float32))


@dataclass(frozen=True, eq=False)
class ChunkBands:
    """Where (in x = log s_render) each splat of a layout can show, and per cull group."""

    links: LodLinks | None  # the source (identity)
    x_lo: np.ndarray  # [N] float32, -inf: no lower bound
    x_hi: np.ndarray  # [N] float32, +inf: no upper bound; x_lo >= x_hi: never shows
    group_x_lo: np.ndarray  # [G] float32 hull: some splat of the group shows above this
    group_x_hi: np.ndarray  # [G] float32 hull: some splat of the group shows below this
    group_all_lo: np.ndarray  # [G] float32 every splat of the group shows above this...
    group_all_hi: np.ndarray  # [G] float32 ...and below this


def chunk_bands(layout: ChunkLayout, links: LodLinks | None, modulation: bool = True
                ) -> ChunkBands:
    """alpha > t with t = max(ALPHA_CULL, 1 / (255 opacity)) on the modulation ramps:
    rising (x - a) / (n - a) > t  <=>  x > a + t (n - a); falling likewise from b."""
    chunk = layout.chunk
    order = layout.order
    n_rows = layout.count
    with np.errstate(over="ignore"):
        opacity = 1.0 / (1.0 + np.exp(-chunk.opacity_logits[order].astype(np.float64)))
    t = np.maximum(ALPHA_CULL, MIN_FRAGMENT_ALPHA / opacity)  # [N]
    never = t >= 1.0  # too faint to give a fragment even at alpha = 1
    if modulation and links is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            # float32 logs: the same numbers the GPU's link columns hold
            n = np.log(chunk.s_native[order].astype(np.float32)).astype(np.float64)
            b = np.log(links.s_parent[order].astype(np.float32)).astype(np.float64)
            a = np.log(links.s_child[order].astype(np.float32)).astype(np.float64)
        has_parent = np.isfinite(b) & (b > n)
        has_child = np.isfinite(a) & (a < n)
        with np.errstate(invalid="ignore"):
            x_lo = np.where(has_child, a + t * (n - a), -np.inf)
            x_hi = np.where(has_parent, b - t * (b - n), np.inf)
    else:
        x_lo = np.full(n_rows, -np.inf)
        x_hi = np.full(n_rows, np.inf)
    x_lo = np.where(never, np.inf, x_lo - BAND_EPS).astype(np.float32)
    x_hi = np.where(never, -np.inf, x_hi + BAND_EPS).astype(np.float32)
    starts = _group_starts(n_rows)
    if n_rows:
        group_lo = np.minimum.reduceat(x_lo, starts)
        group_hi = np.maximum.reduceat(x_hi, starts)
        all_lo = np.maximum.reduceat(x_lo, starts)
        all_hi = np.minimum.reduceat(x_hi, starts)
    else:
        group_lo = group_hi = all_lo = all_hi = np.zeros(0, np.float32)
    return ChunkBands(links, x_lo, x_hi, group_lo, group_hi, all_lo, all_hi)


# ---- the view and its guard ---------------------------------------------------------------
@dataclass(frozen=True)
class Guard:
    """How far the camera may go from the one a list was built for and still use it."""

    angle: float = 0.0  # radians of rotation (or of direction change from translation)
    log_scale: float = 0.0  # relative change of depth / focal length (log units)


@dataclass(frozen=True, eq=False)
class View:
    """Per-frame camera quantities for culling, in float32 where per-splat work happens."""

    camera: Camera
    guard: Guard
    R_world_camera: np.ndarray  # [3, 3] float64: p_cam = (p_world - eye) @ R
    R32: np.ndarray  # [3, 3] float32
    planes_T: np.ndarray  # [3, 4] float32 unit normals of the four side planes
    RP32: np.ndarray  # [3, 4] float32 R @ planes_T: world-axis offsets -> side distances
    margin_per_depth: float  # frustum slack per unit depth (pixel margin + guard angle)
    log_focal: float
    max_point_px: float  # camera pixels: footprints wider than this take the quad path
    tan_x: float  # largest |x / z| of a point the (widened) frustum keeps
    tan_y: float

    @classmethod
    def of(cls, camera: Camera, guard: Guard = Guard(), max_point_px: float = math.inf
           ) -> "View":
        R = np.ascontiguousarray(camera.T_world_camera[:3, :3])
        half_fov_tan = max(camera.cx / camera.fx, (camera.width - camera.cx) / camera.fx,
                           camera.cy / camera.fy, (camera.height - camera.cy) / camera.fy)
        margin = (margin_per_depth(camera) + math.tan(guard.angle)
                  + guard.log_scale * (1.0 + half_fov_tan ** 2))
        planes = camera.frustum_planes_camera()[:4, :3]
        tan_x = max(camera.cx, camera.width - camera.cx) / camera.fx + 2 * margin
        tan_y = max(camera.cy, camera.height - camera.cy) / camera.fy + 2 * margin
        return cls(camera, guard, R, R.astype(np.float32),
                   np.ascontiguousarray(planes.T, dtype=np.float32),
                   np.ascontiguousarray(R @ planes.T, dtype=np.float32), margin,
                   math.log(camera.focal), max_point_px, tan_x, tan_y)

    def chunk_origin(self, centre: np.ndarray) -> np.ndarray:
        """Camera-space position of a chunk centre, in float64 (the precise part)."""
        return (np.asarray(centre, np.float64) - self.camera.T_world_camera[:3, 3]) @ self.R_world_camera


# ---- culling and sorting ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DrawItem:
    """A resident chunk offered to the cull: its layout, bands and arena rows."""

    chunk_id: int
    layout: ChunkLayout
    bands: ChunkBands
    gpu_rows: np.ndarray  # [N] uint32 arena row of each layout row
    links: LodLinks | None


def _classify_groups(view: View, items: Sequence[DrawItem], origins32: Sequence[np.ndarray]
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per item: ([G] bool some splat may survive, [G] bool every splat survives and none is
    big, [G] bool some splat may be big).

    Groups are tested by bounding sphere: outside one side plane, before near or beyond far,
    or with a scale range missing every splat's band -> culled whole; inside everything
    with room to spare -> kept whole, and only their depths are computed. The groups of all
    items are tested together (a frame's items hold a few thousand groups: one pass of array
    operations instead of one per item)."""
    if not items:
        return []
    cam = view.camera
    g = view.guard.log_scale
    per_item = [it.layout.groups for it in items]
    cat = np.concatenate
    centre = (cat([it.layout.group_centre for it in items]) @ view.R32
              + np.repeat(np.stack(origins32), per_item, axis=0))  # [G, 3]
    r = cat([it.layout.group_radius for it in items])
    z = centre[:, 2]
    z_lo, z_hi = z - r, z + r
    some = (z_hi * (1 + g) > cam.near) & (z_lo * (1 - g) < cam.far)
    every = (z_lo * (1 - g) > cam.near) & (z_hi * (1 + g) < cam.far)
    side = centre @ view.planes_T  # [G, 4]
    slack = r + view.margin_per_depth * np.maximum(z_hi, 0.0)
    for k in range(4):
        some &= side[:, k] >= -slack
        every &= side[:, k] >= r
    z_lo_pos = np.maximum(z_lo, np.float32(cam.near * 1e-3))
    with np.errstate(divide="ignore", invalid="ignore"):
        x_lo = np.log(z_lo_pos) - np.float32(view.log_focal)
        x_hi = np.log(np.maximum(z_hi, z_lo_pos)) - np.float32(view.log_focal)
    some &= ((x_hi + g > cat([it.bands.group_x_lo for it in items]))
             & (x_lo - g < cat([it.bands.group_x_hi for it in items])))
    every &= ((x_lo - g > cat([it.bands.group_all_lo for it in items]))
              & (x_hi + g < cat([it.bands.group_all_hi for it in items])))
    may_be_big = np.zeros(len(some), bool)
    if math.isfinite(view.max_point_px):
        # the footprint bound of `_big_footprints` with the group's worst splat: largest
        # sigma, nearest depth, centres inside the frustum widened by what the side test
        # keeps (|x / z| <= tan_x plus the splat radius over the depth, along the plane's
        # normal; same for y); the largest eigenvalue of J J^T grows with each entry, so
        # bounds give a bound
        splat_radius = cat([it.layout.group_splat_radius for it in items])
        sigma = splat_radius / FOOTPRINT_SIGMAS
        inv_z = 1.0 / np.maximum(z_lo, np.float32(cam.near))
        reach = splat_radius * inv_z
        jj = _largest_jjt_eigenvalue(cam, inv_z,
                                     view.tan_x + reach * math.sqrt(1.0 + view.tan_x ** 2),
                                     view.tan_y + reach * math.sqrt(1.0 + view.tan_y ** 2))
        half = FOOTPRINT_SIGMAS * np.sqrt(sigma * sigma * jj + LOW_PASS_PX2)
        half *= 1.0 + 4.0 * (view.guard.angle + view.guard.log_scale)
        may_be_big = 2.0 * (half + 1.0) + 2.0 > view.max_point_px
        every &= ~may_be_big
    every &= some
    cuts = np.cumsum(per_item)[:-1]
    return list(zip(np.split(some, cuts), np.split(every, cuts), np.split(may_be_big, cuts)))


def _group_lengths(layout: ChunkLayout, groups: np.ndarray) -> np.ndarray:
    """Rows in each of the given cull groups (the last group of a chunk may be short)."""
    starts = groups * GROUP_SPLATS
    return np.minimum(starts + GROUP_SPLATS, layout.count) - starts


def _group_rows(layout: ChunkLayout, groups: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rows of the given cull groups (ascending groups -> ascending rows)."""
    starts = groups * GROUP_SPLATS
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


def cull_item(view: View, item: DrawItem, origin32: np.ndarray,
              groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None
              ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(layout rows [K] or None for all, depth [K] float32, big [K] bool) of one chunk's
    visible splats, rows ascending. `origin32`: the chunk centre in camera space; `groups`:
    the item's `_classify_groups` result, or None to keep every splat (`build_draw_list`
    with `cull=False`; depths are still needed for the sort)."""
    layout, bands = item.layout, item.bands
    cam = view.camera
    if groups is None:
        p = layout.local @ view.R32 + origin32
        return None, np.ascontiguousarray(p[:, 2]), _big_footprints(view, p, layout.radius)
    some, every, may_be_big = groups
    if not some.any():
        return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool)
    kept = np.flatnonzero(some)  # the kept groups' numbers
    whole = len(kept) == layout.groups
    lengths = _group_lengths(layout, kept)
    rows = None if whole else _group_rows(layout, kept, lengths)
    # (np.take: row gathers of [N, 3] arrays several times faster than fancy indexing)
    local = layout.local if whole else np.take(layout.local, rows, axis=0)
    z = local @ view.R32[:, 2] + origin32[2]  # [K] every kept group needs depths
    big = np.zeros(len(z), bool)
    partial = some & ~every
    if not partial.any():
        return rows, z, big
    # the splats of partial groups get the full per-splat test
    at = np.flatnonzero(np.repeat(partial[kept], lengths))  # positions in `rows` / `z`
    sub_rows = at if whole else rows[at]
    local = np.take(local, at, axis=0)  # [J, 3]
    pz = z[at]
    radius = layout.radius[sub_rows]
    g = view.guard.log_scale
    ok = (pz * (1 + g) > cam.near) & (pz * (1 - g) < cam.far)
    # distances to the side planes straight from the chunk-local offsets (p = local R + o,
    # so p P = local (R P) + o P): no [J, 3] camera-space array
    side = local @ view.RP32 + origin32 @ view.planes_T  # [J, 4]
    slack = radius + view.margin_per_depth * np.abs(pz)
    for k in range(4):
        ok &= side[:, k] >= -slack
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(np.maximum(pz, np.float32(1e-30))) - np.float32(view.log_focal)
    ok &= (x + g > bands.x_lo[sub_rows]) & (x - g < bands.x_hi[sub_rows])
    # per splat only where the group's bound allows a footprint wider than a point, and only
    # for splats that survive (a faded-out coarse splat is often the widest)
    check = np.flatnonzero(np.repeat(may_be_big[kept], lengths)[at] & ok)
    if len(check):
        p = local[check] @ view.R32 + origin32  # [C, 3] camera space
        big[at[check]] = _big_footprints(view, p, radius[check])
    if ok.all():
        return rows, z, big
    keep = np.ones(len(z), bool)
    keep[at] = ok
    sel = np.flatnonzero(keep)
    rows = sel if whole else rows[sel]
    return rows, z[sel], big[sel]


def _largest_jjt_eigenvalue(cam: Camera, inv_z, ux, uy):
    """Largest eigenvalue of J J^T for the projection Jacobian J at x / z = ux, y / z = uy
    (J J^T = [[a, c], [c, b]], a = (fx/z)^2 (1 + ux^2), b = (fy/z)^2 (1 + uy^2),
    c = fx fy ux uy / z^2)."""
    inv_z, ux, uy = (np.asarray(v, np.float64) for v in (inv_z, ux, uy))  # no overflow
    a = (cam.fx * inv_z) ** 2 * (1 + ux * ux)
    b = (cam.fy * inv_z) ** 2 * (1 + uy * uy)
    c = cam.fx * cam.fy * inv_z * inv_z * ux * uy
    return 0.5 * (a + b) + np.sqrt(0.25 * (a - b) ** 2 + c * c)


def _big_footprints(view: View, p: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """[K] bool: the part of the 3-sigma footprint inside the image may be wider than the
    largest GL point (the point is that part's bounding square, see points.glsl).

    With sigma_max^2 the largest eigenvalue of the splat's covariance Sigma and J the
    projection Jacobian, every eigenvalue of J W Sigma W^T J^T is at most
    sigma_max^2 lambda_max(J J^T), so the 3-sigma half-width along any axis is at most
    3 sqrt(sigma_max^2 lambda_max(J J^T) + 0.3) around the projected centre."""
    if not math.isfinite(view.max_point_px) or len(p) == 0:
        return np.zeros(len(p), bool)
    cam = view.camera
    ahead = p[:, 2] > cam.near  # the GPU draws nothing of the others
    z = np.where(ahead, p[:, 2], np.float32(1.0))
    inv_z = 1.0 / z
    ux = p[:, 0] * inv_z
    uy = p[:, 1] * inv_z
    sigma = radius / FOOTPRINT_SIGMAS
    jj = _largest_jjt_eigenvalue(cam, inv_z, ux, uy)
    half = FOOTPRINT_SIGMAS * np.sqrt(sigma * sigma * jj + LOW_PASS_PX2)
    half *= 1.0 + 4.0 * (view.guard.angle + view.guard.log_scale)
    half += 1.0  # float32 slack between this and the shader
    u = cam.fx * ux + cam.cx
    v = cam.fy * uy + cam.cy
    wide = np.minimum(u + half, cam.width) - np.maximum(u - half, 0.0)
    tall = np.minimum(v + half, cam.height) - np.maximum(v - half, 0.0)
    return ahead & (np.maximum(wide, tall) + 2.0 > view.max_point_px)


def back_to_front(depth: np.ndarray) -> np.ndarray:
    """[K] positive depths -> [K] order, furthest first: the keys of
    `engine.render.prepare.depth_sort_keys` (16-bit log depth over the set's own range),
    computed in float32, and a stable (radix) argsort, so ties keep the input order."""
    log_z = np.log(depth.astype(np.float32, copy=False))
    lo, hi = float(log_z.min()), float(log_z.max())
    if not hi > lo:
        return np.arange(len(depth))
    # the same float32 operations as prepare's keys, in place (a frame sorts ~10^5 depths)
    np.subtract(log_z, np.float32(lo), out=log_z)
    np.multiply(log_z, np.float32(SORT_KEY_MAX / (hi - lo)), out=log_z)
    np.rint(log_z, out=log_z)
    np.clip(log_z, 0, SORT_KEY_MAX, out=log_z)
    keys = log_z.astype(np.uint16)
    np.subtract(np.uint16(SORT_KEY_MAX), keys, out=keys)  # furthest first
    return np.argsort(keys, kind="stable")


@dataclass(eq=False)
class DrawList:
    """The splats of one frame, back to front. Only `gpu_rows` is materialised in draw
    order eagerly; the other per-splat columns are built on first use."""

    gpu_rows: np.ndarray  # [K] uint32 arena rows, back to front (what the GPU draws)
    order: np.ndarray  # [K] draw position -> position in the unsorted (per-item) columns
    items: tuple[DrawItem, ...]
    camera: Camera  # the camera it was culled and sorted for
    guard: Guard
    considered: int  # splats of the offered chunks (before culling)
    nearest: float  # smallest positive depth (0 when empty)
    any_big: bool
    item_rows: tuple[np.ndarray | None, ...]  # per item: kept layout rows (None: all)
    item_counts: np.ndarray  # [len(items)] int64 kept splats per item
    unsorted_depth: np.ndarray  # [K] float32 camera depth when the list was built
    unsorted_big: np.ndarray  # [K] bool footprint may exceed the largest GL point

    @property
    def count(self) -> int:
        return len(self.gpu_rows)

    @cached_property
    def item(self) -> np.ndarray:  # [K] int32 index into `items`, back to front
        unsorted = np.repeat(np.arange(len(self.items), dtype=np.int32), self.item_counts)
        return unsorted[self.order]

    @cached_property
    def layout_row(self) -> np.ndarray:  # [K] int64 row in the item's layout, back to front
        parts = [np.arange(n, dtype=np.int64) if rows is None else rows
                 for rows, n in zip(self.item_rows, self.item_counts.tolist())]
        unsorted = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return unsorted[self.order]

    @cached_property
    def depth(self) -> np.ndarray:  # [K] float32, back to front
        return self.unsorted_depth[self.order]

    @cached_property
    def big(self) -> np.ndarray:  # [K] bool, back to front: the quad path
        if not self.any_big:
            return np.zeros(self.count, bool)
        return self.unsorted_big[self.order]

    def chunk_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """([K] chunk ids, [K] rows in each chunk's own order), back to front."""
        ids = np.array([it.chunk_id for it in self.items], np.int64)
        rows = np.zeros(self.count, np.int64)
        for i, it in enumerate(self.items):
            sel = self.item == i
            rows[sel] = it.layout.order[self.layout_row[sel]]
        return (ids[self.item] if self.count else np.zeros(0, np.int64)), rows


def build_draw_list(view: View, items: Sequence[DrawItem], cull: bool = True) -> DrawList:
    """Cull every offered chunk for `view` (`cull=False`: keep every splat) and sort the
    survivors back to front.

    Ties keep the offered order (chunks in order, layout rows ascending)."""
    rows_l, depth_l, big_l, gpu_l = [], [], [], []
    counts = np.zeros(len(items), np.int64)
    considered = 0
    origins32 = [view.chunk_origin(it.layout.centre).astype(np.float32) for it in items]
    classified = _classify_groups(view, items, origins32) if cull else [None] * len(items)
    for index, item in enumerate(items):
        considered += item.layout.count
        rows, depth, big = cull_item(view, item, origins32[index], classified[index])
        counts[index] = len(depth)
        rows_l.append(rows)
        if len(depth) == 0:
            continue
        gpu_l.append(item.gpu_rows if rows is None else item.gpu_rows[rows])
        depth_l.append(depth)
        big_l.append(big)
    if not depth_l:
        empty = np.zeros(0)
        return DrawList(empty.astype(np.uint32), empty.astype(np.int64), tuple(items),
                        view.camera, view.guard, considered, 0.0, False, tuple(rows_l), counts,
                        empty.astype(np.float32), empty.astype(bool))
    depth = np.concatenate(depth_l)
    # keys need positive depths: splats behind the near plane (kept by a guard, or by
    # `cull=False`) are sorted as the nearest; the GPU drops them
    near = np.float32(view.camera.near)
    ahead = depth > near
    if ahead.all():  # the usual case: no masked copies
        nearest = float(depth.min())
        order = back_to_front(depth)
    else:
        nearest = float(depth[ahead].min()) if ahead.any() else 0.0
        order = back_to_front(np.maximum(depth, near))
    big = np.concatenate(big_l)
    return DrawList(
        gpu_rows=np.concatenate(gpu_l)[order], order=order, items=tuple(items),
        camera=view.camera, guard=view.guard, considered=considered, nearest=nearest,
        any_big=bool(big.any()), item_rows=tuple(rows_l), item_counts=counts,
        unsorted_depth=depth, unsorted_big=big)
