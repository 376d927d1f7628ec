"""The streaming renderer: visible sets, residency (LRU, upload cap), CPU culling, sort reuse,
and its images against the numpy reference, headless through EGL.

Image tolerance as in test_render_gl.py: mean abs error <= 1/255 for rgb and alpha, max
<= 0.05, expected depth where solid: mean relative error <= 1e-4. The reference is rendered
from `engine.render.prepare` with the splats in the renderer's own draw order (ties between
equal 16-bit depth keys are broken differently by the two CPU paths, and a plane seen
head-on is all ties), so the comparison checks the GPU path, not a tie-break convention.
"""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.camera import Camera
from engine.chunking import split_level
from engine.history import History, Step
from engine.lod import LodIndex, LodLinks
from engine.render.prepare import PreparedSplats, prepare
from engine.render.reference import render as reference_render
from engine.render.visibility import (PAGE_SPLATS, Guard, View, build_draw_list, chunk_table,
                                      visible_chunks)
from engine.scene import ChunkHandle, ChunkStore, append_level, build_scene, flat_scene
from engine.splats import SplatChunk, normalize_quaternions, rgb_to_sh_dc
from engine.synthetic import nested_plane_world
from engine.world import World
from tests.factories import random_linked_scene
from tests.procs import child_env

moderngl = pytest.importorskip("moderngl")
from engine.render.residency import PAGE_BYTES, PagedArena, Residency, Wanted  # noqa: E402
from engine.render import streaming  # noqa: E402
from engine.render.streaming import (ResortPolicy, StreamingBudget,  # noqa: E402
                                     StreamingRenderer)
from engine.render.visibility import chunk_bands, chunk_layout  # noqa: E402

MEAN_TOL = 1.0 / 255.0
MAX_TOL = 0.05




@pytest.fixture
def fbo_for(ctx):
    """Window-like RGBA8 framebuffers, one per image size."""
    made = {}

    def get(camera):
        key = (camera.width, camera.height)
        if key not in made:
            made[key] = ctx.simple_framebuffer(key)
        return made[key]

    yield get
    for fbo in made.values():
        fbo.release()


def make_renderer(ctx, budget: StreamingBudget = StreamingBudget(), **kwargs
                  ) -> StreamingRenderer:
    """A renderer with no per-frame preparation time limit, so every frame is reproducible."""
    budget = dataclasses.replace(budget, prepare_ms_per_frame=math.inf)  # no time limit
    return StreamingRenderer(ctx, budget, **kwargs)


@pytest.fixture
def exact(ctx):
    """A renderer that culls and sorts exactly for every new camera (no reuse guard)."""
    r = make_renderer(ctx, resort=None)
    yield r
    r.release()


# ---- worlds -------------------------------------------------------------------------------
def _opaque(chunk: SplatChunk, opacity: float = 0.9) -> SplatChunk:
    logit = math.log(opacity / (1 - opacity))
    return dataclasses.replace(chunk, opacity_logits=np.full(len(chunk), logit, np.float32))


def _nested_world(levels=2, size=64, max_splats=900, opaque=True, darker_child=False):
    """nested_plane_world as a World via a History, each level split into several chunks."""
    made = nested_plane_world(levels=levels, factor=4.0, size=size)
    history = History()
    chunks = {}
    for i, (camera, level) in enumerate(made):
        if opaque:
            level = _opaque(level)
        if darker_child and i > 0:
            level = dataclasses.replace(level, sh_dc=rgb_to_sh_dc(0.6 * level.rgb()))
        parts = split_level(level, max_splats=max_splats)
        ids = tuple(range(len(chunks), len(chunks) + len(parts)))
        chunks.update(zip(ids, parts))
        history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=camera))
    return build_scene(history, chunks), [c for c, _ in made]


def _pieces(world: World):
    store, index = world.resource(ChunkStore), world.resource(LodIndex)
    ids = [h.chunk_id for _, (h,) in world.query(ChunkHandle)]
    return ids, [(store.get(c), index.links.get(c)) for c in ids]


def _reference_in_draw_order(renderer: StreamingRenderer, world: World, camera: Camera):
    """prepare() for the world's chunks, reordered into the renderer's last draw order."""
    ids, pieces = _pieces(world)
    prepared = prepare(camera, pieces)
    where = {(ids[c], r): k for k, (c, r) in
             enumerate(zip(prepared.source_chunk.tolist(), prepared.source_row.tolist()))}
    drawn_ids, drawn_rows = renderer.last_list.chunk_rows()
    order = np.array([where[(c, r)] for c, r in zip(drawn_ids.tolist(), drawn_rows.tolist())
                      if (c, r) in where], np.int64)
    assert len(order) == prepared.count, "the renderer misses splats the reference draws"
    return PreparedSplats(prepared.packed[order], prepared.source_chunk[order],
                          prepared.source_row[order], prepared.stats, prepared.T_world_camera)


