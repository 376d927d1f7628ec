"""The differentiable rasterizer (generation.raster) against its oracles: gsplat's pure-torch
projection, a dense all-pixels compositor, finite differences (gradcheck), the engine's numpy
reference renderer, and gsplat's CUDA rasterizer when a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.camera import Camera
from engine.lod import LodLinks
from engine.modulation import alpha as modulation_alpha
from engine.splats import SplatChunk, normalize_quaternions, rgb_to_sh_dc
from generation.raster import (SplatTensors, composite_dense, modulation_at, project,
                               rasterize, render_chunks)
from generation.raster.projection import quats_to_rotmats


def _camera(width: int = 24, height: int = 20, fov: float = 50.0,
            eye=(0.0, 0.0, -3.0), target=(0.0, 0.0, 0.0)) -> Camera:
    return Camera.look_at(eye, target, fov_y_deg=fov, width=width, height=height)


def _scene(n: int, seed: int, dtype=torch.float64, spread: float = 0.5, opacity=(0.05, 0.95)):
    """Random splats around the world origin: (means, quats, scales, opacities, colors)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * spread
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 - 2.5)
    opac = torch.rand(n, generator=g, dtype=dtype) * (opacity[1] - opacity[0]) + opacity[0]
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, quats, scales, opac, colors


def _dense(means, quats, scales, opac, colors, cam, bg, modulation=None):
    p = project(means, quats, scales, cam)
    o = opac if modulation is None else opac * modulation
    keep = p.depths > cam.near
    if modulation is not None:
        keep &= modulation > 0.01  # the modulation cull of docs/design.md idea 3
    idx = torch.nonzero(keep).squeeze(1)
    return composite_dense(p.means2d[idx], p.conics[idx], o[idx], colors[idx], p.depths[idx],
                           cam.width, cam.height, bg)


# ---- projection vs gsplat's pure-torch reference ------------------------------------------

