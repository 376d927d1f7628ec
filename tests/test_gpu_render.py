"""The GPU-driven path (`StreamingRenderer(path="gpu")`): its cull against
`engine.render.prepare`, its order against the CPU path's, its images against the numpy
reference, the choice of path, switching at run time; headless through EGL (Mesa llvmpipe
runs compute shaders). Its radix sort is tested in test_gpu_sort.py.

Image tolerance as in test_streaming.py (and test_render_gl.py): mean abs error <= 1/255 for
rgb and alpha, max <= 0.05, expected depth where solid: mean relative error <= 1e-4, max
<= 2e-2. The reference is `engine.render.prepare`'s splats in the GPU path's own draw order
(read back from the GPU: the frame itself never reads anything back). Every test skips
where the context has no compute shaders.
"""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from engine.camera import Camera
from engine.history import Step
from engine.lod import LodLinks
from engine.render.prepare import PreparedSplats, prepare
from engine.render.reference import render as reference_render
from engine.scene import ChunkStore, append_level, flat_scene
from engine.splats import SplatChunk, rgb_to_sh_dc
from engine.synthetic import nested_plane_world
from tests.test_streaming import (_culled_camera, _culled_splats_world, _nested_world,
                                  _opaque, _pieces, _random_pieces, _tiny_splats_near_and_far,
                                  assert_matches, make_renderer)

moderngl = pytest.importorskip("moderngl")
from engine.render import streaming  # noqa: E402
from engine.render.gpu_driven import (GpuItem, GpuSupport, RenderPathError,  # noqa: E402
                                      choose_path, gpu_support, work_pages)
from engine.render.residency import PAGE_BYTES  # noqa: E402
from engine.render.streaming import StreamingBudget, probe_paths  # noqa: E402
from engine.render.visibility import PAGE_SPLATS  # noqa: E402


@pytest.fixture(scope="module")
def gpu_ctx(ctx):
    support = gpu_support(ctx)
    if not support.available:
        pytest.skip(support.reason)
    return ctx


@pytest.fixture
def gpu(gpu_ctx):
    """A GPU-path renderer that culls and sorts for every new camera."""
    r = make_renderer(gpu_ctx, resort=None, path="gpu")
    yield r
    r.release()


def _reference_in_gpu_order(renderer, world, camera):
    """prepare() for the world's chunks, in the renderer's last draw order (read back)."""
    ids, pieces = _pieces(world)
    prepared = prepare(camera, pieces)
    where = {(ids[c], r): k for k, (c, r) in
             enumerate(zip(prepared.source_chunk.tolist(), prepared.source_row.tolist()))}
    drawn_ids, drawn_rows = renderer.drawn_rows()
    order = np.array([where[(c, r)] for c, r in zip(drawn_ids.tolist(), drawn_rows.tolist())
                      if (c, r) in where], np.int64)
    assert len(order) == prepared.count, "the GPU path misses splats the reference draws"
    return PreparedSplats(prepared.packed[order], prepared.source_chunk[order],
                          prepared.source_row[order], prepared.stats, prepared.T_world_camera)


def _drawn_pairs(renderer):
    ids, rows = renderer.drawn_rows()
    return set(zip(ids.tolist(), rows.tolist()))


# ---- choosing the path ---------------------------------------------------------------------
def _support(available=True, software=False):
    return GpuSupport(available, software, "llvmpipe" if software else "NVIDIA H100", "why")


def test_auto_picks_the_gpu_path_only_on_capable_hardware_that_is_faster():
    assert choose_path("auto", _support())[0] == "gpu"
    assert choose_path("auto", _support(software=True))[0] == "cpu"
    assert choose_path("auto", _support(available=False))[0] == "cpu"
    assert choose_path("auto", _support(), probe=lambda: (4.0, 1.0))[0] == "gpu"
    assert choose_path("auto", _support(), probe=lambda: (1.0, 4.0))[0] == "cpu"
    assert choose_path("cpu", _support())[0] == "cpu"
    assert choose_path("gpu", _support(software=True))[0] == "gpu"  # asked for: it runs
    with pytest.raises(RenderPathError, match="cannot run here"):
        choose_path("gpu", _support(available=False))
    with pytest.raises(RenderPathError, match="auto, cpu, gpu"):
        choose_path("vulkan", _support())


