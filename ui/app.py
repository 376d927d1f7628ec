"""The app: a window running the frame loop over a multi-scale world you fly and grow.

Owns: `App` — the stage functions it plugs into `engine.loop.FrameLoop` (input -> camera ->
poll_generation -> detect_changes -> render -> hud -> [apply_deferred] -> present; a frame in
which nothing the picture shows changed draws nothing, one in which only the HUD changed draws
it over the last image of the world, `ui.redraw.WorldImage`), what each action does
(pick, prompt, zoom request, cancel, undo/redo, save, open a dropped file, screenshot), the
hot-load of a finished zoom (its step goes into the history at once, its level into the scene
at the frame's apply point), and the HUD's state.
Does not own: the window (`ui.window`), devices (`ui.input`), the zoom maths (`engine.zoom`),
jobs in flight (`ui.jobs`), the history (`ui.session`), file formats, generation or
rendering internals; the generator, the saver and the file opener come in through the
constructor, wired by the command line (`cli.play`).
"""

from __future__ import annotations

import datetime
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import pygame

from engine.camera import DEFAULT_VIEW_SIZE, Camera
from engine.catalog import link_on_path
from engine.chunkstore import DEFAULT_RAM_BYTES
from engine.clock import Clock
from engine.controller import FlyController
from engine.errors import first_line
from engine.history import History, Step
from engine.loop import DRAW_NOTHING, DRAW_WORLD, FrameContext, FrameLoop
from engine.messages import MAX_PROMPT_CHARS, Observation, ZoomResult
from engine.render.headless import framing_camera
from engine.render.reference import RenderOutput
from engine.render.streaming import StreamingRenderer
from engine.scene import (ChunkBounds, ChunkStore, LevelNode, append_level, build_scene,
                          build_streamed_scene, close_scene)
from engine.splats import SplatChunk
from engine.world import World
from engine.zoom import pick_surface, probe_depth, zoom_request
from ui.bindings import Bindings
from ui.hud import Hud, HudState
from ui.input import FrameInput, InputSystem
from ui.jobs import Generator, Jobs
from ui.redraw import RedrawTracker, WorldImage, camera_key, hud_key
from ui.session import WorldState
from ui.window import Window

BACKGROUND = (0.0, 0.0, 0.0)  # what every viewer clears to; levels copy the world as seen over it
ZOOM_REQUEST_FACTOR = 4.0  # a zoom step looks at the picked point with a 4x narrower view
# C_i, a zoom request's camera, has the window's size: the generator makes the level at the size
# it is shown at where the machine affords it (`generation.sizes`); generators that need the
# app to render C_i's view (the procedural stand-in) get it at most this large
OBSERVATION_LONG_SIDE = 480
MESSAGE_SECONDS = 6.0
FOCUS_PROBE_FRAMES = 20  # re-measure the depth at the screen centre this often


class Saver(Protocol):
    def append_step(self, step: Step, chunks: Mapping[int, SplatChunk],
                    links: Any = None) -> None: ...
    def set_head(self, step_id: int) -> None: ...
    def save_as(self, path: Any, history: History, chunks: Mapping[int, SplatChunk],
                meta: Any = None) -> None: ...
    def poll(self) -> list: ...
    def flush(self, timeout: float = 30.0) -> bool: ...
    path: Path | None


@dataclass
class AppConfig:
    width: int = DEFAULT_VIEW_SIZE[0]
    height: int = DEFAULT_VIEW_SIZE[1]
    fps_cap: float | None = 60.0
    vsync: bool = True
    screenshot_dir: Path = Path("screenshots")
    new_world_dir: Path = Path(".")
    renderer: str = "auto"  # render path: auto | cpu | gpu (`engine.render.gpu_driven`)
    ram_bytes: int = DEFAULT_RAM_BYTES  # a streamed world's RAM pool for decoded chunks


@dataclass
class Messages:
    items: list[tuple[float, str, bool]] = field(default_factory=list)

    def add(self, now: float, text: str, error: bool = False) -> None:
        self.items.append((now, text, error))
        del self.items[:-6]

    def visible(self, now: float) -> list[tuple[str, bool]]:
        return [(t, e) for (when, t, e) in self.items if now - when < MESSAGE_SECONDS]


