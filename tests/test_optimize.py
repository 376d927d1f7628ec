"""Pixel-aligned initialisation, the 3DGS loss and the per-scale optimisation
(generation.splat_opt)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.camera import Camera
from engine.lod import LodLinks
from engine.synthetic import THIN_RATIO, pixel_aligned_splats, procedural_texture
from generation.cores import background_threads
from generation.raster import SplatTensors, render_chunks
from generation.splat_opt import (OptimizeConfig, Progress, View, init_pixel_aligned, l1,
                                  optimize_splats, photometric_loss, psnr, ssim, ssim_map)
from generation.splat_opt.pixel_init import FOOTPRINT

S = 32


def _camera(size: int = S) -> Camera:
    return Camera.look_at([0.0, 0.0, -3.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=size,
                          height=size)


def _slanted_depth(size: int = S) -> np.ndarray:
    v, u = (np.mgrid[0:size, 0:size] + 0.5) / size
    return 2.5 + 0.6 * v + 0.2 * u


def _target(size: int = S, seed: int = 1) -> np.ndarray:
    return procedural_texture(size, size, seed, detail=2.0)


def _arrays(chunk):
    return {k: getattr(chunk, k).copy() for k in ("origin", "positions", "rotations",
                                                 "log_scales", "opacity_logits", "sh_dc",
                                                 "s_native", "sh_rest")}


FAST = OptimizeConfig(iterations=8, num_threads=1)


# ---- initialisation ------------------------------------------------------------------------

def test_init_is_the_engine_initialisation_on_smooth_depth():
    cam = _camera()
    depth, rgb = _slanted_depth(), _target()
    ours = init_pixel_aligned(cam, depth, (rgb * 255).round().astype(np.uint8), stride=2)
    engine = pixel_aligned_splats(cam, depth, np.round(rgb * 255) / 255, stride=2,
                                  footprint=FOOTPRINT)
    for k, v in _arrays(engine).items():
        np.testing.assert_array_equal(getattr(ours, k), v, err_msg=k)
    assert len(ours) == (S // 2) ** 2
    np.testing.assert_allclose(ours.opacities(), 0.1, rtol=1e-6)
    # s_native = depth / sqrt(fx fy) of the creating camera
    np.testing.assert_allclose(ours.s_native, cam.pixel_scale(ours.world_positions()), rtol=1e-5)


def test_init_footprint_is_half_the_pixel_spacing_by_default():
    cam = _camera()
    depth = np.full((S, S), 3.0)  # fronto-parallel: spacing = depth / focal = s_native
    for footprint in (FOOTPRINT, 1.0):
        chunk = init_pixel_aligned(cam, depth, _target(), footprint=footprint)
        sigma = np.exp(chunk.log_scales[:, :2].astype(np.float64))
        np.testing.assert_allclose(sigma, footprint * np.repeat(chunk.s_native[:, None], 2, 1),
                                   rtol=1e-3)
    assert FOOTPRINT == 0.5


def test_init_mask_and_invalid_depth_limit_the_splats():
    cam = _camera()
    depth = _slanted_depth()
    depth[:4] = np.nan
    mask = np.zeros((S, S), bool)
    mask[:, : S // 2] = True
    chunk = init_pixel_aligned(cam, depth, _target(), mask=mask)
    uv, _ = cam.project(chunk.world_positions())
    assert len(chunk) > 0 and (uv[:, 0] < S // 2).all() and (uv[:, 1] > 4).all()


def test_init_caps_footprints_stretched_by_depth_discontinuities():
    cam = _camera()
    depth = np.full((S, S), 3.0)
    depth[:, S // 2:] = 30.0  # an occlusion edge: central differences jump 27 units
    raw = pixel_aligned_splats(cam, depth, _target())
    capped = init_pixel_aligned(cam, depth, _target())
    ratio = np.exp(capped.log_scales[:, :2].astype(np.float64)) / capped.s_native[:, None]
    assert np.exp(raw.log_scales[:, :2].astype(np.float64)).max() > 10.0
    assert ratio.max() <= 4.0 * (1 + 1e-5)
    thin = capped.log_scales[:, 2] - capped.log_scales[:, :2].min(1)
    assert (thin <= math.log(THIN_RATIO) + 1e-5).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=np.ones((5, 5))), "depth"),
    (dict(rgb=np.zeros((S, S))), "rgb"),
    (dict(rgb=np.full((S, S, 3), np.nan)), "NaN"),
    (dict(mask=np.ones((3, 3), bool)), "mask"),
    (dict(stride=0), "stride"),
])
def test_init_refuses_bad_input_with_one_line(kwargs, match):
    args = dict(camera=_camera(), depth=_slanted_depth(), rgb=_target())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        init_pixel_aligned(**args)


# ---- losses ----------------------------------------------------------------------------------

def _ssim_3dgs(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """The 3DGS reference: one 2-D 11x11 Gaussian window conv per channel, [C, H, W]."""
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-x ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    w = (g[:, None] @ g[None, :]).expand(3, 1, 11, 11).to(img1.dtype).contiguous()

    def conv(t):
        return F.conv2d(t[None], w, padding=5, groups=3)[0]

    mu1, mu2 = conv(img1), conv(img2)
    s11 = conv(img1 * img1) - mu1 ** 2
    s22 = conv(img2 * img2) - mu2 ** 2
    s12 = conv(img1 * img2) - mu1 * mu2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
    return m.mean()


def test_ssim_matches_the_3dgs_two_dimensional_window():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 36, 3, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(40, 36, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    want = _ssim_3dgs(a.permute(2, 0, 1), b.permute(2, 0, 1))
    torch.testing.assert_close(ssim(a, b), want, rtol=1e-12, atol=1e-12)
    assert float(ssim(a, a)) == pytest.approx(1.0)
    assert ssim_map(a, b).shape == (40, 36)


def test_photometric_loss_is_the_3dgs_mix_and_masks_weight_pixels():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(20, 20, 3, generator=g)
    b = torch.rand(20, 20, 3, generator=g)
    want = 0.8 * (a - b).abs().mean() + 0.2 * (1 - ssim(a, b))
    torch.testing.assert_close(photometric_loss(a, b), want)
    mask = torch.zeros(20, 20)
    mask[:, :10] = 1
    torch.testing.assert_close(l1(a, b, mask), (a - b)[:, :10].abs().mean())
    c = b.clone()
    c[:, 10:] = 0.0  # differences outside the mask do not count
    torch.testing.assert_close(l1(a, b, mask), l1(a, c, mask))
    assert psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1)) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf


# ---- optimisation ----------------------------------------------------------------------------

def _setup(size: int = S):
    cam = _camera(size)
    target = _target(size)
    return cam, target, init_pixel_aligned(cam, _slanted_depth(size), target)


def test_positions_colours_and_native_scale_stay_bit_identical():
    cam, target, chunk = _setup()
    before = _arrays(chunk)
    result = optimize_splats(chunk, View(cam, target), config=FAST)
    (out,) = result.chunks
    assert out is not chunk
    for k in ("origin", "positions", "sh_dc", "s_native", "sh_rest"):
        got = getattr(out, k)
        assert got.dtype == before[k].dtype and got.tobytes() == before[k].tobytes(), k
        assert not np.shares_memory(got, getattr(chunk, k)), k
    assert out.level == chunk.level
    for k, v in before.items():  # the input chunk is untouched
        assert getattr(chunk, k).tobytes() == v.tobytes(), k
    for k in ("rotations", "log_scales", "opacity_logits"):  # what is optimised did change
        assert not np.array_equal(getattr(out, k), before[k]), k
    out.validate()
    assert result.stats.final_loss < result.stats.initial_loss


def test_optimisation_is_deterministic_with_a_seed():
    cam, target, chunk = _setup()
    aux_cam = Camera.look_at([0.2, 0.0, -3.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=S, height=S)
    aux = [(aux_cam, _target(seed=2)), (aux_cam, _target(seed=3), np.ones((S, S), bool))]
    config = OptimizeConfig(iterations=5, num_threads=1, aux_views_per_step=1, seed=4)
    a = optimize_splats(chunk, (cam, target), aux, config=config)
    b = optimize_splats(chunk, (cam, target), aux, config=config)
    assert a.stats.losses == b.stats.losses
    for x, y in zip(_arrays(a.chunks[0]).values(), _arrays(b.chunks[0]).values()):
        assert x.tobytes() == y.tobytes()


def test_progress_is_reported_and_cancel_stops_between_iterations():
    cam, target, chunk = _setup()
    seen: list[Progress] = []
    stop = threading.Event()

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.iteration == 3:
            stop.set()

    result = optimize_splats(chunk, View(cam, target), config=OptimizeConfig(
        iterations=50, num_threads=1), progress=progress, cancel=stop)
    assert [p.iteration for p in seen] == [1, 2, 3] and seen[0].iterations == 50
    assert result.stats.cancelled and result.stats.iterations_run == 3
    assert len(result.chunks) == 1 and len(result.chunks[0]) == len(chunk)
    calls = []
    result = optimize_splats(chunk, View(cam, target), config=FAST,
                             cancel=lambda: calls.append(1) or len(calls) > 2)
    assert result.stats.cancelled and result.stats.iterations_run == 2


def test_torch_threads_are_limited_and_restored():
    cam, target, chunk = _setup()
    before = torch.get_num_threads()
    seen = []
    result = optimize_splats(chunk, View(cam, target), config=OptimizeConfig(iterations=2),
                             progress=lambda p: seen.append(torch.get_num_threads()))
    assert seen == [background_threads()] * 2 and result.stats.threads == background_threads()
    assert torch.get_num_threads() == before
    assert background_threads() >= 1


def test_old_world_is_rendered_frozen_and_modulated():
    cam, target, chunk = _setup()
    # an old level in front of half the view: it changes what the new splats must do
    old_cam = _camera()
    mask = np.zeros((S, S), bool)
    mask[:, : S // 2] = True
    old = init_pixel_aligned(old_cam, _slanted_depth() - 0.3, _target(seed=9), mask=mask)
    old = type(old)(old.origin, old.positions, old.rotations, old.log_scales,
                    np.full(len(old), 4.0, np.float32), old.sh_dc, old.s_native)
    old_before = _arrays(old)
    alone = optimize_splats(chunk, View(cam, target), config=FAST)
    with_old = optimize_splats(chunk, View(cam, target), old_world=[(old, None)], config=FAST)
    assert not np.array_equal(alone.chunks[0].opacity_logits, with_old.chunks[0].opacity_logits)
    for k, v in old_before.items():
        assert getattr(old, k).tobytes() == v.tobytes(), k
    # as a level 4x finer than this camera, linked to a parent 2x coarser than itself, the
    # old splats fade out completely here: the result is as if they were not there
    fine = type(old)(old.origin, old.positions, old.rotations, old.log_scales,
                     old.opacity_logits, old.sh_dc, old.s_native / 4)
    faded = LodLinks(fine.s_native * 2, np.zeros(len(old), np.float32))
    assert (cam.pixel_scale(fine.world_positions()) > faded.s_parent).all()
    hidden = optimize_splats(chunk, View(cam, target), old_world=[(fine, faded)], config=FAST)
    for x, y in zip(_arrays(alone.chunks[0]).values(), _arrays(hidden.chunks[0]).values()):
        np.testing.assert_array_equal(x, y)


def test_auxiliary_views_and_masks_enter_the_loss():
    cam, target, chunk = _setup()
    aux_cam = Camera.look_at([0.3, 0.1, -3.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=S, height=S)
    aux_target = render_chunks(aux_cam, [(chunk, None)]).rgb.numpy()
    main_only = optimize_splats(chunk, View(cam, target), config=FAST)
    both = optimize_splats(chunk, View(cam, target), [View(aux_cam, aux_target)], config=FAST)
    assert both.stats.losses != main_only.stats.losses
    mask = np.zeros((S, S))
    mask[8:24, 8:24] = 1.0
    masked = optimize_splats(chunk, View(cam, target, mask), config=FAST)
    assert masked.stats.losses != main_only.stats.losses
    with pytest.raises(ValueError, match="target"):
        optimize_splats(chunk, View(cam, target[:10]), config=FAST)
    with pytest.raises(ValueError, match="mask"):
        optimize_splats(chunk, View(cam, target, np.ones((3, 3))), config=FAST)


def test_several_new_chunks_come_back_in_order():
    cam, target, chunk = _setup()
    half = len(chunk) // 2
    a, b = chunk.take(np.arange(half)), chunk.take(np.arange(half, len(chunk)))
    result = optimize_splats([a, b], View(cam, target), config=FAST)
    assert [len(c) for c in result.chunks] == [len(a), len(b)]
    np.testing.assert_array_equal(result.chunks[1].positions, b.positions)


def test_init_then_optimise_fits_a_real_photo():
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    size = 64
    cam = _camera(size)
    photo = np.asarray(Image.fromarray(skimage_data.coffee()).resize((size, size),
                                                                      Image.LANCZOS))
    chunk = init_pixel_aligned(cam, _slanted_depth(size), photo)
    result = optimize_splats(chunk, View(cam, photo),
                             config=OptimizeConfig(iterations=40, num_threads=1))
    st = SplatTensors.from_chunks(list(result.chunks), origin=cam.position)
    with torch.no_grad():
        image = st.render(cam).rgb.clamp(0, 1)
    fit = psnr(image, torch.as_tensor(photo / 255.0, dtype=torch.float32))
    assert fit == pytest.approx(result.stats.main_psnr, abs=1e-3)
    assert fit >= 30.0


@pytest.mark.parametrize("random_background", [True, False])
def test_dark_surfaces_become_opaque(random_background):
    """A dark target fits as well half-transparent over a black background; random backgrounds
    (the default) make the optimiser close the surface, so the world shows no holes there."""
    import dataclasses

    cam = _camera()
    dark = np.zeros((S, S, 3))  # black: over a black background any opacity fits exactly
    chunk = init_pixel_aligned(cam, _slanted_depth(), dark, opacity=0.05)
    config = dataclasses.replace(FAST, iterations=40, random_background=random_background)
    (out,) = optimize_splats(chunk, View(cam, dark), config=config).chunks
    alpha = render_chunks(cam, [(out, None)]).alpha.detach().numpy()
    inner = alpha[4:-4, 4:-4]
    if random_background:
        assert np.median(inner) > 0.9
    else:  # the failure the default avoids
        assert np.median(inner) < 0.9


@pytest.mark.parametrize("iterations", [1, 2, 10])
def test_a_short_budget_still_closes_the_surface(iterations):
    """Adam moves a logit by about lr per step: the opacity rate is raised so that even a one-
    or two-step draft takes half-pixel splats from 0.1 to opaque (else the world is see-through
    and the next zoom finds nothing to zoom into)."""
    import dataclasses

    from generation.splat_opt.optimize import OPACITY_TRAVEL, opacity_lr

    config = dataclasses.replace(FAST, iterations=iterations)
    assert opacity_lr(config) == pytest.approx(max(0.5, OPACITY_TRAVEL / iterations))
    cam = _camera()
    chunk = init_pixel_aligned(cam, _slanted_depth(), _target())
    (out,) = optimize_splats(chunk, View(cam, _target()), config=config).chunks
    alpha = render_chunks(cam, [(out, None)]).alpha.detach().numpy()
    assert np.median(alpha[4:-4, 4:-4]) > 0.9


def test_a_fit_for_a_larger_screen_sees_the_screen_s_antialias_term():
    """The rasterizer's 0.3 px^2 widening is in the pixels it draws: a level made at a coarser
    grid than it is shown at and rendered with the display's term (scaled to its grid) covers
    about what the display shows, where the full term would lean on a widening the display
    never gives (issue 21)."""
    from generation.sizes import display_low_pass_px2

    cam = _camera()
    big = cam.resampled(3 * S, 3 * S)
    chunk = init_pixel_aligned(cam, _slanted_depth(), _target(), opacity=0.3)
    default = render_chunks(cam, [(chunk, None)]).alpha.numpy()
    same = render_chunks(cam, [(chunk, None)], low_pass_px2=0.3).alpha.numpy()
    np.testing.assert_array_equal(default, same)
    scaled = render_chunks(cam, [(chunk, None)],
                           low_pass_px2=display_low_pass_px2(S, 3 * S)).alpha.numpy()
    shown = render_chunks(big, [(chunk, None)]).alpha.numpy()
    inner, inner3 = (slice(4, -4),) * 2, (slice(12, -12),) * 2
    assert default[inner].mean() > shown[inner3].mean() + 0.02  # the full term flatters
    assert abs(scaled[inner].mean() - shown[inner3].mean()) < 0.5 * abs(
        default[inner].mean() - shown[inner3].mean())


def test_close_coverage_makes_a_thin_level_solid_and_touches_nothing_else():
    from generation.stages.optimize import close_coverage

    cam = _camera()
    thin = init_pixel_aligned(cam, _slanted_depth(), _target(), opacity=0.35)
    before = render_chunks(cam, [(thin, None)]).alpha.numpy()
    (solid,), mean_before = close_coverage((thin,), cam)
    after = render_chunks(cam, [(solid, None)]).alpha.numpy()
    inner = (slice(3, -3),) * 2
    assert before[inner].mean() < 0.9 and mean_before < 0.9
    assert after[inner].min() > 0.97 and after[inner].mean() > 0.99
    assert (solid.opacities() >= thin.opacities()).all()
    for k, v in _arrays(thin).items():
        if k != "opacity_logits":
            np.testing.assert_array_equal(getattr(solid, k), v)
    # an already solid level comes back unchanged
    opaque = init_pixel_aligned(cam, _slanted_depth(), _target(), opacity=0.99, footprint=1.0)
    (same,), _ = close_coverage((opaque,), cam)
    changed = same.opacity_logits != opaque.opacity_logits
    assert changed.mean() < 0.2  # only the splats on the view's outermost pixels


def test_the_pipeline_renders_where_the_fit_runs(monkeypatch):
    """observe's renders (the old world at C_i, `close_coverage`, `correct_fit_tone`) use
    `generation.raster.default_device`, as the optimiser does: on a GPU the level's own
    renders at twice its working grid are the size of the screen."""
    import generation.raster as raster
    from generation.stages.observe import render_view

    seen = []
    real = raster.render_chunks

    def spy(camera, chunks, *args, **kwargs):
        seen.append(torch.device(kwargs.get("device", "cpu")))
        return real(camera, chunks, *args, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(raster, "render_chunks", spy)
    monkeypatch.setattr(raster, "default_device", lambda: torch.device("cuda"))
    cam = _camera()
    render_view(cam, ((init_pixel_aligned(cam, _slanted_depth(), _target()), None),))
    assert seen == [torch.device("cuda")]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_close_coverage_on_the_gpu_matches_the_cpu():
    from generation.stages.optimize import close_coverage

    cam = _camera()
    thin = init_pixel_aligned(cam, _slanted_depth(), _target(), opacity=0.35)
    (gpu,), mean_gpu = close_coverage((thin,), cam)
    with pytest.MonkeyPatch.context() as mp:
        import generation.raster as raster
        mp.setattr(raster, "default_device", lambda: torch.device("cpu"))
        (cpu,), mean_cpu = close_coverage((thin,), cam)
    assert abs(mean_gpu - mean_cpu) < 0.01
    assert np.abs(gpu.opacities() - cpu.opacities()).mean() < 0.02


@pytest.mark.parametrize("setting, cuda, expected", [
    ("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"),
    ("cuda:1", True, "cuda:1"), ("cuda", False, "!no CUDA GPU"), ("cuda:2", True, "!2 CUDA"),
    ("cuda:x", True, "!must be auto, cpu, cuda or cuda:N")])
def test_the_device_setting_decides_where_the_pipeline_renders_and_fits(
        monkeypatch, setting, cuda, expected):
    """`device = "cpu"` in a config keeps the builtin renders and the fit on the CPU on a
    machine with CUDA (the working size already followed the setting); a CUDA device the
    machine does not have is a one-line error before any work."""
    import generation.raster as raster
    from generation.config import ConfigError, GenerationConfig
    from generation.pipeline import _set_threads

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if cuda else 0)
    monkeypatch.setattr(raster.scene, "_device_policy", "auto")  # restored after the test
    threads = torch.get_num_threads()
    try:
        if not expected.startswith("!"):
            _set_threads(GenerationConfig(device=setting, num_threads=threads))
            assert raster.default_device() == torch.device(expected)
        else:
            with pytest.raises(ConfigError, match=expected[1:]):
                _set_threads(GenerationConfig(device=setting, num_threads=threads))
    finally:
        torch.set_num_threads(threads)


# ---- the far surface under depth edges ------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from generation.splat_opt import init_under_edges, under_edge_layer  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.integers(4, 20), st.integers(4, 20), st.integers(0, 3), st.floats(1.0, 5.0),
       st.floats(1.05, 4.0), st.integers(0, 2**31 - 1))
def test_under_edge_layer_is_the_far_side_carried_band_pixels_under_the_near_one(
        h, w, band, near, step, seed):
    """A random near rectangle in front of a far plane (seen at a focal length long enough
    that no slope counts): the mask is exactly the near pixels within `band` (Chebyshev) of a
    far pixel, they take the far depth and a far pixel's colour, and nothing else changes."""
    rng = np.random.default_rng(seed)
    depth = np.full((h, w), near * step)
    r0, c0 = rng.integers(0, h), rng.integers(0, w)
    r1, c1 = rng.integers(r0, h) + 1, rng.integers(c0, w) + 1
    depth[r0:r1, c0:c1] = near
    rgb = rng.uniform(0, 1, (h, w, 3))
    d, c, mask = under_edge_layer(depth, rgb, band, focal_px=1e9)
    far = depth > near
    rr, cc = np.nonzero(far)
    expected = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            if not far[i, j] and len(rr):
                expected[i, j] = np.maximum(np.abs(rr - i), np.abs(cc - j)).min() <= band
    np.testing.assert_array_equal(mask, expected)
    assert np.allclose(d[mask], near * step) and np.array_equal(d[~mask], depth[~mask])
    far_colours = {tuple(x) for x in rgb[far]}
    assert all(tuple(x) in far_colours for x in c[mask])


