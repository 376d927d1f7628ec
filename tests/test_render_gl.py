"""The GPU splat renderer against the numpy reference, headless through EGL.

Tolerance everywhere: mean absolute error <= 1/255 per channel over the image, for RGB and
alpha (one 8-bit step on average). The two paths differ only by float32 vs float64 maths, so
the measured errors are ~1e-7 (max ~2e-5); the looser bound leaves room for a pixel whose
fragment sits exactly on the 3-sigma or 1/255 discard threshold. A max-error bound of 0.05
catches structural bugs (a shifted row, a flipped image) that a mean could hide. Expected
depth, where alpha > 0.5 in both: mean relative error <= 1e-4, max <= 2e-2.
"""

import dataclasses
import math

import numpy as np
import pytest

from engine.camera import Camera
from engine.lod import build_lod_index
from engine.modulation import ALPHA_CULL, alpha as modulation_alpha
from engine.render.prepare import COL_LOG_S_NATIVE, COL_OPACITY, links_from_columns, prepare
from engine.render.reference import render as reference_render
from engine.splats import SplatChunk, normalize_quaternions, rgb_to_sh_dc
from engine.synthetic import nested_plane_world, procedural_texture
from tests.factories import random_linked_scene

moderngl = pytest.importorskip("moderngl")
from engine.render.gl import (HeadlessContextError, SplatRenderer,  # noqa: E402
                              create_headless_context)

MEAN_TOL = 1.0 / 255.0
MAX_TOL = 0.05




@pytest.fixture(scope="module")
def renderer(ctx):
    r = SplatRenderer(ctx)
    yield r
    r.release()


def assert_matches(gpu, ref):
    for name in ("rgb", "alpha"):
        err = np.abs(getattr(gpu, name).astype(np.float64) - getattr(ref, name))
        assert err.mean() <= MEAN_TOL, f"{name}: mean abs error {err.mean():.2e}"
        assert err.max() <= MAX_TOL, f"{name}: max abs error {err.max():.2e}"
    # expected depth where the surface is solid: relative error 1e-4 on average; 2e-2 at
    # worst (a fragment on a discard threshold, weight <= 0.011, may flip between paths)
    solid = (ref.alpha > 0.5) & (gpu.alpha > 0.5)
    rel = np.abs(gpu.depth[solid].astype(np.float64) - ref.depth[solid]) / ref.depth[solid]
    assert rel.mean() <= 1e-4 and rel.max() <= 2e-2, f"depth: {rel.mean():.1e} / {rel.max():.1e}"


def _opaque(chunk: SplatChunk, opacity: float = 0.9) -> SplatChunk:
    """An optimised surface is nearly opaque; pixel-aligned init opacity (0.1) is not."""
    logit = math.log(opacity / (1 - opacity))
    return dataclasses.replace(chunk, opacity_logits=np.full(len(chunk), logit, np.float32))