def default_camera(world: World, width: int, height: int) -> tuple[Camera, float]:
    """For a world without cameras (an import): the view `render` and the web page open it
    at (`engine.render.headless.framing_camera`: from -z, the bulk of its splats filling the
    frame), and the distance to what it looks at (the fly speed's scale)."""
    camera = framing_camera(world, width, height)
    boxes = [b for _, (b,) in world.query(ChunkBounds) if b.count]
    centres = np.array([0.5 * (b.lo + b.hi) for b in boxes])
    depth = camera.points_to_camera(centres)[:, 2]
    ahead = depth[depth > 0]
    return camera, float(np.median(ahead)) if len(ahead) else 1.0


def size_note(backend: Mapping[str, Any], window: tuple[int, int]) -> str:
    """The size a step's level was made at, as " at 480x270 (CPU limit; window 1280x720)",
    from its backend record (the pipeline's `working_size` and `size_rule`); "" if unknown."""
    size = backend.get("working_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        return ""
    rule = backend.get("size_rule")
    why = f"{rule}; " if isinstance(rule, str) and rule else ""
    return f" at {size[0]}\u00d7{size[1]} ({why}window {window[0]}\u00d7{window[1]})"


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
        self.jobs = Jobs(generator) if generator is not None else None
        self.saver = saver
        self.open_world = open_world
        self.on_frame = on_frame
        self.messages = Messages()
        self.poi: np.ndarray | None = None  # [3] picked world point
        self.prompt: str | None = None  # the prompt box's text; None while it is closed
        self.show_help = False
        self.show_history = False
        self.hud_visible = True
        self.last_stats = None
        self.hot_loaded_steps: list[int] = []
        self._screenshot_requests: list[Path] = []
        self.screenshots_written: list[Path] = []
        self._level_scales: dict[int, float] = {}  # level entity -> median s_native
        self.redraw = RedrawTracker()
        self._probed: tuple | None = None  # the view the focus depth was last measured in
        # a streamed world links a grown level off the frame (it reads the older chunks its
        # camera sees): (future links, step, its chunks), oldest first
        self._linking: list[tuple[Future, Step, dict[int, SplatChunk]]] = []
        self._link_thread: ThreadPoolExecutor | None = None
        self._world_step: int | None = None  # the step the scene shows the path to

        self.window = Window((self.config.width, self.config.height), state.title,
                             vsync=self.config.vsync)
        self.ctx = self.window.ctx
        self.input = InputSystem(self.bindings)
        self.renderer = StreamingRenderer(self.ctx, path=self.config.renderer)
        self.hud = Hud(self.ctx, self.window.size)
        self.image = WorldImage(self.ctx)  # the last image of the world
        self.world = self._build_world()
        self.controller = self._initial_controller()
        self.loop = FrameLoop(self.world, {
            "input": self.stage_input,
            "camera": self.stage_camera,
            "poll_generation": self.stage_poll_generation,
            "detect_changes": self.stage_detect_changes,
            "render": self.stage_render,
            "hud": self.stage_hud,
            "present": self.stage_present,
        }, clock=clock, fps_cap=self.config.fps_cap)
        self.messages.add(self.loop.clock.now(),
                          f"{state.title}: {self._world_splats():,} splats. F1 for help.")

    # ---- setup --------------------------------------------------------------------------
    def _build_world(self) -> World:
        self._world_step = self.state.history.head
        if self.state.history.head is None:
            return World()
        if self.state.source is not None:  # the chunks' metadata only: data streams in
            return build_streamed_scene(self.state.history, self.state.source,
                                        budget_bytes=self.config.ram_bytes)
        return build_scene(self.state.history, self.state.chunks)

    def _initial_controller(self) -> FlyController:
        """At the root level's camera, reframed to the window (its horizontal view kept)."""
        history = self.state.history
        path = history.path() if history.head is not None else []
        w, h = self.window.size
        boxes = [(b.lo, b.hi) for _, (b,) in self.world.query(ChunkBounds) if b.count]
        if path and path[0].camera is not None:
            cam = path[0].camera.reframed(w, h, keep="fov_x")
            root = [c for c in path[0].chunk_ids if c in self.state.chunks]
            if root:
                points = self.state.chunks[root[0]].world_positions()
            else:  # streamed: the root level's box centres
                points = np.array([0.5 * (self.state.source.meta(c).lo
                                          + self.state.source.meta(c).hi)
                                   for c in path[0].chunk_ids]) if path[0].chunk_ids else None
            depth = (float(np.median(cam.points_to_camera(points)[:, 2]))
                     if points is not None and len(points) else 1.0)
            return FlyController(cam, depth)
        if boxes:
            cam, distance = default_camera(self.world, w, h)
            return FlyController(cam, distance)
        return FlyController(Camera.look_at([0, 0, -3.0], [0, 0, 0.0], width=w, height=h), 3.0)

    def _world_splats(self) -> int:
        """Splats on the path to the head (from the chunks' metadata: a streamed world has
        read none yet)."""
        return sum(b.count for _, (b,) in self.world.query(ChunkBounds))

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

    @property
    def size(self) -> tuple[int, int]:
        return self.window.size

    def request_screenshot(self, path: str | Path) -> Path:
        """Save the next presented frame (world + HUD) as PNG at `path`."""
        path = Path(path)
        self._screenshot_requests.append(path)
        return path

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.generator.close()
        self._finish_linking(wait=True)
        if self._link_thread is not None:
            self._link_thread.shutdown(wait=True)
        if self.saver is not None:
            self.saver.flush()
        close_scene(self.world)
        self.state.close()
        self.renderer.release()
        self.hud.release()
        self.image.release()
        self.window.close()

    # ---- stages -------------------------------------------------------------------------
    def stage_input(self, ctx: FrameContext) -> None:
        fi = self.input.process(pygame.event.get(), ctx.dt)
        ctx.data["input"] = fi
        now = ctx.clock.now()
        if fi.quit or "quit" in fi.pressed:
            self.loop.running = False
        if fi.resized:
            self.window.resized(fi.resized)
            self.controller.resize(*fi.resized)
            self.hud.resize(fi.resized)
        if fi.resized or fi.exposed:
            self.redraw.forget()  # the window's pixels are gone or resized: draw anew
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
            w, h = self.window.size
            self.pick(fi.click if fi.click is not None else (w // 2, h // 2), now)
        if "generate" in pressed:
            if self.poi is None:
                self.messages.add(now, "pick a point first: click on the world (or press A)", True)
            else:
                self.prompt = ""
                self.input.text_mode = True
        if "cancel" in pressed and self.jobs is not None and self.jobs.cancel_all():
            self.messages.add(now, "cancelling generation")
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
        w, h = self.window.size
        if cam_in.zoom_steps or cam_in.zoom_rate:
            # zoom toward what is under the cursor: measure its depth first
            depth = self.probe_depth(cam_in.zoom_anchor or (w / 2, h / 2))
        elif ctx.frame % FOCUS_PROBE_FRAMES == 0 and self._view_key() != self._probed:
            depth = self.probe_depth((w / 2, h / 2))  # only when the view changed since
            self._probed = self._view_key()
        else:
            depth = None
        if depth is not None:
            self.controller.set_focus(depth)
        self.controller.update(cam_in, ctx.dt)

    def stage_poll_generation(self, ctx: FrameContext) -> None:
        now = ctx.clock.now()
        if self.jobs is not None:
            for result in self.jobs.poll():
                self._hot_load(result, now)
        self._finish_linking(now=now)
        if self.saver is not None:
            for outcome in self.saver.poll():
                self.messages.add(now, outcome.message, not outcome.ok)

    def _view_key(self) -> tuple:
        """What an image of the world depends on: the camera and the world (its identity and
        its applied changes)."""
        return (camera_key(self.controller.camera), self.world, self.world.changes)

    def stage_detect_changes(self, ctx: FrameContext) -> None:
        """Draw the world only when the camera, the world, the window or the streaming
        changed it; only the HUD when that alone changed; nothing otherwise."""
        hud = hud_key(self.hud_state(ctx.clock.now()))
        ctx.draw = self.redraw.plan(self._view_key(), hud,
                                    force_present=bool(self._screenshot_requests))

    def stage_render(self, ctx: FrameContext) -> None:
        if ctx.draw == DRAW_NOTHING:
            return
        size = self.window.size
        target, fresh = self.image.target(size)
        if ctx.draw == DRAW_WORLD or fresh:
            target.viewport = (0, 0, *size)
            stats = self.renderer.draw(self.world, self.controller.camera, target,
                                       background=BACKGROUND)
            self.last_stats = stats
            # chunks still on their way (or arriving this frame): the next frame draws again
            self.redraw.drew_world(self._view_key(),
                                   busy=stats.chunks_pending > 0 or stats.bytes_uploaded > 0)
            store = self.world.try_resource(ChunkStore)
            while store is not None and store.failures:  # damaged on disk: refused alone
                self.messages.add(ctx.clock.now(), store.failures.popleft().message, True)
        self.image.show(self.ctx.screen, size)

    def stage_hud(self, ctx: FrameContext) -> None:
        if ctx.draw == DRAW_NOTHING:
            return
        state = self.hud_state(ctx.clock.now())
        self.hud.draw(state, self.ctx.screen)
        self.redraw.drew_hud(hud_key(state))

    def stage_present(self, ctx: FrameContext) -> None:
        if ctx.draw == DRAW_NOTHING:
            return  # the window keeps showing the last frame
        for path in self._screenshot_requests:
            self.window.save_screenshot(path)
            self.screenshots_written.append(path)
        self._screenshot_requests.clear()
        self.window.present()

    # ---- HUD ----------------------------------------------------------------------------
    def hud_state(self, now: float) -> HudState:
        stats = self.last_stats
        gen, frac = self.jobs.progress_line() if self.jobs is not None else ("", None)
        return HudState(
            fps=self.loop.times.fps, frame_ms=self.loop.times.last_ms,
            splats_drawn=stats.splats_drawn if stats is not None else 0,
            splats_resident=self._splat_count(),
            level=self._current_level(), zoom_factor=self.controller.zoom_factor,
            pixel_scale=self.controller.pixel_scale,
            generation=gen, generation_fraction=frac,
            messages=self.messages.visible(now), prompt=self.prompt,
            poi_px=self.poi_on_screen(), show_help=self.show_help,
            help_lines=self.bindings.help_lines(), show_history=self.show_history,
            history_lines=(self.state.history.render_tree().splitlines()
                           if self.show_history else []),
            visible=self.hud_visible, renderer_path=self.renderer.path)

    def _current_level(self) -> int:
        """The level whose native scale is nearest the pixel scale at the focus."""
        best, best_gap = 0, math.inf
        for e, (node,) in self.world.query(LevelNode):
            if e not in self._level_scales:  # from the chunks' metadata: nothing is read
                boxes = [self.world.get(c, ChunkBounds) for c in self.world.children(e)
                         if self.world.has(c, ChunkBounds)]
                self._level_scales[e] = _weighted_median(
                    [b.s_native_mid for b in boxes if b.count], [b.count for b in boxes if b.count])
            gap = abs(math.log(self._level_scales[e] / self.controller.pixel_scale))
            if gap < best_gap:
                best, best_gap = node.level, gap
        return best

    def poi_on_screen(self) -> tuple[float, float] | None:
        """Where the picked point is on screen (None when none is picked or it is behind)."""
        if self.poi is None:
            return None
        uv, z = self.controller.camera.project(self.poi[None])
        if z[0] <= 0 or not np.isfinite(uv).all():
            return None
        return float(uv[0, 0]), float(uv[0, 1])

    # ---- picking ------------------------------------------------------------------------
    def _render(self, camera: Camera) -> RenderOutput:
        return self.renderer.render_offscreen(self.world, camera)

    def probe_depth(self, pixel: tuple[float, float]) -> float | None:
        """Depth of the surface under `pixel`, from a tiny crop rendered around it."""
        return probe_depth(self.controller.camera, pixel, self._render)

    def pick(self, pixel: tuple[int, int], now: float) -> np.ndarray | None:
        cam = self.controller.camera
        point = pick_surface(cam, pixel, self._render)
        if point is None:
            self.messages.add(now, "nothing there to pick: aim at the world", True)
            return None
        self.poi = point
        self.controller.set_focus(float(cam.points_to_camera(point[None])[0, 2]))
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
        """Send a zoom at the picked point to the generator; its request id, or None."""
        now = self.loop.clock.now() if now is None else now
        if self.jobs is None:
            self.messages.add(now, "no generator configured", True)
            return None
        if self.poi is None or self.state.history.head is None:
            self.messages.add(now, "pick a point first", True)
            return None
        rid = self.jobs.next_id()
        observe = self._observe if self.jobs.generator.needs_observation else None
        request = zoom_request(rid, self.state.history, self.world, self.controller.camera,
                               self.poi, prompt, factor=ZOOM_REQUEST_FACTOR, seed=rid,
                               long_side=(min(max(self.window.size), OBSERVATION_LONG_SIDE)
                                          if observe else None),
                               observe=observe,
                               load=False)  # a streamed world sends what it holds: no disk wait
        self.jobs.submit(request)
        self.messages.add(now, f"growing \"{prompt}\"…")
        return rid

    def _observe(self, camera: Camera) -> Observation:
        frame = self._render(camera)
        return Observation(frame.rgb, np.where(frame.alpha > 0.5, frame.depth, np.nan))

    def _hot_load(self, result: ZoomResult, now: float) -> None:
        if not result.ok:
            if result.error == "cancelled":
                self.messages.add(now, "generation cancelled")
            else:
                self.messages.add(now, f"generation failed: {result.error}", True)
            return
        on_head = self.state.history.head == result.request.parent_step
        step, chunks = self.state.add_grown_step(result)  # in the history now: ids never clash
        if self.state.streamed:  # linked on a thread (it reads older chunks), shown when done
            if self._link_thread is None:
                self._link_thread = ThreadPoolExecutor(1, thread_name_prefix="link-level")
            history = History(dict(self.state.history.steps), self.state.history.head)
            future = self._link_thread.submit(link_on_path, history, self.state.source, step,
                                              chunks)
            self._linking.append((future, step, chunks))
            return
        if on_head:
            append_level(self.world, step, chunks)  # the scene follows at the apply point
        else:  # the user moved in history meanwhile: it is a branch, shown from its tip
            self._rebuild()
        self._grown(step, chunks, None, now)

    def _grown(self, step: Step, chunks: dict[int, SplatChunk], links, now: float) -> None:
        self.hot_loaded_steps.append(step.id)
        if self.saver is not None:
            self.saver.append_step(step, chunks, links=links)
        self.messages.add(now, f"grew \"{step.prompt}\": {sum(map(len, chunks.values())):,} splats"
                          + size_note(step.backend or {}, self.window.size))

    def _finish_linking(self, now: float | None = None, wait: bool = False) -> None:
        """Show the grown levels whose links are decided, oldest first (`wait`: block for
        all, e.g. before a scene is rebuilt from the history)."""
        while self._linking and (wait or self._linking[0][0].done()):
            future, step, chunks = self._linking.pop(0)
            now = self.loop.clock.now() if now is None else now
            try:
                links = future.result()
            except Exception as exc:  # e.g. an older chunk damaged on disk
                self.messages.add(now, f"could not link \"{step.prompt}\": {first_line(exc)}",
                                  True)
                continue
            self.state.add_links(step, links)
            if self._world_step == step.parent and self.state.history.head == step.id:
                append_level(self.world, step, chunks, links)
                self._world_step = step.id
            elif self.state.history.head == step.id:
                self._rebuild()
            self._grown(step, chunks, links, now)

    # ---- history, files -----------------------------------------------------------------
    def _rebuild(self) -> None:
        if self.state.streamed and any(not self.state.has_links(s.id)
                                       for s in self.state.history.path()):
            self._finish_linking(wait=True)  # the path shows a level still being linked
        path = self.renderer.path  # what `auto` settled on (no second probe)
        self.renderer.release()
        self.renderer = StreamingRenderer(self.ctx, path=path)
        self.redraw.forget()
        close_scene(self.world)
        self.world = self._build_world()
        self.loop.world = self.world
        self._level_scales.clear()

    def _undo(self, now: float) -> None:
        head = self.state.undo()
        if head is None:
            self.messages.add(now, "nothing to undo: this is the first step")
            return
        self._rebuild()
        if self.saver is not None:
            self.saver.set_head(head)
        self.messages.add(now, f"back to step {head} (a new zoom from here starts a branch)")

    def _redo(self, now: float) -> None:
        target = self.state.redo()
        if target is None:
            self.messages.add(now, "nothing to redo")
            return
        self._rebuild()
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
            self.saver.save_as(self.state.path, self.state.history, self.state.all_chunks())
        else:
            self.saver.set_head(self.state.history.head)  # everything else is already appended
        self.messages.add(now, f"saving to {self.state.path}")

    def _open(self, path: str, now: float) -> None:
        if self.open_world is None:
            return
        try:
            state = self.open_world(path)
        except Exception as exc:  # a hostile or corrupt file: say so, keep the current world
            self.messages.add(now, f"could not open {Path(path).name}: {first_line(exc)}", True)
            return
        self._finish_linking(wait=True)
        if self.saver is not None:
            self.saver.flush()  # the old world's writes, before its file is let go
        old, self.state = self.state, state
        if self.saver is not None:
            self.saver.path = state.path
        self.poi = None
        self._rebuild()
        old.close()
        self.controller = self._initial_controller()
        self.window.set_title(state.title)
        self.messages.add(now, f"opened {state.title}")


def _weighted_median(values: list[float], weights: list[int]) -> float:
    if not values:
        return math.nan
    order = np.argsort(values)
    cum = np.cumsum(np.asarray(weights, np.float64)[order])
    return float(np.asarray(values)[order][np.searchsorted(cum, 0.5 * cum[-1])])
