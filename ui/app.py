"""The app: a pygame + moderngl window running the frame loop over a multi-scale world.

Owns: `App` — the stage functions plugged into `engine.loop.FrameLoop` (input -> camera ->
streaming (generation results become deferred hot-loads) -> render -> HUD -> apply + present),
picking a point of interest from rendered depth, the prompt box, undo/redo over the history,
screenshots, opening dropped files, and handing finished steps to the saver.
Does not own: file formats, generation or rendering internals; those come in through the
constructor (`generator`, `saver`, `open_world`), wired by `main.py`.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import moderngl
import numpy as np
import pygame

from engine.camera import Camera
from engine.clock import Clock
from engine.controller import FlyController
from engine.history import History, Step
from engine.loop import FrameContext, FrameLoop
from engine.messages import ProgressEvent, ZoomRequest, ZoomResult
from engine.render.gl import prefer_compatibility_profile
from engine.render.streaming import StreamingRenderer
from engine.lod import LodIndex
from engine.scene import (ChunkBounds, ChunkHandle, ChunkStore, LevelNode, PointOfInterest,
                          append_level, build_scene)
from engine.splats import SplatChunk
from engine.world import World
from ui.bindings import Bindings
from ui.hud import Hud, HudState
from ui.input import FrameInput, InputSystem

BACKGROUND = (0.05, 0.06, 0.08)
ZOOM_REQUEST_FACTOR = 4.0  # a zoom step looks at the picked point with a 4x narrower view
REQUEST_SIZE = 320  # long side of C_i, the camera of a zoom request (the pipeline's working size)
MESSAGE_SECONDS = 6.0
MAX_PROMPT_CHARS = 300


class Generator(Protocol):
    def submit(self, request: ZoomRequest) -> None: ...
    def poll(self) -> list[ProgressEvent | ZoomResult]: ...
    def cancel(self, request_id: int) -> None: ...
    def close(self) -> None: ...


class Saver(Protocol):
    def append_step(self, step: Step, chunks: Mapping[int, SplatChunk]) -> None: ...
    def set_head(self, step_id: int) -> None: ...
    def save_as(self, path: Any, history: History, chunks: Mapping[int, SplatChunk], meta: Any = None) -> None: ...
    def poll(self) -> list: ...
    def flush(self, timeout: float = 30.0) -> bool: ...


@dataclass
class AppConfig:
    width: int = 1280
    height: int = 720
    fps_cap: float | None = 60.0
    vsync: bool = True
    screenshot_dir: Path = Path("screenshots")
    new_world_dir: Path = Path(".")


@dataclass
class WorldState:
    """Everything the app knows of the open world: its full history and all its chunks."""

    history: History
    chunks: dict[int, SplatChunk]
    path: Path | None = None
    title: str = "untitled"


@dataclass
class Job:
    request: ZoomRequest
    stage: str = "queued"
    fraction: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class Messages:
    items: list[tuple[float, str, bool]] = field(default_factory=list)

    def add(self, now: float, text: str, error: bool = False) -> None:
        self.items.append((now, text, error))
        del self.items[:-6]

    def visible(self, now: float) -> list[tuple[str, bool]]:
        return [(t, e) for (when, t, e) in self.items if now - when < MESSAGE_SECONDS]


def default_camera(chunks: list[SplatChunk], width: int, height: int) -> tuple[Camera, float]:
    """A camera looking at the splats' bounding box from -z (for worlds without one)."""
    lo = np.min([c.bounds()[0] for c in chunks], axis=0)
    hi = np.max([c.bounds()[1] for c in chunks], axis=0)
    centre, radius = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 1e-9)
    distance = radius / math.tan(math.radians(25)) * 1.1
    eye = centre - np.array([0.0, 0.0, distance])
    return Camera.look_at(eye, centre, fov_y_deg=50, width=width, height=height), distance


