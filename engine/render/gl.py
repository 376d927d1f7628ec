"""moderngl plumbing and the instanced-quad splat renderer.

Owns: `SplatRenderer`, which draws `PreparedSplats` (CPU-packed, camera-relative instances)
as screen-aligned quads from `splats.glsl`, one instanced draw per run (the instance
buffer is orphaned on every upload and grown when needed; `draw_range` draws any run of it,
which the streaming renderer uses for footprints too wide for a GL point); the offscreen
colour + depth targets and their readback; the camera uniforms and blend state shared with
`points.glsl`; a headless context helper (asking Mesa for a compatibility profile, where
llvmpipe draws GL points faster) and glFlush, which moderngl lacks.
Does not own: culling, packing and sorting (`engine.render.prepare`, on the CPU), the
definition of the image (`engine.render.reference` is the oracle this must match), the
streaming renderer (`engine.render.streaming`), windows (`ui/`) or the frame loop.

Conventions: the camera image is in OpenCV pixels (row 0 at the top, v down); GL's window
origin is bottom-left, so the vertex shader flips v when it writes clip coordinates (a window
shows the image upright) and `render_offscreen` flips rows back on readback, so its arrays
match `engine.render.reference.render` row for row.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import moderngl
import numpy as np

from engine.camera import Camera
from engine.errors import UserError
from engine.render.prepare import PACKED_WIDTH, PreparedSplats
from engine.render.reference import RenderOutput

SHADER_PATH = Path(__file__).parent / "splats.glsl"
GLSL_VERSION = "#version 330 core"
INSTANCE_FORMAT = "3f 4f 3f 4f 4f/i"  # the packed columns, see engine.render.prepare
INSTANCE_ATTRIBUTES = ("in_mean", "in_quat", "in_scale", "in_color", "in_lod")
INSTANCE_WIDTHS = (3, 4, 3, 4, 4)  # floats per attribute, summing to PACKED_WIDTH
INITIAL_INSTANCE_CAPACITY = 1 << 16  # splats; the buffer grows by 1.5x when a frame needs more
QUAD_CORNERS = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], np.float32)  # [4, 2] strip


class HeadlessContextError(UserError, RuntimeError):
    """No offscreen OpenGL 3.3 context could be created on this machine."""


# Mesa's documented override of the context version and profile: a compatibility profile.
# Why: the splats are GL points; a core profile always draws them as sprites, which llvmpipe
# rasterizes as generic 4-edge polygons, while a compatibility profile draws GL 2.1 points by
# default, which llvmpipe rasterizes as rectangles (measured on the render bench's deep frame:
# 1.72 -> 2.03M splats/s). glcontext's EGL backend and our SDL window ask for a core profile, so the
# profile is chosen here; drivers other than Mesa ignore the variable and stay core. The
# image is the same either way (points.glsl covers whole pixels), and a value the user set
# is kept.
PROFILE_OVERRIDE = ("MESA_GL_VERSION_OVERRIDE", "3.3COMPAT")


def prefer_compatibility_profile() -> None:
    """Ask Mesa for a 3.3 compatibility profile in the GL contexts created from now on (Mesa
    reads the variable once, at the first context of a process)."""
    os.environ.setdefault(*PROFILE_OVERRIDE)


def create_headless_context() -> moderngl.Context:
    """A standalone OpenGL >= 3.3 context through EGL (Mesa llvmpipe works without a GPU)."""
    prefer_compatibility_profile()
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:  # moderngl/glcontext raise plain Exceptions
        raise HeadlessContextError(
            f"cannot create a headless OpenGL 3.3 context via EGL ({exc}); install "
            "libegl1 and libgl1 (Mesa), e.g. `apt-get install --no-install-recommends "
            "libegl1 libgl1`") from None


def load_program_source(path: Path = SHADER_PATH) -> tuple[str, str]:
    """(vertex, fragment) sources of a one-file program with VERTEX_/FRAGMENT_SHADER sections."""
    body = path.read_text()
    return (f"{GLSL_VERSION}\n#define VERTEX_SHADER\n{body}",
            f"{GLSL_VERSION}\n#define FRAGMENT_SHADER\n{body}")


@dataclass
class OffscreenTargets:
    """Float32 colour and depth-accumulation textures, drawn together, cleared apart."""

    size: tuple[int, int]  # width, height
    colour: moderngl.Texture  # RGBA32F: premultiplied rgb over the background, alpha
    depth: moderngl.Texture  # RGBA32F: (sum w z, 0, 0, sum w)
    both: moderngl.Framebuffer
    colour_only: moderngl.Framebuffer  # one framebuffer per texture so each is cleared
    depth_only: moderngl.Framebuffer  # to its own value (a clear hits every attachment)

    @classmethod
    def create(cls, ctx: moderngl.Context, width: int, height: int) -> "OffscreenTargets":
        colour = ctx.texture((width, height), 4, dtype="f4")
        depth = ctx.texture((width, height), 4, dtype="f4")
        return cls(size=(width, height), colour=colour, depth=depth,
                   both=ctx.framebuffer(color_attachments=[colour, depth]),
                   colour_only=ctx.framebuffer(color_attachments=[colour]),
                   depth_only=ctx.framebuffer(color_attachments=[depth]))

    def clear(self, background: tuple[float, float, float]) -> None:
        self.colour_only.clear(*background, 0.0)
        self.depth_only.clear(0.0, 0.0, 0.0, 0.0)

    def read(self) -> RenderOutput:
        """rgb, alpha and expected depth, in OpenCV rows (GL rows start at the bottom)."""
        width, height = self.size
        colour = _read(self.both, 0, width, height)  # [H, W, 4] premultiplied rgb, A
        accum = _read(self.both, 1, width, height)  # [H, W, 4] sum w z, 0, 0, sum w
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(accum[..., 3] > 0, accum[..., 0] / accum[..., 3], 0.0)
        return RenderOutput(np.ascontiguousarray(colour[..., :3]),
                            np.ascontiguousarray(colour[..., 3]), depth.astype(np.float32))

    def release(self) -> None:
        for obj in (self.both, self.colour_only, self.depth_only, self.colour, self.depth):
            obj.release()


def _read(fbo: moderngl.Framebuffer, attachment: int, width: int, height: int) -> np.ndarray:
    raw = fbo.read(components=4, attachment=attachment, dtype="f4")
    # GL rows start at the bottom; OpenCV rows at the top
    return np.frombuffer(raw, np.float32).reshape(height, width, 4)[::-1]


def set_uniforms(program: moderngl.Program, values: dict) -> None:
    """Set the uniforms the program really has (compilers drop unused ones)."""
    for name, value in values.items():
        if name not in program:
            continue
        if isinstance(value, bytes):
            program[name].write(value)
        else:
            program[name].value = value


def camera_uniforms(camera: Camera, viewport: tuple[int, int, int, int]) -> dict:
    """The camera uniforms shared by the splat programs (`splats.glsl`, `points.glsl`)."""
    R_camera_world = camera.T_world_camera[:3, :3].T
    return {
        # GLSL matrices are column-major: the rows of M^T are the columns of M
        "u_R_camera_world": R_camera_world.T.astype(np.float32).tobytes(),
        "u_focal": (camera.fx, camera.fy),
        "u_principal": (camera.cx, camera.cy),
        "u_image_size": (float(camera.width), float(camera.height)),
        "u_log_focal": math.log(camera.focal),
        "u_near": camera.near,
        "u_far": camera.far,
        "u_viewport_scale": (viewport[2] / camera.width, viewport[3] / camera.height),
        "u_viewport": tuple(float(v) for v in viewport),
    }


def premultiplied_blending(ctx: moderngl.Context) -> None:
    """Back-to-front "over" of premultiplied colour; no depth test, no face culling."""
    ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
    ctx.enable(moderngl.BLEND)
    ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
    ctx.blend_equation = moderngl.FUNC_ADD


@functools.cache
def _gl_entry_point(name: str) -> Callable[[], None] | None:
    """A GL function without arguments (glFlush, glFinish) through ctypes, or None where no
    GL library has it. Through GLVND's libOpenGL / libGL the call goes to whichever context
    (EGL or GLX) is current on the calling thread."""
    libraries = [ctypes.util.find_library(n) for n in ("OpenGL", "GL")]
    libraries += ["libOpenGL.so.0", "libGL.so.1", "opengl32"]
    for library in libraries:
        if not library:
            continue
        try:
            function = getattr(ctypes.CDLL(library), name)
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [], None
        return function
    return None


def gl_flush_function() -> Callable[[], None] | None:
    """glFlush of the current context, or None where it cannot be found (moderngl has no
    flush)."""
    return _gl_entry_point("glFlush")


GL_SYNC_GPU_COMMANDS_COMPLETE = 0x9117
GL_SYNC_FLUSH_COMMANDS_BIT = 0x1
GL_TIMEOUT_EXPIRED = 0x911B
SYNC_WAIT_NS = 100_000_000  # one glClientWaitSync call; the wait repeats until done


@functools.cache
def _gl_sync_functions() -> tuple[Callable, Callable, Callable] | None:
    """(glFenceSync, glClientWaitSync, glDeleteSync) through ctypes, or None (moderngl has
    no fences). GL 3.2 core, like everything else here."""
    functions = []
    for name, argtypes, restype in (
            ("glFenceSync", [ctypes.c_uint, ctypes.c_uint], ctypes.c_void_p),
            ("glClientWaitSync", [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint64], ctypes.c_uint),
            ("glDeleteSync", [ctypes.c_void_p], None)):
        function = _gl_entry_point(name)
        if function is None:
            return None
        function = ctypes.cast(function, ctypes.CFUNCTYPE(restype, *argtypes))
        functions.append(function)
    return tuple(functions)


class BatchPacer:
    """Keeps at most `depth` flushed batches of a draw unfinished on the GL: after each
    `flushed()` batch the CPU waits (a fence, GIL released) for the one `depth` batches
    before it, so the next batch's vertex stage still overlaps the last ones' rasterization.

    Why: llvmpipe bins a batch on the calling thread and rasterizes it on its own threads;
    unpaced, binning runs far ahead of them, and the memory Mesa takes for what waits stays
    resident at its high-water mark (~230 bytes a point waiting). A probe drawing 1.1M points
    a frame ended 254 MB over its arena with flushed batches, 65 MB with a glFinish after
    each; paced at 2 batches, the bench's 64M-splat world ended its fly-through 215 MB lower,
    at the same frame times (docs/streaming.md). A no-op where fences are missing."""

    def __init__(self, depth: int) -> None:
        self.depth = max(int(depth), 1)
        self._sync = _gl_sync_functions()
        self._fences: list[int] = []

    def flushed(self) -> None:
        if self._sync is None:
            return
        fence_sync, client_wait, delete_sync = self._sync
        fence = fence_sync(GL_SYNC_GPU_COMMANDS_COMPLETE, 0)
        if not fence:
            return
        self._fences.append(fence)
        while len(self._fences) > self.depth:
            oldest = self._fences.pop(0)
            # until signalled (or the wait fails: a lost context has nothing left to guard)
            while client_wait(oldest, GL_SYNC_FLUSH_COMMANDS_BIT,
                              SYNC_WAIT_NS) == GL_TIMEOUT_EXPIRED:
                pass
            delete_sync(oldest)

    def end(self) -> None:
        """The draw is over: forget its fences (without waiting for them)."""
        if self._sync is not None:
            for fence in self._fences:
                self._sync[2](fence)
        self._fences.clear()


def wait_for_gpu(ctx: moderngl.Context) -> None:
    """Block until the GPU has finished everything submitted, letting other Python threads
    run meanwhile: moderngl's `finish` holds the GIL for the whole wait (a worker thread
    sorting the next frame's splats stalls behind it), a ctypes call releases it. The
    moderngl call afterwards returns at once and keeps this correct where the ctypes entry
    point is missing or reaches another context."""
    finish = _gl_entry_point("glFinish")
    if finish is not None:
        finish()
    ctx.finish()


class SplatRenderer:
    """Draws `PreparedSplats` as instanced quads into any moderngl framebuffer."""

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        vertex, fragment = load_program_source()
        self.program = ctx.program(vertex_shader=vertex, fragment_shader=fragment)
        self._corners = ctx.buffer(QUAD_CORNERS.tobytes())
        self._capacity = INITIAL_INSTANCE_CAPACITY
        self._instances = ctx.buffer(reserve=self._capacity * PACKED_WIDTH * 4, dynamic=True)
        self.vao = ctx.vertex_array(self.program, [
            (self._corners, "2f", "in_corner"),
            (self._instances, INSTANCE_FORMAT, *INSTANCE_ATTRIBUTES),
        ])
        self._bound_first = 0
        self._targets: OffscreenTargets | None = None
        self.lod_mode = 0  # splats.glsl u_lod_mode: 0 soft (the image of the reference), 1 hard
        #                    switching, 2 none (alpha = 1); the streaming renderer sets it

    # ---- drawing --------------------------------------------------------------------------
    def render(
        self,
        prepared: PreparedSplats,
        camera: Camera,
        framebuffer: moderngl.Framebuffer | None = None,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
        clear: bool = True,
    ) -> None:
        """Clear `framebuffer` (default: the context's screen) to (background, alpha 0) and draw.

        The camera image fills the framebuffer's viewport. Colour attachment 0 receives the
        premultiplied colour composited over the background with the accumulated alpha in A;
        an attachment 1, if present, receives (sum w z, 0, 0, sum w) for expected depth.
        Leaves the context with BLEND on (ONE, ONE_MINUS_SRC_ALPHA), DEPTH_TEST and CULL_FACE
        off, and `framebuffer` bound: a HUD drawn next composites over the splats."""
        prepared.check_camera(camera)
        fbo = framebuffer if framebuffer is not None else self.ctx.screen
        if fbo is None:
            raise ValueError("no framebuffer given and the context has no screen")
        fbo.use()
        if clear:
            fbo.clear(*background, 0.0)
        if prepared.count == 0:
            return
        self.upload(prepared.packed)
        self.draw_range(camera, fbo, 0, prepared.count)

    def upload(self, packed: np.ndarray) -> None:
        """Replace the instance stream with `packed` ([M, PACKED_WIDTH] float32, drawn in
        row order); `draw_range` then draws any run of it."""
        data = np.ascontiguousarray(packed, dtype=np.float32)  # [M, PACKED_WIDTH]
        if data.ndim != 2 or data.shape[1] != PACKED_WIDTH:
            raise ValueError(f"packed splats have shape {data.shape}, expected [M, {PACKED_WIDTH}]")
        if len(data) > self._capacity:
            self._capacity = max(len(data), int(self._capacity * 1.5))
        # orphaning gives the driver a fresh store, so this frame never waits on the last one
        self._instances.orphan(self._capacity * PACKED_WIDTH * 4)
        self._instances.write(data.tobytes())

    def draw_range(self, camera: Camera, fbo: moderngl.Framebuffer, first: int, count: int
                   ) -> None:
        """Draw rows [first, first + count) of the uploaded stream into the bound `fbo`
        (the caller has cleared it; rows are in the camera frame `camera` was prepared for)."""
        if count <= 0:
            return
        set_uniforms(self.program, {**camera_uniforms(camera, fbo.viewport),
                                    "u_lod_mode": self.lod_mode})
        premultiplied_blending(self.ctx)
        self._bind_instances(first)
        self.vao.render(moderngl.TRIANGLE_STRIP, vertices=4, instances=count)

    def _bind_instances(self, first: int) -> None:
        """Point the per-instance attributes at row `first` (GL 3.3 has no base instance)."""
        if first == self._bound_first:
            return
        offset = first * PACKED_WIDTH * 4
        column = 0
        for name, width in zip(INSTANCE_ATTRIBUTES, INSTANCE_WIDTHS):
            if name in self.program:
                self.vao.bind(self.program[name].location, "f", self._instances, f"{width}f",
                              offset=offset + column * 4, stride=PACKED_WIDTH * 4, divisor=1)
            column += width
        self._bound_first = first

    def render_offscreen(
        self,
        prepared: PreparedSplats,
        camera: Camera,
        width: int | None = None,
        height: int | None = None,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> RenderOutput:
        """Draw into float32 targets and read back rgb, alpha and expected depth (OpenCV rows)."""
        width = camera.width if width is None else int(width)
        height = camera.height if height is None else int(height)
        if (width, height) != (camera.width, camera.height):
            raise ValueError(f"offscreen size {width}x{height} differs from the camera's "
                             f"{camera.width}x{camera.height}; scale the intrinsics instead")
        targets = self._offscreen_targets(width, height)
        targets.clear(background)
        self.render(prepared, camera, targets.both, background, clear=False)
        return targets.read()

    def release(self) -> None:
        """Free the GPU objects (the context stays alive)."""
        for obj in (self.vao, self._instances, self._corners, self.program):
            obj.release()
        if self._targets is not None:
            self._targets.release()
            self._targets = None

    # ---- internals ------------------------------------------------------------------------
    def _offscreen_targets(self, width: int, height: int) -> OffscreenTargets:
        if self._targets is not None and self._targets.size == (width, height):
            return self._targets
        if self._targets is not None:
            self._targets.release()
        self._targets = OffscreenTargets.create(self.ctx, width, height)
        return self._targets
