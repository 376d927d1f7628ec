"""The streaming splat renderer: what the app draws every frame, at any zoom depth.

Owns the frame's renderer stages, in this order (`StreamingRenderer._frame`):
0. the chunk loads the store's I/O thread finished are taken (`ChunkStore.poll`; a chunk
   refused as damaged is left out and reported in `ChunkStore.failures`);
1. visible chunk set: chunks whose AABB is in the frustum and whose LoD band overlaps the
   s_render range they can take in view (`engine.render.visibility`, all chunks at once);
   the store is asked for them (and, on the screen, prefetches the levels around where the
   camera heads: the view ahead along its motion, and the view zoomed 2x in — finer levels —
   when it zooms in, 2x out — coarser levels — when it zooms out, both when it is still); a
   chunk not in RAM yet is simply not drawn — its parent level is;
2. residency: visible chunks become GPU-resident on demand, uploads capped per frame, least
   recently used chunks evicted under the byte budget (`engine.render.residency`); a chunk
   still uploading is simply not drawn yet;
3. cull + sort, or reuse: CPU culling in groups of 128 consecutive (Morton-ordered) splats —
   a group's bounding sphere against the frustum and its scale band against the view, then
   per-splat tests (behind, outside, alpha <= 0.01, too faint) only in groups on an edge
   (`engine.render.visibility`) — and a stable sort on 16-bit log-depth keys give the
   sorted arena rows; the list
   is reused while the camera stays within `ResortPolicy` of the one it was built for (it was
   built with that much guard margin), optionally rebuilt on a worker thread meanwhile;
4. draw: per frame only the sorted index list (4 B/splat) and one camera-space origin per
   arena page (float64 subtraction on the CPU) are uploaded; one indexed GL_POINTS draw
   (`points.glsl`; on a software rasterizer, flushed batches of it) fetches the static
   splat data; footprints wider than the largest GL point go through the CPU-packed
   instanced-quad path (`engine.render.gl`, `splats.glsl`), in back-to-front runs
   interleaved with the point runs.
That is the CPU path (`path="cpu"`). On the GPU path (`path="gpu"`, `StreamingRenderer.
set_path`) stages 1 and 2 are the same and 3 and 4 are `engine.render.gpu_driven`'s: the
GPU culls, keys and sorts every splat of the visible resident chunks and draws them with one
indirect draw, the CPU doing per-chunk work only; `path="auto"` picks between them
(`gpu_driven.choose_path`, `probe_paths`).
Does not own: the frame loop, input, windows, applying world commands (the frame loop's
`apply_deferred` stage does, so a frame draws what the previous frames queued), or the
definition of the image (`engine.render.reference`).

`modulation=False` is the paper's ablation: every chunk is resident and considered every
frame (no streaming cull) and every splat is drawn with alpha = 1 (no modulation, no LoD
band culling). Splats are still culled one by one against the frustum, as any 3DGS
rasterizer does: without it, EWA's linearised projection gives splats far off-axis
footprints that span the screen (measured: 1M screen-sized quads, 0.01 FPS).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import moderngl
import numpy as np

from engine.camera import Camera
from engine.errors import first_line
from engine.lod import LodIndex
from engine.render.gl import (GLSL_VERSION, BatchPacer, OffscreenTargets, SplatRenderer,
                              camera_uniforms, gl_flush_function, premultiplied_blending,
                              set_uniforms, wait_for_gpu)
from engine.render.gpu_driven import (RENDER_PATHS, GpuDrivenPath, GpuItem, GpuSupport,
                                      RenderPathError, choose_path, gpu_support)
from engine.render.prepare import PACKED_WIDTH, pack
from engine.render.reference import RenderOutput
from engine.render.residency import (LOD_WIDTH, MAIN_WIDTH, PAGE_BYTES, PagedArena, Residency,
                                     Wanted, splat_attributes)
from engine.render.visibility import (PAGE_BITS, PAGE_SPLATS, ChunkBands, ChunkLayout,
                                      DrawItem, DrawList, Guard, View, build_draw_list,
                                      chunk_bands, chunk_layout, chunk_table, visible_chunks)
from engine.scene import ChunkStore, LoadState, flat_scene
from engine.splats import SplatChunk
from engine.synthetic import nested_plane_world
from engine.world import World

POINTS_SHADER_PATH = Path(__file__).parent / "points.glsl"
PAGE_TEXELS = 1024  # page-origin texture width (points.glsl: PAGE_TEXELS_BITS)
MAX_RUNS = 4096  # more point/quad alternations (draw calls) than this: all as quads
# (measured: 1125 runs cost less than drawing the 241k splats of that frame as quads)
LOD_MODES = {"soft": 0, "hard": 1, "none": 2}
# On a software rasterizer the point draw goes out in batches of this many splats with a
# glFlush after each: llvmpipe then rasterizes a batch on its threads while this thread runs
# the vertex stage of the next one, instead of rasterizing only at the end of the frame
# (measured on the render bench's deep frame, 233k splats on 2 cores, frames interleaved:
# 1.98 -> 2.11M splats/s; 16k batches gained about as much on it but cost the 921k-splat
# native frame ~3%, per-flush overhead).
FLUSH_SPLATS = 32768
# ... and at most this many flushed batches wait to be rasterized (`gl.BatchPacer`): what
# llvmpipe binned ahead stays allocated at its high-water mark
BATCHES_IN_FLIGHT = 2
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swiftshader")
PROBE_SPLATS_SIDE = 256  # `probe_paths`: a plane of 256 x 256 splats...
PROBE_VIEW = (640, 360)  # ...drawn at this size


@dataclass(frozen=True)
class StreamingBudget:
    gpu_bytes: int = 512 << 20  # arena bytes resident chunks may hold (whole pages)
    upload_bytes_per_frame: int = 48 << 20  # at least one page per frame is always uploaded
    # CPU time per frame for preparing newly visible chunks (Morton layout + GPU attributes,
    # ~0.3 us per splat in numpy): the larger of `prepare_ms_per_frame` and
    # `prepare_frame_fraction` of the interval between the last two frames, so a frame grows
    # by at most that fraction while chunks stream in; at least one chunk per frame is always
    # prepared. It runs on the frame thread: a worker thread would starve, as moderngl holds
    # the GIL during GL calls (measured: a numpy worker runs at ~2% of its speed meanwhile).
    prepare_ms_per_frame: float = 4.0
    prepare_frame_fraction: float = 0.25


@dataclass(frozen=True)
class ResortPolicy:
    """Reuse the last sorted list while the camera stays this close to the one it was built
    for; lists are built with the matching guard margin, so reuse never misses a splat.

    Motion is measured in pixels of image shift, so the policy means the same at any zoom:
    a rotation by angle a shifts content by ~a * f pixels, a translation t by at most
    t / z_nearest * f pixels."""

    max_shift_px: float = 1.0
    max_zoom: float = 0.005  # relative change of the focal length

    def guard(self, camera: Camera) -> Guard:
        angle = self.max_shift_px / min(camera.fx, camera.fy)
        # rotation and translation each turn a direction by up to `angle`; translation also
        # changes depths by up to `angle` relatively
        return Guard(angle=2.0 * angle, log_scale=angle + self.max_zoom)


PREFETCH_ZOOM = 2.0  # prefetch the view zoomed this much in (finer levels) and out (coarser)
PREFETCH_FRAMES = 6  # ... and the view this many frames ahead along the camera's motion


@dataclass
class FrameStats:
    chunks_visible: int  # chunk-level visible set (frustum and LoD band)
    chunks_resident: int  # chunks fully on the GPU (visible or kept by the LRU)
    splats_drawn: int  # splats submitted this frame (points + quads) after CPU culling
    splats_resident: int
    bytes_resident: int  # arena pages held (uploads in progress included)
    bytes_uploaded: int  # this frame
    prepare_ms: float  # CPU: visibility, residency + uploads, cull/sort, packing
    draw_ms: float  # GL submission (on llvmpipe this includes the vertex stage)
    sorted_this_frame: bool  # a new order this frame (sorted here, or the worker's arrived)
    chunks_pending: int = 0  # visible chunks not drawn because they are not resident yet
    splats_quads: int = 0  # of splats_drawn, drawn as quads (footprint wider than a point)
    draw_calls: int = 0
    sort_ms: float = 0.0  # cull + sort on this thread (0 when reused or done on the worker)
    upload_ms: float = 0.0
    # "cpu" or "gpu". On the GPU path the cull runs on the GPU and its count is never read
    # back: `splats_drawn` is then the splats offered to it (every splat of the visible
    # resident chunks; `StreamingRenderer.read_gpu_counts` reads the exact count)
    path: str = "cpu"
    # GPU path: time inside its dispatch, barrier and draw calls, part of draw_ms (a software
    # GL runs the GPU's work there; a GPU only queues it): draw_ms - launch_ms is our own work
    launch_ms: float = 0.0
    chunks_loading: int = 0  # chunks the store's I/O thread is reading (visible or prefetched)
    # visible chunks that are not on their way: refused as damaged, or not started because
    # the RAM pool is full of chunks the view needs more (not counted in chunks_pending)
    chunks_unavailable: int = 0
    ram_bytes: int = 0  # decoded chunk bytes in the store's RAM pool (pinned ones not counted)


class StreamingRenderer:
    """Draws a `World` for a camera, streaming chunks to the GPU; one per GL context."""

    def __init__(self, ctx: moderngl.Context, budget: StreamingBudget = StreamingBudget(),
                 modulation: bool = True, *, lod_mode: str = "soft", sort_mode: str = "sync",
                 resort: ResortPolicy | None = ResortPolicy(), path: str = "cpu") -> None:
        """`lod_mode`: "soft" (the paper's modulation) or "hard" (alpha 1 where the soft
        alpha >= 0.5, else 0: level switching, for comparison). `sort_mode`: "sync" sorts on
        this thread when the camera moved more than `resort` allows (None: whenever it moved
        at all); "async" sorts on a worker thread and draws the last order meanwhile.
        `path`: "cpu" (cull and sort in numpy), "gpu" (`engine.render.gpu_driven`: cull,
        sort and an indirect draw on the GPU; RenderPathError where the context cannot run
        it) or "auto" (`choose_path`: the GPU path on a hardware GL that can run it and is
        faster on a probe frame, else the CPU path); `set_path` switches at run time."""
        if lod_mode not in ("soft", "hard"):
            raise ValueError("lod_mode must be 'soft' or 'hard'")
        if sort_mode not in ("sync", "async"):
            raise ValueError("sort_mode must be 'sync' or 'async'")
        self.ctx = ctx
        self.budget = budget
        self.modulation = bool(modulation)
        self.lod_mode = lod_mode if modulation else "none"
        self.sort_mode = sort_mode
        self.resort = resort
        self.max_point_size = float(ctx.info.get("GL_POINT_SIZE_RANGE", (1.0, 64.0))[1])
        renderer = str(ctx.info.get("GL_RENDERER", "")).lower()
        self._gl_flush = gl_flush_function()
        # splats per flushed batch of the point draw (0: one draw; GPUs need no batches)
        self.flush_splats = FLUSH_SPLATS if self._gl_flush is not None and any(
            name in renderer for name in SOFTWARE_RENDERERS) else 0
        self._points = self._program(with_depth=False)
        self._points_depth = self._program(with_depth=True)
        self._quads = SplatRenderer(ctx)
        self._quads.lod_mode = LOD_MODES[self.lod_mode]
        self._arena_pages = max(budget.gpu_bytes // PAGE_BYTES, 0)
        self.arena = PagedArena(ctx, max_pages=self._arena_pages)
        # on a software GL the arena is host RAM: it then only holds what recent frames drew
        self.residency = Residency(self.arena, host_memory=self.flush_splats > 0)
        self._pacer = BatchPacer(BATCHES_IN_FLIGHT)
        self._index = ctx.buffer(reserve=4 << 16, dynamic=True)
        self._index_capacity = 1 << 16
        self._vaos: dict[int, moderngl.VertexArray] = {}  # program glo -> VAO
        self._vao_version = -1
        self._origins: moderngl.Texture | None = None
        self._layouts: dict[int, ChunkLayout] = {}
        self._bands: dict[int, ChunkBands] = {}
        self._attributes: dict[int, np.ndarray] = {}  # prepared, not yet uploaded
        # the window and the offscreen renders (picks, observations, screenshots) each keep
        # their own list, so a pick never costs the window its reusable order
        self._screen = _SortState()
        self._offscreen = _SortState()
        self._executor: ThreadPoolExecutor | None = None
        self._targets: OffscreenTargets | None = None
        self._frame_no = 0
        self._last_frame_start = 0.0
        self._last_screen_camera: Camera | None = None  # the motion prefetch extrapolates
        self.last_stats: FrameStats | None = None
        self._world: World | None = None
        self._unavailable = 0  # this frame's visible chunks neither in RAM nor on their way
        self.last_list: DrawList | None = None  # the list drawn last (tests, picking)
        self._gpu: GpuDrivenPath | None = None
        self._gpu_support: GpuSupport | None = None
        self._path = "cpu"
        self.requested_path = "cpu"
        self.path_reason = "asked for the CPU path"
        if path != "cpu":
            try:
                self.set_path(path)
            except RenderPathError:
                self.release()  # the GL objects made above
                raise

    # ---- the render path ------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The path that draws: "cpu" or "gpu" (what "auto" chose)."""
        return self._path

    @property
    def gpu_support(self) -> GpuSupport:
        if self._gpu_support is None:
            self._gpu_support = gpu_support(self.ctx)
        return self._gpu_support

    def set_path(self, path: str) -> str:
        """Switch to "cpu", "gpu" or "auto" (effective from the next frame; resident chunks
        stay) and return the path that now draws. Raises RenderPathError for an unknown
        name, or for "gpu" on a context without compute shaders."""
        if path not in RENDER_PATHS:
            raise RenderPathError(f"unknown renderer {path!r}: choose one of "
                                  f"{', '.join(RENDER_PATHS)}")
        try:
            chosen, reason = choose_path(path, self.gpu_support, lambda: probe_paths(self.ctx))
            if chosen == "gpu" and self._gpu is None:
                try:
                    self._gpu = GpuDrivenPath(self.ctx, {False: self._points,
                                                         True: self._points_depth})
                except moderngl.Error as exc:  # a driver that refuses the GPU path's shaders
                    raise RenderPathError("the GPU renderer's shaders do not build here: "
                                          f"{first_line(exc)}") from None
        except RenderPathError as exc:
            if path != "auto":
                raise
            chosen, reason = "cpu", str(exc)
        self._path, self.requested_path, self.path_reason = chosen, path, reason
        return chosen

    def read_gpu_counts(self) -> dict[str, int]:
        """The GPU path's counters of its last culled frame, read back (tests, benchmarks):
        `drawn`, `ordered` (equal to drawn), `candidates`."""
        if self._gpu is None:
            raise RenderPathError("the GPU path has not run")
        return self._gpu.read_counts()

    def drawn_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """([K] chunk ids, [K] rows in each chunk's own order) of the last frame's splats,
        back to front, on either path (the GPU path's list is read back: tests, tools)."""
        if self.last_stats is None or self.last_stats.path == "cpu":
            if self.last_list is None:
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            return self.last_list.chunk_rows()
        rows = self._gpu.read_rows().astype(np.int64)
        page_chunk = {}
        for it in self._gpu.items:
            layout = self._layouts.get(it.chunk_id)
            for k, page in enumerate(it.pages.tolist()):
                page_chunk[page] = (it.chunk_id, k, layout)
        ids = np.zeros(len(rows), np.int64)
        out = np.zeros(len(rows), np.int64)
        pages = rows >> PAGE_BITS
        for page in np.unique(pages).tolist():
            sel = pages == page
            cid, k, layout = page_chunk[page]
            ids[sel] = cid
            out[sel] = layout.order[(k << PAGE_BITS) | (rows[sel] & ((1 << PAGE_BITS) - 1))]
        return ids, out

    # ---- public API -----------------------------------------------------------------------
    def draw(self, world: World, camera: Camera, framebuffer: moderngl.Framebuffer | None = None,
             background: tuple[float, float, float] = (0.0, 0.0, 0.0), *,
             complete: bool = False) -> FrameStats:
        """Clear `framebuffer` (default: the context's screen) to (background, alpha 0) and
        draw the world; the camera image fills the framebuffer's viewport. Leaves BLEND on
        (premultiplied), DEPTH_TEST off and `framebuffer` bound, so a HUD drawn next
        composites over the splats. `complete`: prepare and upload every visible chunk that
        fits the budget first, ignoring the per-frame limits (benchmarks, recordings)."""
        fbo = framebuffer if framebuffer is not None else self.ctx.screen
        if fbo is None:
            raise ValueError("no framebuffer given and the context has no screen")
        fbo.use()
        fbo.clear(*background, 0.0)
        return self._frame(world, camera, fbo, with_depth=False, complete=complete)

    def render_offscreen(self, world: World, camera: Camera, width: int | None = None,
                         height: int | None = None,
                         background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                         complete: bool = True) -> RenderOutput:
        """rgb, alpha and expected depth in float32, OpenCV rows (for picking, screenshots).

        The camera image is scaled to width x height (default: the camera's size). With
        `complete` every visible chunk that fits the budget is uploaded first (no per-frame
        cap), so the picture is the whole world, not a frame of a hot-load in progress."""
        width = camera.width if width is None else int(width)
        height = camera.height if height is None else int(height)
        if width <= 0 or height <= 0:
            raise ValueError("offscreen size must be positive")
        if self._targets is None or self._targets.size != (width, height):
            if self._targets is not None:
                self._targets.release()
            self._targets = OffscreenTargets.create(self.ctx, width, height)
        self._targets.clear(background)
        self._targets.both.use()
        self._frame(world, camera, self._targets.both, with_depth=True, complete=complete)
        return self._targets.read()

    def release(self) -> None:
        """Free the GPU objects and the sorting thread (the context stays alive)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for vao in self._vaos.values():
            vao.release()
        self._vaos.clear()
        if self._gpu is not None:
            self._gpu.release()
            self._gpu = None
        for obj in (self._points, self._points_depth, self._index, self._origins):
            if obj is not None:
                obj.release()
        self._origins = None
        self._quads.release()
        self.arena.release()
        if self._targets is not None:
            self._targets.release()
            self._targets = None

    # ---- the frame ------------------------------------------------------------------------
    def _frame(self, world: World, camera: Camera, fbo: moderngl.Framebuffer, with_depth: bool,
               complete: bool) -> FrameStats:
        t_start = time.perf_counter()
        self._frame_no += 1
        wanted, visible = self._wanted(world, camera, complete, prefetch=not with_depth)
        t_upload = time.perf_counter()
        cap = None if complete else self.budget.upload_bytes_per_frame
        uploaded = self.residency.update(self._frame_no, wanted, cap)
        upload_ms = (time.perf_counter() - t_upload) * 1e3
        if self._path == "gpu":
            return self._frame_gpu(wanted, visible, camera, fbo, with_depth, t_start,
                                   uploaded, upload_ms)
        items = []
        for w in wanted:
            entry = self.residency.ready(w.chunk_id)
            if entry is not None:
                # the links the GPU holds for it (see Residency.update)
                items.append(DrawItem(w.chunk_id, w.layout, entry.bands, entry.gpu_rows,
                                      entry.links))
        vp = fbo.viewport
        point_px = self.max_point_size / max(vp[2] / camera.width, vp[3] / camera.height, 1e-9)
        state = self._offscreen if with_depth else self._screen
        mode = self.sort_mode if not with_depth else "sync"
        draw_list, sorted_now, sort_ms = self._draw_list(state, mode, camera, items, point_px)
        self._forget_unused(visible)
        quads_packed = self._pack_quads(draw_list, camera)
        t_draw = time.perf_counter()
        calls = self._submit(draw_list, camera, fbo, with_depth, quads_packed)
        t_end = time.perf_counter()
        stats = FrameStats(
            chunks_visible=len(visible), chunks_resident=self.residency.chunks_ready,
            splats_drawn=draw_list.count, splats_resident=self.residency.splats_ready,
            bytes_resident=self.residency.bytes_resident, bytes_uploaded=uploaded,
            prepare_ms=(t_draw - t_start) * 1e3, draw_ms=(t_end - t_draw) * 1e3,
            sorted_this_frame=sorted_now,
            chunks_pending=len(visible) - len(items) - self._unavailable,
            splats_quads=0 if quads_packed is None else len(quads_packed), draw_calls=calls,
            sort_ms=sort_ms, upload_ms=upload_ms, **self._store_stats(world))
        self.last_stats = stats
        self.last_list = draw_list
        return stats

    def _frame_gpu(self, wanted: list[Wanted], visible: set[int], camera: Camera,
                   fbo: moderngl.Framebuffer, with_depth: bool, t_start: float, uploaded: int,
                   upload_ms: float) -> FrameStats:
        """The GPU-driven frame (`engine.render.gpu_driven`): per chunk on the CPU, per
        splat on the GPU."""
        items = []
        for w in wanted:
            entry = self.residency.ready(w.chunk_id)
            if entry is not None:
                items.append(GpuItem(w.chunk_id, w.layout.centre, entry.pages, w.layout.count,
                                     entry.links))
        self._forget_unused(visible)
        t_draw = time.perf_counter()
        calls = self._gpu.draw(self.arena, items, camera, fbo, with_depth, self.lod_mode,
                               self.max_point_size)
        t_end = time.perf_counter()
        stats = FrameStats(
            chunks_visible=len(visible), chunks_resident=self.residency.chunks_ready,
            splats_drawn=self._gpu.candidates if items else 0,
            splats_resident=self.residency.splats_ready,
            bytes_resident=self.residency.bytes_resident, bytes_uploaded=uploaded,
            prepare_ms=(t_draw - t_start) * 1e3, draw_ms=(t_end - t_draw) * 1e3,
            sorted_this_frame=self._gpu.computed_last_frame,
            chunks_pending=len(visible) - len(items) - self._unavailable,
            splats_quads=self._gpu.candidates if calls and self._gpu.quads_last_frame else 0,
            draw_calls=calls, upload_ms=upload_ms, path="gpu",
            launch_ms=self._gpu.launch_s * 1e3, **self._store_stats(self._world))
        self.last_stats = stats
        self.last_list = None
        return stats

    def _wanted(self, world: World, camera: Camera, complete: bool, prefetch: bool = False
                ) -> tuple[list[Wanted], set[int]]:
        """The visible chunk set (all of it: `FrameStats.chunks_pending` counts those not
        drawn), and of it the chunks in RAM whose layout is prepared (with the renderer's
        derived arrays), in world order (oldest level first: a coarse level uploads before
        the finer one that covers it)."""
        self._world = world
        self._unavailable = 0
        store = world.resource(ChunkStore)
        store.begin_frame()
        store.poll()
        if store.streaming:  # what the RAM pool let go leaves the GPU and the caches too
            for cid in [c for c in self.residency.chunks if c not in store]:
                self.residency.evict(cid)
            if self.residency.host_memory:
                # GPU residency is a subset of the pool: on a software GL, whose arena is
                # host RAM that never shrinks, it need not grow past what the pool can hold
                self.arena.max_pages = min(self._arena_pages,
                                           -(-store.max_splats // PAGE_SPLATS))
        table = chunk_table(world)
        if len(table) == 0:
            return [], set()
        visible = visible_chunks(table, camera) if self.modulation else table.count > 0
        index = world.try_resource(LodIndex)
        store.request(table.chunk_id[visible].tolist())
        if prefetch and store.streaming:
            store.request(self._prefetch_ids(table, camera, visible), prefetch=True)
        now = time.perf_counter()
        interval = min(now - self._last_frame_start, 1.0) if self._last_frame_start else 0.0
        self._last_frame_start = now
        deadline = now + max(self.budget.prepare_ms_per_frame / 1e3,
                             self.budget.prepare_frame_fraction * interval)
        prepared_any = False
        wanted = []
        ids = set()
        for cid in table.chunk_id[visible].tolist():
            ids.add(cid)
            chunk = store.get(cid)
            if chunk is None:
                self._unavailable += store.state(cid) in (LoadState.FAILED, LoadState.UNLOADED)
                continue
            if len(chunk) == 0:
                continue
            layout = self._layouts.get(cid)
            if layout is None or layout.chunk is not chunk:
                if not complete and prepared_any and time.perf_counter() > deadline:
                    continue  # this frame's preparation time is spent: next frame
                layout = self._prepare(cid, chunk)
                prepared_any = True
            links = index.links.get(cid) if index is not None else None
            bands = self._bands.get(cid)
            if bands is None or bands.links is not links:
                bands = self._bands[cid] = chunk_bands(layout, links, self.modulation)
            attributes = None
            if self.residency.ready(cid) is None:
                attributes = self._attributes.get(cid)
            else:
                self._attributes.pop(cid, None)
            wanted.append(Wanted(cid, layout, bands, links, attributes))
        return wanted, ids

    def _prepare(self, cid: int, chunk: SplatChunk) -> ChunkLayout:
        """The per-chunk work done once: Morton layout and static GPU attributes."""
        layout = self._layouts[cid] = chunk_layout(chunk)
        self._attributes[cid] = splat_attributes(layout)
        self._bands.pop(cid, None)
        return layout

    def _prefetch_ids(self, table, camera: Camera, visible: np.ndarray) -> list[int]:
        """Chunks not visible now that the camera will likely show next, where it heads:
        zooming in (moving forward or narrowing), the view ahead along its motion and the
        view zoomed 2x in (finer levels); zooming out, the view ahead and the view zoomed 2x
        out (coarser levels); still, both zoomed views, finer first."""
        last, self._last_screen_camera = self._last_screen_camera, camera
        finer, coarser = camera.with_fov_scale(PREFETCH_ZOOM), camera.with_fov_scale(
            1.0 / PREFETCH_ZOOM)
        views = [finer, coarser]
        if last is not None and (last.width, last.height) == (camera.width, camera.height):
            step = camera.T_world_camera[:3, 3] - last.T_world_camera[:3, 3]
            zoom = camera.focal / last.focal
            if np.any(step) or zoom != 1.0:
                # the move ahead is capped at half the nearest depth seen: never through it
                reach = 0.5 * (self._screen.list.nearest if self._screen.list is not None
                               and self._screen.list.nearest > 0 else np.inf)
                ahead = PREFETCH_FRAMES * step
                norm = float(np.linalg.norm(ahead))
                if norm > reach:
                    ahead *= reach / norm
                T = camera.T_world_camera.copy()
                T[:3, 3] += ahead
                moved = replace(camera, T_world_camera=T).with_fov_scale(
                    min(max(zoom ** PREFETCH_FRAMES, 0.25), 4.0))
                zooming_in = zoom > 1.0 or float(step @ camera.T_world_camera[:3, 2]) > 0
                views = [moved, finer] if zooming_in else [moved, coarser]
        out: list[int] = []
        taken = visible.copy()
        for view in views:
            more = visible_chunks(table, view) & ~taken
            taken |= more
            out.extend(table.chunk_id[more].tolist())
        return out

    def _store_stats(self, world: World | None) -> dict:
        store = world.try_resource(ChunkStore) if world is not None else None
        if store is None:
            return {}
        return {"chunks_loading": store.pending(), "ram_bytes": store.used_bytes,
                "chunks_unavailable": self._unavailable}

    def _forget_unused(self, visible: set[int]) -> None:
        keep = visible | set(self.residency.chunks)
        store = self._world.try_resource(ChunkStore) if self._world is not None else None
        if store is not None and store.streaming:  # a layout holds its chunk: none past the pool
            keep = {cid for cid in keep if cid in store}
        for cache in (self._layouts, self._bands, self._attributes):
            for cid in [c for c in cache if c not in keep]:
                del cache[cid]

    # ---- sorting: build, reuse, or take the worker's result ------------------------------
    def _build(self, camera: Camera, items: list[DrawItem], point_px: float) -> DrawList:
        guard = self.resort.guard(camera) if self.resort is not None else Guard()
        return build_draw_list(View.of(camera, guard, point_px), items)

    def _draw_list(self, state: "_SortState", mode: str, camera: Camera, items: list[DrawItem],
                   point_px: float) -> tuple[DrawList, bool, float]:
        """The list to draw: reused, built here, or (async) the worker's latest."""
        signature = (point_px, *((it.chunk_id, id(it.gpu_rows), id(it.bands)) for it in items))
        fresh = mode == "async" and self._collect_worker(state)
        if state.list is not None and state.signature == signature \
                and self._camera_close(camera, state.list):
            return state.list, fresh, 0.0
        if mode == "async" and state.list is not None and self._list_safe(state.list):
            if state.future is None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="splat-sort")
                state.future = self._executor.submit(self._build, camera, items, point_px)
                state.future_signature = signature
            return state.list, fresh, 0.0  # the last order meanwhile
        t = time.perf_counter()
        state.list = self._build(camera, items, point_px)
        state.signature = signature
        return state.list, True, (time.perf_counter() - t) * 1e3

    def _collect_worker(self, state: "_SortState") -> bool:
        """Take the worker's finished list, if any; True when a new order is in use."""
        if state.future is None or not state.future.done():
            return False
        result, state.future = state.future.result(), None
        state.list, state.signature = result, state.future_signature
        if not self._list_safe(result):  # a chunk it names was evicted meanwhile
            state.list = None
            return False
        return True

    def _list_safe(self, draw_list: DrawList) -> bool:
        """Do the arena rows of `draw_list` still hold the same splats?"""
        for it in draw_list.items:
            entry = self.residency.ready(it.chunk_id)
            if entry is None or entry.gpu_rows is not it.gpu_rows:
                return False
        return True

    def _camera_close(self, camera: Camera, built: DrawList) -> bool:
        old = built.camera
        if (camera.width, camera.height, camera.cx, camera.cy, camera.near, camera.far) != \
                (old.width, old.height, old.cx, old.cy, old.near, old.far):
            return False
        same = (np.array_equal(camera.T_world_camera, old.T_world_camera)
                and camera.fx == old.fx and camera.fy == old.fy)
        if same or self.resort is None:
            return same
        policy = self.resort
        focal = min(old.fx, old.fy)
        R_rel = old.T_world_camera[:3, :3].T @ camera.T_world_camera[:3, :3]
        cos_angle = np.clip((np.trace(R_rel) - 1.0) / 2.0, -1.0, 1.0)
        if math.acos(cos_angle) * focal > policy.max_shift_px:
            return False
        nearest = built.nearest
        move = float(np.linalg.norm(camera.T_world_camera[:3, 3] - old.T_world_camera[:3, 3]))
        if move * focal > policy.max_shift_px * nearest:
            return False
        return abs(math.log(camera.fx / old.fx)) <= policy.max_zoom and \
            abs(math.log(camera.fy / old.fy)) <= policy.max_zoom

    # ---- drawing --------------------------------------------------------------------------
    def _pack_quads(self, draw_list: DrawList, camera: Camera) -> np.ndarray | None:
        """Packed rows (current camera frame) of the splats that take the quad path: the big
        ones, or all of them when points and quads alternate too often."""
        if not draw_list.any_big:
            return None
        if self._runs(draw_list.big) > MAX_RUNS:
            which = np.arange(draw_list.count)
        else:
            which = np.flatnonzero(draw_list.big)
        packed = np.empty((len(which), PACKED_WIDTH), np.float32)
        items = draw_list.item[which]
        for i in np.unique(items).tolist():
            item = draw_list.items[i]
            sel = np.flatnonzero(items == i)
            rows = item.layout.order[draw_list.layout_row[which[sel]]]
            packed[sel] = pack(camera, item.layout.chunk, item.links, rows)
        return packed

    @staticmethod
    def _runs(big: np.ndarray) -> int:
        return 1 + int(np.count_nonzero(big[1:] != big[:-1])) if len(big) else 0

    def _submit(self, draw_list: DrawList, camera: Camera, fbo: moderngl.Framebuffer,
                with_depth: bool, quads_packed: np.ndarray | None) -> int:
        if draw_list.count == 0:
            return 0
        premultiplied_blending(self.ctx)
        if quads_packed is not None and len(quads_packed) == draw_list.count:
            self._quads.upload(quads_packed)  # alternating too often: all as quads
            self._quads.draw_range(camera, fbo, 0, draw_list.count)
            return 1
        program = self._points_depth if with_depth else self._points
        vao = self._vao(program)
        self._write_index(draw_list.gpu_rows)
        self._write_origins(draw_list, camera)
        set_uniforms(program, {**camera_uniforms(camera, fbo.viewport),
                               "u_max_point_size": self.max_point_size,
                               "u_lod_mode": LOD_MODES[self.lod_mode], "u_page_origin": 0})
        self._origins.use(0)
        if quads_packed is not None:
            self._quads.upload(quads_packed)
        if not draw_list.any_big:  # the usual frame: one draw
            self._draw_points(vao, fbo, 0, draw_list.count)
            return 1
        calls = 0
        big = draw_list.big
        edges = np.flatnonzero(big[1:] != big[:-1]) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [draw_list.count]])
        quad_first = 0
        for start, end in zip(starts.tolist(), ends.tolist()):
            if big[start]:
                self._quads.draw_range(camera, fbo, quad_first, end - start)
                quad_first += end - start
            else:
                self._draw_points(vao, fbo, start, end - start)
            calls += 1
        return calls

    def _draw_points(self, vao: moderngl.VertexArray, fbo: moderngl.Framebuffer, first: int,
                     count: int) -> None:
        saved_scissor = fbo.scissor
        fbo.scissor = fbo.viewport  # points may reach past a sub-viewport: clip them to it
        self.ctx.enable(moderngl.PROGRAM_POINT_SIZE)
        premultiplied_blending(self.ctx)
        self._origins.use(0)
        step = self.flush_splats if self.flush_splats > 0 else count
        for start in range(first, first + count, step):
            vao.render(moderngl.POINTS, vertices=min(step, first + count - start), first=start)
            if step < count:
                self._gl_flush()
                self._pacer.flushed()
        self._pacer.end()
        fbo.scissor = saved_scissor

    def _program(self, with_depth: bool) -> moderngl.Program:
        body = POINTS_SHADER_PATH.read_text()
        defines = f"#define PAGE_BITS {PAGE_BITS}\n" + ("#define WITH_DEPTH\n" if with_depth else "")
        return self.ctx.program(
            vertex_shader=f"{GLSL_VERSION}\n{defines}#define VERTEX_SHADER\n{body}",
            fragment_shader=f"{GLSL_VERSION}\n{defines}#define FRAGMENT_SHADER\n{body}")

    def _vao(self, program: moderngl.Program) -> moderngl.VertexArray:
        if self._vao_version != self.arena.version:
            for vao in self._vaos.values():
                vao.release()
            self._vaos.clear()
            self._vao_version = self.arena.version
        vao = self._vaos.get(program.glo)
        if vao is None:
            vao = self.ctx.vertex_array(program, [
                (self.arena.main, f"{MAIN_WIDTH}f", "in_main"),
                (self.arena.lod, f"{LOD_WIDTH}f", "in_lod"),
            ], index_buffer=self._index, index_element_size=4)
            self._vaos[program.glo] = vao
        return vao

    def _write_index(self, gpu_rows: np.ndarray) -> None:
        if len(gpu_rows) > self._index_capacity:
            self._index_capacity = max(len(gpu_rows), int(self._index_capacity * 1.5))
        self._index.orphan(self._index_capacity * 4)  # a fresh store: never wait on the GPU
        self._index.write(np.ascontiguousarray(gpu_rows, np.uint32))

    def _write_origins(self, draw_list: DrawList, camera: Camera) -> None:
        """Camera-space centre of each page's chunk: float64 subtraction, then float32."""
        rows = -(-self.arena.capacity // PAGE_TEXELS)
        if self._origins is None or self._origins.size != (PAGE_TEXELS, rows):
            if self._origins is not None:
                self._origins.release()
            self._origins = self.ctx.texture((PAGE_TEXELS, rows), 4, dtype="f4")
            self._origins.filter = (moderngl.NEAREST, moderngl.NEAREST)
        data = np.zeros((rows * PAGE_TEXELS, 4), np.float32)
        eye = camera.T_world_camera[:3, 3]
        R = camera.T_world_camera[:3, :3]
        for it in draw_list.items:
            entry = self.residency.ready(it.chunk_id)
            data[entry.pages, :3] = (it.layout.centre - eye) @ R
        self._origins.write(data)


def probe_paths(ctx: moderngl.Context, frames: int = 3) -> tuple[float, float]:
    """(cpu_ms, gpu_ms): median wall time of a probe frame (a 256x256-splat plane from
    `engine.synthetic`, 640x360, culled and sorted anew each frame, GPU finished) on each
    path, for `path="auto"` on a hardware GL. Costs a few frames of each path at start-up."""
    (camera, level), = nested_plane_world(levels=1, size=PROBE_SPLATS_SIDE)
    world = flat_scene([(level, None)])
    fbo = ctx.simple_framebuffer(PROBE_VIEW)
    medians = []
    for path in ("cpu", "gpu"):
        renderer = StreamingRenderer(ctx, resort=None, path=path)
        renderer.draw(world, camera, fbo, complete=True)  # uploads, first-use compiles
        wait_for_gpu(ctx)
        times = []
        for k in range(frames):
            t = time.perf_counter()
            renderer.draw(world, camera.with_fov_scale(1.0 + 1e-9 * (k + 1)), fbo)
            wait_for_gpu(ctx)
            times.append((time.perf_counter() - t) * 1e3)
        renderer.release()
        medians.append(sorted(times)[len(times) // 2])
    fbo.release()
    return medians[0], medians[1]


@dataclass(eq=False)
class _SortState:
    """The last list of one output (window or offscreen), and a worker sort in flight."""

    list: DrawList | None = None
    signature: tuple = ()
    future: Future | None = None
    future_signature: tuple = ()


# points.glsl reads a main row as one mat4
assert MAIN_WIDTH == 16