class App:
    def __init__(
        self,
        state: WorldState,
        *,
        config: AppConfig | None = None,
        bindings: Bindings | None = None,
        generator: Generator | None = None,
        saver: Saver | None = None,
        open_world: Callable[[str], WorldState] | None = None,
        clock: Clock | None = None,
        on_frame: Callable[["App", int], None] | None = None,
    ) -> None:
        self.config = config or AppConfig()
        self.state = state
        self.bindings = bindings or Bindings()
        self.generator = generator
        self.saver = saver
        self.open_world = open_world
        self.on_frame = on_frame
        self.messages = Messages()
        self.jobs: dict[int, Job] = {}
        self._next_request = 1
        self.poi: np.ndarray | None = None  # [3] picked world point
        self.prompt: str | None = None
        self.show_help = False
        self.show_history = False
        self.hud_visible = True
        self.redo_stack: list[int] = []
        self.last_stats = None
        self.hot_loaded_steps: list[int] = []
        self._screenshot_requests: list[Path] = []
        self.screenshots_written: list[Path] = []
        self._level_scales: dict[int, float] = {}  # level entity -> median s_native

        self._init_window()
        self.input = InputSystem(self.bindings)
        self.renderer = StreamingRenderer(self.ctx)
        self.hud = Hud(self.ctx, self.size)
        self.world = self._build_world()
        self.controller = self._initial_controller()
        self.loop = FrameLoop(self.world, {
            "input": self.stage_input,
            "camera": self.stage_camera,
            "streaming": self.stage_generation,
            "render": self.stage_render,
            "hud": self.stage_hud,
            "apply": self.stage_present,
        }, clock=clock, fps_cap=self.config.fps_cap)
        self.messages.add(self.loop.clock.now(), f"{state.title}: {self._splat_count():,} splats. F1 for help.")

    # ---- setup --------------------------------------------------------------------------
    def _init_window(self) -> None:
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
        pygame.display.init()
        pygame.font.init()
        pygame.joystick.init()
        from pygame._sdl2 import controller

        controller.init()
        prefer_compatibility_profile()  # faster points on Mesa (see engine.render.gl)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MAJOR_VERSION, 3)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MINOR_VERSION, 3)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_PROFILE_MASK, pygame.GL_CONTEXT_PROFILE_CORE)
        flags = pygame.OPENGL | pygame.DOUBLEBUF | pygame.RESIZABLE
        self.size = (self.config.width, self.config.height)
        pygame.display.set_mode(self.size, flags, vsync=1 if self.config.vsync else 0)
        pygame.display.set_caption(f"WonderZoom — {self.state.title}")
        self.ctx = moderngl.create_context()
        for i in range(pygame.joystick.get_count()):  # controllers plugged in before start
            pygame.event.post(pygame.event.Event(pygame.CONTROLLERDEVICEADDED, device_index=i))

    def _build_world(self) -> World:
        if self.state.history.head is None:
            return World()
        return build_scene(self.state.history, self.state.chunks)

    def _initial_controller(self) -> FlyController:
        history = self.state.history
        path = history.path() if history.head is not None else []
        root = path[0] if path else None
        w, h = self.size
        chunks = [self.state.chunks[c] for c in history.chunk_ids_at()] if path else []
        if root is not None and root.camera is not None:
            cam = root.camera
            scale = w / cam.width
            cam = Camera(cam.T_world_camera, cam.fx * scale, cam.fy * scale, w / 2, h / 2, w, h,
                         cam.near, cam.far)
            centre_depth = float(np.median(cam.points_to_camera(chunks[0].world_positions())[:, 2])) if chunks else 1.0
            return FlyController(cam, centre_depth)
        if chunks:
            cam, distance = default_camera(chunks, w, h)
            return FlyController(cam, distance)
        return FlyController(Camera.look_at([0, 0, -3.0], [0, 0, 0.0], width=w, height=h), 3.0)

    def _splat_count(self) -> int:
        store = self.world.try_resource(ChunkStore)
        return store.resident_splats() if store else 0

    # ---- public driving API (tests, automation) -----------------------------------------
    def step(self) -> FrameContext:
        if self.on_frame:
            self.on_frame(self, self.loop.frame)
        return self.loop.step()

    def run(self, frames: int | None = None) -> None:
        while self.loop.running and (frames is None or self.loop.frame < frames):
            self.step()

    @property
    def camera(self) -> Camera:
        return self.controller.camera

    def request_screenshot(self, path: str | Path) -> Path:
        """Save the next presented frame (world + HUD) as PNG at `path`."""
        path = Path(path)
        self._screenshot_requests.append(path)
        return path

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
        if self.saver is not None:
            self.saver.flush()
        self.renderer.release()
        self.hud.release()
        self.ctx.release()
        pygame.display.quit()

    # ---- stages -------------------------------------------------------------------------
    def stage_input(self, ctx: FrameContext) -> None:
        fi = self.input.process(pygame.event.get(), ctx.dt)
        ctx.data["input"] = fi
        now = ctx.clock.now()
        if fi.quit or "quit" in fi.pressed:
            self.loop.running = False
        if fi.resized:
            self.size = fi.resized
            self.controller.resize(*fi.resized)
            self.hud.resize(fi.resized)
        if self.prompt is not None:
            self._edit_prompt(fi, now)
            return
        for path in fi.dropped_files:
            self._open(path, now)
        pressed = fi.pressed
        if "help" in pressed:
            self.show_help = not self.show_help
        if "toggle_hud" in pressed:
            self.hud_visible = not self.hud_visible
        if "history" in pressed:
            self.show_history = not self.show_history
        if "pick" in pressed:
            at = fi.click if fi.click is not None else (self.size[0] // 2, self.size[1] // 2)
            self.pick(at, now)
        if "generate" in pressed:
            if self.poi is None:
                self.messages.add(now, "pick a point first: click on the world (or press A)", True)
            else:
                self.prompt = ""
                self.input.text_mode = True
        if "cancel" in pressed:
            self._cancel_jobs(now)
        if "undo" in pressed:
            self._undo(now)
        if "redo" in pressed:
            self._redo(now)
        if "save" in pressed:
            self._save(now)
        if "screenshot" in pressed:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = self.request_screenshot(self.config.screenshot_dir / f"wonderzoom-{stamp}.png")
            self.messages.add(now, f"screenshot saved: {path}")

    def stage_camera(self, ctx: FrameContext) -> None:
        fi: FrameInput = ctx.data["input"]
        cam_in = fi.camera
        if cam_in.zoom_steps or cam_in.zoom_rate:
            # zoom toward what is under the cursor: measure its depth first
            anchor = cam_in.zoom_anchor or (self.size[0] / 2, self.size[1] / 2)
            depth = self.probe_depth(anchor)
            if depth is not None:
                self.controller.set_focus(depth)
        elif ctx.frame % 20 == 0:
            depth = self.probe_depth((self.size[0] / 2, self.size[1] / 2))
            if depth is not None:
                self.controller.set_focus(depth)
        self.controller.update(cam_in, ctx.dt)

    def stage_generation(self, ctx: FrameContext) -> None:
        now = ctx.clock.now()
        if self.generator is not None:
            for event in self.generator.poll():
                job = self.jobs.get(event.request_id)
                if isinstance(event, ProgressEvent):
                    if job:
                        job.stage, job.fraction, job.elapsed_s = event.stage, event.fraction, event.elapsed_s
                elif isinstance(event, ZoomResult):
                    self.jobs.pop(event.request_id, None)
                    self._hot_load(event, now)
        if self.saver is not None:
            for outcome in self.saver.poll():
                self.messages.add(now, outcome.message, not outcome.ok)

    def stage_render(self, ctx: FrameContext) -> None:
        self.ctx.viewport = (0, 0, *self.size)
        self.last_stats = self.renderer.draw(self.world, self.controller.camera, self.ctx.screen,
                                             background=BACKGROUND)

    def stage_hud(self, ctx: FrameContext) -> None:
        self.hud.draw(self.hud_state(ctx.clock.now()), self.ctx.screen)

    def stage_present(self, ctx: FrameContext) -> None:
        # the back buffer is undefined after a flip: screenshots are read just before it
        for path in self._screenshot_requests:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = self.ctx.screen.read(viewport=(0, 0, *self.size), components=3, alignment=1)
            pygame.image.save(pygame.image.frombytes(data, self.size, "RGB", True), str(path))
            self.screenshots_written.append(path)
        self._screenshot_requests.clear()
        pygame.display.flip()

    # ---- HUD ----------------------------------------------------------------------------
    def hud_state(self, now: float) -> HudState:
        stats = self.last_stats
        level = self._current_level()
        gen, frac = "", None
        if self.jobs:
            job = min(self.jobs.values(), key=lambda j: j.request.request_id)
            gen = f"growing \"{job.request.prompt[:40]}\": {job.stage} {job.fraction:.0%} ({job.elapsed_s:.1f} s)"
            if len(self.jobs) > 1:
                gen += f" · {len(self.jobs) - 1} queued"
            frac = job.fraction
        return HudState(
            fps=self.loop.times.fps, frame_ms=self.loop.times.last_ms,
            splats_drawn=getattr(stats, "splats_drawn", 0),
            splats_resident=self._splat_count(),
            level=level, zoom_factor=self.controller.zoom_factor,
            pixel_scale=self.controller.pixel_scale,
            generation=gen, generation_fraction=frac,
            messages=self.messages.visible(now), prompt=self.prompt,
            poi_px=self._poi_on_screen(), show_help=self.show_help,
            help_lines=self.bindings.help_lines(), show_history=self.show_history,
            history_lines=self.state.history.render_tree().splitlines(), visible=self.hud_visible)

    def _current_level(self) -> int:
        """The level whose native scale is nearest the pixel scale at the focus."""
        store = self.world.try_resource(ChunkStore)
        best, best_gap = 0, math.inf
        for e, (node,) in self.world.query(LevelNode):
            if e not in self._level_scales:
                ids = [self.world.get(c, ChunkHandle).chunk_id for c in self.world.children(e)
                       if self.world.has(c, ChunkHandle)]
                scales = [store.get(i).s_native for i in ids] if store else []
                self._level_scales[e] = float(np.median(np.concatenate(scales))) if scales else math.nan
            gap = abs(math.log(self._level_scales[e] / self.controller.pixel_scale))
            if gap < best_gap:
                best, best_gap = node.level, gap
        return best

    def _poi_on_screen(self) -> tuple[float, float] | None:
        if self.poi is None:
            return None
        uv, z = self.controller.camera.project(self.poi[None])
        if z[0] <= 0 or not np.isfinite(uv).all():
            return None
        return float(uv[0, 0]), float(uv[0, 1])

    # ---- picking ------------------------------------------------------------------------
    def probe_depth(self, pixel: tuple[float, float], radius: int = 4) -> float | None:
        """Depth of the surface under `pixel`, from a tiny crop rendered around it."""
        cam = self.controller.camera
        size = 2 * radius + 1
        x, y = int(pixel[0]), int(pixel[1])
        crop = Camera(cam.T_world_camera, cam.fx, cam.fy, cam.cx - (x - radius), cam.cy - (y - radius),
                      size, size, cam.near, cam.far)
        out = self.renderer.render_offscreen(self.world, crop, size, size)
        a = out.alpha[radius, radius]
        d = out.depth[radius, radius]
        if a < 0.5 or not np.isfinite(d) or d <= 0:
            return None
        return float(d)

    def pick(self, pixel: tuple[int, int], now: float) -> np.ndarray | None:
        depth = self.probe_depth(pixel)
        if depth is None:
            self.messages.add(now, "nothing there to pick: aim at the world", True)
            return None
        cam = self.controller.camera
        self.poi = cam.unproject(np.array([[pixel[0] + 0.5, pixel[1] + 0.5]]), np.array([depth]))[0]
        self.controller.set_focus(depth)
        self.world.commands.spawn(PointOfInterest(self.poi.copy(), label="picked"))
        self.messages.add(now, "point picked: press Enter (or Y) and type what should grow there")
        return self.poi

    # ---- prompt and generation ----------------------------------------------------------
    def _edit_prompt(self, fi: FrameInput, now: float) -> None:
        text = self.prompt or ""
        if fi.backspaces:
            text = text[:-fi.backspaces] if fi.backspaces < len(text) else ""
        text = (text + fi.text.replace("\n", " "))[:MAX_PROMPT_CHARS]
        self.prompt = text
        if "cancel" in fi.pressed:
            self.prompt = None
            self.input.text_mode = False
        elif "generate" in fi.pressed:
            prompt = text.strip()
            self.prompt = None
            self.input.text_mode = False
            if not prompt:
                self.messages.add(now, "empty prompt: nothing to grow", True)
            else:
                self.request_zoom(prompt, now)

    def request_zoom(self, prompt: str, now: float | None = None) -> int | None:
        now = self.loop.clock.now() if now is None else now
        if self.generator is None:
            self.messages.add(now, "no generator configured", True)
            return None
        if self.poi is None or self.state.history.head is None:
            self.messages.add(now, "pick a point first", True)
            return None
        cam = self.controller.camera
        fov = 2 * math.degrees(math.atan(0.5 * cam.height / cam.fy))
        new_fov = 2 * math.degrees(math.atan(math.tan(math.radians(fov) / 2) / ZOOM_REQUEST_FACTOR))
        distance = float(np.linalg.norm(self.poi - cam.position))
        # C_i has the window's shape, so the new level fills the view the user will zoom into
        scale = REQUEST_SIZE / max(cam.width, cam.height)
        width, height = max(16, round(cam.width * scale)), max(16, round(cam.height * scale))
        c_i = Camera.look_at(cam.position, self.poi, up=-cam.T_world_camera[:3, 1], fov_y_deg=new_fov,
                             width=width, height=height, near=distance * 1e-3, far=cam.far)
        settings: dict[str, Any] = {}
        if getattr(self.generator, "needs_observation", False):  # the procedural stand-in
            observed = self.renderer.render_offscreen(self.world, c_i, width, height)
            settings = {"observed_rgb": observed.rgb,
                        "observed_depth": np.where(observed.alpha > 0.5, observed.depth, np.nan)}
        history = self.state.history
        req = ZoomRequest(self._next_request, history.head, c_i, tuple(float(v) for v in self.poi),
                          prompt, seed=self._next_request, settings=settings,
                          scene=self._scene_seen_by(c_i.with_fov_scale(1.0 / ZOOM_REQUEST_FACTOR)),
                          level=history.level_of(history.head) + 1,
                          context=tuple(s.prompt for s in history.path() if s.prompt))
        self._next_request += 1
        self.jobs[req.request_id] = Job(req)
        self.generator.submit(req)
        self.messages.add(now, f"growing \"{prompt}\"…")
        return req.request_id

    def _scene_seen_by(self, camera: Camera) -> tuple:
        """(chunk, LoD links) pairs of the world whose bounds `camera` can see."""
        store, index = self.world.resource(ChunkStore), self.world.resource(LodIndex)
        pairs = [(store.get(h.chunk_id), index.links[h.chunk_id], b)
                 for _, (h, b) in self.world.query(ChunkHandle, ChunkBounds)]
        if not pairs:
            return ()
        keep = camera.aabbs_in_frustum(np.stack([b.lo for _, _, b in pairs]), np.stack([b.hi for _, _, b in pairs]))
        return tuple((c, links) for (c, links, _), k in zip(pairs, keep) if k and len(c))

    def _cancel_jobs(self, now: float) -> None:
        if not self.jobs:
            return
        for rid in list(self.jobs):
            self.generator.cancel(rid)
        self.messages.add(now, "cancelling generation")

    def _hot_load(self, result: ZoomResult, now: float) -> None:
        if not result.ok:
            if result.error != "cancelled":
                self.messages.add(now, f"generation failed: {result.error}", True)
            else:
                self.messages.add(now, "generation cancelled")
            return
        req = result.request
        history = self.state.history
        base = max(self.state.chunks, default=-1) + 1
        chunks = {base + i: c for i, c in enumerate(result.chunks.values())}
        f = dict(result.step_fields)
        step = Step(history.next_id(), req.parent_step, "zoom", tuple(chunks), camera=req.camera,
                    point=req.point, prompt=f.get("prompt", req.prompt), backend=f.get("backend", {}),
                    timings=f.get("timings", {}),
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        self.state.chunks.update(chunks)
        if history.head == req.parent_step:
            append_level(self.world, step, chunks)  # deferred: applied at the frame's apply point
        else:  # the user moved in history meanwhile: it becomes a branch, shown from its tip
            history.add(step)
            self._rebuild(now)
        self.redo_stack.clear()
        self.hot_loaded_steps.append(step.id)
        if self.saver is not None:
            self.saver.append_step(step, chunks)
        self.messages.add(now, f"grew \"{step.prompt}\": {sum(map(len, chunks.values())):,} splats")

    # ---- history, files -----------------------------------------------------------------
    def _rebuild(self, now: float) -> None:
        self.renderer.release()
        self.renderer = StreamingRenderer(self.ctx)
        self.world = build_scene(self.state.history, self.state.chunks)
        self.loop.world = self.world
        self._level_scales.clear()

    def _undo(self, now: float) -> None:
        history = self.state.history
        head = history.head
        if head is None or history.steps[head].parent is None:
            self.messages.add(now, "nothing to undo: this is the first step")
            return
        self.redo_stack.append(head)
        history.undo()
        self._rebuild(now)
        if self.saver is not None:
            self.saver.set_head(history.head)
        self.messages.add(now, f"back to step {history.head} (a new zoom from here starts a branch)")

    def _redo(self, now: float) -> None:
        history = self.state.history
        if not self.redo_stack:
            kids = history.children(history.head) if history.head is not None else []
            if not kids:
                self.messages.add(now, "nothing to redo")
                return
            target = kids[-1].id
        else:
            target = self.redo_stack.pop()
        history.checkout(target)
        self._rebuild(now)
        if self.saver is not None:
            self.saver.set_head(target)
        self.messages.add(now, f"forward to step {target}")

    def _save(self, now: float) -> None:
        if self.saver is None:
            self.messages.add(now, "saving is not available", True)
            return
        if self.state.history.head is None:
            self.messages.add(now, "nothing to save yet", True)
            return
        if self.state.path is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            self.state.path = self.config.new_world_dir / f"wonderzoom-{stamp}.wzs"
            self.saver.save_as(self.state.path, self.state.history, self.state.chunks)
        else:
            self.saver.set_head(self.state.history.head)  # everything else is already appended
        self.messages.add(now, f"saving to {self.state.path}")

    def _open(self, path: str, now: float) -> None:
        if self.open_world is None:
            return
        try:
            state = self.open_world(path)
        except Exception as exc:  # a hostile or corrupt file: say so, keep the current world
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.messages.add(now, f"could not open {Path(path).name}: {reason}", True)
            return
        self.state = state
        if self.saver is not None:
            self.saver.path = state.path
        self.poi = None
        self._rebuild(now)
        self.controller = self._initial_controller()
        pygame.display.set_caption(f"WonderZoom — {state.title}")
        self.messages.add(now, f"opened {state.title}")
