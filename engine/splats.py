"""Splat data: one `SplatChunk` is a structure-of-arrays block of Gaussian splats.

Owns: the in-memory layout of splats and the checks that make a chunk safe to render or save.
Does not own: how chunks are grouped into levels (`engine.chunking`), how they fade with scale
(`engine.modulation`), or how they are stored on disk (`saves/`).

Conventions (shared with gsplat and the INRIA 3DGS PLY layout):
- positions are float32 offsets from a float64 `origin`, so a world zoomed 10^6x keeps its
  precision: the renderer subtracts the camera position from the float64 origin first.
- rotations are unit quaternions in (w, x, y, z) order.
- scales are stored as natural logs of the Gaussian standard deviations, in world units.
- opacity is stored as a logit, exactly as 3DGS files do, so PLY round trips are lossless.
- colour is spherical harmonics: `sh_dc` is the degree-0 term (3DGS `f_dc_*`),
  `sh_rest` holds the higher degrees ([N, 0, 3] when there are none).
- `s_native` is the world length of one pixel at the splat's depth in the camera that created it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import UserError

SH_C0 = 0.28209479177387814  # Y_0^0; rgb = 0.5 + SH_C0 * sh_dc

MAX_SPLATS_PER_CHUNK = 1 << 22
# SH coefficients beyond the DC term, per degree 0..3.
SH_REST_COUNTS = (0, 3, 8, 15)
# Bounds that catch garbage without limiting real worlds: 1e-20 .. 1e10 world units.
LOG_SCALE_MIN, LOG_SCALE_MAX = -46.0, 23.0
MAX_ABS_ORIGIN = 1e12
MAX_ABS_OFFSET = 1e9
MAX_ABS_OPACITY_LOGIT = 100.0
MAX_ABS_SH = 1e4
QUAT_NORM_TOLERANCE = 1e-3


class SplatValidationError(UserError, ValueError):
    """A chunk's arrays are malformed (wrong shape/dtype) or hold impossible values."""


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    """Colour in [0, 1] -> the degree-0 SH coefficient 3DGS stores."""
    return ((np.asarray(rgb, dtype=np.float64) - 0.5) / SH_C0).astype(np.float32)


def sh_dc_to_rgb(sh_dc: np.ndarray) -> np.ndarray:
    """Degree-0 SH coefficient -> colour (not clamped)."""
    return (0.5 + SH_C0 * np.asarray(sh_dc, dtype=np.float64)).astype(np.float32)


