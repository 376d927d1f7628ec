"""The `wonderzoom new` and `wonderzoom zoom` commands (main.py wires them in).

Owns: their arguments, turning user input into a pipeline run (image checks, `--at U,V`, the
`--view` camera, `--set key=value` settings, the backend name), picking the zoom target by
depth at the chosen pixel, building the `ZoomRequest` from the loaded world at its head, the
progress bars (rich, one per stage, on stderr) and the timing summary, and writing the result:
a new world file for `new`, one appended step for `zoom` (the file is only touched once the
generation has succeeded, with `WorldWriter.append_step`, which is crash-safe).
Does not own: the pipeline (`generation.pipeline`), the file format (`saves`) or exit codes
(main.py turns `UsageError` into one line and status 2).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

MAX_CAMERA_JSON_BYTES = 64 << 10


class UsageError(ValueError):
    """A mistake the user can fix (one line)."""


# ---- arguments --------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", default="", help="what to grow (zoom) / describes the scene (new)")
    p.add_argument("--backend", default=None,
                   help="use this backend (builtin, bicubic, diffusers, transformers) for every "
                        "stage that has it (default: the config file's, else builtin: offline "
                        "on a CPU)")
    add_config_argument(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the step id)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="working size: long side in pixels (default 384 for new, 320 for zoom)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="optimiser iterations (default 12 for new, 10 for zoom)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any generation setting, e.g. --set aux_views_zoom=2 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_new_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="input image (JPEG, PNG or WebP, any size)")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")
    _common(p)


def add_zoom_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("world", help="world file (.wzs); the new level is appended to it")
    p.add_argument("--at", required=True, metavar="U,V",
                   help="pixel of the view to zoom into (column, row; 0,0 = top left)")
    p.add_argument("--view", default=None, metavar="STEP_OR_CAMERA_JSON",
                   help="the view --at refers to: a step id (its camera), a camera JSON file or "
                        "inline JSON (default: the head step's camera)")
    p.add_argument("--factor", type=float, default=4.0,
                   help="how many times narrower the new view is (default 4)")
    _common(p)


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, metavar="TOML",
                   help="model configuration: the backend and model of each stage, device, "
                        "settings (default: $WONDERZOOM_CONFIG if set, else the builtin backend; "
                        "example in docs/models.toml)")


# ---- helpers ----------------------------------------------------------------------------
def file_settings(config_arg: str | None) -> dict[str, Any]:
    """The settings of the model config file (`--config`, else $WONDERZOOM_CONFIG), or {}."""
    from generation.config import ConfigError
    from generation.model_config import config_path, read_settings

    path = config_path(config_arg)
    if path is None:
        return {}
    try:
        return read_settings(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def config_from_args(args: argparse.Namespace, kind: str):
    from generation.config import STAGES, ConfigError, GenerationConfig
    from generation.model_config import registry

    # the CLI has no frame loop to keep a core for: use them all (the service leaves one)
    settings: dict[str, Any] = {**file_settings(getattr(args, "config", None)),
                                "num_threads": _all_cores()}
    if args.backend is not None:  # every stage that has such a backend uses it
        chosen = {st: args.backend for st in STAGES if args.backend in registry(st).names()}
        if not chosen:
            known = sorted({n for st in STAGES for n in registry(st).names()})
            raise UsageError(f"--backend: unknown backend {args.backend!r} "
                             f"(known: {', '.join(known)})")
        settings["backends"] = {**settings.get("backends", {}), **chosen}
    if args.size is not None:
        settings[f"{kind}_long_side"] = args.size
    if args.iterations is not None:
        settings[f"{kind}_iterations"] = args.iterations
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = value.strip()
    try:
        config = GenerationConfig.from_settings(settings)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    for stage in STAGES:
        names = registry(stage).names()
        name = config.backend_for(stage)
        if name not in names:
            raise UsageError(f"stage {stage}: unknown backend {name!r} "
                             f"(known: {', '.join(names)})")
    return config


def _all_cores() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def parse_at(text: str, width: int, height: int) -> tuple[float, float]:
    try:
        u_s, v_s = text.split(",")
        u, v = float(u_s), float(v_s)
    except ValueError:
        raise UsageError(f"--at {text!r}: expected U,V (two numbers, e.g. --at 120,80)") from None
    if not (math.isfinite(u) and math.isfinite(v)):
        raise UsageError(f"--at {text!r}: not finite")
    if not (0 <= u < width and 0 <= v < height):
        raise UsageError(f"--at {text!r}: outside the {width}x{height} view")
    return u, v


def parse_view(text: str | None, history):
    """The camera `--view` names (default: the head step's camera)."""
    from engine.camera import Camera, CameraError

    if text is None:
        cam = history.steps[history.head].camera
        if cam is None:
            raise UsageError(f"the head step {history.head} has no camera; pass --view")
        return cam
    t = text.strip()
    if t.lstrip("-").isdigit():
        step = int(t)
        if step not in history.steps:
            known = ", ".join(str(s) for s in sorted(history.steps))
            raise UsageError(f"--view {text}: no step {step} (steps: {known})")
        if history.steps[step].camera is None:
            raise UsageError(f"--view {text}: step {step} has no camera")
        return history.steps[step].camera
    if t.startswith("{"):
        raw = t
    else:
        p = Path(t)
        if not p.is_file():
            raise UsageError(f"--view {text}: not a step id, a camera JSON file or inline JSON")
        if p.stat().st_size > MAX_CAMERA_JSON_BYTES:
            raise UsageError(f"--view {text}: the camera file is too large")
        raw = p.read_text(encoding="utf-8", errors="replace")
    if len(raw) > MAX_CAMERA_JSON_BYTES:
        raise UsageError("--view: the camera JSON is too large")
    try:
        data = json.loads(raw)
        cam = Camera.from_dict(data.get("camera", data) if isinstance(data, dict) else data)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"--view: not valid JSON ({exc.__class__.__name__})") from None
    except CameraError as exc:
        raise UsageError(f"--view: bad camera ({exc})") from None
    return cam


