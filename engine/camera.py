"""Pinhole cameras in float64.

Owns: camera pose and intrinsics, projection, the per-point pixel scale (`s_render` /
`s_native`), the view frustum and AABB tests against it, JSON (de)serialisation with checks.
Does not own: camera *motion* (the frame loop and input do that) or rendering.

Axes follow OpenCV and gsplat: x right, y down, z forward (depth = camera-space z).
`T_world_camera` maps camera coordinates to world coordinates (camera-to-world);
`T_camera_world` is its inverse (gsplat's `viewmat`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from engine.errors import UserError

MAX_IMAGE_SIDE = 1 << 15
MAX_RENDER_SIDE = 8192  # what `render`, `play` and the GL targets draw
# the size a world is shown at unless told otherwise: `play`'s window, `render`'s frames and a
# camera path's default, and so the size generation makes levels for (`generation.sizes`)
DEFAULT_VIEW_SIZE = (1280, 720)
# focal length / image side: below 1e-5 the field of view is 180 degrees to float precision
# (projections blow up); above 1e30 no zoom chain reaches (4x a zoom: ~50 zooms)
FOCAL_PER_SIDE = (1e-5, 1e30)


_LAST_ROW = [0.0, 0.0, 0.0, 1.0]
_FLOAT = {float}


class CameraError(UserError, ValueError):
    """A camera description is malformed (non-finite, non-rigid pose, bad intrinsics)."""


def _is_number(v: object) -> bool:
    """A real int/float that fits a float64 (bools and huge ints are not camera numbers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def check_render_camera(camera: "Camera", where: str) -> "Camera":
    """`camera` if a renderer can draw through it (its image at most MAX_RENDER_SIDE a side:
    the GL framebuffers' limit), else CameraError naming `where`."""
    if camera.width > MAX_RENDER_SIDE or camera.height > MAX_RENDER_SIDE:
        raise CameraError(f"{where}: image {camera.width}x{camera.height} is larger than "
                          f"{MAX_RENDER_SIDE} a side")
    return camera


def _as_rigid(T: np.ndarray) -> np.ndarray:
    """`T` as a float64 [4, 4] rigid transform, or CameraError. The checks run on Python
    floats: numpy's per-call overhead on 3x3 matrices made them the cost of opening a world
    with a long history (a camera per step)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise CameraError(f"pose must be 4x4, got {T.shape}")
    (a, b, c, tx), (d, e, f, ty), (g, h, i, tz), last = T.tolist()
    if not all(map(math.isfinite, (a, b, c, tx, d, e, f, ty, g, h, i, tz, *last))):
        raise CameraError("pose holds NaN or Inf")
    _check_rotation(a, b, c, d, e, f, g, h, i)
    if last != _LAST_ROW:
        raise CameraError("pose last row must be 0 0 0 1")
    return T


def _check_rotation(a: float, b: float, c: float, d: float, e: float, f: float, g: float,
                    h: float, i: float) -> None:
    """CameraError unless the rows (a b c), (d e f), (g h i) (finite floats) are a rotation:
    unit, orthogonal, determinant 1, each within 1e-6."""
    off_unit = max(abs(a * a + b * b + c * c - 1.0), abs(d * d + e * e + f * f - 1.0),
                   abs(g * g + h * h + i * i - 1.0))
    off_orthogonal = max(abs(a * d + b * e + c * f), abs(a * g + b * h + c * i),
                         abs(d * g + e * h + f * i))
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if off_unit > 1e-6 or off_orthogonal > 1e-6 or abs(det - 1.0) > 1e-6:
        raise CameraError("pose rotation is not orthonormal")


def _check_intrinsics(fx: float, fy: float, cx: float, cy: float, width: Any, height: Any,
                      near: float, far: float) -> tuple[int, int]:
    """(width, height) as ints if these intrinsics (finite floats but the sizes) make a
    usable camera, else CameraError naming the first that does not."""
    if not (fx > 0 and fy > 0):
        raise CameraError("focal lengths must be positive")
    if not (0 < near < far):
        raise CameraError("need 0 < near < far")
    try:
        w, h = int(width), int(height)
    except (OverflowError, TypeError, ValueError):
        raise CameraError("image size must be integers") from None
    if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        raise CameraError(f"image size {w}x{h} out of range")
    lo, hi = FOCAL_PER_SIDE
    if not (lo * w <= fx <= hi * w and lo * h <= fy <= hi * h):
        raise CameraError(f"focal lengths {fx:g}, {fy:g} px are out of range for a {w}x{h} "
                          "image")
    if not (abs(cx) <= hi * w and abs(cy) <= hi * h):
        raise CameraError("principal point is absurdly far outside the image")
    return w, h


_CORNER_PICK = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], bool)  # [8, 3]


def aabb_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # [M, 8, 3]
    """The eight corners of each axis-aligned box ([M, 3] or [3] lo / hi), world units."""
    lo = np.atleast_2d(np.asarray(lo, np.float64))
    hi = np.atleast_2d(np.asarray(hi, np.float64))
    return np.where(_CORNER_PICK[None], hi[:, None, :], lo[:, None, :])


@dataclass(frozen=True, eq=False)
class Camera:
    T_world_camera: np.ndarray  # [4, 4] float64 camera-to-world, OpenCV axes
    fx: float  # focal lengths in pixels
    fy: float
    cx: float  # principal point in pixels
    cy: float
    width: int
    height: int
    near: float = 1e-6  # clip distances in world units; zoom code shrinks `near` with depth
    far: float = 1e9

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_world_camera", _as_rigid(self.T_world_camera))
        for name in ("fx", "fy", "cx", "cy", "near", "far"):
            try:
                value = float(getattr(self, name))
            except (OverflowError, TypeError, ValueError):
                raise CameraError(f"{name} is not a finite number") from None
            if not math.isfinite(value):
                raise CameraError(f"{name} is not finite")
            object.__setattr__(self, name, value)
        w, h = _check_intrinsics(self.fx, self.fy, self.cx, self.cy, self.width, self.height,
                                 self.near, self.far)
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "height", h)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def look_at(
        cls,
        eye: np.ndarray,  # [3]
        target: np.ndarray,  # [3]
        up: np.ndarray = (0.0, -1.0, 0.0),  # world "up"; default matches OpenCV's y-down
        fov_y_deg: float = 60.0,
        width: int = 640,
        height: int = 480,
        near: float = 1e-6,
        far: float = 1e9,
    ) -> "Camera":
        eye = np.asarray(eye, np.float64)
        forward = np.asarray(target, np.float64) - eye
        forward /= np.linalg.norm(forward)
        up = np.asarray(up, np.float64)
        right = np.cross(forward, up)
        if np.linalg.norm(right) < 1e-9:  # looking along `up`: pick any perpendicular
            right = np.cross(forward, [1.0, 0.0, 0.0])
            if np.linalg.norm(right) < 1e-9:
                right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        T = np.eye(4)
        T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, down, forward, eye
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        return cls(T, f, f, width / 2.0, height / 2.0, width, height, near, far)

    def with_fov_scale(self, factor: float) -> "Camera":
        """Same pose, focal lengths multiplied by `factor` (factor > 1 zooms in)."""
        return replace(self, fx=self.fx * factor, fy=self.fy * factor)

    # ---- other image sizes: the one home of camera resizing -----------------------------
    def resampled(self, width: int, height: int) -> "Camera":
        """The same view (pose and field of view) sampled with another number of pixels:
        the intrinsics scale with the image along each axis."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx,
                       cy=self.cy * sy, width=width, height=height)

    def resampled_long_side(self, long_side: int, min_side: int = 8) -> "Camera":
        """`resampled` so the long side has `long_side` pixels (each side >= `min_side`)."""
        s = long_side / max(self.width, self.height)
        if abs(s - 1.0) < 1e-9:
            return self
        return self.resampled(max(min_side, round(self.width * s)),
                              max(min_side, round(self.height * s)))

    def resampled_by(self, factor: float, min_side: int = 8) -> "Camera":
        """`resampled` with about `factor`x fewer pixels a side (each side >= `min_side`)."""
        return self.resampled(max(min_side, round(self.width / factor)),
                              max(min_side, round(self.height / factor)))

    def reframed(self, width: int, height: int, keep: str = "fov_y") -> "Camera":
        """The same pose shown in a `width` x `height` image of another shape: square
        pixels, the principal point at the centre, and the vertical (`keep="fov_y"`) or
        horizontal (`keep="fov_x"`) field of view kept; the other axis shows more or less."""
        if keep == "fov_y":
            f = self.fy * height / self.height
        elif keep == "fov_x":
            f = self.fx * width / self.width
        else:
            raise ValueError(f"keep must be 'fov_y' or 'fov_x', not {keep!r}")
        return replace(self, fx=f, fy=f, cx=width / 2.0, cy=height / 2.0, width=width,
                       height=height)

    # ---- frames -------------------------------------------------------------------------
    @property
    def position(self) -> np.ndarray:  # [3] float64
        return self.T_world_camera[:3, 3].copy()

    @property
    def T_camera_world(self) -> np.ndarray:  # [4, 4] world-to-camera (gsplat viewmat)
        R = self.T_world_camera[:3, :3]
        t = self.T_world_camera[:3, 3]
        out = np.eye(4)
        out[:3, :3] = R.T
        out[:3, 3] = -R.T @ t
        return out

    @property
    def K(self) -> np.ndarray:  # [3, 3]
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def focal(self) -> float:
        """sqrt(fx * fy): the focal length that turns depth into world length per pixel."""
        return math.sqrt(self.fx * self.fy)

    def points_to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """[N, 3] world -> [N, 3] camera coordinates (float64).

        Subtracts the camera position before rotating, so points near a far-away camera keep
        their precision."""
        p = np.asarray(points_world, np.float64) - self.T_world_camera[:3, 3]
        return p @ self.T_world_camera[:3, :3]

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, 3] world points -> (uv [N, 2] pixels, depth [N]). Depth <= 0 means behind."""
        pc = self.points_to_camera(points_world)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pc[:, 0] / z + self.cx
            v = self.fy * pc[:, 1] / z + self.cy
        return np.stack([u, v], axis=1), z

    def pixel_scale(self, points_world: np.ndarray) -> np.ndarray:
        """World length per pixel at each point's depth: depth / sqrt(fx * fy).  [N]"""
        return self.points_to_camera(points_world)[:, 2] / self.focal

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels [N, 2] with depths [N] -> world points [N, 3]."""
        uv = np.asarray(uv, np.float64)
        z = np.asarray(depth, np.float64)
        pc = np.stack([(uv[:, 0] - self.cx) / self.fx * z, (uv[:, 1] - self.cy) / self.fy * z, z], 1)
        return pc @ self.T_world_camera[:3, :3].T + self.T_world_camera[:3, 3]

    # ---- frustum ------------------------------------------------------------------------
    def frustum_planes_camera(self) -> np.ndarray:
        """[6, 4] planes (n, d) in camera space with n.x + d >= 0 inside."""
        l, r = -self.cx / self.fx, (self.width - self.cx) / self.fx
        t, b = -self.cy / self.fy, (self.height - self.cy) / self.fy
        planes = [
            (1.0, 0.0, -l, 0.0),  # x >= l z
            (-1.0, 0.0, r, 0.0),  # x <= r z
            (0.0, 1.0, -t, 0.0),  # y >= t z
            (0.0, -1.0, b, 0.0),  # y <= b z
            (0.0, 0.0, 1.0, -self.near),
            (0.0, 0.0, -1.0, self.far),
        ]
        out = np.array(planes, np.float64)
        out[:, :3] /= np.linalg.norm(out[:, :3], axis=1, keepdims=True)
        out[:4, 3] = 0.0
        out[4, 3], out[5, 3] = -self.near, self.far
        return out

    def aabb_depth_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera-space depth range of AABBs ([M, 3] lo/hi): extremes are at corners."""
        corners = self._aabb_corners_camera(lo, hi)  # [M, 8, 3]
        z = corners[..., 2]
        return z.min(axis=1), z.max(axis=1)

    def aabbs_in_frustum(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """[M] bool: may each AABB intersect the frustum? (conservative: no false negatives)."""
        corners = self._aabb_corners_camera(lo, hi)  # [M, 8, 3]
        planes = self.frustum_planes_camera()  # [6, 4]
        dist = corners @ planes[:, :3].T + planes[:, 3]  # [M, 8, 6]
        outside_one_plane = (dist < 0).all(axis=1).any(axis=1)
        return ~outside_one_plane

    def _aabb_corners_camera(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        corners = aabb_corners(lo, hi)  # [M, 8, 3]
        return self.points_to_camera(corners.reshape(-1, 3)).reshape(-1, 8, 3)

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "T_world_camera": self.T_world_camera.tolist(),
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
            "width": self.width, "height": self.height, "near": self.near, "far": self.far,
        }

    @classmethod
    def from_plain_dict(cls, d: Any) -> "Camera | None":
        """The camera of `d` when it is what `to_dict` writes (its nine fields, floats and
        whole-number sizes) and the constructor accepts it: the constructor's own checks
        (`_check_rotation`, `_check_intrinsics`) on the Python floats, without its numpy
        round trip and per-field work (a world with a camera on each of many steps opens this
        way, about 3x faster). None for anything else, left to `from_dict` or the loader to
        accept or name what is wrong. The same Camera as `Camera(...)` from the same fields
        (tested)."""
        if type(d) is not dict or len(d) != 9:
            return None
        get = d.get
        rows, fx, fy, cx, cy = get("T_world_camera"), get("fx"), get("fy"), get("cx"), get("cy")
        width, height, near, far = get("width"), get("height"), get("near"), get("far")
        if type(rows) is not list or len(rows) != 4 or type(width) is not int \
                or type(height) is not int:
            return None
        r0, r1, r2, r3 = rows
        if not (type(r0) is list and type(r1) is list and type(r2) is list and type(r3) is list
                and len(r0) == 4 and len(r1) == 4 and len(r2) == 4 and len(r3) == 4):
            return None
        (a, b, c, tx), (d, e, f, ty), (g, h, i, tz) = r0, r1, r2
        numbers = (a, b, c, tx, d, e, f, ty, g, h, i, tz, *r3, fx, fy, cx, cy, near, far)
        if not set(map(type, numbers)) <= _FLOAT or not math.isfinite(sum(numbers)) \
                or r3 != _LAST_ROW:
            return None  # (a sum of finite floats that overflows also goes the long way)
        try:  # (the constructor's own checks)
            _check_rotation(a, b, c, d, e, f, g, h, i)
            _check_intrinsics(fx, fy, cx, cy, width, height, near, far)
        except CameraError:
            return None
        camera = object.__new__(cls)
        object.__setattr__(camera, "__dict__", {
            "T_world_camera": np.array(rows, np.float64), "fx": fx, "fy": fy, "cx": cx,
            "cy": cy, "width": width, "height": height, "near": near, "far": far})
        return camera

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Camera":
        """Parse a camera written by `to_dict`; raises `CameraError` on anything malformed."""
        if not isinstance(d, Mapping):
            raise CameraError("camera must be an object")
        try:
            rows = d["T_world_camera"]
            if not (isinstance(rows, (list, tuple)) and all(isinstance(r, (list, tuple)) for r in rows)
                    and all(_is_number(v) for r in rows for v in r)):
                raise CameraError("camera pose must be a 4x4 list of numbers")
            T = np.array(rows, dtype=np.float64)
            nums = {k: d[k] for k in ("fx", "fy", "cx", "cy", "width", "height")}
            near, far = d.get("near", 1e-6), d.get("far", 1e9)
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraError(f"camera field missing or not numeric: {exc}") from None
        for k, v in [*nums.items(), ("near", near), ("far", far)]:
            if not _is_number(v):
                raise CameraError(f"camera field {k} must be a number")
            if not math.isfinite(float(v)):
                raise CameraError(f"camera field {k} is not finite")
        if nums["width"] != int(nums["width"]) or nums["height"] != int(nums["height"]):
            raise CameraError("camera width/height must be integers")
        return cls(T, nums["fx"], nums["fy"], nums["cx"], nums["cy"],
                   int(nums["width"]), int(nums["height"]), near, far)