def assert_matches(gpu, ref):
    for name in ("rgb", "alpha"):
        err = np.abs(getattr(gpu, name).astype(np.float64) - getattr(ref, name))
        assert err.mean() <= MEAN_TOL, f"{name}: mean abs error {err.mean():.2e}"
        assert err.max() <= MAX_TOL, f"{name}: max abs error {err.max():.2e}"
    solid = (ref.alpha > 0.5) & (gpu.alpha > 0.5)
    rel = np.abs(gpu.depth[solid].astype(np.float64) - ref.depth[solid]) / ref.depth[solid]
    assert rel.mean() <= 1e-4 and rel.max() <= 2e-2, f"depth: {rel.mean():.1e} / {rel.max():.1e}"


def _drawn_pairs(renderer):
    ids, rows = renderer.last_list.chunk_rows()
    return set(zip(ids.tolist(), rows.tolist()))


# ---- visible set and culling --------------------------------------------------------------
def _random_cameras(cameras, rng, n):
    out = []
    for _ in range(n):
        base = cameras[rng.integers(len(cameras))]
        eye = base.position + rng.normal(0, 0.3, 3)
        target = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5), 0.0])
        cam = Camera.look_at(eye, target, fov_y_deg=float(rng.uniform(3, 70)), width=80,
                             height=60, near=0.01)
        out.append(cam)
    return out


def test_visible_set_and_drawn_splats_match_brute_force(exact, fbo_for):
    """Over random cameras (wide to 20x zoomed), the chunk-level visible set never misses a
    chunk holding a splat the brute-force CPU path (prepare) draws, and the renderer submits
    exactly prepare's splats (plus, rarely, one sitting on the alpha threshold)."""
    world, cameras = _nested_world(levels=3, size=48, max_splats=300)
    table = chunk_table(world)
    ids, pieces = _pieces(world)
    assert len(table) > 20
    rng = np.random.default_rng(0)
    skipped = extras = 0
    for cam in _random_cameras(cameras, rng, 24):
        visible = set(table.chunk_id[visible_chunks(table, cam)].tolist())
        prepared = prepare(cam, pieces)
        truly = {ids[c] for c in np.unique(prepared.source_chunk).tolist()}
        assert truly <= visible, f"visible set misses chunks {sorted(truly - visible)}"
        skipped += len(table) - len(visible)
        exact.draw(world, cam, fbo_for(cam))
        expected = {(ids[c], r) for c, r in zip(prepared.source_chunk.tolist(),
                                               prepared.source_row.tolist())}
        drawn = _drawn_pairs(exact)
        assert expected <= drawn
        # extras only at a threshold: the CPU bands carry a 1e-5 log-scale epsilon so float32
        # rounding never culls what the GPU would draw (the GPU then drops these exactly)
        assert len(drawn - expected) <= max(3, 0.002 * len(expected))
        extras += len(drawn - expected)
    assert skipped > 0  # the chunk-level test does cull


def _culled_splats_world(cam: Camera, keep_visible: bool = True) -> World:
    """Splats at the centre of `cam` (drawn: rows 0, 8, 9) and behind, before near, beyond
    far, outside, faded and faint ones (culled)."""
    s_here = 5.0 / cam.focal
    points = np.array([[0, 0, 5], [0, 0, -1], [0, 0, 0.05], [0, 0, 200], [20, 0, 5],
                       [0, -8, 5], [0, 1, 5], [1, 0, 5], [-1, 1, 5], [0.5, 0.5, 6]], float)
    n = len(points)
    logits = np.full(n, 0.0)
    logits[7] = math.log(0.003 / 0.997)  # faint
    s_native = np.full(n, s_here)
    s_parent = np.full(n, np.inf)
    s_parent[6], s_native[6] = s_here / 4, s_here / 8  # faded: 4x coarser than its parent
    s_child = np.zeros(n)
    chunk = SplatChunk.from_world(points, np.tile([1.0, 0, 0, 0], (n, 1)),
                                  np.full((n, 3), math.log(0.1)), logits,
                                  rgb_to_sh_dc(np.full((n, 3), 0.5)), s_native)
    links = LodLinks(s_parent.astype(np.float32), s_child.astype(np.float32))
    if not keep_visible:
        rows = np.array([1, 2, 3, 4, 5, 6, 7])
        chunk, links = chunk.take(rows), LodLinks(links.s_parent[rows], links.s_child[rows])
    return flat_scene([(chunk, links)])


def _culled_camera() -> Camera:
    return Camera.look_at([0, 0, 0], [0, 0, 1], fov_y_deg=53.13, width=64, height=64, near=0.1,
                          far=100.0)


