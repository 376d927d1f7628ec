"""CPU side of a frame: camera-relative packing, culling and depth sorting of splats.

Owns: turning a camera and the visible chunks (each with its LoD links) into one float32
instance array, back to front, that both the GPU path (`engine.render.gl`) and the numpy
oracle (`engine.render.reference`) draw. It is pure numpy and holds no state.
Does not own: which chunks are visible or loaded (streaming), the alpha formula
(`engine.modulation`), the projection to pixels or any drawing.

Precision (docs/design.md "positions stay precise at 10^6x zoom"): for each chunk the float64
`origin - camera position` is formed first, the float32 local offsets are added in float64 and
the sum is rotated into camera space in float64. Only then is anything cast to float32, so
the packed positions are small numbers relative to the eye and a world zoomed 10^6x far
from the world origin renders exactly like the same view near the origin.

Culling, in this order (each splat is counted once, under the first test it fails):
- `behind`: centre not strictly between the near and far planes (camera-space depth z);
- `outside`: a sphere of radius 3 sigma (largest axis) plus `FRUSTUM_MARGIN_PX` pixels at its
  depth lies entirely outside one side plane of the frustum;
- `faded`: modulated alpha (`engine.modulation.alpha` at s_render = z / sqrt(fx fy)) is
  <= `ALPHA_CULL`; these are never drawn (docs/design.md idea 3);
- `faint`: opacity * alpha < 1/255, so no fragment can reach the 1/255 discard threshold.

Sorting: 16-bit keys of log depth, quantized between the min and max of the surviving set
(uniform relative resolution: (log zmax - log zmin) / 65535), argsorted with a stable radix
sort; ties keep input order (earlier chunks first, i.e. further back).

Packed column layout (`PreparedSplats.packed`, [M, PACKED_WIDTH] float32, row 0 = furthest):
    0:3   mean_camera    splat centre in camera space (x right, y down, z forward), world units
    3:7   quat_wxyz      unit quaternion, world frame (as stored in the chunk)
    7:10  scale          Gaussian std-devs, world units (exp of log_scales)
    10:13 rgb            degree-0 colour, clamped to [0, 1]
    13    opacity        sigmoid of the opacity logit (before modulation)
    14    log_s_native   log of the splat's native scale
    15    log_s_parent   log of s_parent; meaningful only when flag bit 0 is set
    16    log_s_child    log of s_child; meaningful only when flag bit 1 is set
    17    link_flags     bit 0: has a coarser level (s_parent finite and > s_native),
                         bit 1: has a finer level (0 < s_child < s_native); stored as a float
The world-frame quaternion is turned into camera space with the camera rotation, which the
renderer passes as a uniform (`R_camera_world`). Colour is the degree-0 SH term only: higher
degrees (`SplatChunk.sh_rest`, view-dependent colour) are not rendered yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.camera import Camera
from engine.lod import LodLinks
from engine.modulation import ALPHA_CULL, alpha
from engine.splats import SH_C0, SplatChunk

COL_MEAN = slice(0, 3)
COL_QUAT = slice(3, 7)
COL_SCALE = slice(7, 10)
COL_RGB = slice(10, 13)
COL_OPACITY = 13
COL_LOG_S_NATIVE = 14
COL_LOG_S_PARENT = 15
COL_LOG_S_CHILD = 16
COL_LINK_FLAGS = 17
PACKED_WIDTH = 18

FLAG_HAS_PARENT = 1
FLAG_HAS_CHILD = 2

MIN_FRAGMENT_ALPHA = 1.0 / 255.0  # fragments below this are discarded (3DGS)
FRUSTUM_MARGIN_PX = 2.0  # covers the 0.3 px^2 low-pass dilation of the 3-sigma footprint
SORT_KEY_MAX = 65535


def margin_per_depth(camera: Camera) -> float:
    """FRUSTUM_MARGIN_PX pixels in world units per unit of camera depth: how far past a side
    plane the frustum tests reach (a splat, a box or a chunk's sphere at depth z: this x z)."""
    return FRUSTUM_MARGIN_PX / min(camera.fx, camera.fy)


@dataclass(frozen=True)
class CullStats:
    """How many splats each culling stage removed (each splat counted once)."""

    total: int
    behind: int  # centre outside (near, far)
    outside: int  # 3-sigma sphere outside the frustum
    faded: int  # modulation alpha <= ALPHA_CULL
    faint: int  # opacity * alpha < 1/255: no fragment could survive
    drawn: int


@dataclass(frozen=True, eq=False)
class PreparedSplats:
    """The instances of one frame, back to front, in the camera's frame."""

    packed: np.ndarray  # [M, PACKED_WIDTH] float32, layout in the module docstring
    source_chunk: np.ndarray  # [M] int32, index into the list given to `prepare`
    source_row: np.ndarray  # [M] int32, row of the splat inside that chunk
    stats: CullStats

    T_world_camera: np.ndarray  # [4, 4] float64, the pose the positions are relative to

    @property
    def count(self) -> int:
        return int(self.packed.shape[0])

    def check_camera(self, camera: Camera) -> None:
        """Raise ValueError unless `camera` has the pose these splats were prepared for
        (intrinsics may differ: they only enter the projection and the modulation)."""
        if not np.array_equal(camera.T_world_camera, self.T_world_camera):
            raise ValueError("camera pose differs from the one the splats were prepared for; "
                             "call prepare() again for this camera")


def link_columns(s_native: np.ndarray, s_parent: np.ndarray, s_child: np.ndarray
                 ) -> np.ndarray:
    """[N, 4] float32 (log_s_native, log_s_parent, log_s_child, link_flags).

    A link counts only where it points the right way (the rule of `engine.modulation.alpha`),
    decided on the float32 logs so a shader never divides by a zero-width ramp."""
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf: no child
        n = np.log(np.asarray(s_native, np.float32))
        b = np.log(np.asarray(s_parent, np.float32))
        a = np.log(np.asarray(s_child, np.float32))
    has_parent = np.isfinite(b) & (b > n)
    has_child = np.isfinite(a) & (a < n)
    out = np.empty((len(n), 4), np.float32)
    out[:, 0] = n
    out[:, 1] = np.where(has_parent, b, 0.0)
    out[:, 2] = np.where(has_child, a, 0.0)
    out[:, 3] = has_parent * FLAG_HAS_PARENT + has_child * FLAG_HAS_CHILD
    return out


def links_from_columns(lod: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `link_columns` ([N, 4]) -> (s_native, s_parent, s_child) float64 [N] each,
    with inf / 0 for absent links, ready for `engine.modulation.alpha`."""
    lod = np.asarray(lod, np.float64)
    flags = lod[:, 3].astype(np.int64)
    s_native = np.exp(lod[:, 0])
    s_parent = np.where(flags & FLAG_HAS_PARENT, np.exp(lod[:, 1]), np.inf)
    s_child = np.where(flags & FLAG_HAS_CHILD, np.exp(lod[:, 2]), 0.0)
    return s_native, s_parent, s_child


def prepare(
    camera: Camera,
    chunks: Sequence[tuple[SplatChunk, LodLinks | None]],  # links None = a root chunk
) -> PreparedSplats:
    """Cull, pack (camera-relative) and sort back to front the splats of `chunks`."""
    R_world_camera = np.ascontiguousarray(camera.T_world_camera[:3, :3])  # [3, 3] camera axes
    eye = camera.T_world_camera[:3, 3]  # [3] float64
    # [3, 4] unit normals of the side planes (they pass through the eye)
    planes_T = np.ascontiguousarray(camera.frustum_planes_camera()[:4, :3].T)
    margin = margin_per_depth(camera)
    counts = dict(total=0, behind=0, outside=0, faded=0, faint=0)
    pieces: list[np.ndarray] = []
    src_chunk: list[np.ndarray] = []
    src_row: list[np.ndarray] = []

    for index, (chunk, links) in enumerate(chunks):
        n = len(chunk)
        counts["total"] += n
        if n == 0:
            continue
        if links is None:
            links = LodLinks.root(n)
        if len(links.s_parent) != n or len(links.s_child) != n:
            raise ValueError(
                f"chunk {index}: links for {len(links.s_parent)} splats, the chunk has {n}")
        # float64 all the way until the camera-relative position exists
        rel = (chunk.origin - eye)[None, :] + chunk.positions.astype(np.float64)  # [N, 3]
        p_cam = rel @ R_world_camera  # [N, 3] camera space, float64
        z = p_cam[:, 2]  # [N]
        in_depth = (z > camera.near) & (z < camera.far)
        counts["behind"] += n - int(np.count_nonzero(in_depth))

        # (reductions over a length-3 axis are slow in numpy: spell them out)
        ls = chunk.log_scales
        largest = np.maximum(np.maximum(ls[:, 0], ls[:, 1]), ls[:, 2])  # [N] log sigma
        radius = 3.0 * np.exp(largest, dtype=np.float64)  # [N] world units
        radius += margin * z
        side = p_cam @ planes_T  # [N, 4] signed distances to the side planes
        inside = in_depth.copy()
        for k in range(4):
            inside &= side[:, k] >= -radius
        counts["outside"] += int(np.count_nonzero(in_depth)) - int(np.count_nonzero(inside))
        rows = np.flatnonzero(inside)

        s_native = np.take(chunk.s_native, rows)
        s_parent = np.take(links.s_parent, rows)
        s_child = np.take(links.s_child, rows)
        mod = alpha(np.take(z, rows) / camera.focal, s_native, s_parent, s_child)
        with np.errstate(over="ignore"):  # logit < -88: exp overflows to inf, opacity 0
            opacity = 1.0 / (1.0 + np.exp(-np.take(chunk.opacity_logits, rows)))  # float32
        shown = mod > ALPHA_CULL
        bright = shown & (opacity * mod >= MIN_FRAGMENT_ALPHA)
        counts["faded"] += len(rows) - int(np.count_nonzero(shown))
        counts["faint"] += int(np.count_nonzero(shown)) - int(np.count_nonzero(bright))
        if not bright.all():
            sel = np.flatnonzero(bright)
            rows, opacity = rows[sel], opacity[sel]
            s_native, s_parent, s_child = s_native[sel], s_parent[sel], s_child[sel]

        pieces.append(_pack(np.take(p_cam, rows, axis=0), chunk, rows, opacity,
                            s_native, s_parent, s_child))
        src_chunk.append(np.full(len(rows), index, np.int32))
        src_row.append(rows.astype(np.int32))

    packed = np.concatenate(pieces) if pieces else np.zeros((0, PACKED_WIDTH), np.float32)
    drawn = len(packed)
    stats = CullStats(drawn=drawn, **counts)
    pose = camera.T_world_camera.copy()
    if drawn == 0:
        return PreparedSplats(packed, np.zeros(0, np.int32), np.zeros(0, np.int32), stats, pose)
    order = back_to_front_order(packed[:, 2])
    return PreparedSplats(np.take(packed, order, axis=0), np.concatenate(src_chunk)[order],
                          np.concatenate(src_row)[order], stats, pose)


def pack(camera: Camera, chunk: SplatChunk, links: LodLinks | None, rows: np.ndarray
         ) -> np.ndarray:
    """[len(rows), PACKED_WIDTH] float32 rows of `chunk`, in the given order, without culling
    (for callers that culled and sorted already, e.g. the streaming renderer's quad path)."""
    rows = np.asarray(rows, np.int64)
    links = LodLinks.root(len(chunk)) if links is None else links
    eye = camera.T_world_camera[:3, 3]
    rel = (chunk.origin - eye)[None, :] + np.take(chunk.positions, rows, axis=0).astype(np.float64)
    p_cam = rel @ camera.T_world_camera[:3, :3]  # [K, 3] float64, then float32
    with np.errstate(over="ignore"):
        opacity = 1.0 / (1.0 + np.exp(-np.take(chunk.opacity_logits, rows)))
    return _pack(p_cam, chunk, rows, opacity, np.take(chunk.s_native, rows),
                 np.take(links.s_parent, rows), np.take(links.s_child, rows))


def _pack(p_cam: np.ndarray, chunk: SplatChunk, rows: np.ndarray, opacity: np.ndarray,
          s_native: np.ndarray, s_parent: np.ndarray, s_child: np.ndarray) -> np.ndarray:
    piece = np.empty((len(rows), PACKED_WIDTH), np.float32)
    piece[:, COL_MEAN] = p_cam
    piece[:, COL_QUAT] = np.take(chunk.rotations, rows, axis=0)
    piece[:, COL_SCALE] = np.exp(np.take(chunk.log_scales, rows, axis=0))
    rgb = 0.5 + SH_C0 * np.take(chunk.sh_dc, rows, axis=0)
    piece[:, COL_RGB] = np.clip(rgb, 0.0, 1.0)
    piece[:, COL_OPACITY] = opacity
    piece[:, COL_LOG_S_NATIVE:] = link_columns(s_native, s_parent, s_child)
    return piece


def depth_sort_keys(depth: np.ndarray) -> np.ndarray:
    """[M] positive depths -> [M] uint16 keys of log depth over the set's own range."""
    log_z = np.log(np.asarray(depth, np.float64))
    lo, hi = float(log_z.min()), float(log_z.max())
    if not hi > lo:
        return np.zeros(len(log_z), np.uint16)
    scaled = (log_z - lo) * (SORT_KEY_MAX / (hi - lo))
    return np.clip(np.rint(scaled), 0, SORT_KEY_MAX).astype(np.uint16)


def back_to_front_order(depth: np.ndarray) -> np.ndarray:
    """[M] positive depths -> [M] int indices, furthest first (stable on 16-bit keys)."""
    keys = SORT_KEY_MAX - depth_sort_keys(depth)  # uint16, nearest = largest key
    return np.argsort(keys, kind="stable")