def test_gpu_support_needs_gl43_or_the_compute_extensions():
    def fake(version, extensions, renderer="Mesa Intel(R) Graphics"):
        return SimpleNamespace(info={"GL_RENDERER": renderer}, version_code=version,
                               extensions=set(extensions))

    assert gpu_support(fake(460, [])).available
    old = gpu_support(fake(330, ["GL_ARB_draw_indirect"]))
    assert not old.available and "GL_ARB_compute_shader" in old.reason
    mesa_compat = gpu_support(fake(330, [
        "GL_ARB_compute_shader", "GL_ARB_shader_storage_buffer_object", "GL_ARB_draw_indirect",
        "GL_ARB_multi_draw_indirect", "GL_ARB_shader_image_load_store"]))
    assert mesa_compat.available and not mesa_compat.software
    assert gpu_support(fake(450, [], "llvmpipe (LLVM 15.0.6, 256 bits)")).software


def test_auto_on_llvmpipe_keeps_the_cpu_path_and_gpu_can_be_forced(gpu_ctx):
    if not gpu_support(gpu_ctx).software:
        pytest.skip("a hardware GL: auto decides by a probe there")
    r = streaming.StreamingRenderer(gpu_ctx, path="auto")
    assert r.path == "cpu" and r.requested_path == "auto" and "software" in r.path_reason
    assert r.set_path("gpu") == "gpu" and r.path == "gpu"
    with pytest.raises(RenderPathError):
        r.set_path("fast")
    assert r.path == "gpu"  # a refused switch changes nothing
    r.release()


def test_a_driver_that_refuses_the_gpu_shaders_keeps_the_cpu_path(gpu_ctx, monkeypatch):
    """On a hardware GL whose compiler rejects the GPU path's shaders, "auto" (whose probe
    builds the GPU path) falls back to the CPU path and "gpu" is a one-line UserError."""
    from engine.errors import UserError

    def refuse(*args, **kwargs):
        raise moderngl.Error("GLSL Compiler failed\ncompute_shader\n0:1: error")

    monkeypatch.setattr(streaming, "gpu_support", lambda ctx: _support())
    monkeypatch.setattr(streaming, "GpuDrivenPath", refuse)
    r = streaming.StreamingRenderer(gpu_ctx, path="auto")
    assert r.path == "cpu" and "do not build" in r.path_reason
    r.release()
    with pytest.raises(UserError, match="shaders do not build here: GLSL Compiler failed$"):
        streaming.StreamingRenderer(gpu_ctx, path="gpu")


def test_the_probe_times_one_frame_of_each_path(gpu_ctx):
    cpu_ms, gpu_ms = probe_paths(gpu_ctx, frames=1)
    assert cpu_ms > 0 and gpu_ms > 0


# ---- per-chunk CPU work -------------------------------------------------------------------
def test_work_pages_list_chunks_in_order_and_their_pages_in_layout_order():
    items = [GpuItem(7, np.zeros(3), np.array([4, 2]), PAGE_SPLATS + 5),
             GpuItem(3, np.ones(3), np.array([9]), 17)]
    np.testing.assert_array_equal(work_pages(items), [[4, 0, PAGE_SPLATS, 0], [2, 0, 5, 0],
                                                      [9, 1, 17, 0]])
    assert work_pages([]).shape == (0, 4)


def test_gpu_frames_never_cull_or_sort_splats_on_the_cpu(gpu, monkeypatch):
    """The CPU part of a GPU-path frame is per chunk: the per-splat CPU cull and sort are
    never called, and the work-page table is built only when the chunk set changes."""
    world, (_, c1) = _nested_world(levels=2, size=48)

    def forbidden(*args, **kwargs):
        raise AssertionError("the GPU path culled or sorted on the CPU")

    monkeypatch.setattr(streaming, "build_draw_list", forbidden)
    monkeypatch.setattr(streaming.StreamingRenderer, "_build", forbidden)
    built = []
    real = streaming.GpuDrivenPath._set_items.__globals__["work_pages"]
    monkeypatch.setitem(streaming.GpuDrivenPath._set_items.__globals__, "work_pages",
                        lambda items: built.append(len(items)) or real(items))
    for zoom in (1.0, 1.01, 1.02):
        stats = gpu.draw(world, c1.with_fov_scale(zoom), complete=True,
                         framebuffer=gpu.ctx.simple_framebuffer((48, 48)))
        assert stats.path == "gpu" and stats.sorted_this_frame and stats.draw_calls == 1
    assert len(built) == 1