class StageBars:
    """A rich progress bar per stage (stderr), and the stage timings at the end (stdout)."""

    def __init__(self, stages: Sequence[str], enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn)

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description:<14}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(),
                                 console=self.console, disable=not enabled)
        self.tasks: dict[str, Any] = {}
        self.stages = stages

    def __enter__(self) -> "StageBars":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, stage: str, fraction: float) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=1.0)
        self.progress.update(self.tasks[stage], completed=min(max(fraction, 0.0), 1.0))


def print_timings(title: str, timings: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    total = timings.get("total", sum(timings.values())) or 1e-9
    for stage, secs in timings.items():
        if stage == "total":
            continue
        table.add_row(stage, f"{secs:.2f}", f"{100 * secs / total:.0f}%")
    table.add_row("total", f"{total:.2f}", "100%", style="bold")
    Console().print(table)


# ---- new --------------------------------------------------------------------------------
def new_world(args: argparse.Namespace, out: Path, now: str) -> int:
    from engine.history import History, Step
    from generation.image_input import ImageInputError, load_image
    from generation.pipeline import NEW_STAGES, run_new
    from saves import save_world

    if out.exists() and not args.force:
        raise UsageError(f"{out}: already exists (use --force to replace it)")
    config = config_from_args(args, "new")
    try:
        image = load_image(args.image)
    except ImageInputError as exc:
        raise UsageError(str(exc)) from None
    seed = 0 if args.seed is None else args.seed
    try:
        with StageBars(NEW_STAGES, not args.quiet) as bars:
            result = run_new(image, args.prompt, seed, config, progress=bars)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    ids = tuple(range(len(result.chunks)))
    history = History()
    history.add(Step(0, None, "image", ids, camera=result.camera, prompt=args.prompt,
                     backend=result.backend, timings=result.timings, created=now))
    save_world(out, history, dict(zip(ids, result.chunks)),
               meta={"source": Path(args.image).name[:200], "prompt": args.prompt})
    n = sum(len(c) for c in result.chunks)
    h, w = result.rgb.shape[:2]
    print(f"wrote {out}: step 0, {n:,} splats in {len(ids)} chunks ({w}x{h} working image)")
    print_timings("new: seconds per stage", dict(result.timings))
    return 0


# ---- zoom -------------------------------------------------------------------------------
def world_at_head(loaded) -> tuple[list[tuple[int, Any]], Any]:
    """[(chunk id, chunk)] on the path to the head and their LoD index."""
    from engine.lod import build_lod_index

    history = loaded.history
    levels = []
    pairs = []
    for step in history.path():
        chunks = {cid: loaded.chunks[cid] for cid in step.chunk_ids}
        levels.append((step.camera if step.kind == "zoom" else None, chunks))
        pairs.extend(chunks.items())
    return pairs, build_lod_index(levels)


def pick_point(view, scene, u: float, v: float):
    """World point under pixel (u, v) of `view`: the median depth of the world there."""
    import numpy as np

    from generation.pipeline import working_camera
    from generation.stages.observe import render_view

    cam = working_camera(view, min(512, max(view.width, view.height)))
    su, sv = u * cam.width / view.width, v * cam.height / view.height
    _, alpha, _, median = render_view(cam, scene)
    j, i = min(int(su), cam.width - 1), min(int(sv), cam.height - 1)
    if alpha[i, j] < 0.5 or not (median[i, j] > 0):
        raise UsageError(f"--at {u:g},{v:g}: nothing of the world is there in this view")
    return cam.unproject(np.array([[su, sv]]), np.array([median[i, j]]))[0]


def build_request(loaded, view, u: float, v: float, prompt: str, factor: float, seed: int,
                  request_id: int = 0):
    """The ZoomRequest `wonderzoom zoom` (and tests, benchmarks) send for pixel (u, v)."""
    import numpy as np

    from engine.messages import ZoomRequest
    from engine.synthetic import zoom_camera

    pairs, index = world_at_head(loaded)
    scene = tuple((chunk, index.links[cid]) for cid, chunk in pairs if len(chunk))
    point = pick_point(view, scene, u, v)
    c_i = zoom_camera(view, point, factor)
    # send what the parent view sees (auxiliary cameras orbit the target inside it)
    wide = c_i.with_fov_scale(1.0 / factor)
    lo = np.stack([c.bounds()[0] for c, _ in scene])
    hi = np.stack([c.bounds()[1] for c, _ in scene])
    keep = wide.aabbs_in_frustum(lo, hi)
    sent = tuple(pair for pair, k in zip(scene, keep) if k)
    history = loaded.history
    return ZoomRequest(request_id, history.head, c_i, tuple(float(x) for x in point), prompt,
                       seed=seed, scene=sent, level=history.level_of(history.head) + 1,
                       context=tuple(s.prompt for s in history.path() if s.prompt))


def zoom_world(args: argparse.Namespace, loaded, path: Path, now: str) -> int:
    from engine.history import Step
    from generation.pipeline import ZOOM_STAGES, Cancelled, run_zoom
    from saves import WorldWriter

    history = loaded.history
    if history.head is None:
        raise UsageError(f"{path}: the world has no steps yet")
    view = parse_view(args.view, history)
    u, v = parse_at(args.at, view.width, view.height)
    if not (math.isfinite(args.factor) and 1.0 < args.factor <= 64.0):
        raise UsageError(f"--factor {args.factor:g}: must be in (1, 64]")
    if len(args.prompt) > 2000:
        raise UsageError("--prompt: at most 2000 characters")
    config = config_from_args(args, "zoom")
    seed = history.next_id() if args.seed is None else args.seed
    request = build_request(loaded, view, u, v, args.prompt, args.factor, seed)
    try:
        with StageBars(ZOOM_STAGES, not args.quiet) as bars:
            run = run_zoom(request, config, progress=bars)
    except (ValueError, Cancelled) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    with WorldWriter.open(path) as writer:
        base = max(writer.chunk_ids, default=-1) + 1
        ids = tuple(range(base, base + len(run.chunks)))
        step = Step(writer.history.next_id(), request.parent_step, "zoom", ids,
                    camera=run.camera, point=request.point, prompt=args.prompt,
                    backend=dict(run.backend), timings=dict(run.timings), created=now)
        writer.append_step(step, dict(zip(ids, run.chunks)))
    n = sum(len(c) for c in run.chunks)
    print(f"appended step {step.id} (level {request.level}, x{run.factor:.2f} finer): "
          f"{n:,} splats in {len(ids)} chunks; {run.edited.label or 'no structure'}; "
          f"context: {run.context.caption}")
    print_timings("zoom: seconds per stage", dict(run.timings))
    return 0



# ---- models -----------------------------------------------------------------------------
def models_command(args: argparse.Namespace) -> int:
    """`wonderzoom models`: what each stage uses, whether its model is here, how to fetch it."""
    from generation.config import ConfigError, GenerationConfig
    from generation.model_config import config_path, model_rows

    path = config_path(args.config)
    try:
        config = GenerationConfig.from_settings(file_settings(args.config))
        rows = model_rows(config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    source = f"config: {path}" if path else "config: none (builtin backends; pass --config TOML " \
        "or set $WONDERZOOM_CONFIG)"
    if args.json:
        print(json.dumps({"config": str(path) if path else None, "device": config.device,
                          "dtype": config.dtype, "stages": [
                              {"stage": r.stage, "backend": r.backend, "model": r.model or None,
                               "config_key": r.config_key or None, "present": r.present,
                               "where": r.where} for r in rows]}))
    else:
        print(source)
        print(f"device: {config.device}, dtype: {config.dtype}")
        w_stage = max(len(r.stage) for r in rows)
        w_backend = max(len(r.backend) for r in rows)
        for r in rows:
            state = "ok     " if r.present else "MISSING"
            what = r.model or r.where
            print(f"  {r.stage:<{w_stage}}  {r.backend:<{w_backend}}  {state}  {what}"
                  + (f"  ({r.where})" if not r.present or r.model else ""))
        missing = [r for r in rows if not r.present]
        if missing:
            from generation.backends.hf import fetch_command, is_path

            print("\nmissing models; on a machine with internet (pip install huggingface_hub):")
            for r in missing:
                if r.backend == "hook" or is_path(r.model):
                    print(f"  {r.config_key}: {r.where}")
                else:
                    print(f"  {fetch_command(r.model)}    # {r.config_key}")
            print("then copy the Hugging Face cache (~/.cache/huggingface) here, or point the "
                  "config keys at local folders")
    return 1 if any(not r.present for r in rows) else 0
