"""What several commands share: world paths, loading, steps, sizes, pixels and views.

Owns: turning argument text into checked values (`world_path`, `step_arg`, `parse_size`,
`parse_at`, `parse_view`), loading a world for a command, and the creation time stamped on
new steps. Every mistake raises a `UserError` with one line.
Does not own: the file format (`saves`), cameras (`engine.camera`) or printing results.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from engine.camera import check_render_camera
from engine.errors import UserError
from engine.history import printable
from engine.textfiles import read_text_file

WORLD_SUFFIX = ".wzs"
MAX_CAMERA_JSON_BYTES = 64 << 10


def world_path(path: str, must_exist: bool = True) -> Path:
    p = Path(path)
    if p.suffix.lower() != WORLD_SUFFIX:
        raise UserError(f"{path}: not a world file (expected a {WORLD_SUFFIX} file)")
    if must_exist and not p.exists():
        raise UserError(f"{path}: no such file")
    if must_exist and not p.is_file():
        raise UserError(f"{path}: not a regular file")
    return p


def new_world_path(path: str, force: bool) -> Path:
    """An output world path: refused if it exists and `force` is not given, or if its folder
    is missing or not writable -- before the command's work, not after minutes of it."""
    out = world_path(path, must_exist=False)
    if out.exists() and not force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    folder = out.parent
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{out}: {folder}: Not a directory")
    if not folder.is_dir():
        raise UserError(f"{out}: no folder {folder} to write it in")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot write in {folder} (permission denied)")
    return out


def load(path: str):
    """The validated world at `path`, chunks decoded (`saves.LoadedWorld`)."""
    from saves import load_world

    return load_world(world_path(path))


def open_file(path: str):
    """The world at `path` opened by its index (`saves.world_file.WorldFile`: history, chunk
    metadata and links checked; payloads read and checked when a chunk is needed), in time
    and memory that do not grow with the world: `render`, `export`, `compact`, `zoom`,
    `play`. The caller closes it."""
    from saves.world_file import open_world

    return open_world(world_path(path))


RAM_ENV = "WONDERZOOM_RAM_MB"


def add_ram_argument(p) -> None:
    p.add_argument("--ram-mb", type=int, default=None, metavar="MB",
                   help="RAM for decoded chunks streamed from the world file (default 192, "
                        "or $WONDERZOOM_RAM_MB); what does not fit is read again when needed")


def ram_budget(arg: int | None) -> int:
    """`--ram-mb`, else $WONDERZOOM_RAM_MB, else the engine's default: bytes."""
    from engine.chunkstore import DEFAULT_RAM_BYTES

    text = str(arg) if arg is not None else os.environ.get(RAM_ENV, "").strip()
    if not text:
        return DEFAULT_RAM_BYTES
    if not text.isdigit() or not 16 <= int(text) <= 1 << 20:
        raise UserError(f"RAM budget {printable(text)}: expected a whole number of MB, 16 or more")
    return int(text) << 20


WRITER_WAIT_S = 120.0  # another program appending to the same world: wait this long for it


def open_writer(path: Path, heads_only: bool = False):
    """`saves.WorldWriter` on `path`, waiting (with a note on stderr) while another program
    appends to it, so minutes of generation are not thrown away by a collision. A world of
    an older format version is upgraded first (rewritten atomically), unless only its head
    will move (`heads_only`: a HEAD record is the same in every version)."""
    import sys

    from saves import WorldWriter

    def note() -> None:
        print(f"waiting for another program writing {printable(str(path))} ...", file=sys.stderr)

    return WorldWriter.open(path, wait_s=WRITER_WAIT_S, on_wait=note, upgrade=True,
                            heads_only=heads_only)


def load_info(path: str):
    """The world at `path` without its chunk payloads (`saves.WorldInfo`): what `info`,
    `history` and `checkout` need, in time and memory that do not grow with the payloads."""
    from saves import read_world_info

    return read_world_info(world_path(path))


def step_arg(history, step: int | None) -> int:
    """`step` if the history has it, else the head when `step` is None."""
    if step is None:
        if history.head is None:
            raise UserError("the world has no steps yet")
        return history.head
    if step not in history.steps:
        known = ", ".join(str(s) for s in sorted(history.steps))
        raise UserError(f"no step {step} in this world (steps: {known})")
    return step


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise UserError(f"{flag} {text!r}: each side must be 64..8192 pixels")
    return w, h


def parse_pixel(text: str, width: float | None = None,
                height: float | None = None) -> tuple[float, float]:
    """`U,V` as two finite numbers: pixels, or percentages of a `width` x `height` view
    (`50%,40%`; 100% is the last pixel's centre), so a point can be named without knowing the
    size a world's views were made at (640 px on a CPU, 1280 on a GPU)."""
    def one(part: str, size: float | None) -> float:
        part = part.strip()
        if part.endswith("%") and size is not None:
            share = float(part[:-1])
            if not 0 <= share <= 100:
                raise UserError(f"--at {text!r}: a percentage must be in 0..100")
            return min(share / 100 * size, size - 0.5)
        return float(part)

    try:
        u_s, v_s = text.split(",")
        u, v = one(u_s, width), one(v_s, height)
    except ValueError:
        raise UserError(f"--at {text!r}: expected U,V (two numbers, e.g. --at 120,80, or "
                        f"percentages of the view, e.g. --at 50%,40%)") from None
    if not (math.isfinite(u) and math.isfinite(v)):
        raise UserError(f"--at {text!r}: not finite")
    return u, v


