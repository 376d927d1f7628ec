"""The GPU-driven frame: cull, modulate, key, sort and draw the visible splats on the GPU.

Owns, for the streaming renderer's `path="gpu"`:
- `gpu_support`: whether a context can run it (GL >= 4.3, or the compute, storage buffer,
  indirect draw and image load/store extensions, as Mesa offers them under its 3.3
  compatibility override) and whether the GL is a software rasterizer;
- `choose_path`: the rule of `path="auto"` (pure: the probe is passed in);
- `GpuDrivenPath`: per frame, from a list of resident chunks (`GpuItem`: a chunk's arena
  pages and float64 centre), with work on the CPU proportional to the number of chunks:
  1. one camera-space origin per chunk (float64 subtraction on the CPU, then float32) and,
     when the chunk list changed, the work-page table (arena page, chunk slot, rows);
  2. CULL, ORDER, KEYS (`gpu_cull.glsl`): the exact per-splat rules of
     `engine.render.prepare` (behind, outside, faded, faint; modulation as points.glsl),
     survivors appended with an atomic counter that is the indirect draw's count, put back
     in the CPU path's order (chunks, then layout rows) and given the CPU path's 16-bit
     back-to-front depth keys (`engine.render.visibility.back_to_front`);
  3. the stable radix sort (`engine.render.gpu_sort`) with the count read on the GPU;
  4. one indirect draw of `points.glsl`: an indexed GL_POINTS draw whose element buffer is
     the sorted arena rows, or, when a footprint may exceed the largest GL point (a
     viewport wider than it), the same shader's SORTED_QUADS variant (instanced strips).
  Nothing is read back to the CPU during a frame; `read_rows` / `read_counts` do, for tests
  and benchmarks.
Does not own: the visible chunk set, residency and uploads (`engine.render.streaming`,
`engine.render.residency`), the EWA image (`points.glsl`, checked against
`engine.render.reference`), the sort's algorithm (`radix_sort.glsl`).

Precision: as on the CPU path, the GPU sees only camera-relative float32 positions: the
chunk-local offsets in the arena plus a per-chunk origin computed in float64 each frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import moderngl
import numpy as np

from engine.camera import Camera
from engine.errors import UserError
from engine.render.gl import camera_uniforms, premultiplied_blending, set_uniforms
from engine.render.gpu_sort import (COMPUTE_GLSL_VERSION, MAX_GROUPS_X, GpuRadixSort,
                                    compile_compute, grid, set_compute_uniforms)
from engine.render.prepare import margin_per_depth
from engine.render.residency import LOD_WIDTH, MAIN_WIDTH, PagedArena
from engine.render.visibility import PAGE_BITS, PAGE_SPLATS

CULL_SHADER_PATH = Path(__file__).parent / "gpu_cull.glsl"
POINTS_SHADER_PATH = Path(__file__).parent / "points.glsl"
THREADS = 256  # invocations per cull / key workgroup (PAGE_SPLATS / THREADS rows each)
PAGE_TEXELS = 1024  # page-origin texture width (points.glsl: PAGE_TEXELS_BITS)
# frame state words (gpu_cull.glsl: STATE_*): two indirect draw commands, then counters
STATE_WORDS = 16
STATE_DRAW_COUNT = 0  # DrawElementsIndirect (count, 1, 0, 0, 0) at word 0 (command 0)
STATE_QUAD_COMMAND = 5  # DrawArraysIndirect (4, instances, 0, 0) at word 5: moderngl's
#                         render_indirect starts at byte first * 20 for either kind
STATE_Z_MIN = 12
STATE_Z_MAX = 13
STATE_ORDERED = 14
FLOAT_INF_BITS = 0x7F800000
LOD_MODES = {"soft": 0, "hard": 1, "none": 2}
REQUIRED_EXTENSIONS = ("GL_ARB_compute_shader", "GL_ARB_shader_storage_buffer_object",
                       "GL_ARB_draw_indirect", "GL_ARB_multi_draw_indirect",
                       "GL_ARB_shader_image_load_store")
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swiftshader", "software rasterizer")
RENDER_PATHS = ("auto", "cpu", "gpu")
PROBE_MARGIN = 1.0  # auto keeps the CPU path unless the GPU path's probe frame is faster


class RenderPathError(UserError, ValueError):
    """A render path that does not exist or that this GL context cannot run (one line)."""


def _initial_state() -> np.ndarray:
    state = np.zeros(STATE_WORDS, np.uint32)
    state[1] = 1  # one instance of the indexed point draw
    state[STATE_QUAD_COMMAND] = 4  # four strip vertices per quad instance
    state[STATE_Z_MIN] = FLOAT_INF_BITS
    return state


# ---- can it run, and which path runs -----------------------------------------------------
@dataclass(frozen=True)
class GpuSupport:
    available: bool  # compute shaders, storage buffers, indirect draws, image stores
    software: bool  # a software rasterizer (llvmpipe): the CPU path draws faster there
    renderer: str  # GL_RENDERER
    reason: str  # one line: what is missing, or what was found


def gpu_support(ctx: moderngl.Context) -> GpuSupport:
    """Can `ctx` run the GPU-driven path? Decided from the GL version and extensions."""
    renderer = str(ctx.info.get("GL_RENDERER", ""))
    software = any(name in renderer.lower() for name in SOFTWARE_RENDERERS)
    version = int(ctx.version_code or 0)
    missing = [] if version >= 430 else [e for e in REQUIRED_EXTENSIONS if e not in ctx.extensions]
    if missing:
        return GpuSupport(False, software, renderer,
                          f"OpenGL {version // 100}.{version // 10 % 10} on {renderer} lacks "
                          f"{', '.join(missing)} (the GPU path needs OpenGL 4.3)")
    return GpuSupport(True, software, renderer,
                      f"compute shaders on {renderer} (OpenGL {version // 100}.{version // 10 % 10})")


def choose_path(requested: str, support: GpuSupport,
                probe: Callable[[], tuple[float, float]] | None = None) -> tuple[str, str]:
    """("cpu" | "gpu", why) for a requested path. "auto": the GPU path on a hardware GL that
    can run it, unless `probe` (() -> (cpu_ms, gpu_ms) of one probe frame) finds it slower;
    the CPU path on a software rasterizer or without compute shaders. Raises
    RenderPathError for an unknown name or "gpu" where it cannot run."""
    if requested not in RENDER_PATHS:
        raise RenderPathError(f"unknown renderer {requested!r}: choose one of "
                              f"{', '.join(RENDER_PATHS)}")
    if requested == "cpu":
        return "cpu", "asked for the CPU path"
    if not support.available:
        if requested == "gpu":
            raise RenderPathError(f"the GPU renderer cannot run here: {support.reason}")
        return "cpu", support.reason
    if requested == "gpu":
        return "gpu", "asked for the GPU path"
    if support.software:
        return "cpu", f"{support.renderer} is a software rasterizer: the CPU path is faster"
    if probe is not None:
        cpu_ms, gpu_ms = probe()
        if not gpu_ms * PROBE_MARGIN < cpu_ms:
            return "cpu", f"probe frame: CPU path {cpu_ms:.2f} ms, GPU path {gpu_ms:.2f} ms"
        return "gpu", f"probe frame: GPU path {gpu_ms:.2f} ms, CPU path {cpu_ms:.2f} ms"
    return "gpu", support.reason


# ---- the per-frame tables (CPU work per chunk) ---------------------------------------------
@dataclass(frozen=True, eq=False)
class GpuItem:
    """A resident chunk offered to the GPU cull."""

    chunk_id: int
    centre: np.ndarray  # [3] float64 world point the arena's local offsets are relative to
    pages: np.ndarray  # [ceil(count / PAGE_SPLATS)] int64 arena pages, in layout order
    count: int  # splats (layout rows)
    links: object = None  # the LodLinks whose columns the arena holds (identity: a new
    #                       object means rewritten link columns, so the cull must run again)


def work_pages(items: Sequence[GpuItem]) -> np.ndarray:
    """[W, 4] uint32 (arena page, chunk slot, rows in the page, 0): the cull's workgroups,
    chunks in order and each chunk's pages in layout order (the CPU path's tie order)."""
    parts = []
    for slot, item in enumerate(items):
        rows = np.full(len(item.pages), PAGE_SPLATS, np.uint32)
        if len(rows):
            rows[-1] = item.count - PAGE_SPLATS * (len(rows) - 1)
        part = np.zeros((len(item.pages), 4), np.uint32)
        part[:, 0] = item.pages
        part[:, 1] = slot
        part[:, 2] = rows
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros((0, 4), np.uint32)


def chunk_origins(camera: Camera, centres: np.ndarray) -> np.ndarray:
    """[C, 3] float64 world centres -> [C, 4] float32 camera-space centres (w = 0): the
    float64 subtraction that keeps a 10^6x zoom precise, done once per chunk."""
    R = camera.T_world_camera[:3, :3]
    out = np.zeros((len(centres), 4), np.float32)
    out[:, :3] = (centres - camera.T_world_camera[:3, 3]) @ R
    return out


def cull_uniforms(camera: Camera, lod_mode: str) -> dict:
    """The CULL pass's camera uniforms (the side planes of `Camera.frustum_planes_camera`)."""
    planes = camera.frustum_planes_camera()[:4, :3].astype(np.float32)  # [4, 3]
    return {
        "u_R_camera_world": camera.T_world_camera[:3, :3].astype(np.float32).tobytes(),
        "u_log_focal": math.log(camera.focal),
        "u_near": camera.near,
        "u_far": camera.far,
        "u_planes": planes.tobytes(),
        "u_margin_per_depth": margin_per_depth(camera),
        "u_lod_mode": LOD_MODES[lod_mode],
    }


