"""Seamless joins: the tone match and the border fade a new level is made with (issue 21)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generation.imaging import blur
from generation.stages.harmonize import HarmonizeInput, run as harmonize, shadow_zone
from generation.tone import (border_band, border_weight, feather, feather_keeping_detail,
                             low_frequency_correction, match_low_frequencies, normalized_blur,
                             seam_stats)

SHAPES = st.tuples(st.integers(4, 24), st.integers(4, 24))
unit = st.floats(0.0, 1.0, allow_nan=False)


def _images(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.random((*shape, 3)), rng.random((*shape, 3))


@settings(max_examples=60, deadline=None)
@given(SHAPES, st.integers(0, 2**31), st.floats(0.5, 6.0),
       st.tuples(st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.floats(-0.3, 0.3)))
def test_a_constant_tone_shift_is_undone_exactly_whatever_the_weights(shape, seed, sigma, shift):
    rng = np.random.default_rng(seed)
    reference = 0.3 + 0.4 * rng.random((*shape, 3))
    weight = (rng.random(shape) > 0.5).astype(float)
    weight[0, 0] = 1.0  # at least one pixel to listen to
    image = reference + np.array(shift)
    fixed, field = match_low_frequencies(image, reference, weight, sigma)
    np.testing.assert_allclose(fixed, reference, atol=1e-9)
    np.testing.assert_allclose(field, -np.broadcast_to(shift, field.shape), atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("limit", [0.0, 1.0])
def test_texture_on_a_clipped_region_keeps_the_reference_s_low_frequencies(seed, limit):
    """A blown-out highlight (or a black shadow) with zero-mean texture on it: clipping
    takes one half of the texture away, so one pass of the match leaves the region off by
    its lost half; matching again on the clipped image brings it back."""
    rng = np.random.default_rng(seed)
    h, w = 60, 90
    reference = np.full((h, w, 3), 0.5)
    reference[:, :40] = limit
    image = reference + (blur(rng.random((h, w, 1)), 1.5) - 0.5) * 0.3
    once = np.clip(image + low_frequency_correction(image, reference, np.ones((h, w)), 2.0),
                   0.0, 1.0)
    fixed, _ = match_low_frequencies(image, reference, np.ones((h, w)), 2.0)
    assert fixed.min() >= 0.0 and fixed.max() <= 1.0
    region = (slice(None), slice(5, 35))
    before = np.abs((blur(once, 4.0) - blur(reference, 4.0))[region].mean())
    after = np.abs((blur(fixed, 4.0) - blur(reference, 4.0))[region].mean())
    assert before > 0.5 / 255 and after < 0.25 * before, (before * 255, after * 255)


@settings(max_examples=40, deadline=None)
@given(SHAPES, st.integers(0, 2**31), st.floats(0.5, 4.0))
def test_what_is_kept_is_never_touched(shape, seed, sigma):
    image, reference = _images(shape, seed)
    keep = (np.random.default_rng(seed + 1).random(shape) > 0.6).astype(float)
    fixed, field = match_low_frequencies(image, reference, np.ones(shape), sigma, keep=keep)
    on = keep == 1.0
    np.testing.assert_array_equal(fixed[on], image[on])
    assert np.all(field[on] == 0.0)


@settings(max_examples=40, deadline=None)
@given(SHAPES, st.integers(0, 2**31), st.floats(0.3, 5.0))
def test_normalized_blur_is_a_local_weighted_mean(shape, seed, sigma):
    rng = np.random.default_rng(seed)
    x = rng.random((*shape, 2))
    w = rng.random(shape) * (rng.random(shape) > 0.3)
    w[0, 0] = 1.0
    out = normalized_blur(x, w, sigma)
    listened = w > 0
    lo, hi = x[listened].min(axis=0), x[listened].max(axis=0)
    assert np.all(out >= lo - 1e-12) and np.all(out <= hi + 1e-12)  # a mean of weighted pixels
    # scaling every weight changes nothing; only weighted pixels matter
    np.testing.assert_allclose(normalized_blur(x, 7.5 * w, sigma), out, rtol=1e-9, atol=1e-12)
    y = np.where(listened[..., None], x, 99.0)
    np.testing.assert_allclose(normalized_blur(y, w, sigma), out, rtol=1e-9, atol=1e-12)


def test_normalized_blur_reaches_over_a_large_masked_hole():
    x = np.full((40, 40), 0.25)
    w = np.ones((40, 40))
    w[5:35, 5:35] = 0.0  # far more than sigma from anything listened to
    out = normalized_blur(x, w, 1.0)
    np.testing.assert_allclose(out, 0.25)
    assert np.all(normalized_blur(x, np.zeros((40, 40)), 1.0) == 0.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 12.0))
def test_border_weight_fades_from_the_edge_to_one(h, w, margin):
    b = border_weight(h, w, margin)
    assert b.shape == (h, w) and np.all((b >= 0) & (b <= 1))
    np.testing.assert_array_equal(b, b[::-1])  # symmetric
    np.testing.assert_array_equal(b, b[:, ::-1])
    if margin > 0:
        assert np.all(b[0] == 0) and np.all(b[:, 0] == 0)  # the outermost ring is the parent's
        v = np.arange(h)[:, None]
        u = np.arange(w)[None, :]
        d = np.minimum(np.minimum(v, h - 1 - v), np.minimum(u, w - 1 - u))
        assert np.all(b[d >= margin] == 1.0)
        # monotone in the distance from the edge
        order = np.argsort(d.ravel(), kind="stable")
        assert np.all(np.diff(b.ravel()[order]) >= -1e-12)
    else:
        assert np.all(b == 1.0)


@settings(max_examples=40, deadline=None)
@given(SHAPES, st.integers(0, 2**31))
def test_feather_is_a_partition_of_unity(shape, seed):
    a, b = _images(shape, seed)
    w = np.random.default_rng(seed + 2).random(shape)
    out = feather(a, b, w)
    assert np.all(out >= np.minimum(a, b) - 1e-12) and np.all(out <= np.maximum(a, b) + 1e-12)
    np.testing.assert_allclose(feather(a, a, w), a)  # weights sum to one: nothing darkens
    np.testing.assert_allclose(feather(a, b, np.ones(shape)), a)
    np.testing.assert_allclose(feather(a, b, np.zeros(shape)), b)


@settings(max_examples=40, deadline=None)
@given(SHAPES, st.integers(0, 2**31), st.floats(0.3, 4.0))
def test_feather_keeping_detail_blends_the_low_frequencies_and_keeps_the_detail(shape, seed, sigma):
    a, b = _images(shape, seed)
    w = np.random.default_rng(seed + 3).random(shape)
    out = feather_keeping_detail(a, b, w, sigma)
    detail = a - blur(a, sigma)
    np.testing.assert_allclose(out, feather(a, blur(b, sigma) + detail, w), atol=1e-12)
    np.testing.assert_allclose(feather_keeping_detail(a, b, np.ones(shape), sigma), a)
    np.testing.assert_allclose(feather_keeping_detail(a, b, np.zeros(shape), sigma),
                               blur(b, sigma) + detail, atol=1e-12)
    np.testing.assert_allclose(feather_keeping_detail(a, a, w, sigma), a, atol=1e-12)
    np.testing.assert_allclose(feather_keeping_detail(a, b, w, 0.0), feather(a, b, w))


@settings(max_examples=40, deadline=None)
@given(SHAPES, st.integers(0, 2**31), unit)
def test_seam_stats_of_an_offset_and_of_nothing(shape, seed, c):
    a, _ = _images(shape, seed)
    none = seam_stats(a, a)
    assert none.mean_abs_255 == pytest.approx(0.0, abs=1e-9) and none.meets()
    s = seam_stats(a + c / 255.0, a)
    assert s.mean_abs_255 == pytest.approx(c, abs=1e-6)
    np.testing.assert_allclose(s.bias_255, c, atol=1e-6)
    flipped = seam_stats(a, a + c / 255.0)
    np.testing.assert_allclose(flipped.bias_255, -c, atol=1e-6)
    assert s.pixels == border_band(*shape).sum()


def test_border_band_is_a_twelfth_of_each_side():
    band = border_band(720, 1280)
    assert band[:60].all() and band[-60:].all() and band[:, :107].all() and band[:, -107:].all()
    assert not band[60:-60, 107:-107].any()


def _scene(h=60, w=90, seed=0):
    """A smooth coarse view, an 'edited' image with a tone shift and fine detail on top,
    and a structure in the middle with its own colour."""
    rng = np.random.default_rng(seed)
    coarse = blur(rng.random((h, w, 3)), 6.0) * 0.5 + 0.25
    detail = (rng.random((h, w, 1)) - 0.5) * 0.1
    edited = np.clip(coarse + np.array([0.03, -0.02, 0.04]) + detail, 0, 1)
    mask = np.zeros((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    mask[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 6) ** 2] = 1.0
    edited[mask > 0] = [0.8, 0.05, 0.05]  # a red structure
    return coarse, edited, mask, detail


def test_harmonize_matches_the_parent_outside_the_edit_and_keeps_the_structure():
    coarse, edited, mask, detail = _scene()
    alpha = np.full(mask.shape, 0.98)
    seen = coarse * alpha[..., None]
    out = harmonize(HarmonizeInput(edited, seen, coarse, alpha, mask, parent_px=4.0,
                                   tone_sigma=0.5, border_fade=0.0))
    before = seam_stats(edited, seen, sigma=2.0)
    after = seam_stats(out.rgb, seen, sigma=2.0)
    assert not before.meets() and after.meets(), (before, after)
    np.testing.assert_array_equal(out.rgb[mask == 1], edited[mask == 1])  # its own colours
    # the detail finer than the parent's pixels survives the match
    far = ~shadow_zone(mask)
    kept = (out.rgb - blur(out.rgb, 1.0))[far]
    assert np.std(kept) > 0.5 * np.std((edited - blur(edited, 1.0))[far])


def test_harmonize_listens_to_a_see_through_parent_as_it_looks():
    """A tone shift made only on a half-transparent band of the parent (what detail
    synthesis does on a dark streak) is taken out there: the match listens wherever the
    parent is seen, not only where it is solid, so the band does not stand out."""
    from generation.stages.observe import HOLE_ALPHA

    coarse, _, _, _ = _scene()
    h, w = coarse.shape[:2]
    alpha = np.full((h, w), 0.98)
    alpha[25:35] = 2 * HOLE_ALPHA  # the band
    seen = coarse * alpha[..., None]
    edited = seen.copy()
    edited[25:35] += np.array([0.06, 0.05, 0.04])
    none = np.zeros((h, w))
    out = harmonize(HarmonizeInput(edited, seen, seen, alpha, none, parent_px=4.0,
                                   tone_sigma=0.5, border_fade=0.0))
    band = np.zeros((h, w), bool)
    band[27:33, 5:-5] = True
    before = np.abs(blur(edited - seen, 2.0)[band]).mean()
    after = np.abs(blur(out.rgb - seen, 2.0)[band]).mean()
    assert after < 0.2 * before, (before, after)


def test_harmonize_fades_the_border_into_the_parent_s_look():
    coarse, edited, mask, _ = _scene()
    alpha = np.ones(mask.shape)
    out = harmonize(HarmonizeInput(edited, coarse, coarse, alpha, mask, parent_px=4.0,
                                   tone_sigma=0.0, border_fade=0.2))
    np.testing.assert_allclose(out.rgb[0], coarse[0])  # the edge is the parent's picture
    np.testing.assert_allclose(out.rgb[:, -1], coarse[:, -1])
    inner = out.fade == 1.0
    np.testing.assert_allclose(out.rgb[inner], edited[inner])
    assert np.all(out.fade[mask == 1] == 1.0)  # an inserted structure never fades
    hard = harmonize(HarmonizeInput(edited, coarse, coarse, alpha, mask, tone_sigma=0.0,
                                    border_fade=0.0))
    np.testing.assert_allclose(hard.rgb, edited)


def test_harmonize_keeps_the_fine_detail_up_to_the_edge_when_asked():
    coarse, edited, mask, _ = _scene()
    alpha = np.ones(mask.shape)
    out = harmonize(HarmonizeInput(edited, coarse, coarse, alpha, mask, parent_px=4.0,
                                   tone_sigma=0.0, border_fade=0.2, fade_detail_px=1.0))
    detail = edited - blur(edited, 1.0)
    edge = out.fade == 0.0
    np.testing.assert_allclose(out.rgb[edge], np.clip(blur(coarse, 1.0) + detail, 0, 1)[edge])
    # the coarse look at the edge is the parent's
    low = blur(out.rgb, 3.0) - blur(coarse, 3.0)
    assert np.abs(low[0]).mean() < 0.5 * np.abs((blur(edited, 3.0) - blur(coarse, 3.0))[0]).mean()
    assert np.all(out.fade[mask == 1] == 1.0)


def test_the_fade_s_detail_setting_is_checked():
    from generation.config import ConfigError, GenerationConfig

    assert GenerationConfig.from_settings({"fade_detail_px": "1.5"}).fade_detail_px == 1.5
    with pytest.raises(ConfigError):
        GenerationConfig.from_settings({"fade_detail_px": "9"})
    with pytest.raises(ConfigError):
        GenerationConfig.from_settings({"fade_detail_px": "-1"})


# ---- the splat fit's own tone shift -------------------------------------------------------
def _tilted_level(colours: np.ndarray, opacity: float = 0.95):
    """Pixel-aligned opaque splats of `colours` [48, 64, 3] on a plane whose top is nearer
    (so at an edge across it the near side's splats spread over the far side's)."""
    from engine.camera import Camera
    from engine.synthetic import pixel_aligned_splats

    cam = Camera.look_at([0, 0, -4.0], [0, 0, 0], fov_y_deg=50, width=64, height=48)
    v = np.arange(48)[:, None] + np.zeros((1, 64))
    return cam, pixel_aligned_splats(cam, 4.0 + 0.04 * v, colours, level=1, opacity=opacity)


def _low_residual(cam, chunks, target, sigma=2.0):
    from generation.stages.observe import render_view

    rgb = render_view(cam, tuple((c, None) for c in chunks))[0]
    return (blur(rgb, sigma) - blur(target, sigma))[6:-6, 6:-6]  # [36, 52, 3] inside the view


def test_the_fit_s_tone_shift_is_corrected_where_it_listens_and_the_structure_kept():
    from generation.stages.harmonize import correct_fit_tone

    v = np.arange(48)[:, None, None] + np.zeros((1, 64, 3))
    target = np.where(v < 24, 0.15, 0.85) + 0.05 * np.sin(np.arange(64) / 3.0)[None, :, None]
    cam, level = _tilted_level(target)
    before = _low_residual(cam, [level], target)
    keep = np.zeros((48, 64))
    keep[30:40, 40:52] = 1.0  # "an inserted structure": its colours are its own
    reference = 1.0 - keep
    fixed, field = correct_fit_tone([level], cam, target, (), reference, keep, sigma=2.0)
    after = _low_residual(cam, fixed, target)
    listen = np.ones((48, 64), bool)
    listen[26:44, 36:56] = False  # the structure and the reach of its blur
    listen = listen[6:-6, 6:-6]
    assert np.abs(before[listen]).max() > 0.02  # the edge moved: several 1/255 off
    # each round removes the residual's lowest frequencies (two rounds: ~60 % of it here)
    assert np.abs(after[listen]).max() < 0.5 * np.abs(before[listen]).max()
    assert np.abs(after[listen]).mean() < 0.4 * np.abs(before[listen]).mean()
    # the structure's splats and every other array keep their values bit for bit
    uv, _ = cam.project(level.world_positions())
    inside = (uv[:, 0] >= 40) & (uv[:, 0] < 52) & (uv[:, 1] >= 30) & (uv[:, 1] < 40)
    np.testing.assert_array_equal(fixed[0].sh_dc[inside], level.sh_dc[inside])
    for name in ("positions", "rotations", "log_scales", "opacity_logits", "s_native"):
        np.testing.assert_array_equal(getattr(fixed[0], name), getattr(level, name))
    # the field is smooth: what it adds has no detail finer than its low-pass
    assert np.abs(field - blur(field, 1.0)).max() < 0.25 * np.abs(field).max()
    # no rounds: nothing changes
    same, none = correct_fit_tone([level], cam, target, (), reference, keep, 2.0, steps=0)
    assert same[0] is level and not none.any()


def test_a_level_already_in_tone_barely_changes():
    from generation.stages.harmonize import correct_fit_tone

    u = np.arange(64)[None, :, None] / 63.0 + np.zeros((48, 1, 3))
    target = 0.2 + u * np.array([0.6, 0.3, 0.1])  # linear across: splats render it as it is
    cam, level = _tilted_level(target)
    fixed, field = correct_fit_tone([level], cam, target, (), np.ones((48, 64)),
                                    np.zeros((48, 64)), sigma=2.0)
    assert np.abs(field[6:-6, 6:-6]).max() < 2.0 / 255
    assert np.abs(_low_residual(cam, fixed, target)).max() <= \
        np.abs(_low_residual(cam, [level], target)).max() + 1e-3


def test_the_fit_tone_setting_is_checked():
    from generation.config import ConfigError, GenerationConfig

    assert GenerationConfig().fit_tone_steps == 2
    assert GenerationConfig.from_settings({"fit_tone_steps": "0"}).fit_tone_steps == 0
    with pytest.raises(ConfigError):
        GenerationConfig.from_settings({"fit_tone_steps": "-1"})


# ---- where the tone match has nothing to listen to ------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1))
def test_harmonic_fill_reproduces_a_linear_field_and_stays_within_its_boundary(seed, a, b, c):
    from generation.tone import harmonic_fill

    rng = np.random.default_rng(seed)
    H, W = 30, 40
    v, u = np.mgrid[0:H, 0:W]
    linear = a * u / W + b * v / H + c
    holes = np.zeros((H, W), bool)
    for _ in range(3):  # blobs away from the image's edge
        cy, cx, r = rng.integers(6, H - 6), rng.integers(6, W - 6), rng.integers(2, 6)
        holes |= (v - cy) ** 2 + (u - cx) ** 2 <= r * r
    holes[:2] = holes[-2:] = False
    holes[:, :2] = holes[:, -2:] = False
    garbage = np.where(holes, rng.normal(0, 5, (H, W)), linear)
    filled = harmonic_fill(garbage, holes)
    np.testing.assert_allclose(filled, linear, atol=1e-4)
    np.testing.assert_array_equal(filled[~holes], garbage[~holes])
    # any boundary: the fill stays between the values around it (maximum principle)
    noisy = np.where(holes, 100.0, rng.random((H, W)))
    out = harmonic_fill(noisy, holes)
    assert out[holes].min() >= -1e-6 and out[holes].max() <= 1 + 1e-6
    assert harmonic_fill(noisy, np.ones((H, W), bool)) is not None


def test_the_tone_field_has_no_edge_around_what_it_cannot_hear():
    """An offset that varies smoothly across the view, and a large disc (a structure and its
    shadow) where the reference is not listened to: inside the disc the field continues the
    offset instead of taking a widened average (which drew the disc's outline)."""
    H, W = 60, 80
    v, u = np.mgrid[0:H, 0:W]
    offset = 0.2 * u / W - 0.1 * v / H  # what the reference differs by, smooth
    image = np.full((H, W, 3), 0.4)
    reference = image + offset[..., None]
    disc = (v - 30) ** 2 + (u - 40) ** 2 <= 15 ** 2
    weight = (~disc).astype(float)
    from generation.tone import low_frequency_correction

    field = low_frequency_correction(image, reference, weight, sigma=2.0)[..., 0]

    def steepest(f):  # the largest change between neighbouring pixels, inside the view
        return max(np.abs(np.diff(f, axis=0))[4:-4, 4:-4].max(),
                   np.abs(np.diff(f, axis=1))[4:-4, 4:-4].max())

    # (the widened average made steps of 2.7x the offset's and missed it by 0.021 inside)
    assert steepest(field) < 2.0 * steepest(offset)
    inside = (v - 30) ** 2 + (u - 40) ** 2 <= 12 ** 2
    assert np.abs(field - offset)[inside].max() < 0.015
