"""Each generation stage with small inputs, the shared image maths, config and registries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.camera import Camera
from engine.lod import LodLinks
from engine.synthetic import pixel_aligned_splats, procedural_texture
from generation import imaging
from generation.config import ConfigError, GenerationConfig
from generation.stages import aux_views, context, depth, edit, observe, optimize, splat_init
from generation.stages import super_resolve


@pytest.fixture(scope="module")
def plane():
    """A textured plane 4 units away seen head-on at 64x48, as one level-0 chunk."""
    cam = Camera.look_at([0, 0, -4.0], [0, 0, 0], fov_y_deg=50, width=64, height=48)
    d = np.full((48, 64), 4.0)  # the plane z = 0, head-on: camera depth 4 everywhere
    rgb = procedural_texture(48, 64, seed=3, detail=1.0)
    chunk = pixel_aligned_splats(cam, d, rgb, level=0, opacity=0.95)
    return cam, d, rgb, ((chunk, LodLinks.root(len(chunk))),)


# ---- observe ----------------------------------------------------------------------------
def test_observe_renders_rgb_depth_and_a_low_resolution_view(plane):
    cam, d, rgb, scene = plane
    out = observe.run(observe.ObserveInput(cam, scene, factor=4.0))
    assert out.rgb.shape == (48, 64, 3) and out.alpha.shape == (48, 64)
    assert out.low_rgb.shape == (12, 16, 3) and out.low_camera.width == 16
    inner = (slice(4, -4), slice(4, -4))
    assert (out.alpha[inner] > 0.9).all()
    np.testing.assert_allclose(out.depth[inner], d[inner], rtol=0.01)
    # overlapping opaque splats of a one-pixel footprint blur by about a pixel
    assert np.abs(out.rgb[inner] - imaging.blur(rgb, 1.0)[inner]).mean() < 0.1


def _edge_row(img: np.ndarray) -> float:
    """Where the rows of `img`'s central columns cross from dark to bright: the mid-level
    crossing, in pixel-centre coordinates (row i spans [i, i + 1])."""
    p = imaging.luma(img)[:, img.shape[1] // 4: 3 * img.shape[1] // 4].mean(axis=1)
    mid = (p.min() + p.max()) / 2
    i = int(np.nonzero(p >= mid)[0][0])
    return i - 1 + (mid - p[i - 1]) / (p[i] - p[i - 1]) + 0.5


@pytest.mark.parametrize("near", ["top", "bottom"])
def test_observe_low_resolution_view_stays_on_the_working_pixel_grid(near):
    """A tilted surface of overlapping opaque splats with a dark/bright edge across it: the
    parent-resolution view puts the edge where the working view has it. (Rendered a second
    time at the low resolution instead, the near side's splats spread over the far side's
    under the wider low-pass, and the edge moved ~2.7 working pixels: issue 21.)"""
    cam = Camera.look_at([0, 0, -4.0], [0, 0, 0], fov_y_deg=50, width=96, height=64)
    v = np.arange(64)[:, None] + np.zeros((1, 96))
    d = 4.0 + 0.04 * (v if near == "top" else 63 - v)
    rgb = np.where(v[..., None] < 32, 0.2, 0.8) * np.ones((64, 96, 3))
    chunk = pixel_aligned_splats(cam, d, rgb, level=0, opacity=0.95)
    out = observe.run(observe.ObserveInput(cam, ((chunk, LodLinks.root(len(chunk))),), 4.0))
    assert out.low_rgb.shape == (16, 24, 3)
    scale = out.rgb.shape[0] / out.low_rgb.shape[0]
    assert abs(_edge_row(out.low_rgb) * scale - _edge_row(out.rgb)) < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seen_colours_copy_the_world_as_seen_and_fill_only_holes(seed):
    """What a level copies: the render itself wherever the old world is at least HOLE_ALPHA
    opaque (see-through parts as they look), the un-premultiplied colour with holes
    inpainted where it is a hole, and a blend of the two (never outside them) between."""
    rng = np.random.default_rng(seed)
    h, w = 40, 60
    colour = imaging.blur(rng.random((h, w, 3)), 3.0)
    alpha = np.clip(imaging.blur(rng.random((h, w)), 4.0) * 2.4 - 0.7, 0.0, 1.0)
    alpha[:, :8] = 0.0  # a hole the level fills
    rgb = colour * alpha[..., None]  # the render over black
    out = observe.seen_colours(rgb, alpha)
    seen = alpha >= observe.HOLE_ALPHA
    assert seen.any() and (~seen).any()
    np.testing.assert_allclose(out[seen], rgb[seen])
    filled = imaging.inpaint_rgb(imaging.unpremultiply(rgb, alpha), alpha < 0.02)
    np.testing.assert_allclose(out[alpha == 0], filled[alpha == 0])
    between = ~seen & (alpha > 0)
    lo, hi = np.minimum(rgb, filled), np.maximum(rgb, filled)
    assert ((out[between] >= lo[between] - 1e-12) & (out[between] <= hi[between] + 1e-12)).all()
    # a hole is filled with the colours around it, not with the background
    assert out[:, :4].mean() > 0.2


def test_observe_copies_a_see_through_band_as_it_looks():
    """A half-transparent band across an opaque plane (a streak along a depth edge): the
    colours a level is made from are as dark there as the world looks, so a level faded in
    over its parent does not fill the band with the band's un-premultiplied colour."""
    cam = Camera.look_at([0, 0, -4.0], [0, 0, 0], fov_y_deg=50, width=64, height=48)
    d = np.full((48, 64), 4.0)
    rgb = np.full((48, 64, 3), 0.8)
    band = (np.arange(48) >= 16) & (np.arange(48) < 32)
    opacity = (np.where(band[:, None], 0.05, 0.95) * np.ones((1, 64))).ravel()
    chunk = pixel_aligned_splats(cam, d, rgb, level=0)
    chunk = dataclasses.replace(chunk, opacity_logits=np.log(opacity / (1 - opacity)).astype(
        chunk.opacity_logits.dtype))
    out = observe.run(observe.ObserveInput(cam, ((chunk, LodLinks.root(len(chunk))),), 4.0))
    mid = out.alpha[22:26, 8:-8]
    assert ((mid > observe.HOLE_ALPHA) & (mid < 0.5)).all()
    np.testing.assert_allclose(out.rgb[22:26, 8:-8], out.seen[22:26, 8:-8])
    assert out.rgb[22:26, 8:-8].mean() < 0.6 * out.rgb[5:10, 8:-8].mean()
    low_band = out.low_rgb[22 // 4: 26 // 4, 2:-2]
    assert low_band.mean() < 0.8 * out.low_rgb[1:3, 2:-2].mean()


def test_observe_of_nothing_is_empty(plane):
    cam, *_ = plane
    away = Camera.look_at([0, 0, -4.0], [0, 0, -10.0], width=32, height=32)
    out = observe.run(observe.ObserveInput(away, plane[3], 2.0))
    assert out.alpha.max() == 0 and np.isnan(out.depth).all()


# ---- context ----------------------------------------------------------------------------
def test_context_describes_the_prompt_history():
    rgb = np.full((8, 8, 3), (0.2, 0.6, 0.2))
    out = context.run(context.ContextInput(rgb, "a ladybug", ("a meadow", "a sunflower"), 2))
    assert out.caption == ("close-up (level 2) of a meadow > a sunflower, mostly green; "
                           "adding a ladybug")
    long = context.run(context.ContextInput(rgb, "x" * 5000, ()))
    assert len(long.caption) <= context.MAX_CAPTION_CHARS


# ---- super-resolve + detail -------------------------------------------------------------
def _high_freq(img):
    y = imaging.luma(img)
    return float(np.std(y - imaging.blur(y, 1.0)))


def test_super_resolve_realesrgan_enlarges_and_adds_detail():
    from skimage.data import coffee

    low = imaging.resize(coffee() / 255.0, 32, 24)
    out = super_resolve.run(super_resolve.SuperResolveInput(low, 128, 96, seed=0),
                            "builtin", model="realesrgan-x4plus", threads=1)
    assert out.rgb.shape == (96, 128, 3) and out.model == "realesrgan-x4plus"
    assert 0 <= out.rgb.min() and out.rgb.max() <= 1
    # the network keeps the picture: its output, shrunk back, is close to the input
    back = imaging.resize(out.upscaled, 32, 24)
    assert np.abs(back - low).mean() < 0.08
    assert _high_freq(out.rgb) > 1.5 * _high_freq(out.upscaled)  # detail, not blur


def test_detail_synthesis_matches_the_parent_band_and_is_seeded():
    ref = procedural_texture(32, 32, seed=2, detail=6.0)
    img = imaging.resize(ref, 128, 128)
    a, added = super_resolve.synthesize_detail(img, ref, seed=5)
    b, _ = super_resolve.synthesize_detail(img, ref, seed=5)
    c, _ = super_resolve.synthesize_detail(img, ref, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    from generation.detail import high_band

    band_sd = high_band(imaging.luma(ref)).std()
    assert 0.5 * band_sd < added.std() < 2.0 * band_sd
    flat = np.full((32, 32, 3), 0.5)  # no texture in the parent: none is invented
    out, added = super_resolve.synthesize_detail(np.full((128, 128, 3), 0.5), flat, seed=1)
    assert np.abs(added).max() == 0


def test_detail_tops_up_the_band_instead_of_compounding():
    """The added texture brings the image's band to the parent's level; an image already there
    (say, made from a sharp parent) gets next to nothing, so repeated zooms do not grow grain."""
    from generation.detail import high_band, robust_sd

    ref = procedural_texture(32, 32, seed=2, detail=6.0)
    parent_sd = robust_sd(high_band(imaging.luma(ref)))
    once, added = super_resolve.synthesize_detail(imaging.resize(ref, 128, 128), ref, seed=5)
    assert robust_sd(high_band(imaging.luma(once))) == pytest.approx(parent_sd, rel=0.3)
    twice, _ = super_resolve.synthesize_detail(once, ref, seed=6)
    # adding the parent's amplitude again would give ~1.4x (independent noises add in power)
    assert robust_sd(high_band(imaging.luma(twice))) < 1.1 * parent_sd


def test_the_detail_bound_caps_only_what_a_share_above_one_adds():
    from generation.detail import bounded_target

    rng = np.random.default_rng(0)
    for sd, strength, bound in rng.uniform((0.001, 0.0, 0.0), (0.05, 4.0, 0.05), (500, 3)):
        t = bounded_target(sd, strength, bound)
        assert t <= sd * strength + 1e-15  # never more than asked for
        assert t >= min(sd * strength, sd) - 1e-15  # never less than the parent band's level
        if bound > 0 and sd * strength > sd:
            assert t <= max(bound, sd) + 1e-15
        assert bounded_target(sd, strength, 0.0) == sd * strength  # 0: no bound
    # a grainy parent gets its own level, a smooth one up to the bound
    assert bounded_target(8 / 255, 2.0, 3 / 255) == pytest.approx(8 / 255)
    assert bounded_target(1 / 255, 2.0, 3 / 255) == pytest.approx(2 / 255)
    assert bounded_target(2 / 255, 2.0, 3 / 255) == pytest.approx(3 / 255)


def test_the_detail_bound_reaches_the_texture():
    ref = procedural_texture(32, 32, seed=2, detail=6.0)
    img = imaging.resize(ref, 128, 128)
    _, free = super_resolve.synthesize_detail(img, ref, seed=5, strength=3.0)
    _, bounded = super_resolve.synthesize_detail(img, ref, seed=5, strength=3.0, bound=1e-6)
    _, one = super_resolve.synthesize_detail(img, ref, seed=5, strength=1.0)
    assert np.allclose(bounded, one)  # a tiny bound: the parent band's own level
    assert free.std() > 1.5 * bounded.std()


def test_sharpening_the_upscaled_view_keeps_hue_and_a_limited_one_never_overshoots():
    from scipy import ndimage

    from generation.detail import high_band, robust_sd, sharpen_band

    rng = np.random.default_rng(4)
    img = imaging.resize(procedural_texture(24, 32, seed=3, detail=4.0), 128, 96) * 0.8 + 0.1
    assert sharpen_band(img, 0.0) is img
    flat = np.full((20, 30, 3), 0.4)
    np.testing.assert_allclose(sharpen_band(flat, 2.0), flat)  # nothing to sharpen
    for gain in rng.uniform(0.2, 3.0, 4):
        for limit in (False, True):
            out = sharpen_band(img, gain, limit)
            added = out - img
            inside = ((out > 0) & (out < 1)).all(axis=-1)
            # the same amount on R, G and B wherever nothing was clipped: hue is kept
            assert np.ptp(added[inside], axis=-1).max() < 1e-12
            band_sd = [robust_sd(high_band(imaging.luma(x))) for x in (img, out)]
            assert band_sd[1] > band_sd[0]
        y, ys = imaging.luma(img), imaging.luma(sharpen_band(img, gain, limit=True))
        assert (ys >= ndimage.minimum_filter(y, 3) - 1e-9).all()
        assert (ys <= ndimage.maximum_filter(y, 3) + 1e-9).all()
    # the stage applies it to the upscaled view before detail synthesis, only when asked
    low = procedural_texture(24, 32, seed=1)
    plain = super_resolve.run(super_resolve.SuperResolveInput(low, 128, 96), "bicubic")
    sharp = super_resolve.run(super_resolve.SuperResolveInput(low, 128, 96, edge_gain=1.0),
                              "bicubic")
    np.testing.assert_allclose(sharp.upscaled, sharpen_band(plain.upscaled, 1.0))


def test_bicubic_backend_and_factor_one():
    low = procedural_texture(12, 16, seed=1)
    out = super_resolve.run(super_resolve.SuperResolveInput(low, 16, 12), "bicubic")
    assert out.model == "none" and np.array_equal(out.rgb, low)


# ---- edit -------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt, kind", [
    ("a ladybug", "beetle"), ("a yellow sunflower", "flower"), ("a red mushroom", "mushroom"),
    ("a pebble", "stone"), ("a dew drop", "drop"), ("a leaf", "leaf"), ("a tiny house", "house"),
    ("a tree", "tree"), ("a gold coin", "coin"), ("a spaceship", "blob")])