def test_cpu_culled_splats_are_not_drawn(exact, fbo_for):
    """Behind, outside, faded and faint splats never reach the GPU (stats and draw list)."""
    cam = _culled_camera()
    world = _culled_splats_world(cam)
    stats = exact.draw(world, cam, fbo_for(cam))
    prepared = prepare(cam, _pieces(world)[1])
    assert prepared.stats.drawn == 3 and stats.splats_drawn == 3
    assert {r for _, r in _drawn_pairs(exact)} == {0, 8, 9}


@pytest.mark.parametrize("keep_visible", [True, False])
def test_splats_the_gpu_culls_leave_no_trace(ctx, fbo_for, monkeypatch, keep_visible):
    """The CPU cull is a superset: whatever else reaches the GPU (here every splat: a list
    built without culling) must leave the image bit for bit as it is. The shader's culled
    splats (a point at the viewport centre that discards itself, see points.glsl) touch no
    pixel, not even the centre one."""
    cam = _culled_camera()
    world = _culled_splats_world(cam, keep_visible)
    fbo = fbo_for(cam)
    visible, every = (3, 10) if keep_visible else (0, 7)
    images = []
    for cull in (True, False):
        r = make_renderer(ctx, resort=None)
        if not cull:
            monkeypatch.setattr(r, "_build", lambda camera, items, point_px: build_draw_list(
                View.of(camera, Guard(), point_px), items, cull=False))
        stats = r.draw(world, cam, fbo, background=(0.2, 0.4, 0.6))
        assert stats.splats_drawn == (visible if cull else every)
        images.append(np.frombuffer(fbo.read(components=4), np.uint8).reshape(64, 64, 4))
        r.release()
    assert np.array_equal(images[0], images[1])
    if not keep_visible:
        assert (images[1][..., :3] == np.round(np.array([0.2, 0.4, 0.6]) * 255)).all()


# ---- images against the reference ---------------------------------------------------------
def test_output_matches_the_reference_across_two_levels(exact):
    """The level-0 view, zoomed views, the level-1 camera and beyond: same image as the
    numpy reference; over the level-1 patch the zoom never goes transparent or jumps."""
    world, (c0, c1) = _nested_world(levels=2, size=64, darker_child=True)
    start = c1.with_fov_scale(c0.fx / c1.fx)  # C_1's pose with C_0's field of view
    previous = None
    for zoom in np.geomspace(1.0, 8.0, 12):
        cam = start.with_fov_scale(zoom)
        gpu = exact.render_offscreen(world, cam)
        assert_matches(gpu, reference_render(_reference_in_draw_order(exact, world, cam), cam))
        half = int(min(32, 8 * zoom)) - 2
        patch = (slice(32 - half, 32 + half), slice(32 - half, 32 + half))
        assert gpu.alpha[patch].min() > 0.9, f"zoom {zoom:.2f}: patch turns transparent"
        brightness = float(gpu.rgb[patch].mean())
        if previous is not None:
            assert 0.85 < brightness / previous < 1.15, f"zoom {zoom:.2f}: brightness jumps"
        previous = brightness