# ---- what the GPU culls -------------------------------------------------------------------
def test_gpu_cull_keeps_exactly_the_splats_prepare_keeps(gpu):
    """Over random cameras (wide to 20x zoomed) the GPU draws prepare's splats (the exact
    rules, in float32: at most a few splats sitting on a threshold differ), and its atomic
    count, the ORDER pass's sum and the sorted list agree."""
    world, cameras = _nested_world(levels=3, size=48, max_splats=300)
    ids, pieces = _pieces(world)
    rng = np.random.default_rng(0)
    fbo = gpu.ctx.simple_framebuffer((80, 60))
    differ = 0
    for _ in range(16):
        base = cameras[rng.integers(len(cameras))]
        cam = Camera.look_at(base.position + rng.normal(0, 0.3, 3),
                             [rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5), 0.0],
                             fov_y_deg=float(rng.uniform(3, 70)), width=80, height=60, near=0.01)
        gpu.draw(world, cam, fbo)
        prepared = prepare(cam, pieces)
        expected = {(ids[c], r) for c, r in zip(prepared.source_chunk.tolist(),
                                               prepared.source_row.tolist())}
        drawn = _drawn_pairs(gpu)
        counts = gpu.read_gpu_counts()
        assert counts["drawn"] == counts["ordered"] == len(drawn) <= counts["candidates"]
        differ += len(drawn ^ expected)
        assert len(drawn ^ expected) <= max(2, 0.002 * len(expected))
    assert differ <= 8
    fbo.release()


def test_culled_splats_are_not_drawn_and_leave_no_trace(gpu, ctx):
    """Behind, before near, beyond far, outside, faded and faint splats are not in the
    GPU's list; a world of only such splats draws nothing at all (0 visible splats), and a
    world with one visible splat draws exactly it."""
    cam = _culled_camera()
    fbo = ctx.simple_framebuffer((64, 64))
    gpu.draw(_culled_splats_world(cam), cam, fbo)
    assert {r for _, r in _drawn_pairs(gpu)} == {0, 8, 9}
    gpu.draw(_culled_splats_world(cam, keep_visible=False), cam, fbo, background=(0.2, 0.4, 0.6))
    assert gpu.read_gpu_counts()["drawn"] == 0 and gpu.drawn_rows()[0].size == 0
    image = np.frombuffer(fbo.read(components=4), np.uint8).reshape(64, 64, 4)
    assert (image[..., :3] == np.round(np.array([0.2, 0.4, 0.6]) * 255)).all()
    single = flat_scene([(SplatChunk.from_world(
        [[0.0, 0.0, 5.0]], [[1.0, 0, 0, 0]], np.log([[0.1] * 3]), [3.0],
        rgb_to_sh_dc([[0.9, 0.5, 0.1]]), [5.0 / cam.focal]), None)])
    out = gpu.render_offscreen(single, cam)
    assert gpu.read_gpu_counts()["drawn"] == 1 and out.alpha.max() > 0.5
    assert_matches(out, reference_render(_reference_in_gpu_order(gpu, single, cam), cam))
    fbo.release()