def test_edit_inserts_a_visible_raised_structure_at_the_point(prompt, kind):
    rgb = np.full((64, 64, 3), 0.5)
    out = edit.run(edit.EditInput(rgb, prompt, (32.0, 32.0), seed=1, size=0.25))
    assert out.label.startswith(kind)
    assert out.mask[32, 32] > 0.5 and out.mask[0, 0] == 0
    assert out.height[out.mask > 0.5].max() > 1.0  # it stands out toward the camera
    changed = np.abs(out.rgb - rgb).sum(-1) > 0.05
    assert changed.mean() > 0.05 and not changed[0, 0]


def test_edit_understands_colours_sizes_counts_and_nothing_else():
    from generation.structures import parse_prompt

    r = parse_prompt("three big blue beetles dancing in the style of Monet")
    assert (r.kind, r.count, r.size, r.colour) == ("beetle", 3, 1.35, (0.15, 0.3, 0.85))
    assert set(r.understood) == {"three", "big", "blue", "beetles"}
    rgb = np.full((48, 48, 3), 0.5)
    out = edit.run(edit.EditInput(rgb, "", (24.0, 24.0)))
    assert np.array_equal(out.rgb, rgb) and out.mask.max() == 0 and out.label == ""


# ---- depth ------------------------------------------------------------------------------
def test_registration_recovers_scale_and_shift_with_outliers(plane):
    cam, d, rgb, _ = plane
    d = d + np.linspace(0.0, 2.0, d.shape[0])[:, None]  # a slanted surface
    rng = np.random.default_rng(0)
    predicted = (d - 0.7) / 2.5 + rng.normal(0, 1e-4, d.shape)
    coarse = d.copy()
    coarse[rng.random(d.shape) < 0.1] = 50.0  # outliers: L1 ignores them
    coarse[:5] = np.nan  # undefined rows
    out = depth.register(depth.DepthInput(cam, rgb, coarse), predicted)
    assert out.scale == pytest.approx(2.5, rel=1e-3) and out.shift == pytest.approx(0.7, abs=0.01)
    assert out.fit_error < 1e-3
    np.testing.assert_allclose(out.depth, d, rtol=1e-3)