def _random_pieces(seed, n=1500):
    """Anisotropic random splats, some half faded by links, around an off-centre camera;
    many near the image border (their footprints cross it: clamped points); two chunks."""
    cam, chunk, links = random_linked_scene(seed, n, half_extent=(3.0, 2.2))
    halves = (np.arange(n // 2), np.arange(n // 2, n))
    return cam, [(chunk.take(r), LodLinks(links.s_parent[r], links.s_child[r])) for r in halves]


@pytest.mark.parametrize("seed", [0, 1])
def test_output_matches_the_reference_on_random_splats(exact, seed):
    cam, pieces = _random_pieces(seed)
    world = flat_scene(pieces)
    for background in ((0.0, 0.0, 0.0), (0.2, 0.4, 0.6)):
        gpu = exact.render_offscreen(world, cam, background=background)
        ref = reference_render(_reference_in_draw_order(exact, world, cam), cam, background)
        assert ref.alpha.max() > 0.9
        assert_matches(gpu, ref)


# drawn in a fresh process per GL profile (Mesa picks the profile at the first context)
_PROFILE_SCRIPT = """
import sys
import numpy as np
from engine.render.gl import HeadlessContextError, create_headless_context
from engine.render.streaming import StreamingRenderer
from engine.scene import flat_scene
from tests.test_streaming import _random_pieces
try:
    ctx = create_headless_context()
except HeadlessContextError:
    sys.exit(3)
arrays = []
for seed in (0, 1):
    cam, pieces = _random_pieces(seed)
    world = flat_scene(pieces)
    r = StreamingRenderer(ctx, resort=None)
    out = r.render_offscreen(world, cam)  # the program with the depth output
    arrays += [out.rgb.ravel(), out.alpha.ravel(), out.depth.ravel()]
    fbo = ctx.simple_framebuffer((cam.width * 3 // 2, cam.height * 3 // 2))  # scaled window
    r.draw(world, cam, fbo, complete=True)
    arrays.append(np.frombuffer(fbo.read(components=4), np.uint8).astype(np.float32))
np.save(sys.argv[1], np.concatenate(arrays))
print(ctx.info["GL_VERSION"])
"""


def test_points_cover_the_same_pixels_as_sprites_and_as_gl21_points(tmp_path):
    """A core profile draws GL points as sprites, a compatibility profile (what
    create_headless_context asks Mesa for) as GL 2.1 points, which llvmpipe rasterizes
    differently; points.glsl makes each point a square of whole pixels, so both give the
    same image, bit for bit (clamped footprints at the border and a scaled window included)."""
    root = Path(__file__).resolve().parent.parent
    images, versions = {}, {}
    for profile in ("3.3", "3.3COMPAT"):
        env = child_env(MESA_GL_VERSION_OVERRIDE=profile)
        out = tmp_path / f"{profile}.npy"
        done = subprocess.run([sys.executable, "-c", _PROFILE_SCRIPT, str(out)], cwd=root,
                              env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 3:
            pytest.skip("no headless OpenGL context")
        assert done.returncode == 0, done.stderr[-2000:]
        images[profile], versions[profile] = np.load(out), done.stdout.strip()
    if "Compatibility" not in versions["3.3COMPAT"] or versions["3.3"] == versions["3.3COMPAT"]:
        pytest.skip(f"the driver does not take Mesa's profile override ({versions})")
    assert np.array_equal(images["3.3"], images["3.3COMPAT"])


def test_flushed_batches_draw_the_same_image(ctx, fbo_for):
    """The point draw split into flushed batches (what a software rasterizer gets) gives the
    image of one draw, bit for bit."""
    if "llvmpipe" in ctx.info["GL_RENDERER"]:
        assert make_renderer(ctx).flush_splats == streaming.FLUSH_SPLATS
    world, cameras = _nested_world(levels=2, size=64, max_splats=900)
    images = []
    for flush_splats in (0, 97):
        r = make_renderer(ctx, resort=None)
        r.flush_splats = flush_splats
        fbo = fbo_for(cameras[1])
        r.draw(world, cameras[1].with_fov_scale(1.5), fbo, complete=True)
        assert r.last_stats.splats_drawn > 20 * 97
        images.append(fbo.read(components=4))
        r.release()
    assert images[0] == images[1]


def test_paced_batches_draw_the_same_image_with_few_in_flight(ctx, fbo_for, monkeypatch):
    """With the batches paced (at most `depth` flushed batches unfinished, fences on the real
    context), the image is the one-draw image bit for bit, and no fence outlives the draw."""
    from engine.render import gl

    if gl.gl_flush_function() is not None:
        assert gl._gl_sync_functions() is not None
    world, cameras = _nested_world(levels=2, size=64, max_splats=900)
    waits = []
    images = []
    for flush_splats, depth in ((0, 2), (97, 1), (97, 3)):
        r = make_renderer(ctx, resort=None)
        r.flush_splats = flush_splats
        r._pacer.depth = depth
        flushed = r._pacer.flushed

        def counting(pacer=r._pacer, flushed=flushed):
            flushed()
            waits.append(len(pacer._fences))

        monkeypatch.setattr(r._pacer, "flushed", counting)
        fbo = fbo_for(cameras[1])
        r.draw(world, cameras[1].with_fov_scale(1.5), fbo, complete=True)
        images.append(fbo.read(components=4))
        assert r._pacer._fences == []
        r.release()
    assert images[0] == images[1] == images[2]
    if gl._gl_sync_functions() is not None:
        assert len(waits) > 40 and max(waits) == 3 and 1 in waits


def test_batch_pacer_waits_for_the_oldest_batch_beyond_its_depth(monkeypatch):
    """The pacing rule on recorded GL calls: a fence per flushed batch; past `depth` the
    oldest is waited for (again while the wait times out) and deleted; `end` deletes the
    rest without waiting; without fence functions it does nothing."""
    from engine.render import gl

    calls = []
    timeouts = {2: 2}  # fence 2 times out twice before it is signalled
    counter = iter(range(1, 100))

    def fence_sync(condition, flags):
        fence = next(counter)
        calls.append(("fence", fence))
        return fence

    def client_wait(fence, flags, timeout_ns):
        calls.append(("wait", fence))
        if timeouts.get(fence, 0):
            timeouts[fence] -= 1
            return gl.GL_TIMEOUT_EXPIRED
        return 0x911C  # GL_CONDITION_SATISFIED

    def delete_sync(fence):
        calls.append(("delete", fence))

    pacer = gl.BatchPacer(2)
    pacer._sync = (fence_sync, client_wait, delete_sync)
    for _ in range(4):
        pacer.flushed()
    assert calls == [("fence", 1), ("fence", 2), ("fence", 3), ("wait", 1), ("delete", 1),
                     ("fence", 4), ("wait", 2), ("wait", 2), ("wait", 2), ("delete", 2)]
    calls.clear()
    pacer.end()
    assert calls == [("delete", 3), ("delete", 4)] and pacer._fences == []
    assert gl.BatchPacer(0).depth == 1
    idle = gl.BatchPacer(1)
    idle._sync = None
    idle.flushed()
    idle.end()
    assert idle._fences == []


def test_wait_for_gpu_finishes_through_the_released_entry_point(ctx, fbo_for):
    """The bench's wait: glFinish through ctypes (the GIL is released meanwhile), found in
    the same GL library as glFlush, then moderngl's finish; the frame is complete after it."""
    from engine.render.gl import _gl_entry_point, gl_flush_function, wait_for_gpu

    assert (_gl_entry_point("glFinish") is None) == (gl_flush_function() is None)
    world, cameras = _nested_world(levels=1, size=64)
    r = make_renderer(ctx, resort=None)
    fbo = fbo_for(cameras[0])
    r.draw(world, cameras[0], fbo, complete=True)
    wait_for_gpu(ctx)
    alpha = np.frombuffer(fbo.read(components=4), np.uint8)[3::4]
    assert alpha.min() > 200
    r.release()


def test_huge_splats_take_the_quad_path_and_still_match(ctx, monkeypatch):
    """Footprints wider than the largest GL point are drawn as quads in back-to-front runs
    between the point runs; with too many runs the whole frame is drawn as quads."""
    rng = np.random.default_rng(3)
    cam = Camera.look_at([0, 0, 0], [0, 0, 1], fov_y_deg=60, width=320, height=240)
    n = 400
    pts = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(2, 6, n)], 1)
    sigma = np.where(rng.uniform(size=n) < 0.04, 1.2, 0.02)  # ~4% huge: > 80 px wide
    chunk = SplatChunk.from_world(pts, np.tile([1.0, 0, 0, 0], (n, 1)),
                                  np.log(np.repeat(sigma[:, None], 3, 1)), np.full(n, -1.0),
                                  rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))), np.full(n, 1e-3))
    world = flat_scene([(chunk, None)])
    for max_runs in (streaming.MAX_RUNS, 4):  # 4: fewer than the point/quad alternations
        monkeypatch.setattr(streaming, "MAX_RUNS", max_runs)
        r = make_renderer(ctx, resort=None)
        # the driver's limit (llvmpipe 255 px; NVIDIA 2047, where a point clamped to the view
        # covers this whole image) pinned lower, so the split is the same on every driver
        r.max_point_size = min(r.max_point_size, 64.0)
        gpu = r.render_offscreen(world, cam)
        stats = r.last_stats
        assert_matches(gpu, reference_render(_reference_in_draw_order(r, world, cam), cam))
        if max_runs == 4:
            assert stats.draw_calls == 1 and stats.splats_quads == stats.splats_drawn
        else:
            assert 0 < stats.splats_quads < stats.splats_drawn / 10 and stats.draw_calls > 4
        r.release()