def parse_at(text: str, width: int, height: int) -> tuple[float, float]:
    """`U,V` (pixels or percentages), a pixel inside a `width` x `height` view."""
    u, v = parse_pixel(text, width, height)
    if not (0 <= u < width and 0 <= v < height):
        raise UserError(f"--at {text!r}: outside the {width}x{height} view (its pixels, not "
                        f"the photo's; or give percentages, e.g. --at 50%,40%)")
    return u, v


def parse_view(text: str | None, history):
    """The camera `--view` names: a step id, a camera JSON file or inline JSON (default: the
    head step's camera), or `FILE#K`: camera K (from 0) of a camera list such as the
    `cameras.json` that `render` writes beside its frames (frame K's view)."""
    from engine.camera import Camera, CameraError

    if text is None:
        cam = history.steps[history.head].camera
        if cam is None:
            raise UserError(f"the head step {history.head} has no camera (an imported world): "
                            f"name a view with --view, e.g. the first frame's after `wonderzoom "
                            f"render WORLD --zoom-sweep --frames 1 --out DIR`: "
                            f"--view DIR/cameras.json#0")
        return cam
    t = text.strip()
    if t.lstrip("-").isdigit():
        step = int(t)
        if step not in history.steps:
            known = ", ".join(str(s) for s in sorted(history.steps))
            raise UserError(f"--view {text}: no step {step} (steps: {known})")
        if history.steps[step].camera is None:
            raise UserError(f"--view {text}: step {step} has no camera")
        return history.steps[step].camera
    index = None
    if not t.startswith("{") and not Path(t).exists() and "#" in t:
        t, _, k = t.rpartition("#")
        if not k.isdigit():
            raise UserError(f"--view {printable(text)}: after '#' comes a camera's number "
                            "(from 0)")
        index = int(k)
    if t.startswith("{"):
        raw = t
    elif Path(t).exists():
        raw = read_text_file(t, MAX_CAMERA_JSON_BYTES, UserError, "camera file")
    else:
        raise UserError(f"--view {printable(text)}: not a step id, a camera JSON file or "
                        "inline JSON")
    if len(raw) > MAX_CAMERA_JSON_BYTES:
        raise UserError("--view: the camera JSON is too large")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
        cameras = data.get("cameras") if isinstance(data, dict) else None
        if isinstance(cameras, list):  # a camera list (`render`'s cameras.json)
            if index is None or not index < len(cameras):
                raise UserError(f"--view {printable(text)}: a list of {len(cameras)} cameras; "
                                f"name one as {printable(t)}#K, K from 0 to "
                                f"{len(cameras) - 1} (frame_{0:04d}.png is #0)")
            data = cameras[index]
        elif index is not None:
            raise UserError(f"--view {printable(text)}: '#K' names a camera of a camera list, "
                            "and this file holds one camera")
        cam = Camera.from_dict(data.get("camera", data) if isinstance(data, dict) else data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, 5,000-digit integers
        if isinstance(exc, CameraError):
            raise UserError(f"--view: bad camera ({exc})") from None
        raise UserError(f"--view: not valid JSON ({exc.__class__.__name__})") from None
    check_render_camera(cam, "--view")
    return cam


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


RENDERER_ENV = "WONDERZOOM_RENDERER"


def add_renderer_argument(p) -> None:
    p.add_argument("--renderer", choices=("auto", "cpu", "gpu"), default=None,
                   help="who culls and sorts the splats: the CPU (numpy) or the GPU (compute "
                        "shaders, GL >= 4.3); auto (the default) picks the GPU on a hardware GPU "
                        "where a probe frame is faster, else the CPU. Without this flag: "
                        "$WONDERZOOM_RENDERER, else `renderer` in the config file's [render] "
                        "table, else auto")


def renderer_choice(arg: str | None, config_arg: str | None = None) -> str:
    """`--renderer`, else $WONDERZOOM_RENDERER, else the config file's `[render] renderer`
    (`--config`, else $WONDERZOOM_CONFIG), else auto."""
    value = arg or os.environ.get(RENDERER_ENV, "").strip().lower()
    if not value:
        from generation.model_config import file_renderer

        value = file_renderer(config_arg) or "auto"
    if value not in ("auto", "cpu", "gpu"):
        raise UserError(f"${RENDERER_ENV}={printable(value)}: expected auto, cpu or gpu")
    return value


def now() -> str:
    """The creation time stamped on a new step."""
    from engine.history import utc_timestamp

    return utc_timestamp()