# ---- the order ---------------------------------------------------------------------------
def test_gpu_order_is_the_cpu_paths_back_to_front_order(gpu_ctx):
    """Keys are the CPU path's 16-bit log-depth keys, sorted ascending, equal keys in the CPU
    path's tie order (chunks in order, then layout rows). A plane seen head-on is all ties:
    both paths draw it in the same order; random splats over a wide depth range get the
    keys of `back_to_front` (one step apart where float32 depths or the GPU's log round across
    a step: ~1% of them on llvmpipe)."""
    world, (c0, _) = _nested_world(levels=2, size=64)
    cam_random, pieces = _random_pieces(0)
    scenes = ((world, c0, 0.9), (flat_scene(pieces), cam_random, 0.0))
    cpu = make_renderer(gpu_ctx, resort=None)
    gpu = make_renderer(gpu_ctx, resort=None, path="gpu")
    for scene, cam, tied in scenes:
        gpu.render_offscreen(scene, cam)
        keys = gpu._gpu.read_keys().astype(np.int64)
        rows = gpu._gpu.read_rows().astype(np.int64)
        assert len(keys) > 500 and (np.diff(keys) >= 0).all()
        # candidate position = (work page, row in page): the CPU path's tie order
        work = {int(p): i for i, p in enumerate(work_pages(gpu._gpu.items)[:, 0])}
        position = np.array([work[r >> 10] * PAGE_SPLATS + (r & (PAGE_SPLATS - 1))
                             for r in rows.tolist()])
        ties = np.diff(keys) == 0
        assert ties.mean() >= tied and (np.diff(position)[ties] > 0).all()
        ids, chunk_rows = gpu.drawn_rows()
        store = scene.resource(ChunkStore)
        depth = np.array([cam.points_to_camera(
            store.get(c).origin[None] + store.get(c).positions[r].astype(np.float64))[0, 2]
            for c, r in zip(ids.tolist(), chunk_rows.tolist())])
        key_error = np.abs(_back_to_front_keys(depth) - keys)
        assert key_error.max() <= 1 and (key_error == 0).mean() > 0.95
        cpu.render_offscreen(scene, cam)
        if tied:
            for a, b in zip(cpu.drawn_rows(), gpu.drawn_rows()):
                np.testing.assert_array_equal(a, b)
    cpu.release()
    gpu.release()


def _back_to_front_keys(depth: np.ndarray) -> np.ndarray:
    """[K] depths -> [K] the keys `back_to_front` sorts by (furthest first)."""
    log_z = np.log(depth.astype(np.float32))
    lo, hi = float(log_z.min()), float(log_z.max())
    if not hi > lo:
        return np.full(len(depth), 65535, np.int64)
    scaled = np.rint((log_z - np.float32(lo)) * np.float32(65535 / (hi - lo)))
    return 65535 - np.clip(scaled, 0, 65535).astype(np.int64)


# ---- images against the reference ---------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_gpu_path_matches_the_reference_on_random_splats(gpu, seed):
    cam, pieces = _random_pieces(seed)
    world = flat_scene(pieces)
    for background in ((0.0, 0.0, 0.0), (0.2, 0.4, 0.6)):
        out = gpu.render_offscreen(world, cam, background=background)
        ref = reference_render(_reference_in_gpu_order(gpu, world, cam), cam, background)
        assert ref.alpha.max() > 0.9
        assert_matches(out, ref)


def test_zoom_sweep_across_level_transitions_matches_and_is_seamless(gpu):
    """Three levels, zooming 1x -> 24x from the level-0 view through both transitions: every
    frame matches the reference, and over the finest patch the surface never turns
    transparent nor jumps in brightness (levels darken by 40% each: a hard switch would
    jump by ~37% in one frame)."""
    world, cams = _nested_world(levels=3, size=64, darker_child=True)
    c0, c2 = cams[0], cams[2]
    start = c2.with_fov_scale(c0.fx / c2.fx)  # C_2's pose with C_0's field of view
    previous = None
    for zoom in np.geomspace(1.0, 24.0, 14):
        cam = start.with_fov_scale(zoom)
        out = gpu.render_offscreen(world, cam)
        assert_matches(out, reference_render(_reference_in_gpu_order(gpu, world, cam), cam))
        half = int(min(32, 2 * zoom)) - 1
        if half >= 2:
            patch = (slice(32 - half, 32 + half), slice(32 - half, 32 + half))
            assert out.alpha[patch].min() > 0.9, f"zoom {zoom:.2f}: patch turns transparent"
            brightness = float(out.rgb[patch].mean())
            if previous is not None:
                assert 0.85 < brightness / previous < 1.15, f"zoom {zoom:.2f}: jumps"
            previous = brightness


def test_tiny_splats_a_million_times_zoomed_far_from_the_origin(gpu):
    """1e-6-sized splats seen from 1e-5 away at (1e4, -3e3, 2e3) render like at the origin:
    the per-chunk origins are float64 differences on the CPU, the GPU sees float32 offsets."""
    images = []
    for world, cam in _tiny_splats_near_and_far():
        out = gpu.render_offscreen(world, cam)
        assert_matches(out, reference_render(_reference_in_gpu_order(gpu, world, cam), cam))
        images.append(out)
    near, far = images
    assert near.alpha.max() > 0.5 and (near.alpha > 0.1).mean() > 0.1
    assert_matches(far, near)


