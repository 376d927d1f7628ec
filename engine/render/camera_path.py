"""Camera paths for headless rendering: the JSON file format, keyframe interpolation, and
straight zoom-in sweeps.

Owns: parsing and validating a camera-path file into a list of `Camera`s (untrusted input:
bounded size, finite numbers, checked types; every problem is a one-line
`CameraPathError`), interpolating keyframes, building a zoom sweep toward a world point, and
a default camera for worlds that carry none (imports).
Does not own: rendering the frames or writing images (`cli.render`), camera motion in
the app (`ui/`).

File format, version 1 (a JSON object; unknown keys are refused so typos are caught):
    {"version": 1,
     "width": 1280, "height": 720,       optional, image size in pixels (default 1280 x 720)
     "frames": 60,                       optional, frames to interpolate (default: one per key)
     "keyframes": [                      at least one; spaced evenly along the path
        {"eye": [x, y, z],               camera position (world units)
         "target": [x, y, z],            the point it looks at (must differ from eye)
         "up": [0, -1, 0],               optional, world direction shown upward (default -y,
                                         the OpenCV convention: image v grows along +y)
         "fov_y_deg": 50,                optional, vertical field of view in (0, 180)
         "near": 1e-6, "far": 1e9},      optional clip distances, 0 < near < far
        ...]}
  Between keyframes eye, target and up move linearly (up is re-orthogonalised), the focal
  length and near/far change geometrically (log-linear: a zoom by narrowing the field of view
  looks uniform). Instead of "keyframes" a file may give "cameras": a list of explicit
  cameras as written by `Camera.to_dict` (T_world_camera 4x4 camera-to-world in OpenCV axes,
  fx, fy, cx, cy, width, height, optional near, far), used as they are, one per frame;
  "frames" must then be absent or equal to their count.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from engine.camera import DEFAULT_VIEW_SIZE, Camera, CameraError, check_render_camera
from engine.errors import UserError
from engine.textfiles import display_name, read_text_file

MAX_FILE_BYTES = 16 << 20
MAX_FRAMES = 100_000
MAX_KEYFRAMES = 10_000
MAX_SIDE = 8192
DEFAULT_SIZE = DEFAULT_VIEW_SIZE  # `play`'s window
DEFAULT_FOV_Y_DEG = 50.0
DEFAULT_UP = (0.0, -1.0, 0.0)
PATH_KEYS = {"version", "width", "height", "frames", "keyframes", "cameras"}
KEYFRAME_KEYS = {"eye", "target", "up", "fov_y_deg", "near", "far"}


class CameraPathError(UserError, ValueError):
    """A camera-path file is missing, malformed or describes impossible cameras."""


# ---- parsing ------------------------------------------------------------------------------
def load_camera_path(path: str | Path, width: int | None = None, height: int | None = None,
                     frames: int | None = None) -> list[Camera]:
    """Read and validate a camera-path file -> one camera per frame.

    `width`/`height` (e.g. from the command line) override the file's image size; explicit
    cameras are then rescaled (intrinsics scaled with the image). `frames` overrides the
    number of frames interpolated from keyframes."""
    text = read_text_file(path, MAX_FILE_BYTES, CameraPathError, "camera path")
    path = display_name(path)
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer of 5,000 digits
        raise CameraPathError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    except CameraPathError as exc:
        raise CameraPathError(f"{path}: {exc}") from None
    try:
        return parse_camera_path(data, width, height, frames)
    except CameraPathError as exc:
        raise CameraPathError(f"{path}: {exc}") from None


def parse_camera_path(data: Any, width: int | None = None, height: int | None = None,
                      frames_override: int | None = None) -> list[Camera]:
    if not isinstance(data, dict):
        raise CameraPathError("the file must hold a JSON object")
    unknown = set(data) - PATH_KEYS
    if unknown:
        raise CameraPathError(f"unknown key {sorted(unknown)[0]!r} "
                              f"(expected some of {', '.join(sorted(PATH_KEYS))})")
    if data.get("version") != 1 or isinstance(data.get("version"), bool):
        raise CameraPathError(f"version must be 1, got {data.get('version')!r}")
    file_w = _int(data, "width", 1, MAX_SIDE) if "width" in data else None
    file_h = _int(data, "height", 1, MAX_SIDE) if "height" in data else None
    out_w = width if width is not None else (file_w or DEFAULT_SIZE[0])
    out_h = height if height is not None else (file_h or DEFAULT_SIZE[1])
    if not (0 < out_w <= MAX_SIDE and 0 < out_h <= MAX_SIDE):
        raise CameraPathError(f"image size {out_w}x{out_h} outside 1..{MAX_SIDE}")
    frames = _int(data, "frames", 1, MAX_FRAMES) if "frames" in data else None
    if frames_override is not None:
        if not 0 < frames_override <= MAX_FRAMES:
            raise CameraPathError(f"frames must be in 1..{MAX_FRAMES}")
        if "cameras" in data and frames_override != len(data["cameras"]):
            raise CameraPathError("a path of explicit cameras has one frame per camera; "
                                  "drop --frames")
        frames = frames_override
    if ("keyframes" in data) == ("cameras" in data):
        raise CameraPathError('give exactly one of "keyframes" and "cameras"')
    if "cameras" in data:
        cams = _list(data, "cameras", MAX_FRAMES)
        if frames is not None and frames != len(cams):
            raise CameraPathError(f'"frames" is {frames} but {len(cams)} cameras are given')
        out = []
        for i, d in enumerate(cams):
            try:
                cam = Camera.from_dict(d)
            except CameraError as exc:
                raise CameraPathError(f"cameras[{i}]: {exc}") from None
            if width is not None or height is not None or (file_w, file_h) != (None, None):
                cam = cam.resampled(out_w, out_h)
            try:
                out.append(check_render_camera(cam, f"cameras[{i}]"))
            except CameraError as exc:
                raise CameraPathError(str(exc)) from None
        return out
    keys = _list(data, "keyframes", MAX_KEYFRAMES)
    keyframes = [_keyframe(k, i) for i, k in enumerate(keys)]
    return interpolate(keyframes, frames if frames is not None else len(keyframes), out_w, out_h)


def _refuse_constant(name: str) -> Any:
    raise CameraPathError(f"{name} is not a number a camera can use")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _int(d: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CameraPathError(f'"{key}" must be an integer in {lo}..{hi}, got {v!r}'[:200])
    return v


def _list(d: Mapping[str, Any], key: str, most: int) -> list:
    v = d[key]
    if not isinstance(v, list) or not v:
        raise CameraPathError(f'"{key}" must be a non-empty list')
    if len(v) > most:
        raise CameraPathError(f'"{key}" holds {len(v)} entries, more than {most}')
    return v


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CameraPathError(f"{what} must be a number, got {v!r}"[:200])
    try:
        x = float(v)
    except OverflowError:
        raise CameraPathError(f"{what} is too large") from None
    if not math.isfinite(x):
        raise CameraPathError(f"{what} is not finite")
    return x


def _vec3(v: Any, what: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != 3:
        raise CameraPathError(f"{what} must be a list of 3 numbers")
    return np.array([_number(x, what) for x in v], np.float64)


def _keyframe(k: Any, i: int) -> dict[str, Any]:
    where = f"keyframes[{i}]"
    if not isinstance(k, dict):
        raise CameraPathError(f"{where} must be an object")
    unknown = set(k) - KEYFRAME_KEYS
    if unknown:
        raise CameraPathError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key in ("eye", "target"):
        if key not in k:
            raise CameraPathError(f'{where}: "{key}" is missing')
    out = {"eye": _vec3(k["eye"], f"{where}.eye"), "target": _vec3(k["target"], f"{where}.target"),
           "up": _vec3(k.get("up", list(DEFAULT_UP)), f"{where}.up"),
           "fov_y_deg": _number(k.get("fov_y_deg", DEFAULT_FOV_Y_DEG), f"{where}.fov_y_deg"),
           "near": _number(k.get("near", 1e-6), f"{where}.near"),
           "far": _number(k.get("far", 1e9), f"{where}.far")}
    if not 0.0 < out["fov_y_deg"] < 180.0:
        raise CameraPathError(f"{where}: fov_y_deg must be in (0, 180)")
    if not 0.0 < out["near"] < out["far"]:
        raise CameraPathError(f"{where}: need 0 < near < far")
    forward = out["target"] - out["eye"]
    if not np.linalg.norm(forward) > 0:
        raise CameraPathError(f"{where}: eye and target are the same point")
    if not np.linalg.norm(out["up"]) > 0:
        raise CameraPathError(f"{where}: up is the zero vector")
    _check_up(forward, out["up"], where)
    return out


def _check_up(forward: np.ndarray, up: np.ndarray, where: str) -> None:
    f = forward / np.linalg.norm(forward)
    u = up / np.linalg.norm(up)
    if np.linalg.norm(np.cross(f, u)) < 1e-6:
        raise CameraPathError(f"{where}: up is parallel to the viewing direction")


# ---- building cameras ---------------------------------------------------------------------
def camera_from(eye: np.ndarray, target: np.ndarray, up: np.ndarray, fov_y_deg: float,
                width: int, height: int, near: float = 1e-6, far: float = 1e9) -> Camera:
    """`Camera.look_at`: `up` is the world direction shown upward in the image (callers
    have checked that it is not parallel to the viewing direction)."""
    return Camera.look_at(eye, target, up=up, fov_y_deg=fov_y_deg, width=width, height=height,
                          near=near, far=far)


def interpolate(keyframes: Sequence[Mapping[str, Any]], frames: int, width: int, height: int
                ) -> list[Camera]:
    """`frames` cameras along the keyframes (evenly spaced; see the module docstring)."""
    n = len(keyframes)
    out = []
    for k in range(frames):
        s = 0.0 if frames == 1 else k * (n - 1) / (frames - 1)
        i = min(int(math.floor(s)), n - 2) if n > 1 else 0
        t = s - i if n > 1 else 0.0
        a, b = keyframes[i], keyframes[min(i + 1, n - 1)]

        def lin(key: str) -> np.ndarray:
            return (1 - t) * a[key] + t * b[key]

        def geo(key: str) -> float:
            return math.exp((1 - t) * math.log(a[key]) + t * math.log(b[key]))

        # geometric in tan(fov / 2), i.e. in the focal length
        tan_half = math.exp((1 - t) * math.log(math.tan(math.radians(a["fov_y_deg"]) / 2))
                            + t * math.log(math.tan(math.radians(b["fov_y_deg"]) / 2)))
        fov = 2 * math.degrees(math.atan(tan_half))
        eye, target, up = lin("eye"), lin("target"), lin("up")
        where = f"frame {k} (between keyframes {i} and {i + 1})"
        if not np.linalg.norm(target - eye) > 0 or not np.linalg.norm(up) > 0:
            raise CameraPathError(f"{where}: eye meets target or up vanishes")
        _check_up(target - eye, up, where)
        near, far = geo("near"), geo("far")
        if not near < far:
            raise CameraPathError(f"{where}: need near < far")
        out.append(camera_from(eye, target, up, fov, width, height, near, far))
    return out


def default_camera(points: np.ndarray, width: int, height: int,
                   fov_y_deg: float = DEFAULT_FOV_Y_DEG) -> Camera:
    """A camera looking along +z (OpenCV forward) at the bulk of `points` ([N, 3] world),
    from far enough back that the 2nd..98th percentile box fits the view."""
    pts = np.asarray(points, np.float64)
    if len(pts) == 0:
        raise CameraPathError("the world holds no splats to look at")
    lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
    centre = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    tan_y = math.tan(math.radians(fov_y_deg) / 2)
    tan_x = tan_y * width / height
    extent = max(half[0] / tan_x, half[1] / tan_y, 1e-9)
    distance = extent + half[2]
    eye = centre - np.array([0.0, 0.0, distance * 1.1])
    near = max(distance * 1e-4, 1e-9)
    return camera_from(eye, centre, np.array(DEFAULT_UP), fov_y_deg, width, height, near,
                       max(1e9, distance * 1e4))


MIN_MARGIN = 0.05  # `centring` for a target on or past the start view's edge: as if this far in


def centring(s: float, offset: float) -> float:
    """How far (0..1) a zoom sweep has moved its target from where the start view shows it
    toward the image centre, along one image axis, when its frame has shrunk to `s` (> 0;
    none while s >= 1) of the start's around the target, which sits at `offset`
    half-widths from the centre there: as far as keeps the frame inside the start's (for a
    surface facing the camera), i.e. |offset| (1 - s (1 - w)) + s <= 1, so
    w = (1 - s)(1 - |offset|) / (s |offset|), at most 1: none at the start, all of it once
    s <= 1 - |offset|."""
    o = abs(offset)
    if o == 0.0:
        return 1.0
    margin = 1.0 - o if o < 1.0 else MIN_MARGIN
    return min(1.0, max(0.0, (1.0 - s) * margin / (s * o)))


def zoom_sweep(start: Camera, target: np.ndarray, s_end: float, frames: int) -> list[Camera]:
    """Fly from `start` toward `target` so that the pixel scale at the target (distance /
    focal) shrinks geometrically to `s_end`, keeping `start`'s orientation and intrinsics:
    the target slides from where `start` shows it to the image centre (`centring`, per
    axis), so the first frame is `start`'s view and no frame shows past the edge of what
    `start` saw (of a world that faces the camera) — the zoom of a photo's crop into one of
    its points."""
    target = np.asarray(target, np.float64)
    eye0 = start.position
    d0 = float(np.linalg.norm(target - eye0))
    if not d0 > 0:
        raise CameraPathError("the zoom target is at the camera position")
    d_end = s_end * start.focal
    if not (math.isfinite(d_end) and d_end > 0):
        raise CameraPathError("no finite end scale for the zoom")
    d_end = min(d_end, d0)
    x, y, z = start.points_to_camera(target[None])[0]
    if not z > 0:
        raise CameraPathError("the zoom target is behind the start camera")
    # the target's offset from the principal point, in pixels and in half-widths
    off = np.array([start.fx * x / z, start.fy * y / z])
    half = np.array([0.5 * start.width, 0.5 * start.height])
    R0 = start.T_world_camera[:3, :3]
    out = []
    for k in range(frames):
        u = 0.0 if frames == 1 else k / (frames - 1)
        d = d0 * (d_end / d0) ** u
        # the frame's size on the target's plane over the start's is its depth there over
        # the start's, at most d / z (the target's depth is at most its distance): taken so,
        # the frame shrinks no slower than assumed and stays inside
        w = np.array([centring(d / z, o) for o in off / half])
        px = off * (1.0 - w)  # where this frame shows the target, from the principal point
        ray = R0 @ np.array([px[0] / start.fx, px[1] / start.fy, 1.0])
        T = start.T_world_camera.copy()
        T[:3, 3] = target - d * ray / np.linalg.norm(ray)
        out.append(replace(start, T_world_camera=T, near=min(start.near, d * 1e-3)))
    return out