def _random_scene(seed: int, n: int = 1500):
    """Anisotropic random splats in front of an off-centre, non-square camera, some of them
    half faded by LoD links."""
    cam, chunk, links = random_linked_scene(seed, n)
    return cam, [(chunk, links)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gpu_matches_reference_on_random_splats(renderer, seed):
    cam, chunks = _random_scene(seed)
    prepared = prepare(cam, chunks)
    assert prepared.stats.faded > 0 and prepared.count > 500
    gpu = renderer.render_offscreen(prepared, cam)
    ref = reference_render(prepared, cam)
    assert gpu.rgb.shape == (72, 96, 3) and gpu.alpha.shape == gpu.depth.shape == (72, 96)
    assert ref.alpha.max() > 0.9
    assert_matches(gpu, ref)


def test_gpu_matches_reference_over_a_background(renderer):
    cam, chunks = _random_scene(5, n=300)
    prepared = prepare(cam, chunks)
    bg = (0.2, 0.4, 0.6)
    assert_matches(renderer.render_offscreen(prepared, cam, background=bg),
                   reference_render(prepared, cam, background=bg))


def _two_levels(size=64, opaque=True):
    (c0, l0), (c1, l1) = nested_plane_world(levels=2, factor=4.0, size=size)
    if opaque:
        l0, l1 = _opaque(l0), _opaque(l1)
    index = build_lod_index([(None, {0: l0}), (c1, {1: l1})])
    return c0, c1, [(l0, index.links[0]), (l1, index.links[1])]


@pytest.mark.parametrize("opaque", [False, True])
def test_gpu_matches_reference_on_a_nested_plane_world(renderer, opaque):
    c0, c1, chunks = _two_levels(size=64, opaque=opaque)
    for cam in (c0, c0.with_fov_scale(2.0), c1, c1.with_fov_scale(1.5)):
        prepared = prepare(cam, chunks)
        assert_matches(renderer.render_offscreen(prepared, cam), reference_render(prepared, cam))


def test_offscreen_rows_are_opencv_rows(renderer):
    """Splats rendered from the camera that created them reproduce its image, upright."""
    (cam, level), = nested_plane_world(levels=1, size=64)
    out = renderer.render_offscreen(prepare(cam, [(_opaque(level, 0.5), None)]), cam)
    image = procedural_texture(64, 64, 0, 1.0)

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    upright = corr(out.rgb, image)
    assert upright > 0.7
    assert upright > 2 * max(corr(out.rgb, image[::-1]), corr(out.rgb, image[:, ::-1]))


def test_render_into_a_window_style_framebuffer_matches_offscreen(ctx, renderer):
    """`render` into an RGBA8 framebuffer (what a window gets) shows the same image; GL rows
    start at the bottom, so reading it back needs the same flip as render_offscreen."""
    cam, chunks = _random_scene(7, n=400)
    prepared = prepare(cam, chunks)
    fbo = ctx.simple_framebuffer((cam.width, cam.height))
    renderer.render(prepared, cam, framebuffer=fbo, background=(0.1, 0.1, 0.1))
    raw = np.frombuffer(fbo.read(components=4), np.uint8).reshape(cam.height, cam.width, 4)
    window = raw[::-1, :, :3] / 255.0
    offscreen = renderer.render_offscreen(prepared, cam, background=(0.1, 0.1, 0.1))
    err = np.abs(window - offscreen.rgb)
    assert err.mean() <= MEAN_TOL and err.max() <= 6 / 255  # 8-bit rounding of each blend
    fbo.release()


def test_instance_buffer_is_reused_and_grows(renderer):
    """Frames of different sizes (one larger than the initial buffer) leave nothing stale."""
    cam, chunks = _random_scene(3, n=200)
    small = prepare(cam, chunks)
    first = renderer.render_offscreen(small, cam)
    rng = np.random.default_rng(0)
    n = 70_000  # > INITIAL_INSTANCE_CAPACITY
    pts = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(3, 6, n)], 1)
    big_chunk = SplatChunk.from_world(pts, np.tile([1.0, 0, 0, 0], (n, 1)),
                                      np.full((n, 3), -7.0), np.full(n, -2.0),
                                      rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))), np.full(n, 1.0))
    big = prepare(cam, [(big_chunk, None)])
    assert big.count > 65536
    big_out = renderer.render_offscreen(big, cam)
    assert_matches(big_out, reference_render(big, cam))
    again = renderer.render_offscreen(small, cam)
    np.testing.assert_array_equal(again.rgb, first.rgb)
    np.testing.assert_array_equal(again.depth, first.depth)
    empty = renderer.render_offscreen(prepare(cam, []), cam, background=(1.0, 0.0, 0.0))
    assert (empty.alpha == 0).all() and (empty.rgb == [1.0, 0.0, 0.0]).all()


