"""A stable GPU radix sort of (key, value) pairs whose count lives on the GPU.

Owns: `GpuRadixSort`, which sorts the first `count` (uint32 key, uint32 value) pairs of its
own key and value buffers in place, ascending by key, equal keys in their input order (the
semantics of numpy's `argsort(kind="stable")`), where `count` is a uint32 in any GL buffer
(the GPU-driven renderer passes its indirect draw command, so the CPU never reads it); and
`argsort`, the upload / sort / read-back wrapper the tests compare with numpy.
Does not own: what the keys mean (`engine.render.gpu_driven` makes 16-bit back-to-front depth
keys) or the shaders' algorithm (documented in `radix_sort.glsl`).

Cost per 4-bit pass: one indirect dispatch each of histogram, per-digit scan (16
workgroups) and scatter, reading and writing each pair once; 16-bit keys take four passes,
which leave the result in the input buffers.
"""

from __future__ import annotations

import time
from pathlib import Path

import moderngl
import numpy as np

SHADER_PATH = Path(__file__).parent / "radix_sort.glsl"
COMPUTE_GLSL_VERSION = "#version 430"
RADIX_BITS = 4
BINS = 1 << RADIX_BITS
THREADS = 256  # invocations per workgroup
ITEMS = 4  # consecutive elements per invocation: a tile is THREADS * ITEMS elements
TILE = THREADS * ITEMS
MAX_GROUPS_X = 65535  # workgroups per grid row (GL's guaranteed minimum)
ARGS_WORDS = 4 + BINS  # dispatch x, y, z, tiles, digit totals
STAGES = ("DISPATCH", "HISTOGRAM", "SCAN", "SCATTER")


def compile_compute(ctx: moderngl.Context, path: Path, stage: str, defines: dict[str, int]
                    ) -> moderngl.ComputeShader:
    """One compute program of a one-file GLSL source with `#if defined <STAGE>_SHADER`
    sections; `defines` are prepended as `#define NAME value`."""
    header = "".join(f"#define {name} {value}\n" for name, value in defines.items())
    return ctx.compute_shader(
        f"{COMPUTE_GLSL_VERSION}\n{header}#define {stage}_SHADER\n{path.read_text()}")


def set_compute_uniforms(program: moderngl.ComputeShader, values: dict) -> None:
    """Set the uniforms the program really has (compilers drop unused ones)."""
    for name, value in values.items():
        member = program.get(name, None)
        if member is None:
            continue
        if isinstance(value, bytes):
            member.write(value)
        else:
            member.value = value