def test_an_inserted_structure_is_aligned_on_its_own_ring(plane):
    cam, d, rgb, _ = plane
    mask = np.zeros(d.shape)
    mask[16:32, 24:40] = 1.0
    height = mask * 3.0  # 3 pixel footprints toward the camera
    inp = depth.DepthInput(cam, rgb, d, None, mask, height, relief=0.0)
    out = depth.run(inp)
    footprint = d / cam.focal
    np.testing.assert_allclose(out.depth[20:28, 28:36], (d - 3.0 * footprint)[20:28, 28:36],
                               rtol=1e-3)
    np.testing.assert_allclose(out.depth[mask == 0], d[mask == 0], rtol=1e-3)
    assert np.isfinite(out.edit_shift)


def test_depth_without_geometry_uses_the_layout_prior():
    from skimage.data import astronaut

    from generation.imaging import resize

    rgb = resize(astronaut() / 255.0, 64, 64)
    cam = Camera.look_at([0, 0, 0.0], [0, 0, 1.0], width=64, height=64)
    out = depth.run(depth.DepthInput(cam, rgb, depth_ratio=3.0, relief=0.0))
    assert np.isfinite(out.depth).all() and out.fit_pixels == 0
    assert 0.99 <= out.depth.min() and out.depth.max() <= 3.01
    assert out.depth[:10].mean() > out.depth[-10:].mean()  # the top is farther (layout)