def normalize_quaternions(q: np.ndarray) -> np.ndarray:
    """Unit quaternions from any non-zero ones; zero rows become the identity."""
    q = np.asarray(q, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    # zero rows -> identity; NaN rows stay NaN so validate() still refuses them
    out = np.where(norm == 0, np.array([1.0, 0.0, 0.0, 0.0]), q / np.where(norm == 0, 1.0, norm))
    return out.astype(np.float32)


def quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    """(w, x, y, z) unit quaternions [N, 4] -> rotation matrices [N, 3, 3] (float64)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


@dataclass(frozen=True, eq=False)
class SplatChunk:
    """A block of splats sharing one float64 origin and one scale level.

    Arrays are row-aligned: row i of every array describes splat i. The dataclass is frozen
    and chunks are treated as immutable once created: the world only ever appends chunks.
    """

    origin: np.ndarray  # [3] float64, world position of the chunk frame
    positions: np.ndarray  # [N, 3] float32, offsets from origin (world units)
    rotations: np.ndarray  # [N, 4] float32, unit quaternions (w, x, y, z)
    log_scales: np.ndarray  # [N, 3] float32, log of Gaussian std-devs (world units)
    opacity_logits: np.ndarray  # [N] float32, logit of opacity
    sh_dc: np.ndarray  # [N, 3] float32, degree-0 SH colour coefficient
    s_native: np.ndarray  # [N] float32, world length per pixel in the creating camera
    level: int = 0
    sh_rest: np.ndarray = field(default=None)  # [N, M, 3] float32, M in (0, 3, 8, 15)

    def __post_init__(self) -> None:
        if self.sh_rest is None:
            n = np.asarray(self.sh_dc).shape[0] if np.ndim(self.sh_dc) else 0
            object.__setattr__(self, "sh_rest", np.zeros((n, 0, 3), np.float32))

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def from_world(
        cls,
        positions_world: np.ndarray,  # [N, 3] float64 world positions
        rotations: np.ndarray,  # [N, 4]
        log_scales: np.ndarray,  # [N, 3]
        opacity_logits: np.ndarray,  # [N]
        sh_dc: np.ndarray,  # [N, 3]
        s_native: np.ndarray,  # [N]
        level: int = 0,
        origin: np.ndarray | None = None,  # [3]; default: the bounding-box centre
        sh_rest: np.ndarray | None = None,  # [N, M, 3]
    ) -> "SplatChunk":
        """Build a chunk from world positions, choosing a float64 origin for precision."""
        p = np.asarray(positions_world, dtype=np.float64)
        if origin is None:
            origin = 0.5 * (p.min(axis=0) + p.max(axis=0)) if len(p) else np.zeros(3)
        origin = np.asarray(origin, dtype=np.float64).reshape(3)
        n = len(p)
        return cls(
            origin=origin,
            positions=(p - origin).astype(np.float32),
            rotations=np.asarray(rotations, np.float32).reshape(n, 4),
            log_scales=np.asarray(log_scales, np.float32).reshape(n, 3),
            opacity_logits=np.asarray(opacity_logits, np.float32).reshape(n),
            sh_dc=np.asarray(sh_dc, np.float32).reshape(n, 3),
            s_native=np.asarray(s_native, np.float32).reshape(n),
            level=int(level),
            sh_rest=None if sh_rest is None else np.asarray(sh_rest, np.float32),
        )

    # ---- derived views ------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def sh_degree(self) -> int:
        return SH_REST_COUNTS.index(self.sh_rest.shape[1])

    def world_positions(self) -> np.ndarray:  # [N, 3] float64
        return self.origin[None, :] + self.positions.astype(np.float64)

    def opacities(self) -> np.ndarray:  # [N] float32 in (0, 1)
        return (1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))).astype(np.float32)

    def scales(self) -> np.ndarray:  # [N, 3] float64, world units
        return np.exp(self.log_scales.astype(np.float64))

    def rgb(self) -> np.ndarray:  # [N, 3] float32, unclamped degree-0 colour
        return sh_dc_to_rgb(self.sh_dc)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World-space AABB of the splat centres, padded by 3 sigma of the largest axis."""
        if len(self) == 0:
            return self.origin.copy(), self.origin.copy()
        p = self.world_positions()
        pad = 3.0 * self.scales().max(axis=1)
        return (p - pad[:, None]).min(axis=0), (p + pad[:, None]).max(axis=0)

    def nbytes(self) -> int:
        return int(
            sum(a.nbytes for a in (self.positions, self.rotations, self.log_scales,
                                   self.opacity_logits, self.sh_dc, self.s_native, self.sh_rest))
        )

    def take(self, rows: np.ndarray) -> "SplatChunk":
        """A new chunk holding the given rows (index array or boolean mask), same origin."""
        return SplatChunk(
            origin=self.origin.copy(),
            positions=self.positions[rows],
            rotations=self.rotations[rows],
            log_scales=self.log_scales[rows],
            opacity_logits=self.opacity_logits[rows],
            sh_dc=self.sh_dc[rows],
            s_native=self.s_native[rows],
            level=self.level,
            sh_rest=self.sh_rest[rows],
        )

    def with_origin(self, origin: np.ndarray) -> "SplatChunk":
        """Same splats expressed relative to another float64 origin."""
        origin = np.asarray(origin, np.float64).reshape(3)
        local = (self.world_positions() - origin).astype(np.float32)
        return SplatChunk(origin, local, self.rotations, self.log_scales, self.opacity_logits,
                          self.sh_dc, self.s_native, self.level, self.sh_rest)

    @staticmethod
    def concatenate(chunks: "list[SplatChunk]", origin: np.ndarray | None = None) -> "SplatChunk":
        """Merge chunks into one (re-expressed relative to `origin`, default: the first's)."""
        if not chunks:
            raise ValueError("concatenate needs at least one chunk")
        if len({c.level for c in chunks}) > 1:
            raise ValueError("concatenate merges chunks of one level only")
        origin = chunks[0].origin if origin is None else np.asarray(origin, np.float64)
        degree = max(c.sh_degree for c in chunks)
        m = SH_REST_COUNTS[degree]

        def rest(c: SplatChunk) -> np.ndarray:
            if c.sh_rest.shape[1] == m:
                return c.sh_rest
            out = np.zeros((len(c), m, 3), np.float32)
            out[:, : c.sh_rest.shape[1]] = c.sh_rest
            return out

        return SplatChunk(
            origin=np.array(origin, np.float64),
            positions=np.concatenate(
                [(c.world_positions() - origin).astype(np.float32) for c in chunks]),
            rotations=np.concatenate([c.rotations for c in chunks]),
            log_scales=np.concatenate([c.log_scales for c in chunks]),
            opacity_logits=np.concatenate([c.opacity_logits for c in chunks]),
            sh_dc=np.concatenate([c.sh_dc for c in chunks]),
            s_native=np.concatenate([c.s_native for c in chunks]),
            level=chunks[0].level,
            sh_rest=np.concatenate([rest(c) for c in chunks]),
        )

    # ---- validation ---------------------------------------------------------------------
    def validate(self) -> "SplatChunk":
        """Raise `SplatValidationError` unless every array has the right shape, dtype and
        finite, physically possible values. Returns self so it chains."""
        n = self.positions.shape[0] if np.ndim(self.positions) == 2 else -1
        expect = {
            "origin": (self.origin, (3,), np.float64),
            "positions": (self.positions, (n, 3), np.float32),
            "rotations": (self.rotations, (n, 4), np.float32),
            "log_scales": (self.log_scales, (n, 3), np.float32),
            "opacity_logits": (self.opacity_logits, (n,), np.float32),
            "sh_dc": (self.sh_dc, (n, 3), np.float32),
            "s_native": (self.s_native, (n,), np.float32),
        }
        for name, (arr, shape, dtype) in expect.items():
            if not isinstance(arr, np.ndarray):
                raise SplatValidationError(f"{name} is not an array")
            if arr.dtype != dtype or arr.shape != shape:
                raise SplatValidationError(
                    f"{name} has shape {arr.shape} {arr.dtype}, expected {shape} {np.dtype(dtype)}")
        if n > MAX_SPLATS_PER_CHUNK:
            raise SplatValidationError(f"chunk holds {n} splats, more than {MAX_SPLATS_PER_CHUNK}")
        rest = self.sh_rest
        if (not isinstance(rest, np.ndarray) or rest.dtype != np.float32 or rest.ndim != 3
                or rest.shape[0] != n or rest.shape[2] != 3 or rest.shape[1] not in SH_REST_COUNTS):
            raise SplatValidationError(f"sh_rest has shape {getattr(rest, 'shape', None)}, "
                                       f"expected [{n}, 0|3|8|15, 3] float32")
        if (isinstance(self.level, bool) or not isinstance(self.level, (int, np.integer))
                or not 0 <= int(self.level) < 1024):
            raise SplatValidationError(f"level {self.level!r} is not an integer in [0, 1024)")
        for name, (arr, _, _) in expect.items():
            if not np.isfinite(arr).all():
                raise SplatValidationError(f"{name} holds NaN or Inf")
        if not np.isfinite(rest).all():
            raise SplatValidationError("sh_rest holds NaN or Inf")
        if np.abs(self.origin).max(initial=0) > MAX_ABS_ORIGIN:
            raise SplatValidationError("origin is absurdly far from the world centre")
        if n == 0:
            return self
        if np.abs(self.positions).max() > MAX_ABS_OFFSET:
            raise SplatValidationError("positions hold absurdly large offsets")
        qn = np.linalg.norm(self.rotations.astype(np.float64), axis=1)
        if np.abs(qn - 1.0).max() > QUAT_NORM_TOLERANCE:
            raise SplatValidationError("rotations are not unit quaternions")
        if self.log_scales.min() < LOG_SCALE_MIN or self.log_scales.max() > LOG_SCALE_MAX:
            raise SplatValidationError(
                f"log_scales outside [{LOG_SCALE_MIN}, {LOG_SCALE_MAX}] (absurd splat sizes)")
        if np.abs(self.opacity_logits).max() > MAX_ABS_OPACITY_LOGIT:
            raise SplatValidationError("opacity logits are absurdly large")
        if np.abs(self.sh_dc).max() > MAX_ABS_SH or (rest.size and np.abs(rest).max() > MAX_ABS_SH):
            raise SplatValidationError("colour coefficients are absurdly large")
        if self.s_native.min() <= 0:
            raise SplatValidationError("s_native must be positive")
        return self


def matrices_to_quaternions(R: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] -> unit quaternions [N, 4] (w, x, y, z), w >= 0 (float32)."""
    R = np.asarray(R, dtype=np.float64)
    m00, m11, m22 = R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]
    # Shepperd's method: pick the largest of the four candidates for numerical stability.
    cand = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                     1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=1)
    k = np.argmax(cand, axis=1)
    s = np.sqrt(np.maximum(cand[np.arange(len(R)), k], 1e-300)) * 2  # = 4 * |component k|
    q = np.empty((len(R), 4))
    r = R
    q0 = np.stack([s / 4, (r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s,
                   (r[:, 1, 0] - r[:, 0, 1]) / s], 1)
    q1 = np.stack([(r[:, 2, 1] - r[:, 1, 2]) / s, s / 4, (r[:, 0, 1] + r[:, 1, 0]) / s,
                   (r[:, 0, 2] + r[:, 2, 0]) / s], 1)
    q2 = np.stack([(r[:, 0, 2] - r[:, 2, 0]) / s, (r[:, 0, 1] + r[:, 1, 0]) / s, s / 4,
                   (r[:, 1, 2] + r[:, 2, 1]) / s], 1)
    q3 = np.stack([(r[:, 1, 0] - r[:, 0, 1]) / s, (r[:, 0, 2] + r[:, 2, 0]) / s,
                   (r[:, 1, 2] + r[:, 2, 1]) / s, s / 4], 1)
    q = np.choose(k[:, None], [q0, q1, q2, q3])
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return normalize_quaternions(q)