def test_projection_matches_gsplat_torch_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    cam = Camera.look_at([0.3, -0.2, -3.0], [0.1, 0.0, 0.0], fov_y_deg=55, width=64, height=48)
    means, quats, scales, _, _ = _scene(200, seed=1, spread=0.4)
    means[:40, 0] += torch.linspace(-6.0, 6.0, 40, dtype=means.dtype)  # some beside the camera
    means[:40, 2] -= 2.0
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    R = quats_to_rotmats(quats)
    ours_cov = (R * scales[:, None, :] ** 2) @ R.transpose(1, 2)
    torch.testing.assert_close(ours_cov, covars, rtol=1e-10, atol=1e-14)
    viewmat = torch.as_tensor(cam.T_camera_world)[None]
    K = torch.as_tensor(cam.K)[None]
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmat, K, cam.width, cam.height, eps2d=0.3)
    ours = project(means, quats, scales, cam)
    # both linearise a centre beyond 1.3x the field of view at the nearest direction inside it
    outside = ((ours.means2d[:, 0] < -0.15 * cam.width) | (ours.means2d[:, 0] > 1.15 * cam.width)
               | (ours.means2d[:, 1] < -0.15 * cam.height)
               | (ours.means2d[:, 1] > 1.15 * cam.height))
    assert outside.sum() > 10
    torch.testing.assert_close(ours.means2d, means2d[0], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(ours.depths, depths[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.conics, conics[0], rtol=1e-8, atol=1e-10)


def test_projection_is_precise_far_from_the_world_origin():
    """float32 offsets from a float64 origin 1e6 away project like the same scene at 0."""
    means, quats, scales, _, _ = _scene(50, seed=2, dtype=torch.float32, spread=0.01)
    shift = np.array([1e6, -2e6, 3e6])
    near = Camera.look_at([0, 0, -0.1], [0, 0, 0], fov_y_deg=40, width=64, height=64)
    far = Camera.look_at(shift + [0, 0, -0.1], shift, fov_y_deg=40, width=64, height=64)
    a = project(means, quats, scales, near)
    b = project(means, quats, scales, far, origin=shift)
    torch.testing.assert_close(a.means2d, b.means2d, rtol=0, atol=1e-3)
    torch.testing.assert_close(a.conics, b.conics, rtol=1e-3, atol=1e-6)


# ---- compositing vs the dense oracle ------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_patch_compositor_matches_dense_reference(seed, dtype, tol):
    cam = _camera(width=33, height=27)
    scene = _scene(120, seed, dtype=dtype, spread=0.7, opacity=(0.02, 1.0))
    bg = torch.tensor([0.2, 0.4, 0.6], dtype=dtype)
    out = rasterize(*scene, cam, background=bg)
    ref = _dense(*scene, cam, bg)
    assert out.backend == "torch"
    for got, want in zip((out.rgb, out.alpha, out.depth), ref[:3]):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    # the median depth picks one splat's depth: compare where it is well defined
    torch.testing.assert_close(out.median_depth, ref[3], rtol=tol, atol=tol)
    assert out.alpha.max() <= 1.0 and (out.alpha > 0).float().mean() > 0.5


def test_median_depth_is_where_alpha_crosses_one_half():
    cam = _camera(width=16, height=16)
    # three big flat splats on the axis, opacities 0.3, 0.3, 0.9 at depths 2, 2.5, 3
    means = torch.tensor([[0, 0, -1.0], [0, 0, -0.5], [0, 0, 0.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=torch.float64)
    scales = torch.full((3, 3), 100.0, dtype=torch.float64)  # flat across the image
    colors = torch.eye(3, dtype=torch.float64)
    out = rasterize(means, quats, scales, torch.tensor([0.3, 0.3, 0.9], dtype=torch.float64),
                    colors, cam)
    # T in front: 1, 0.7, 0.49 -> the last fragment with T > 0.5 is the second splat
    assert torch.allclose(out.median_depth, torch.tensor(2.5, dtype=torch.float64))
    w = torch.tensor([0.3, 0.7 * 0.3, 0.49 * 0.9], dtype=torch.float64)
    full = torch.full((16, 16), float(w.sum()), dtype=torch.float64)
    torch.testing.assert_close(out.alpha, full, rtol=1e-4, atol=0)
    z = float((w * torch.tensor([2.0, 2.5, 3.0], dtype=torch.float64)).sum() / w.sum())
    torch.testing.assert_close(out.depth, torch.full_like(full, z), rtol=1e-4, atol=0)
    torch.testing.assert_close(out.rgb[3, 5], w, rtol=1e-4, atol=0)


def test_bands_and_recomputed_backward_give_the_same_image_and_gradients():
    cam = _camera(width=40, height=30)
    scene = _scene(150, seed=5, dtype=torch.float64, spread=0.6)

    def run(**kw):
        leaves = [t.clone().requires_grad_(True) for t in scene]
        out = rasterize(*leaves, cam, background=(0.1, 0.1, 0.1), **kw)
        g = torch.Generator().manual_seed(0)
        loss = sum((x * torch.randn(x.shape, generator=g, dtype=x.dtype)).sum()
                   for x in (out.rgb, out.alpha, out.depth))
        loss.backward()
        return [out.rgb, out.alpha, out.depth, out.median_depth] + [t.grad for t in leaves]

    default = run()
    banded = run(max_band_fragments=60, cache_bytes=0)  # ~one band per row, nothing cached
    for a, b in zip(default, banded):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_analytic_gradients_match_autograd_through_the_dense_reference():
    cam = _camera(width=30, height=26)
    scene = _scene(80, seed=7, dtype=torch.float64, spread=0.6)
    bg = torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64)
    mod = torch.rand(80, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in scene]
        rgb, alpha, depth = fn(leaves)
        g = torch.Generator().manual_seed(1)
        loss = sum((x * torch.randn(x.shape, generator=g, dtype=x.dtype)).sum()
                   for x in (rgb, alpha, depth))
        loss.backward()
        return [t.grad for t in leaves]

    def patch(leaves):
        o = rasterize(*leaves, cam, background=bg, modulation=mod)
        return o.rgb, o.alpha, o.depth

    for a, b in zip(grads(patch), grads(lambda l: _dense(*l, cam, bg, mod)[:3])):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_gradcheck_float64_tiny_scene():
    cam = _camera(width=12, height=10, fov=40)
    scene = _scene(6, seed=11, dtype=torch.float64, spread=0.25, opacity=(0.2, 0.9))
    scene[2].mul_(2.5)  # footprints of a few pixels
    leaves = tuple(t.clone().requires_grad_(True) for t in scene)

    def f(means, quats, scales, opac, colors):
        out = rasterize(means, quats, scales, opac, colors, cam, background=(0.2, 0.3, 0.4))
        return out.rgb, out.alpha, out.depth

    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-5, rtol=1e-4)


# ---- modulation, culling and scene helpers -------------------------------------------------

def test_modulation_scales_opacity_and_culls_faded_splats():
    cam = _camera()
    scene = _scene(40, seed=3, dtype=torch.float64)
    mod = torch.linspace(0.0, 1.0, 40, dtype=torch.float64)
    out = rasterize(*scene, cam, modulation=mod)
    ref = _dense(*scene, cam, torch.zeros(3, dtype=torch.float64), mod)
    torch.testing.assert_close(out.rgb, ref[0], rtol=1e-10, atol=1e-10)
    assert out.drawn == int(((mod > 0.01) & (scene[3] * mod >= 1 / 255)).sum())
    none = rasterize(*scene, cam, modulation=torch.full((40,), 0.005, dtype=torch.float64),
                     background=(1.0, 0.0, 0.0))
    assert none.drawn == 0 and torch.all(none.rgb == torch.tensor([1.0, 0.0, 0.0]))
    assert torch.all(none.alpha == 0) and torch.all(none.depth == 0)


def test_splats_behind_the_camera_are_culled():
    cam = _camera()
    means, quats, scales, opac, colors = _scene(20, seed=4, dtype=torch.float64)
    behind = means.clone()
    behind[:, 2] = -4.0 - behind[:, 2].abs()  # camera at z = -3 looking at +z
    out = rasterize(behind, quats, scales, opac, colors, cam)
    assert out.drawn == 0 and torch.all(out.alpha == 0)


def test_rejects_mismatched_shapes():
    cam = _camera()
    means, quats, scales, opac, colors = _scene(5, seed=0)
    with pytest.raises(ValueError, match="quats"):
        rasterize(means, quats[:4], scales, opac, colors, cam)
    with pytest.raises(ValueError, match="modulation"):
        rasterize(means, quats, scales, opac, colors, cam, modulation=torch.ones(3))
    with pytest.raises(ValueError, match="gsplat"):
        rasterize(means, quats, scales, opac, colors, cam, backend="gsplat")


def _chunk_at(points, sigma, opacity, rgb, s_native=1e-3, origin=None) -> SplatChunk:
    points = np.asarray(points, np.float64)
    n = len(points)
    return SplatChunk.from_world(
        points, normalize_quaternions(np.random.default_rng(0).normal(size=(n, 4))),
        np.log(np.broadcast_to(sigma, (n, 3))), np.log(opacity / (1 - opacity)) * np.ones(n),
        rgb_to_sh_dc(np.broadcast_to(rgb, (n, 3))), np.full(n, s_native), origin=origin)


def test_render_chunks_matches_the_engine_numpy_reference():
    reference = pytest.importorskip("engine.render.reference")
    prepare = pytest.importorskip("engine.render.prepare").prepare
    rng = np.random.default_rng(8)
    cam = _camera(width=48, height=40)
    # distinct depths, so the reference's 16-bit depth keys order splats like a float sort
    pts = np.c_[rng.uniform(-0.6, 0.6, (60, 2)), np.linspace(-0.8, 0.8, 60)]
    a = _chunk_at(pts[:30], 0.06, 0.7, rng.uniform(0, 1, 3))
    b = _chunk_at(pts[30:], np.exp(rng.normal(-3, 0.3, (30, 3))), 0.5, rng.uniform(0, 1, 3),
                  s_native=0.02)
    # b is a finer level seen from coarser than native: it fades to alpha ~0.5 here
    links = LodLinks(np.full(30, 0.2, np.float32), np.zeros(30, np.float32))
    mod = modulation_at(cam, [(b, links)])
    assert (mod > 0.3).all() and (mod < 0.7).all()
    chunks = [(a, None), (b, links)]
    ours = render_chunks(cam, chunks, background=(0.0, 0.2, 0.0))
    ref = reference.render(prepare(cam, chunks), cam, background=(0.0, 0.2, 0.0))
    np.testing.assert_allclose(ours.rgb.numpy(), ref.rgb, atol=2e-5)
    np.testing.assert_allclose(ours.alpha.numpy(), ref.alpha, atol=2e-5)
    np.testing.assert_allclose(ours.depth.numpy(), ref.depth, rtol=1e-5, atol=1e-5)


def test_modulation_at_uses_depth_over_focal_as_render_scale():
    cam = _camera(width=64, height=64)
    pts = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 1.0]])  # depths 3 and 4
    s_render = np.array([3.0, 4.0]) / cam.focal
    chunk = _chunk_at(pts, 0.01, 0.5, (1, 1, 1), s_native=float(s_render[0]))
    links = LodLinks(np.full(2, 3 * s_render[0], np.float32), np.zeros(2, np.float32))
    got = modulation_at(cam, [(chunk, links)])
    want = modulation_alpha(s_render, chunk.s_native, links.s_parent, links.s_child)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] == pytest.approx(1.0) and 0 < got[1] < 1
    np.testing.assert_allclose(modulation_at(cam, [(chunk, None)]), 1.0)