def test_footprints_wider_than_a_point_take_the_quad_variant(gpu_ctx):
    """With the largest GL point narrower than the viewport, the GPU path draws every splat
    as a quad covering the same pixels (points.glsl SORTED_QUADS): huge splats match the
    reference, and small ones give the point draw's image bit for bit."""
    rng = np.random.default_rng(3)
    cam = Camera.look_at([0, 0, 0], [0, 0, 1], fov_y_deg=60, width=160, height=120)
    n = 300
    pts = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(2, 6, n)], 1)
    sigma = np.where(rng.uniform(size=n) < 0.05, 1.0, 0.02)
    chunk = SplatChunk.from_world(pts, np.tile([1.0, 0, 0, 0], (n, 1)),
                                  np.log(np.repeat(sigma[:, None], 3, 1)), np.full(n, -1.0),
                                  rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))), np.full(n, 1e-3))
    world = flat_scene([(chunk, None)])
    r = make_renderer(gpu_ctx, resort=None, path="gpu")
    r.max_point_size = 32.0
    out = r.render_offscreen(world, cam)
    assert r.last_stats.splats_quads == r.last_stats.splats_drawn > 0
    assert_matches(out, reference_render(_reference_in_gpu_order(r, world, cam), cam))
    small_world, (c0, _) = _nested_world(levels=2, size=64)
    quads = r.render_offscreen(small_world, c0)
    r.max_point_size = 255.0
    points = r.render_offscreen(small_world, c0)
    assert r.last_stats.splats_quads == 0
    np.testing.assert_array_equal(quads.rgb, points.rgb)
    np.testing.assert_array_equal(quads.depth, points.depth)
    r.release()


def test_lod_modes_and_the_ablation_on_the_gpu_path(gpu_ctx):
    """Soft, hard and no modulation, applied by the GPU cull and the shader alike: a splat
    halfway down its fade shows at 0.5, 1 and 1 of its opacity."""
    cam = Camera.look_at([0, 0, 0], [0, 0, 1], fov_y_deg=60, width=64, height=48)
    s_render = 2.0 / cam.focal
    chunk = SplatChunk.from_world([[0.0, 0.0, 2.0]], [[1.0, 0, 0, 0]], np.log([[1.0] * 3]),
                                  [math.log(0.8 / 0.2)], rgb_to_sh_dc([[1.0, 1.0, 1.0]]),
                                  [s_render / 2.0])
    links = LodLinks(np.array([s_render * 2.0], np.float32), np.zeros(1, np.float32))
    world = flat_scene([(chunk, links)])
    for kwargs, expected in (({}, 0.4), ({"lod_mode": "hard"}, 0.8),
                             ({"modulation": False}, 0.8)):
        r = make_renderer(gpu_ctx, resort=None, path="gpu", **kwargs)
        out = r.render_offscreen(world, cam)
        assert out.alpha.max() == pytest.approx(expected, rel=2e-3), kwargs
        r.release()


# ---- switching, streaming, picking --------------------------------------------------------
def test_switching_path_at_run_time_gives_the_same_image(gpu_ctx):
    """One renderer, one resident arena: CPU, then GPU, then CPU again; the window image
    and the offscreen rgb / alpha / depth (what picking reads) stay the same (up to the
    rare splat pair whose 16-bit keys round apart between numpy and the GPU)."""
    world, (_, c1) = _nested_world(levels=2, size=64, darker_child=True)
    r = make_renderer(gpu_ctx, resort=None)
    fbo = gpu_ctx.simple_framebuffer((96, 72))
    images = []
    for path in ("cpu", "gpu", "cpu"):
        assert r.set_path(path) == path
        cam = c1.with_fov_scale(0.6)
        offscreen = r.render_offscreen(world, cam)
        assert r.last_stats.path == path
        r.draw(world, cam, fbo)
        images.append((offscreen, np.frombuffer(fbo.read(components=4), np.uint8)))
    (cpu, cpu_window), (gpu, gpu_window), (again, again_window) = images
    assert_matches(gpu, cpu)
    window_error = np.abs(gpu_window.astype(int) - cpu_window)  # 8-bit, blended 8-bit
    assert window_error.mean() <= 1.0 and window_error.max() <= 6
    np.testing.assert_array_equal(again.rgb, cpu.rgb)
    np.testing.assert_array_equal(again_window, cpu_window)
    fbo.release()
    r.release()