def test_fill_depth_background_takes_the_far_side():
    d = np.where(np.arange(20)[None, :] < 10, 1.0, 3.0) * np.ones((10, 20))
    valid = np.ones_like(d, bool)
    valid[:, 8:12] = False  # a disocclusion between a near and a far surface
    out = imaging.fill_depth_background(d, valid)
    assert (out[:, 9:11] > 2.5).all() and np.array_equal(out[valid], d[valid])


# ---- auxiliary views --------------------------------------------------------------------
def test_forward_warp_to_the_same_camera_is_the_identity(plane):
    cam, d, rgb, _ = plane
    w_rgb, w_z, hit = aux_views.forward_warp(cam, d, rgb, cam)
    assert hit.all()
    np.testing.assert_allclose(w_z, d, rtol=1e-9)
    np.testing.assert_allclose(w_rgb, rgb)


def test_orbit_cameras_keep_distance_and_look_at_the_target(plane):
    cam, *_ = plane
    target = np.array([0.3, -0.2, 0.0])
    for yaw, pitch in aux_views.orbit_offsets(4, 10.0):
        c = aux_views.orbit_camera(cam, target, yaw, pitch)
        assert np.linalg.norm(c.position - target) == pytest.approx(
            np.linalg.norm(cam.position - target))
        uv, z = c.project(target[None])
        np.testing.assert_allclose(uv[0], [c.cx, c.cy], atol=1e-6)
        assert (c.fx, c.width) == (cam.fx, cam.width)