def test_splat_tensors_keep_precision_of_far_away_chunks():
    shift = np.array([5e6, 1e6, -3e6])
    cam_far = Camera.look_at(shift + [0, 0, -2.0], shift, fov_y_deg=50, width=32, height=32)
    cam_near = Camera.look_at([0, 0, -2.0], [0, 0, 0], fov_y_deg=50, width=32, height=32)
    pts = np.random.default_rng(1).uniform(-0.3, 0.3, (40, 3))
    near = render_chunks(cam_near, [(_chunk_at(pts, 0.03, 0.8, (1, 0.5, 0)), None)])
    far = render_chunks(cam_far, [(_chunk_at(pts + shift, 0.03, 0.8, (1, 0.5, 0)), None)])
    torch.testing.assert_close(near.rgb, far.rgb, rtol=0, atol=2e-4)
    st = SplatTensors.from_chunks([_chunk_at(pts + shift, 0.03, 0.8, (1, 0.5, 0))])
    assert st.means.dtype == torch.float32 and float(st.means.abs().max()) < 1.0


def test_large_scene_memory_is_bounded_by_bands():
    """A screen-filling scene in many bands renders the same as in one."""
    cam = _camera(width=64, height=64)
    scene = _scene(400, seed=9, dtype=torch.float32, spread=0.5)
    one = rasterize(*scene, cam)
    many = rasterize(*scene, cam, max_band_fragments=500)
    torch.testing.assert_close(one.rgb, many.rgb, rtol=1e-6, atol=1e-6)