def test_lod_modes_on_the_point_and_the_quad_path(ctx):
    """Hard switching and the no-modulation ablation apply to quads as to points: a big
    splat halfway down its fade shows at 0.5 (soft), 1 (hard) and 1 (no modulation)."""
    cam = Camera.look_at([0, 0, 0], [0, 0, 1], fov_y_deg=60, width=64, height=48)
    z = 2.0
    s_render = z / cam.focal
    chunk = SplatChunk.from_world([[0.0, 0.0, z]], [[1.0, 0, 0, 0]], np.log([[1.0, 1.0, 1.0]]),
                                  [math.log(0.8 / 0.2)], rgb_to_sh_dc([[1.0, 1.0, 1.0]]),
                                  [s_render / 2.0])
    links = LodLinks(np.array([s_render * 2.0], np.float32), np.zeros(1, np.float32))
    world = flat_scene([(chunk, links)])
    for kwargs, expected in (({}, 0.8 * 0.5), ({"lod_mode": "hard"}, 0.8),
                             ({"modulation": False}, 0.8)):
        for max_point in (None, 16.0):  # the splat is ~130 px wide: points, then quads
            r = make_renderer(ctx, resort=None, **kwargs)
            if max_point is not None:
                r.max_point_size = max_point
            out = r.render_offscreen(world, cam)
            assert r.last_stats.splats_quads == (max_point is not None)
            assert out.alpha.max() == pytest.approx(expected, rel=2e-3), (kwargs, max_point)
            r.release()