def test_shader_applies_the_modulation_cull_by_itself(renderer):
    """Instances prepared at a 2x zoom, drawn at ~3.96x: the coarse level's alpha falls to
    ~0.008 (<= ALPHA_CULL, yet opacity * alpha > 1/255, so its fragments would show). The GPU
    must draw exactly what it draws without those instances, and match the reference."""
    c0, c1, chunks = _two_levels(size=64)
    start = c1.with_fov_scale(c0.fx / c1.fx)
    prepared = prepare(start.with_fov_scale(2.0), chunks)
    cam = start.with_fov_scale(4.0 ** 0.992)
    s_native, s_parent, s_child = links_from_columns(prepared.packed[:, COL_LOG_S_NATIVE:])
    mod = modulation_alpha(prepared.packed[:, 2] / cam.focal, s_native, s_parent, s_child)
    visible_if_drawn = (mod <= ALPHA_CULL) & (prepared.packed[:, COL_OPACITY] * mod > 1.5 / 255)
    assert visible_if_drawn.sum() > 100  # the check has something to cull
    gpu = renderer.render_offscreen(prepared, cam)
    assert_matches(gpu, reference_render(prepared, cam))
    keep = mod > ALPHA_CULL
    subset = dataclasses.replace(prepared, packed=prepared.packed[keep],
                                 source_chunk=prepared.source_chunk[keep],
                                 source_row=prepared.source_row[keep])
    without = renderer.render_offscreen(subset, cam)
    np.testing.assert_array_equal(gpu.rgb, without.rgb)
    np.testing.assert_array_equal(gpu.alpha, without.alpha)


def test_zoom_sweep_across_two_levels_is_seamless(renderer):
    """From the level-0 view, zoom 1x -> 8x toward the level-1 patch (C_1 is the 4x frame):
    every frame matches the reference, and over the patch the surface never turns
    transparent (alpha > 0.9) nor jumps in brightness (mean within +-15% frame to frame).
    Level 1 is 40% darker than level 0, so the blend is a visible ramp: a hard LoD switch
    instead of the soft fade would jump by ~37% in one frame."""
    c0, c1, chunks = _two_levels(size=64)
    (l0, links0), (l1, links1) = chunks
    chunks = [(l0, links0), (dataclasses.replace(l1, sh_dc=rgb_to_sh_dc(0.6 * l1.rgb())), links1)]
    start = c1.with_fov_scale(c0.fx / c1.fx)  # C_1's pose with C_0's field of view
    previous = None
    for zoom in np.geomspace(1.0, 8.0, 12):
        cam = start.with_fov_scale(zoom)
        prepared = prepare(cam, chunks)
        gpu = renderer.render_offscreen(prepared, cam)
        assert_matches(gpu, reference_render(prepared, cam))
        # the level-1 patch fills C_1's 64 px, i.e. 64 * zoom / 4 px here (minus a margin)
        half = int(min(32, 8 * zoom)) - 2
        patch = (slice(32 - half, 32 + half), slice(32 - half, 32 + half))
        assert gpu.alpha[patch].min() > 0.9, f"zoom {zoom:.2f}: patch turns transparent"
        brightness = float(gpu.rgb[patch].mean())
        if previous is not None:
            assert 0.85 < brightness / previous < 1.15, f"zoom {zoom:.2f}: brightness jumps"
        previous = brightness


def test_tiny_splats_far_from_the_origin_render_like_near_it(renderer):
    """1e-6-sized splats seen from 1e-5 away, at (1e4, -3e3, 2e3) and at the origin: the
    same image (float32 world coordinates would lose them entirely: the spacing of float32
    numbers at 1e4 is ~1e-3)."""
    rng = np.random.default_rng(0)
    n = 60
    local = np.stack([rng.uniform(-4e-6, 4e-6, n), rng.uniform(-4e-6, 4e-6, n),
                      rng.uniform(-2e-6, 2e-6, n)], 1)
    scales = np.log(rng.uniform(2e-7, 1e-6, (n, 3)))
    quats = normalize_quaternions(rng.normal(size=(n, 4)))
    colours = rgb_to_sh_dc(rng.uniform(0, 1, (n, 3)))
    logits = rng.normal(1.0, 1.0, n)
    images = []
    for centre in (np.zeros(3), np.array([1e4, -3e3, 2e3])):
        eye = centre + np.array([2e-6, -3e-6, -1e-5])
        cam = Camera.look_at(eye, centre, fov_y_deg=40, width=64, height=64, near=1e-7)
        chunk = SplatChunk(origin=centre.copy(), positions=local.astype(np.float32),
                           rotations=quats, log_scales=scales.astype(np.float32),
                           opacity_logits=logits.astype(np.float32), sh_dc=colours,
                           s_native=np.full(n, 1e-7, np.float32))
        prepared = prepare(cam, [(chunk, None)])
        assert prepared.count == n
        gpu = renderer.render_offscreen(prepared, cam)
        assert_matches(gpu, reference_render(prepared, cam))
        images.append(gpu)
    near, far = images
    assert near.alpha.max() > 0.5 and (near.alpha > 0.1).mean() > 0.1  # something to compare
    assert_matches(far, near)


