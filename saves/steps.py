"""STEP, HEAD and META payloads: `engine.history.Step` <-> JSON, strictly validated.

Owns: the JSON schema of steps (camera via `Camera.to_dict/from_dict`), head records and the
meta dict, and their validation (types, ranges, finite numbers, bounded strings).
Does not own: the history tree's rules (`engine.history.History` enforces parents and ids while
`saves.format` replays records into it) or the bytes around the JSON (`saves.records`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from engine.camera import Camera, CameraError
from engine.history import STEP_KINDS, HistoryError, Step
from saves.errors import SaveFormatError
from saves.limits import LoadLimits
from saves.records import check_json_value, check_string, flat_json_ok

MAX_ID = 1 << 53
MAX_ABS_POINT = 1e12
STEP_REQUIRED = frozenset({"id", "parent", "kind", "chunk_ids"})
STEP_OPTIONAL = frozenset({"camera", "point", "prompt", "backend", "timings", "created",
                           "move_head"})
_STEP_KEYS = STEP_REQUIRED | STEP_OPTIONAL
_MISSING = object()
CAMERA_KEYS = frozenset({"T_world_camera", "fx", "fy", "cx", "cy", "width", "height", "near",
                         "far"})
MAX_CREATED_CHARS = 64
_CAMERA_SCALARS = ("fx", "fy", "cx", "cy", "width", "height", "near", "far")
_NUMBER_TYPES = frozenset({int, float})  # exact types: a JSON true/false is a bool, refused


# ---- encoding --------------------------------------------------------------------------
def step_to_json(step: Step, move_head: bool) -> dict[str, Any]:
    return {
        "id": int(step.id),
        "parent": None if step.parent is None else int(step.parent),
        "kind": step.kind,
        "chunk_ids": [int(c) for c in step.chunk_ids],
        "camera": None if step.camera is None else step.camera.to_dict(),
        "point": None if step.point is None else [float(x) for x in step.point],
        "prompt": step.prompt,
        "backend": dict(step.backend),
        "timings": {str(k): float(v) for k, v in step.timings.items()},
        "created": step.created,
        "move_head": bool(move_head),
    }


def head_to_json(step_id: int) -> dict[str, Any]:
    return {"head": int(step_id)}


# ---- decoding --------------------------------------------------------------------------
def _id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_ID:
        raise SaveFormatError(f"{what} must be an integer in [0, 2^53)")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SaveFormatError(f"{what} must be a number")
    out = float(value)
    if not math.isfinite(out):
        raise SaveFormatError(f"{what} is not finite")
    return out


def _camera(value: Any, what: str) -> Camera | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not set(value) <= CAMERA_KEYS:
        raise SaveFormatError(f"{what}: camera must be an object with fields "
                              f"{', '.join(sorted(CAMERA_KEYS))}")
    pose = value.get("T_world_camera")
    if not (type(pose) is list and len(pose) == 4
            and all(type(row) is list and len(row) == 4 for row in pose)):
        raise SaveFormatError(f"{what}: camera pose must be a 4x4 list of numbers")
    flat = [*pose[0], *pose[1], *pose[2], *pose[3]]
    scalars = [value.get(k) for k in _CAMERA_SCALARS]
    if not set(map(type, flat)) <= _NUMBER_TYPES or \
            not set(map(type, scalars)) <= _NUMBER_TYPES | {type(None)}:
        raise SaveFormatError(f"{what}: camera fields must be numbers")
    try:
        if not all(map(math.isfinite, flat)) or \
                not all(x is None or math.isfinite(x) for x in scalars):
            raise SaveFormatError(f"{what}: camera holds a number that is not finite")
        fx, fy, cx, cy, width, height, near, far = scalars
        if width is None or height is None or fx is None or fy is None or cx is None \
                or cy is None or width != int(width) or height != int(height):
            raise SaveFormatError(f"{what}: camera needs fx fy cx cy and whole width, height")
        return Camera(np.array(pose, np.float64), fx, fy, cx, cy, int(width), int(height),
                      1e-6 if near is None else near, 1e9 if far is None else far)
    except (CameraError, ValueError, TypeError, OverflowError) as exc:
        raise SaveFormatError(f"{what}: bad camera ({exc})") from None


def _point(value: Any, what: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if type(value) is not list or len(value) != 3 or not set(map(type, value)) <= _NUMBER_TYPES:
        raise SaveFormatError(f"{what}: point must be 3 numbers or null")
    try:
        p = (float(value[0]), float(value[1]), float(value[2]))
    except OverflowError:
        raise SaveFormatError(f"{what}: point is not finite") from None
    if not all(map(math.isfinite, p)):
        raise SaveFormatError(f"{what}: point is not finite")
    if max(map(abs, p)) > MAX_ABS_POINT:
        raise SaveFormatError(f"{what}: point is absurdly far away")
    return p


def _backend(value: Any, what: str, limits: LoadLimits) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SaveFormatError(f"{what}: backend must be an object")
    if not value:
        return value
    check_json_value(value, limits, what)  # free-form: depth, strings and numbers
    for key in ("name", "version"):
        if key in value and not isinstance(value[key], str):
            raise SaveFormatError(f"{what}: backend {key} must be a string")
    seed = value.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SaveFormatError(f"{what}: backend seed must be an integer or null")
    if "settings" in value and not isinstance(value["settings"], dict):
        raise SaveFormatError(f"{what}: backend settings must be an object")
    return value


def _usual_backend(value: dict, max_chars: int) -> bool:
    """True if `_backend` accepts `value` as it is: a flat object of plain scalars (a writer's
    name, version and seed; `settings` only nested, so never here)."""
    return (flat_json_ok(value, max_chars) and type(value.get("name", "")) is str
            and type(value.get("version", "")) is str and type(value.get("seed")) in _SEED_TYPES
            and "settings" not in value)


_SEED_TYPES = (int, type(None))


def _timings(value: Any, what: str, limits: LoadLimits) -> dict[str, float]:
    if not isinstance(value, dict):
        raise SaveFormatError(f"{what}: timings must be an object")
    out = {}
    max_chars = limits.max_string_chars
    for key, seconds in value.items():
        if type(key) is str and type(seconds) is float and 0.0 <= seconds < math.inf \
                and len(key) <= max_chars and key.isascii():
            out[key] = seconds  # (what the checks below give it: the usual entry, unformatted)
            continue
        check_string(key, max_chars, what)
        t = _number(seconds, f"{what}: timing {ascii(key)[:40]}")
        if t < 0:
            raise SaveFormatError(f"{what}: timing {ascii(key)[:40]} is negative")
        out[key] = t
    return out


def step_from_json(body: Any, limits: LoadLimits) -> tuple[Step, bool]:
    """(Step, move_head) from a STEP payload; raises SaveFormatError on anything malformed.
    Every field is checked here, types, ranges and sizes (the payload was parsed without
    `parse_json`'s generic walk, which only the free-form `backend` gets).

    The usual payload takes `_usual_step` (the hot path of opening a long history); anything
    it does not recognise goes to `_step_from_json`, the reference, which accepts or names
    what is wrong. Both build the same Step from the same payload (tested)."""
    usual = _usual_step(body, limits)
    return usual if usual is not None else _step_from_json(body, limits)


def _usual_step(body: Any, limits: LoadLimits) -> tuple[Step, bool] | None:
    """`_step_from_json` for the payloads writers make (exact JSON types, distinct in-range
    ids, ASCII prompt and time within their limits), with no message formatted and no
    second validation in the Step constructor; None for anything else. Camera, point,
    backend and timings, when present, go through the reference's own checks, in its
    order, so an error there is the reference's error."""
    if type(body) is not dict:
        return None
    keys = body.keys()
    if not STEP_REQUIRED <= keys <= _STEP_KEYS:
        return None
    get = body.get
    sid, parent, kind, ids = body["id"], body["parent"], body["kind"], body["chunk_ids"]
    prompt, created, move_head = get("prompt", ""), get("created", ""), get("move_head", True)
    if (type(sid) is not int or not 0 <= sid < MAX_ID
            or parent is not None and (type(parent) is not int or not 0 <= parent < MAX_ID)
            or type(kind) is not str or kind not in STEP_KINDS
            or type(ids) is not list or len(ids) > limits.max_chunks_per_step
            or type(prompt) is not str or len(prompt) > limits.max_prompt_chars
            or not prompt.isascii()
            or type(created) is not str or len(created) > MAX_CREATED_CHARS
            or not created.isascii() or type(move_head) is not bool):
        return None
    if ids:
        if not all(type(c) is int and 0 <= c < MAX_ID for c in ids) or len(set(ids)) != len(ids):
            return None
        chunk_ids = tuple(ids)
    else:
        chunk_ids = ()
    camera, point = get("camera"), get("point")
    backend, timings = get("backend", _MISSING), get("timings", _MISSING)
    if camera is None and point is None and type(backend) is dict and not backend \
            and type(timings) is dict and not timings:
        return Step.checked(sid, parent, kind, chunk_ids, None, None, prompt, backend, timings,
                            created), move_head
    what = f"step {sid}"
    if camera is not None:  # (in the reference's order: camera, point, backend, timings)
        camera = Camera.from_plain_dict(camera) or _camera(camera, what)
    point = None if point is None else _point(point, what)
    if backend is _MISSING:
        backend = {}
    elif not (type(backend) is dict and _usual_backend(backend, limits.max_string_chars)):
        backend = _backend(backend, what, limits)
    return Step.checked(sid, parent, kind, chunk_ids, camera, point, prompt, backend,
                        {} if timings is _MISSING else _timings(timings, what, limits),
                        created), move_head


def _step_from_json(body: Any, limits: LoadLimits) -> tuple[Step, bool]:
    """The reference reader of a STEP payload: every field checked with its own message."""
    if type(body) is not dict:
        raise SaveFormatError("step record must be a JSON object")
    keys = body.keys()
    if not (STEP_REQUIRED <= keys and keys <= _STEP_KEYS):
        extra = sorted(keys - _STEP_KEYS) or sorted(STEP_REQUIRED - keys)
        raise SaveFormatError(f"step record has missing or unknown field {ascii(extra[0])[:60]}")
    sid = _id(body["id"], "step id")
    what = f"step {sid}"
    parent = body["parent"]
    if parent is not None:
        parent = _id(parent, f"{what} parent")
    kind = body["kind"]
    if kind not in STEP_KINDS:
        raise SaveFormatError(f"{what}: unknown kind {ascii(kind)[:40]}")
    ids = body["chunk_ids"]
    if type(ids) is not list or len(ids) > limits.max_chunks_per_step:
        raise SaveFormatError(f"{what}: chunk_ids must be a list of at most "
                              f"{limits.max_chunks_per_step} ids")
    if ids:
        chunk_ids = tuple(_id(c, f"{what} chunk id") for c in ids)
        if len(set(chunk_ids)) != len(chunk_ids):
            raise SaveFormatError(f"{what} lists a chunk twice")
    else:
        chunk_ids = ()
    get = body.get
    prompt, created, move_head = get("prompt", ""), get("created", ""), get("move_head", True)
    if type(prompt) is not str or type(created) is not str or type(move_head) is not bool:
        raise SaveFormatError(f"{what}: prompt/created must be strings, move_head a boolean")
    check_string(prompt, limits.max_prompt_chars, f"{what} prompt")
    check_string(created, MAX_CREATED_CHARS, f"{what} created time")
    backend, timings = get("backend", _MISSING), get("timings", _MISSING)
    try:
        step = Step(sid, parent, kind, chunk_ids, _camera(get("camera"), what),
                    _point(get("point"), what), prompt,
                    {} if backend is _MISSING else _backend(backend, what, limits),
                    {} if timings is _MISSING else _timings(timings, what, limits), created)
    except HistoryError as exc:
        raise SaveFormatError(f"{what}: {exc}") from None
    return step, move_head


def head_from_json(body: Any) -> int:
    if not isinstance(body, dict) or set(body) != {"head"}:
        raise SaveFormatError("head record must be {\"head\": step id}")
    return _id(body["head"], "head step id")


def meta_from_json(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SaveFormatError("meta record must be a JSON object")
    return body