def test_under_edge_layer_leaves_smooth_surfaces_alone():
    d, _, mask = under_edge_layer(_slanted_depth(), _target(), 2, focal_px=1e9)  # < 2 % / 2 px
    assert not mask.any()


def test_a_steep_ramp_is_an_edge_only_where_the_image_resolves_it():
    """Depth rising 3 % a pixel: seen at a 600-px focal length that is a surface slanted
    past 85 degrees, an occlusion edge; at a 40-px one (a tiny image) it is a slope of 50
    degrees, and gets nothing under it."""
    depth = np.tile(2.0 * 1.03 ** np.arange(S), (S, 1))
    assert under_edge_layer(depth, _target(), 2, focal_px=600.0)[2][:, :-2].all()
    assert not under_edge_layer(depth, _target(), 2, focal_px=40.0)[2].any()


def test_a_camera_flying_in_sees_the_far_side_not_the_background_at_an_edge():
    """A near half-plane over a far one, with nothing bridging the edge (in a fitted E0 the
    stretched surfels there end up see-through): from a camera moved toward the edge and to
    its side, the far side's strip under the near one is uncovered. Without the strip the
    background shows there; with it the view stays solid."""
    size = 48
    cam = _camera(size)
    depth = np.full((size, size), 4.5)
    depth[:, : size // 2] = 3.0  # the near half on the left
    rgb = _target(size)
    main = init_pixel_aligned(cam, depth, rgb, opacity=0.95, max_stretch=1.0)
    under = init_under_edges(cam, depth, rgb, 2)
    assert len(under) == 2 * size  # two columns of the near side, the far side's depth
    np.testing.assert_allclose(under.world_positions()[:, 2], 1.5, atol=1e-6)
    # 3x closer to the edge's middle, looking the same way, moved right: the far side slides
    # out from under the near one by less than the strip (about 1.7 main-view pixels)
    T = cam.T_world_camera.copy()
    edge = cam.unproject(np.array([[size / 2, size / 2]]), np.array([3.0]))[0]
    T[:3, 3] = cam.position + (2 / 3) * (edge - cam.position) + T[:3, 0] * 0.1
    near = Camera(T, cam.fx, cam.fy, cam.cx, cam.cy, size, size, cam.near, cam.far)
    without = render_chunks(near, [(main, None)]).alpha.numpy()
    with_strip = render_chunks(near, [(main, None), (under, None)]).alpha.numpy()
    solid = np.median(without)  # the surfaces themselves (opacity 0.95, half-pixel splats)
    gap = without < 0.5
    assert gap.any() and solid > 0.9  # a gap along the edge
    assert with_strip[gap].min() > solid - 0.05  # the far side's strip fills it
    assert (with_strip >= without - 1e-6).all()