# ---- CUDA: the gsplat path against the CPU path ---------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gsplat_cuda_matches_cpu_patch_compositor():
    cam = _camera(width=96, height=80)
    scene = _scene(800, seed=12, dtype=torch.float32, spread=0.35, opacity=(0.05, 0.9))
    bg = (0.1, 0.2, 0.3)
    mod = torch.rand(800, generator=torch.Generator().manual_seed(2))

    def run(device, backend):
        leaves = [t.to(device).clone().requires_grad_(True) for t in scene]
        out = rasterize(*leaves, cam, background=bg, modulation=mod.to(device), backend=backend)
        (out.rgb.sum() + out.alpha.sum()).backward()
        return out, [t.grad.cpu() for t in leaves]

    cpu, g_cpu = run("cpu", "torch")
    gpu, g_gpu = run("cuda", "gsplat")
    torch_cuda, _ = run("cuda", "torch")
    assert gpu.backend == "gsplat"
    # gsplat draws to 3.33 sigma and stops at T < 1e-4: small differences at footprint edges
    for a, b in ((cpu.rgb, gpu.rgb), (cpu.alpha, gpu.alpha)):
        diff = (a - b.cpu()).abs()
        assert float(diff.mean()) < 2e-3 and float(diff.max()) < 5e-2
    has = (cpu.alpha > 0.5) & (gpu.alpha.cpu() > 0.5)
    torch.testing.assert_close(cpu.depth[has], gpu.depth.cpu()[has], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(cpu.rgb, torch_cuda.rgb.cpu(), rtol=1e-4, atol=1e-4)
    for a, b in zip(g_cpu[2:4], g_gpu[2:4]):  # scales, opacities
        cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert float(cos) > 0.95


# ---- culling: the real-time renderer's rules ------------------------------------------------
def test_splats_outside_the_frustum_are_culled_as_the_real_time_renderer_culls_them():
    """The same splats are drawn here as by `engine.render.prepare`: in particular none whose
    3-sigma sphere lies outside a side plane. Near the camera and far off-axis the EWA
    projection would smear such a splat across the whole image (the app's zoom camera beside
    a cup's wall drew an opaque red image and ~100M fragments per render)."""
    from engine.render.prepare import prepare
    from generation.raster.rasterize import outside_frustum

    rng = np.random.default_rng(11)
    camera = Camera.look_at([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], fov_y_deg=40.0, width=96,
                            height=64, near=1e-4)
    n = 4000
    positions = np.concatenate([rng.normal(0.0, 0.01, (n // 2, 3)) + [0.0, 0.0, 0.01],
                                rng.normal(0.0, 0.3, (n - n // 2, 3)) + [0.0, 0.0, 0.5]])
    chunk = SplatChunk(np.zeros(3), positions.astype(np.float32),
                       normalize_quaternions(rng.normal(size=(n, 4))),
                       np.log(rng.uniform(5e-4, 3e-3, (n, 3))).astype(np.float32),
                       np.full(n, 3.0, np.float32), rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))),
                       np.full(n, 1e-3, np.float32), level=0)
    engine_drawn = np.zeros(n, bool)
    engine_drawn[prepare(camera, [(chunk, None)]).source_row] = True
    splats = SplatTensors.from_chunks([chunk], origin=camera.position, dtype=torch.float64)
    z = torch.as_tensor(positions[:, 2])
    ours = (~outside_frustum(splats.means, torch.exp(splats.log_scales), camera, splats.origin)
            & (z > camera.near)).numpy()
    assert 0 < engine_drawn.sum() < n and np.array_equal(ours, engine_drawn)

    # one splat 0.002 in front of the camera, 5 sigma-spheres off to the side: nothing drawn
    side = SplatChunk(np.zeros(3), np.array([[0.012, 0.0, 0.002]], np.float32),
                      np.array([[1.0, 0, 0, 0]], np.float32),
                      np.log(np.full((1, 3), 1.3e-3)).astype(np.float32),
                      np.array([3.0], np.float32), np.zeros((1, 3), np.float32),
                      np.array([1e-3], np.float32), level=0)
    out = SplatTensors.from_chunks([side], origin=camera.position).render(camera)
    assert out.drawn == 0 and float(out.alpha.max()) == 0.0