def _tiny_splats_near_and_far():
    """The same 60 splats of 1e-6 seen from 1e-5 away, at the origin and at (1e4, -3e3, 2e3):
    [(world, camera)] for both places."""
    rng = np.random.default_rng(0)
    n = 60
    local = np.stack([rng.uniform(-4e-6, 4e-6, n), rng.uniform(-4e-6, 4e-6, n),
                      rng.uniform(-2e-6, 2e-6, n)], 1)
    parts = dict(rotations=normalize_quaternions(rng.normal(size=(n, 4))),
                 log_scales=np.log(rng.uniform(2e-7, 1e-6, (n, 3))).astype(np.float32),
                 opacity_logits=rng.normal(1.0, 1.0, n).astype(np.float32),
                 sh_dc=rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))),
                 s_native=np.full(n, 1e-7, np.float32))
    out = []
    for centre in (np.zeros(3), np.array([1e4, -3e3, 2e3])):
        cam = Camera.look_at(centre + [2e-6, -3e-6, -1e-5], centre, fov_y_deg=40, width=64,
                             height=64, near=1e-7)
        chunk = SplatChunk(origin=centre.copy(), positions=local.astype(np.float32), **parts)
        out.append((flat_scene([(chunk, None)]), cam))
    return out


def test_tiny_splats_a_million_times_zoomed_far_from_the_origin(exact):
    """1e-6-sized splats seen from 1e-5 away at (1e4, -3e3, 2e3) render like at the origin:
    chunk origins are subtracted from the eye in float64 before anything is float32."""
    images = []
    for world, cam in _tiny_splats_near_and_far():
        gpu = exact.render_offscreen(world, cam)
        assert_matches(gpu, reference_render(_reference_in_draw_order(exact, world, cam), cam))
        images.append(gpu)
    near, far = images
    assert near.alpha.max() > 0.5 and (near.alpha > 0.1).mean() > 0.1
    assert_matches(far, near)


def test_no_modulation_draws_every_splat_in_view_at_full_opacity(ctx):
    """The ablation: every chunk considered, no LoD fade, no band culling (only the frustum)."""
    world, (c0, c1) = _nested_world(levels=2, size=32)
    ids, pieces = _pieces(world)
    r = make_renderer(ctx, modulation=False, resort=None)
    gpu = r.render_offscreen(world, c1)
    roots = flat_scene([(c, None) for c, _ in pieces])  # the same splats, alpha = 1
    assert r.last_stats.chunks_visible == len(ids)
    expected = prepare(c1, _pieces(roots)[1]).count
    assert expected <= r.last_stats.splats_drawn <= expected + 3  # + threshold cases
    assert_matches(gpu, reference_render(_reference_in_draw_order(r, roots, c1), c1))
    r.release()


# ---- residency ----------------------------------------------------------------------------
def _small_chunks(count, n=200, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        pts = rng.normal(0, 0.1, (n, 3)) + [3.0 * k, 0, 5]
        out.append(SplatChunk.from_world(pts, np.tile([1.0, 0, 0, 0], (n, 1)),
                                         np.full((n, 3), -3.0), np.full(n, 2.0),
                                         rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))), np.full(n, 1e-3)))
    return out


def test_lru_evicts_the_least_recently_used_chunk_under_a_small_budget(ctx):
    chunks = _small_chunks(5)
    wanted = []
    for cid, chunk in enumerate(chunks):
        layout = chunk_layout(chunk)
        wanted.append(Wanted(cid, layout, chunk_bands(layout, None), None))
    arena = PagedArena(ctx, max_pages=3)  # one page per chunk: room for three
    residency = Residency(arena)
    for frame, cid in enumerate([0, 1, 2, 0, 3], start=1):  # 0 used again before 3 arrives
        residency.update(frame, [wanted[cid]], cap_bytes=None)
        assert residency.ready(cid) is not None
        assert residency.bytes_resident <= 3 * PAGE_BYTES
    assert set(residency.chunks) == {0, 2, 3}  # 1 was the least recently used
    residency.update(6, [wanted[4], wanted[2], wanted[3]], cap_bytes=None)
    assert set(residency.chunks) == {2, 3, 4} and residency.evictions == 2
    arena.release()


def test_pages_written_right_after_the_arena_grows_keep_their_data(ctx):
    """Growing copies the old buffers into bigger ones; page writes that follow, into the
    copied range (a free page, a link refresh of a used one) and past it, must not be lost
    to that copy (NVIDIA's driver applied the copy after them until the arena waited)."""
    from engine.render.residency import LOD_WIDTH, MAIN_WIDTH

    rng = np.random.default_rng(5)

    def page(width):
        return rng.uniform(-1, 1, (PAGE_SPLATS, width)).astype(np.float32)

    arena = PagedArena(ctx, max_pages=8, initial_pages=2)
    first = arena.allocate(1)
    main = {int(first[0]): page(MAIN_WIDTH)}
    lod = {int(first[0]): page(LOD_WIDTH)}
    arena.write(int(first[0]), main[int(first[0])], lod[int(first[0])])
    grown = arena.allocate(3)  # one free page left: grows to 4, copying pages 0..1
    assert arena.capacity == 4 and arena.version == 2
    for p in grown.tolist():
        main[p], lod[p] = page(MAIN_WIDTH), page(LOD_WIDTH)
        arena.write(p, main[p], lod[p])
    lod[int(first[0])] = page(LOD_WIDTH)
    arena.write_lod(int(first[0]), lod[int(first[0])])
    on_gpu_main = np.frombuffer(arena.main.read(), np.float32).reshape(4, PAGE_SPLATS, -1)
    on_gpu_lod = np.frombuffer(arena.lod.read(), np.float32).reshape(4, PAGE_SPLATS, -1)
    for p in main:
        np.testing.assert_array_equal(on_gpu_main[p], main[p], err_msg=f"main, page {p}")
        np.testing.assert_array_equal(on_gpu_lod[p], lod[p], err_msg=f"lod, page {p}")
    arena.release()