def test_aux_views_fill_what_a_small_move_uncovers(plane):
    cam, d, rgb, scene = plane
    near = d.copy()
    near[16:32, 24:40] *= 0.6  # a box in front of the plane: its edges disocclude
    out = aux_views.run(aux_views.AuxViewsInput(cam, rgb, near, np.zeros(3), (), 2, 10.0))
    assert len(out.views) == 2
    for v in out.views:
        assert v.holes.any() and np.isfinite(v.depth).all() and (v.depth > 0).all()
        assert 0 <= v.rgb.min() and v.rgb.max() <= 1 and v.loss_mask.max() == 1.0


# ---- splat init + optimize --------------------------------------------------------------
def test_splat_init_main_and_hole_splats(plane):
    cam, d, rgb, _ = plane
    holes = np.zeros(d.shape, bool)
    holes[5:8, 5:8] = True
    out = splat_init.run(splat_init.SplatInitInput(
        splat_init.InitView(cam, rgb, d), (splat_init.InitView(cam, rgb, d, holes),
                                           splat_init.InitView(cam, rgb, d, holes & False)), 2))
    assert len(out.main) == 64 * 48 and len(out.aux) == 1 and len(out.aux[0]) == 21  # grown 1px (4-connected)
    assert all(c.level == 2 for c in out.chunks)
    np.testing.assert_allclose(out.main.opacities(), 0.1, rtol=1e-5)
    np.testing.assert_allclose(out.main.s_native, (d / cam.focal).ravel(), rtol=1e-5)