def test_a_zoom_sweep_through_the_sample_world_is_the_same_on_both_paths(gpu_ctx):
    """What `wonderzoom render --zoom-sweep` draws: the frames of a sweep down the bundled
    kind of world (three fractal levels) on the CPU path and on the GPU path match."""
    from engine.render.headless import start_camera, zoom_sweep_path
    from engine.scene import build_scene
    from engine.synthetic import fractal_plane_world, levels_history

    world = build_scene(*levels_history(fractal_plane_world(levels=3, size=96),
                                        max_chunk_splats=2048))
    cpu = make_renderer(gpu_ctx, resort=None)
    gpu = make_renderer(gpu_ctx, resort=None, path="gpu")
    cameras = zoom_sweep_path(cpu, world, start_camera(world, 160, 90), 8)
    for cam in cameras:
        assert_matches(gpu.render_offscreen(world, cam), cpu.render_offscreen(world, cam))
    assert gpu.last_stats.path == "gpu" and gpu.read_gpu_counts()["drawn"] > 1000
    cpu.release()
    gpu.release()


def test_a_hot_load_under_the_upload_cap_on_the_gpu_path(gpu_ctx):
    """Streaming stays as it is: a nine-page level arrives over several frames under a
    two-page cap, the old level keeps drawing meanwhile, and the last frame equals an
    unconstrained render; an arena that grows meanwhile (the GPU path's buffers and
    bindings follow it) changes nothing."""
    world, _ = _nested_world(levels=1, size=96, max_splats=100_000)
    made = nested_plane_world(levels=2, factor=4.0, size=96)
    new_level = _opaque(made[1][1])
    cap = 2 * PAGE_BYTES
    r = make_renderer(gpu_ctx, StreamingBudget(upload_bytes_per_frame=cap), resort=None,
                      path="gpu")
    cam = made[1][0]
    fbo = gpu_ctx.simple_framebuffer((96, 96))
    r.render_offscreen(world, cam)
    version = r.arena.version
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
    assert len(frames) >= 4 and frames[-1].chunks_pending == 0
    assert r.arena.version > version  # the arena grew during the hot-load
    full = make_renderer(gpu_ctx, resort=None, path="gpu")
    np.testing.assert_allclose(r.render_offscreen(world, cam).rgb,
                               full.render_offscreen(world, cam).rgb, atol=1e-6)
    full.release()
    r.release()
    fbo.release()


def test_a_still_camera_reuses_the_last_gpu_order_until_links_change(gpu_ctx):
    """Nothing is culled again for the same camera and chunks; new links (a level appended
    over a resident one) run the cull again even though the camera did not move."""
    world, _ = _nested_world(levels=1, size=64, max_splats=100_000)
    made = nested_plane_world(levels=2, factor=4.0, size=64)
    r = make_renderer(gpu_ctx, resort=None, path="gpu")
    cam = made[1][0]
    fbo = gpu_ctx.simple_framebuffer((64, 64))
    assert r.draw(world, cam, fbo, complete=True).sorted_this_frame
    assert not r.draw(world, cam, fbo).sorted_this_frame
    append_level(world, Step(1, 0, "zoom", (100,), camera=cam), {100: _opaque(made[1][1])})
    world.apply_commands()
    assert r.draw(world, cam, fbo, complete=True).sorted_this_frame
    out = r.render_offscreen(world, cam)
    assert_matches(out, reference_render(_reference_in_gpu_order(r, world, cam), cam))
    r.release()
    fbo.release()


def test_the_cpu_path_is_what_it_was(gpu_ctx):
    """A renderer made without a path is the CPU path, with its draw list (tests, tools)."""
    world, (c0,) = _nested_world(levels=1, size=32)
    r = make_renderer(gpu_ctx, resort=None)
    r.render_offscreen(world, c0)
    assert r.path == "cpu" and r.last_stats.path == "cpu" and r.last_list is not None
    assert _drawn_pairs(r) == set(zip(*(a.tolist() for a in r.last_list.chunk_rows())))
    r.release()


def test_hud_shows_the_render_path():
    from ui.hud import HudState, hud_lines
    lines = hud_lines(dataclasses.replace(HudState(), renderer_path="gpu"))
    assert any("gpu" in line for line in lines)
    assert not any("renderer" in line for line in hud_lines(HudState()))