def _camera_key(camera: Camera) -> tuple:
    return (camera.T_world_camera.tobytes(), camera.fx, camera.fy, camera.cx, camera.cy,
            camera.width, camera.height, camera.near, camera.far)


# ---- the GPU side ------------------------------------------------------------------------
class GpuDrivenPath:
    """The GPU half of a GPU-driven frame; one per `StreamingRenderer` that uses it."""

    def __init__(self, ctx: moderngl.Context, point_programs: dict[bool, moderngl.Program],
                 max_groups_x: int = MAX_GROUPS_X) -> None:
        """`point_programs`: the renderer's points.glsl programs, by `with_depth`."""
        self.ctx = ctx
        self.max_groups_x = int(max_groups_x)
        defines = {"PAGE_BITS": PAGE_BITS, "THREADS": THREADS}
        self._cull = {s: compile_compute(ctx, CULL_SHADER_PATH, s, defines)
                      for s in ("CULL", "ORDER", "KEYS")}
        self.sort = GpuRadixSort(ctx, key_bits=16, max_groups_x=max_groups_x)
        self._points = point_programs
        self._quads: dict[bool, moderngl.Program] = {}
        self._state = ctx.buffer(_initial_state())
        self._work = ctx.buffer(reserve=16 * 64)
        self._page_info = ctx.buffer(reserve=16 * 64)
        self._compacted = ctx.buffer(reserve=8 * PAGE_SPLATS)
        self._origins = ctx.buffer(reserve=16 * 64)
        self._origin_texture: moderngl.Texture | None = None
        self._vaos: dict[tuple, moderngl.VertexArray] = {}
        self._signature: tuple | None = None
        self._items: tuple[GpuItem, ...] = ()
        self._centres = np.zeros((0, 3))
        self._work_count = 0
        self._computed_for: tuple | None = None
        self.candidates = 0  # splats offered to the cull by the last frame
        self.quads_last_frame = False
        self.computed_last_frame = False
        self.launch_s = 0.0  # last frame: seconds inside dispatch, barrier and draw calls
        #                      (see GpuRadixSort.launch_s)

    # ---- a frame --------------------------------------------------------------------------
    def draw(self, arena: PagedArena, items: Sequence[GpuItem], camera: Camera,
             fbo: moderngl.Framebuffer, with_depth: bool, lod_mode: str,
             max_point_size: float) -> int:
        """Cull, sort and draw `items` into the bound `fbo` (cleared by the caller); returns
        the number of draw calls (0 or 1). Leaves blending as `premultiplied_blending`."""
        self.launch_s = 0.0
        self._set_items(items)
        if self._work_count == 0:
            self.computed_last_frame = self.quads_last_frame = False
            return 0
        key = (_camera_key(camera), self._signature, lod_mode, arena.version)
        self.computed_last_frame = key != self._computed_for
        if self.computed_last_frame:
            self._compute(arena, camera, lod_mode)
            self._computed_for = key
        vp = fbo.viewport
        # a point is never wider than the viewport (points.glsl clips its square to it)
        self.quads_last_frame = max_point_size < max(vp[2], vp[3])
        self._draw(arena, camera, fbo, with_depth, lod_mode, max_point_size)
        return 1

    def _set_items(self, items: Sequence[GpuItem]) -> None:
        """The work-page table and the chunk centres, rebuilt only when the chunks change."""
        # identities stay unique while `self._items` holds the objects
        signature = tuple((it.chunk_id, id(it.pages), id(it.links)) for it in items)
        if signature == self._signature:
            return
        self._signature = signature
        self._items = tuple(items)
        table = work_pages(items)  # [W, 4]
        self._work_count = len(table)
        self.candidates = int(sum(it.count for it in items))
        self._centres = (np.stack([it.centre for it in items]).astype(np.float64)
                         if items else np.zeros((0, 3)))
        if not len(table):
            return
        self._work = self._fit(self._work, table.nbytes)
        self._work.write(table)
        self._page_info = self._fit(self._page_info, 16 * len(table))
        self._compacted = self._fit(self._compacted, 8 * PAGE_SPLATS * len(table))
        self._origins = self._fit(self._origins, 16 * len(items))
        self.sort.reserve(PAGE_SPLATS * len(table))
        self._computed_for = None

    def _fit(self, buf: moderngl.Buffer, size: int) -> moderngl.Buffer:
        if buf.size >= size:
            return buf
        size = max(size, 2 * buf.size)
        buf.release()
        return self.ctx.buffer(reserve=size)

    def _compute(self, arena: PagedArena, camera: Camera, lod_mode: str) -> None:
        ctx = self.ctx
        self._origins.write(chunk_origins(camera, self._centres))
        texture = self._origin_texture_for(arena)
        self._state.write(_initial_state())
        arena.main.bind_to_storage_buffer(0)
        arena.lod.bind_to_storage_buffer(1)
        self._work.bind_to_storage_buffer(2)
        self._origins.bind_to_storage_buffer(3)
        self._state.bind_to_storage_buffer(4)
        self._page_info.bind_to_storage_buffer(5)
        self._compacted.bind_to_storage_buffer(6)
        texture.bind_to_image(0, read=False, write=True)
        groups = grid(self._work_count, self.max_groups_x)
        cull = self._cull["CULL"]
        set_compute_uniforms(cull, {**cull_uniforms(camera, lod_mode),
                                    "u_work_pages": self._work_count})
        self._launch(cull.run, *groups)
        self._launch(ctx.memory_barrier, moderngl.SHADER_STORAGE_BARRIER_BIT)
        order = self._cull["ORDER"]
        set_compute_uniforms(order, {"u_work_pages": self._work_count})
        self._launch(order.run, 1)
        self._launch(ctx.memory_barrier, moderngl.SHADER_STORAGE_BARRIER_BIT)
        keys = self._cull["KEYS"]
        set_compute_uniforms(keys, {"u_work_pages": self._work_count})
        self.sort.keys.bind_to_storage_buffer(0)
        self.sort.values.bind_to_storage_buffer(1)
        self._launch(keys.run, *groups)
        self.sort.sort(self._state, STATE_DRAW_COUNT)
        self.launch_s += self.sort.launch_s
        self._launch(ctx.memory_barrier, moderngl.ALL_BARRIER_BITS)

    def _launch(self, call: Callable, *args) -> None:
        t = time.perf_counter()
        call(*args)
        self.launch_s += time.perf_counter() - t

    def _origin_texture_for(self, arena: PagedArena) -> moderngl.Texture:
        """The page-origin texture points.glsl reads (the CULL pass writes the pages it
        processes), sized for the arena."""
        size = (PAGE_TEXELS, -(-arena.capacity // PAGE_TEXELS))
        if self._origin_texture is None or self._origin_texture.size != size:
            if self._origin_texture is not None:
                self._origin_texture.release()
            self._origin_texture = self.ctx.texture(size, 4, dtype="f4")
            self._origin_texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
            self._computed_for = None
        return self._origin_texture

    def _draw(self, arena: PagedArena, camera: Camera, fbo: moderngl.Framebuffer,
              with_depth: bool, lod_mode: str, max_point_size: float) -> None:
        ctx = self.ctx
        program = self._quad_program(with_depth) if self.quads_last_frame else \
            self._points[with_depth]
        set_uniforms(program, {**camera_uniforms(camera, fbo.viewport),
                               "u_max_point_size": max_point_size,
                               "u_lod_mode": LOD_MODES[lod_mode], "u_page_origin": 0})
        premultiplied_blending(ctx)
        self._origin_texture.use(0)
        saved_scissor = fbo.scissor
        fbo.scissor = fbo.viewport  # points and quads may reach past a sub-viewport
        if self.quads_last_frame:
            arena.main.bind_to_storage_buffer(0)
            arena.lod.bind_to_storage_buffer(1)
            self.sort.values.bind_to_storage_buffer(2)
            vao = self._vao(program, arena, indexed=False)
            self._launch(vao.render_indirect, self._state, moderngl.TRIANGLE_STRIP, 1,
                         STATE_QUAD_COMMAND // 5)
        else:
            ctx.enable(moderngl.PROGRAM_POINT_SIZE)
            vao = self._vao(program, arena, indexed=True)
            self._launch(vao.render_indirect, self._state, moderngl.POINTS, 1, 0)
        fbo.scissor = saved_scissor

    def _quad_program(self, with_depth: bool) -> moderngl.Program:
        program = self._quads.get(with_depth)
        if program is None:
            body = POINTS_SHADER_PATH.read_text()
            defines = (f"#define PAGE_BITS {PAGE_BITS}\n#define SORTED_QUADS\n"
                       + ("#define WITH_DEPTH\n" if with_depth else ""))
            program = self._quads[with_depth] = self.ctx.program(
                vertex_shader=f"{COMPUTE_GLSL_VERSION}\n{defines}#define VERTEX_SHADER\n{body}",
                fragment_shader=f"{COMPUTE_GLSL_VERSION}\n{defines}#define FRAGMENT_SHADER\n{body}")
        return program

    def _vao(self, program: moderngl.Program, arena: PagedArena, indexed: bool
             ) -> moderngl.VertexArray:
        key = (program.glo, arena.version, self.sort.values.glo, indexed)
        vao = self._vaos.get(key)
        if vao is None:
            for old in [k for k in self._vaos if k[0] == program.glo]:
                self._vaos.pop(old).release()
            if indexed:
                vao = self.ctx.vertex_array(program, [
                    (arena.main, f"{MAIN_WIDTH}f", "in_main"),
                    (arena.lod, f"{LOD_WIDTH}f", "in_lod"),
                ], index_buffer=self.sort.values, index_element_size=4)
            else:
                vao = self.ctx.vertex_array(program, [])
            self._vaos[key] = vao
        return vao

    # ---- read-backs (tests, benchmarks; never during a frame) ------------------------------
    def read_counts(self) -> dict[str, int]:
        """The last computed frame's counters: `drawn` (the indirect draw's count, from the
        atomic appends), `ordered` (the ORDER pass's sum of page counts: the same number),
        `candidates`."""
        if self._work_count == 0:
            return {"drawn": 0, "ordered": 0, "candidates": 0}
        state = np.frombuffer(self._state.read(), np.uint32)
        return {"drawn": int(state[STATE_DRAW_COUNT]), "ordered": int(state[STATE_ORDERED]),
                "candidates": self.candidates}

    def read_rows(self) -> np.ndarray:
        """[K] uint32 arena rows of the last computed frame, back to front (draw order)."""
        n = self.read_counts()["drawn"]
        if n == 0:
            return np.zeros(0, np.uint32)
        return np.frombuffer(self.sort.values.read(4 * n), np.uint32).copy()

    def read_keys(self) -> np.ndarray:
        """[K] uint32 sorted back-to-front keys of the last computed frame."""
        n = self.read_counts()["drawn"]
        if n == 0:
            return np.zeros(0, np.uint32)
        return np.frombuffer(self.sort.keys.read(4 * n), np.uint32).copy()

    @property
    def items(self) -> tuple[GpuItem, ...]:
        return self._items

    def release(self) -> None:
        for vao in self._vaos.values():
            vao.release()
        self._vaos.clear()
        for obj in (*self._cull.values(), *self._quads.values(), self._state, self._work,
                    self._page_info, self._compacted, self._origins, self._origin_texture):
            if obj is not None:
                obj.release()
        self._origin_texture = None
        self.sort.release()