def test_optimize_changes_opacity_only_and_keeps_the_old_world(plane):
    cam, d, rgb, scene = plane
    new = splat_init.run(splat_init.SplatInitInput(splat_init.InitView(cam, rgb, d), (), 1))
    old_chunk = scene[0][0]
    old_before = old_chunk.opacity_logits.copy()
    out = optimize.run(optimize.OptimizeInput(new.chunks, optimize.TargetView(cam, rgb), (),
                                              (), iterations=3, threads=1))
    (c,) = out.chunks
    assert out.iterations_run == 3 and out.final_loss < out.initial_loss
    assert np.array_equal(c.positions, new.main.positions)
    assert np.array_equal(c.sh_dc, new.main.sh_dc) and np.array_equal(c.s_native, new.main.s_native)
    assert c.opacities().mean() > 0.12
    assert np.array_equal(old_chunk.opacity_logits, old_before)


# ---- imaging, config, registry ----------------------------------------------------------
def test_l1_fit_is_robust_where_least_squares_is_not():
    rng = np.random.default_rng(1)
    x = rng.uniform(1, 5, 500)
    y = 2.0 * x + 1.0
    y[:100] += 40.0
    a, b = imaging.robust_fit_scale_shift(x, y)
    assert a == pytest.approx(2.0, rel=1e-3) and b == pytest.approx(1.0, abs=1e-2)
    assert imaging.robust_fit_scale_shift(x, y, fit_scale=False)[0] == 1.0


def test_config_from_settings_coerces_and_refuses():
    c = GenerationConfig.from_settings({"zoom_iterations": "3", "detail_strength": "0.5",
                                        "backends": "edit=builtin"})
    assert (c.zoom_iterations, c.detail_strength, c.backend_for("edit")) == (3, 0.5, "builtin")
    with pytest.raises(ConfigError, match="unknown setting 'zoom_iteration'"):
        GenerationConfig.from_settings({"zoom_iteration": 3})
    with pytest.raises(ConfigError, match="outside"):
        GenerationConfig.from_settings({"zoom_long_side": 1})
    with pytest.raises(ConfigError, match="must be int"):
        GenerationConfig.from_settings({"zoom_iterations": "lots"})
    with pytest.raises(ConfigError, match="unknown stage"):
        GenerationConfig.from_settings({"backends": {"paint": "x"}})


def test_a_new_backend_registers_by_name_and_the_pipeline_uses_it(plane):
    from generation.registry import UnknownBackendError

    with pytest.raises(UnknownBackendError, match="known: builtin"):
        context.run(context.ContextInput(np.zeros((4, 4, 3)), "x"), "nope")

    @context.REGISTRY.register("test-constant")
    class Constant:
        def __call__(self, inp):
            return context.ContextOutput("constant caption")

    try:
        out = context.run(context.ContextInput(np.zeros((4, 4, 3)), "x"), "test-constant")
        assert out.caption == "constant caption"
        cfg = GenerationConfig.from_settings({"backends": {"context": "test-constant"}})
        assert cfg.backend_for("context") == "test-constant"
    finally:
        context.REGISTRY._factories.pop("test-constant")
        context.REGISTRY.clear()


def test_detail_texture_ignores_edges_of_the_exemplar():
    """A strong edge in the parent must not become streaks: the synthesized texture has about
    the same energy along both frequency axes, and its amplitude follows the texture, not the
    edge."""
    from generation.detail import radial_average, random_phase_texture, robust_sd

    rng = np.random.default_rng(0)
    grain = rng.standard_normal((64, 64)) * 0.02
    band = grain.copy()
    band[:, 32] += 1.0  # a vertical edge line: its spectrum is a horizontal line
    band[:, 33] -= 1.0
    assert robust_sd(band) == pytest.approx(robust_sd(grain), rel=0.1)
    assert band.std() > 5 * grain.std()  # the plain deviation would be the edge's
    tex = random_phase_texture(np.clip(band, -0.05, 0.05), 128, 128, np.random.default_rng(1))
    spec = np.abs(np.fft.fft2(tex)) ** 2
    along_u, along_v = spec[0, 1:].sum(), spec[1:, 0].sum()
    assert 0.5 < along_u / along_v < 2.0
    # the radial average keeps a radially symmetric spectrum as it is
    y, x = np.mgrid[-32:32, -32:32]
    disc = np.exp(-(x ** 2 + y ** 2) / 50.0)
    assert np.allclose(radial_average(disc), disc, atol=0.08)