def test_renderer_stays_within_a_small_gpu_budget(ctx, fbo_for):
    """Cameras visiting five far-apart chunks in turn with room for two: every frame draws
    what it sees, the arena never exceeds the budget, old chunks are evicted."""
    chunks = _small_chunks(5, n=100)
    world = flat_scene([(c, None) for c in chunks])
    r = make_renderer(ctx, StreamingBudget(gpu_bytes=2 * PAGE_BYTES), resort=None)
    for k in [0, 1, 2, 3, 4, 0]:
        cam = Camera.look_at([3.0 * k, 0, 0], [3.0 * k, 0, 5], fov_y_deg=20, width=64, height=64)
        stats = r.draw(world, cam, fbo_for(cam))
        assert stats.chunks_visible == 1 and stats.splats_drawn == 100
        assert stats.bytes_resident <= 2 * PAGE_BYTES
    assert r.residency.evictions >= 4
    r.release()


def test_a_big_hot_load_spreads_over_frames_under_the_upload_cap(ctx, fbo_for):
    """Appending a level of nine pages with a cap of two pages per frame: each frame uploads
    at most the cap, the old level keeps drawing (with its old links: no hole opens where
    the new level will fade it out), the new chunk appears when its last page has arrived,
    and from then on the frame equals an unconstrained render."""
    world, _ = _nested_world(levels=1, size=96, max_splats=100_000)
    made = nested_plane_world(levels=2, factor=4.0, size=96)
    new_level = _opaque(made[1][1])  # 9216 splats: 9 pages in one chunk
    cap = 2 * PAGE_BYTES  # >= the old level's link refresh (12 B/splat), applied at the end
    r = make_renderer(ctx, StreamingBudget(upload_bytes_per_frame=cap), resort=None)
    cam = made[1][0]
    fbo = fbo_for(cam)
    r.render_offscreen(world, cam)  # complete: the old level is resident before the hot-load
    assert r.draw(world, cam, fbo).chunks_pending == 0
    before = r.last_stats.splats_drawn
    append_level(world, Step(1, 0, "zoom", (100,), camera=cam), {100: new_level})
    world.apply_commands()
    frames = []
    for _ in range(12):
        stats = r.draw(world, cam, fbo)
        frames.append(stats)
        assert stats.bytes_uploaded <= cap
        alpha = np.frombuffer(fbo.read(components=4), np.uint8).reshape(96, 96, 4)[..., 3]
        assert alpha[8:-8, 8:-8].min() > 200, "a hole opened while the new level uploads"
        if stats.chunks_pending == 0:
            break
    pages = -(-len(new_level) // PAGE_SPLATS)
    assert len(frames) >= pages // 2  # spread over frames: two pages per frame at most
    assert all(f.chunks_pending == 1 for f in frames[:-1])
    assert all(f.splats_drawn > 0 for f in frames)  # the old level keeps drawing meanwhile
    assert frames[-1].chunks_pending == 0 and frames[-1].splats_drawn != before
    full = make_renderer(ctx, resort=None)
    expected = full.render_offscreen(world, cam)
    got = r.render_offscreen(world, cam)
    np.testing.assert_allclose(got.rgb, expected.rgb, atol=1e-6)
    full.release()
    r.release()


# ---- sorting ------------------------------------------------------------------------------
def test_sort_is_reused_while_the_camera_is_still_or_barely_moves(ctx, fbo_for):
    world, (c0, c1) = _nested_world(levels=2, size=48)
    r = make_renderer(ctx, resort=ResortPolicy(max_shift_px=1.0))
    fbo = fbo_for(c0)
    assert r.draw(world, c0, fbo).sorted_this_frame
    first = np.frombuffer(fbo.read(), np.uint8).copy()
    again = r.draw(world, c0, fbo)
    assert not again.sorted_this_frame and again.sort_ms == 0.0
    np.testing.assert_array_equal(np.frombuffer(fbo.read(), np.uint8), first)
    T = c0.T_world_camera.copy()
    T[:3, 3] += T[:3, 0] * 0.3 * (4.0 / c0.fx)  # ~0.3 px of image shift
    nudged = Camera(T, c0.fx, c0.fy, c0.cx, c0.cy, c0.width, c0.height, c0.near, c0.far)
    assert not r.draw(world, nudged, fbo).sorted_this_frame
    # the reused list (built with the guard margin) still holds every splat prepare draws
    ids, pieces = _pieces(world)
    prepared = prepare(nudged, pieces)
    assert {(ids[c], rr) for c, rr in zip(prepared.source_chunk.tolist(),
                                          prepared.source_row.tolist())} <= _drawn_pairs(r)
    assert r.draw(world, c0.with_fov_scale(1.2), fbo).sorted_this_frame  # zoomed: re-sort
    r.release()


def test_async_sorting_draws_the_last_order_meanwhile_and_catches_up(ctx, fbo_for):
    world, (c0, c1) = _nested_world(levels=2, size=48)
    sync = make_renderer(ctx, resort=None)
    r = make_renderer(ctx, sort_mode="async", resort=None)
    fbo = fbo_for(c0)
    assert r.draw(world, c0, fbo).sorted_this_frame  # nothing to reuse yet: sorts here
    cam = c0.with_fov_scale(1.5)
    assert not r.draw(world, cam, fbo).sorted_this_frame  # worker sorts, old list drawn
    r._screen.future.result()
    assert r.draw(world, cam, fbo).sorted_this_frame  # picks up the worker's list
    assert r.last_list.camera is cam
    np.testing.assert_allclose(r.render_offscreen(world, cam).rgb,
                               sync.render_offscreen(world, cam).rgb, atol=1e-6)
    r.release()
    sync.release()


def test_chunk_preparation_is_spread_over_frames(ctx, fbo_for):
    """A frame spends at most its preparation budget (plus one chunk) on newly visible
    chunks; the rest are prepared on the next frames and drawn as they arrive."""
    world, (c0,) = _nested_world(levels=1, size=64, max_splats=300)
    r = StreamingRenderer(ctx, StreamingBudget(prepare_ms_per_frame=0.0,
                                               prepare_frame_fraction=0.0), resort=None)
    fbo = fbo_for(c0)
    counts = []
    for _ in range(100):
        stats = r.draw(world, c0, fbo)
        counts.append(stats.chunks_visible - stats.chunks_pending)
        if stats.chunks_pending == 0:
            break
    assert counts == list(range(1, stats.chunks_visible + 1))  # one chunk per frame
    assert stats.splats_drawn == 64 * 64
    r.release()


def test_an_arena_in_host_memory_grows_only_for_the_chunks_this_frame_wants(ctx):
    """On a software GL the arena is host RAM and never shrinks: before it grows, chunks not
    wanted this frame give their pages back (on a GPU only those unwanted for STALE_FRAMES
    do, so a view that comes back needs no upload), and it grows in smaller steps."""
    from engine.render.residency import HOST_ARENA_GROWTH

    chunks = _small_chunks(3)
    wanted = []
    for cid, chunk in enumerate(chunks):
        layout = chunk_layout(chunk)
        wanted.append(Wanted(cid, layout, chunk_bands(layout, None), None))
    capacities = {}
    for host in (False, True):
        arena = PagedArena(ctx, max_pages=8, initial_pages=2)  # one page per chunk
        residency = Residency(arena, host_memory=host)
        assert arena.growth == (HOST_ARENA_GROWTH if host else 0.25)
        residency.update(1, wanted[:2], cap_bytes=None)
        residency.update(2, wanted[2:], cap_bytes=None)  # 0 and 1 were wanted last frame
        assert residency.ready(2) is not None
        capacities[host] = arena.capacity
        assert len(residency.chunks) == (2 if host else 3)  # host: one of 0, 1 made room
        arena.release()
    assert capacities == {False: 3, True: 2}


def test_an_arena_whose_budget_drops_below_its_size_still_uses_its_free_pages(ctx):
    arena = PagedArena(ctx, max_pages=8, initial_pages=4)
    used = arena.allocate(2)
    arena.max_pages = 2  # lowered below the 4 pages it holds (the pool's size on a software GL)
    assert arena.pages_free_or_growable == 2
    more = arena.allocate(2)
    assert more is not None and arena.capacity == 4
    assert arena.allocate(1) is None
    arena.free(np.concatenate([used, more]))
    arena.release()


def test_splats_beside_the_camera_match_the_reference_on_both_paths(ctx, monkeypatch):
    """points.glsl linearises a centre outside the widened view as the reference does, on
    the point path and on the quad path."""
    from tests.test_render_gl import _beside_the_camera

    cam, pieces = _beside_the_camera()
    world = flat_scene(pieces)
    for max_runs in (streaming.MAX_RUNS, 4):
        monkeypatch.setattr(streaming, "MAX_RUNS", max_runs)
        r = make_renderer(ctx, resort=None)
        r.max_point_size = min(r.max_point_size, 64.0)
        gpu = r.render_offscreen(world, cam)
        assert_matches(gpu, reference_render(_reference_in_draw_order(r, world, cam), cam))
        r.release()