def test_missing_egl_gives_a_clear_error(monkeypatch):
    def broken(**_kwargs):
        raise Exception("libEGL.so: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    with pytest.raises(HeadlessContextError, match="libegl1"):
        create_headless_context()


def test_needles_and_edge_on_discs_match_the_reference(renderer):
    """Very anisotropic splats (1000:1 needles across the view, discs seen edge-on) stress the
    float32 covariance maths: they must still match the float64 reference."""
    rng = np.random.default_rng(4)
    n = 120
    cam = Camera.look_at([0.0, 0.0, -3.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=96, height=96)
    pts = rng.uniform(-1.0, 1.0, (n, 3))
    needles = np.tile(np.log([0.4, 4e-4, 4e-4]), (n // 2, 1))
    discs = np.tile(np.log([0.2, 0.2, 2e-4]), (n - n // 2, 1))
    quats = normalize_quaternions(rng.normal(size=(n, 4)))
    half = n - n // 2
    quats[n // 2:] = normalize_quaternions(  # rotate the disc normal into the image plane
        np.stack([np.ones(half), np.zeros(half), np.ones(half), np.zeros(half)], 1)
        + rng.normal(0, 0.02, (half, 4)))
    chunk = SplatChunk.from_world(pts, quats, np.concatenate([needles, discs]),
                                  rng.normal(1.0, 1.0, n), rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))),
                                  np.full(n, 1.0))
    prepared = prepare(cam, [(chunk, None)])
    assert prepared.count > n // 2
    assert_matches(renderer.render_offscreen(prepared, cam), reference_render(prepared, cam))


def _beside_the_camera(n: int = 200, seed: int = 4):
    """A few large splats just in front of the camera plane and far to its sides (centres
    at x / z, y / z up to 20, the image's edge at ~0.6) over an ordinary cloud in view."""
    rng = np.random.default_rng(seed)
    cam = Camera.look_at([0, 0, 0], [0, 0, 1], fov_y_deg=60, width=96, height=72)
    pts = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1, 1, n), rng.uniform(2, 5, n)], 1)
    side = np.array([[0.4, 0.0, 0.02], [-0.3, 0.1, 0.05], [0.05, -0.35, 0.03], [0.25, 0.25, 0.04]])
    pts = np.concatenate([pts, side])
    sigma = np.concatenate([np.full(n, 0.03), np.full(len(side), 0.2)])
    m = len(pts)
    chunk = SplatChunk.from_world(pts, np.tile([1.0, 0, 0, 0], (m, 1)),
                                  np.log(np.repeat(sigma[:, None], 3, 1)), np.full(m, 1.0),
                                  rgb_to_sh_dc(rng.uniform(0, 1, (m, 3))), np.full(m, 1e-3))
    return cam, [(chunk, None)]


def test_splats_beside_the_camera_match_the_reference(renderer):
    """The shader linearises a centre outside the widened view where the reference does
    (`engine.render.reference.jacobian_directions`)."""
    cam, chunks = _beside_the_camera()
    prepared = prepare(cam, chunks)
    assert prepared.count == 204  # none culled: their 3-sigma spheres reach into the view
    ref = reference_render(prepared, cam)
    assert 0.05 < ref.alpha.min() and ref.alpha.mean() < 0.9  # seen, and not smeared opaque
    assert_matches(renderer.render_offscreen(prepared, cam), ref)