def grid(groups: int, max_x: int = MAX_GROUPS_X) -> tuple[int, int]:
    """(x, y) workgroups covering `groups` in rows of at most `max_x` (the shaders number a
    group y * x_count + x and skip the ones past the end)."""
    if groups <= 0:
        return 0, 0
    x = min(groups, max_x)
    return x, -(-groups // x)


class GpuRadixSort:
    """Sorts the first `count` pairs of `keys` / `values` in place; `count` is read on the
    GPU. Call `reserve(n)` before writing up to n pairs (it may replace the buffers)."""

    def __init__(self, ctx: moderngl.Context, key_bits: int = 16,
                 max_groups_x: int = MAX_GROUPS_X) -> None:
        if key_bits <= 0 or key_bits > 32 or key_bits % (2 * RADIX_BITS):
            raise ValueError(f"key_bits must be a multiple of {2 * RADIX_BITS} in 8..32")
        self.ctx = ctx
        self.key_bits = key_bits  # an even number of passes ends in the input buffers
        defines = {"THREADS": THREADS, "ITEMS": ITEMS, "MAX_GROUPS_X": int(max_groups_x)}
        self._programs = {s: compile_compute(ctx, SHADER_PATH, s, defines) for s in STAGES}
        self._args = ctx.buffer(reserve=4 * ARGS_WORDS)
        self.capacity = 0
        self.keys: moderngl.Buffer | None = None
        self.values: moderngl.Buffer | None = None
        self._keys_tmp: moderngl.Buffer | None = None
        self._values_tmp: moderngl.Buffer | None = None
        self._hist: moderngl.Buffer | None = None
        self.launch_s = 0.0  # last sort: seconds inside its dispatch and barrier calls
        #                      (benchmarks: a software GL runs the work there, a GPU queues it)
        self.reserve(TILE)

    def reserve(self, n: int) -> None:
        """Room for at least `n` pairs (whole tiles); contents are lost when it grows."""
        if n <= self.capacity:
            return
        capacity = max(-(-int(n) // TILE) * TILE, 2 * self.capacity)
        for buf in (self.keys, self.values, self._keys_tmp, self._values_tmp, self._hist):
            if buf is not None:
                buf.release()
        self.keys, self.values, self._keys_tmp, self._values_tmp = (
            self.ctx.buffer(reserve=4 * capacity) for _ in range(4))
        self._hist = self.ctx.buffer(reserve=4 * BINS * (capacity // TILE))
        self.capacity = capacity

    def sort(self, counts: moderngl.Buffer, count_index: int = 0) -> None:
        """Sort pairs [0, counts[count_index]) of `keys` / `values` (uint32 words); the count
        must not exceed `capacity`. Issues only GPU commands: nothing is read back."""
        self.launch_s = 0.0
        for program in self._programs.values():
            set_compute_uniforms(program, {"u_count_index": int(count_index)})
        counts.bind_to_storage_buffer(6)
        self._args.bind_to_storage_buffer(5)
        self._hist.bind_to_storage_buffer(4)
        barrier = self.ctx.memory_barrier
        self._launch(barrier, moderngl.SHADER_STORAGE_BARRIER_BIT)
        self._launch(self._programs["DISPATCH"].run, 1)
        self._launch(barrier, moderngl.SHADER_STORAGE_BARRIER_BIT | moderngl.COMMAND_BARRIER_BIT)
        source = (self.keys, self.values)
        target = (self._keys_tmp, self._values_tmp)
        for shift in range(0, self.key_bits, RADIX_BITS):
            for i, buf in enumerate(source + target):
                buf.bind_to_storage_buffer(i)
            for stage in ("HISTOGRAM", "SCAN", "SCATTER"):
                program = self._programs[stage]
                set_compute_uniforms(program, {"u_shift": shift})
                if stage == "SCAN":
                    self._launch(program.run, BINS)
                else:
                    self._launch(program.run_indirect, self._args)
                self._launch(barrier, moderngl.SHADER_STORAGE_BARRIER_BIT)
            source, target = target, source

    def _launch(self, call, *args) -> None:
        """A GL call that launches or orders GPU work, timed into `launch_s`."""
        t = time.perf_counter()
        call(*args)
        self.launch_s += time.perf_counter() - t

    def argsort(self, keys: np.ndarray) -> np.ndarray:
        """[N] uint keys -> [N] int64 permutation sorting them stably (upload, sort on the
        GPU, read back): the oracle tests' entry point, not a per-frame one."""
        keys = np.ascontiguousarray(keys, np.uint32)  # [N]
        n = len(keys)
        if self.key_bits < 32 and n and int(keys.max()) >> self.key_bits:
            raise ValueError(f"keys wider than {self.key_bits} bits")
        self.reserve(max(n, 1))
        if n:
            self.keys.write(keys)
            self.values.write(np.arange(n, dtype=np.uint32))
        count = self.ctx.buffer(np.array([n], np.uint32))
        self.sort(count, 0)
        self.ctx.memory_barrier(moderngl.BUFFER_UPDATE_BARRIER_BIT)
        count.release()
        if n == 0:
            return np.zeros(0, np.int64)
        return np.frombuffer(self.values.read(4 * n), np.uint32).astype(np.int64)

    def release(self) -> None:
        for program in self._programs.values():
            program.release()
        for buf in (self._args, self.keys, self.values, self._keys_tmp, self._values_tmp,
                    self._hist):
            if buf is not None:
                buf.release()
