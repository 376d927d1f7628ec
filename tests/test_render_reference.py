"""The CPU half of the renderer: `prepare` (cull, camera-relative packing, sort) and the numpy
reference rasterizer that is the oracle of the GPU path. No OpenGL needed."""

import math

import numpy as np
import pytest

from engine.camera import Camera
from engine.lod import LodLinks
from engine.modulation import alpha as modulation_alpha
from engine.render.prepare import (COL_MEAN, COL_OPACITY, COL_RGB, PACKED_WIDTH,
                                   depth_sort_keys, prepare)
from engine.render.reference import LOW_PASS_PX2, render
from engine.splats import SplatChunk, normalize_quaternions, rgb_to_sh_dc


def _logit(p):
    return math.log(p / (1.0 - p))


def _chunk(points, sigma, opacity=0.5, rgb=(1.0, 0.5, 0.25), s_native=None, rotations=None,
           origin=None):
    """A chunk of splats at world `points` [N, 3] with std-devs `sigma` ([N], [N, 3] or scalar)."""
    points = np.atleast_2d(np.asarray(points, np.float64))
    n = len(points)
    sigma = np.broadcast_to(np.asarray(sigma, np.float64).reshape(-1, 1) if np.ndim(sigma) == 1
                            else np.asarray(sigma, np.float64), (n, 3))
    rotations = np.tile([1.0, 0, 0, 0], (n, 1)) if rotations is None else rotations
    return SplatChunk.from_world(
        points, rotations, np.log(sigma), np.broadcast_to(_logit(opacity), (n,)).copy()
        if np.ndim(opacity) == 0 else np.array([_logit(o) for o in opacity]),
        rgb_to_sh_dc(np.broadcast_to(np.asarray(rgb, np.float64), (n, 3))),
        np.full(n, 1e-3) if s_native is None else s_native, origin=origin)


def _axis_camera(width=128, height=96, f=100.0, cx=None, cy=None, eye=(0.0, 0.0, 0.0)):
    """Camera at `eye` looking down +z (world axes = camera axes)."""
    T = np.eye(4)
    T[:3, 3] = eye
    return Camera(T, f, f, width / 2 if cx is None else cx, height / 2 if cy is None else cy,
                  width, height)


def test_single_isotropic_splat_is_a_gaussian_blob_at_its_projected_pixel():
    # principal point off-centre and not on a pixel centre: tests the (u + 0.5) convention
    cam = _axis_camera(width=96, height=80, f=150.0, cx=37.3, cy=45.8)
    z, sigma, opacity = 4.0, 0.05, 0.6
    out = render(prepare(cam, [(_chunk([[0.0, 0.0, z]], sigma, opacity, rgb=(1.0, 0.5, 0.25)),
                                None)]), cam)
    sigma_px2 = (cam.fx * sigma / z) ** 2 + LOW_PASS_PX2  # EWA + low-pass, isotropic on-axis
    v, u = np.mgrid[0:80, 0:96] + 0.5
    r2 = (u - cam.cx) ** 2 + (v - cam.cy) ** 2
    expected = opacity * np.exp(-0.5 * r2 / sigma_px2)
    expected[(r2 > 9 * sigma_px2) | (expected < 1 / 255)] = 0.0  # 3-sigma footprint, discard
    np.testing.assert_allclose(out.alpha, expected, atol=1e-6)
    assert np.unravel_index(out.alpha.argmax(), out.alpha.shape) == (45, 37)
    # the measured spread matches the expected pixel sigma (moments of the blob)
    w = out.alpha / out.alpha.sum()
    centre = np.array([(w * u).sum(), (w * v).sum()])
    np.testing.assert_allclose(centre, [cam.cx, cam.cy], atol=1e-2)
    measured = math.sqrt((w * r2).sum() / 2)  # truncated at 3 sigma: slightly under sigma
    assert 0.95 * math.sqrt(sigma_px2) < measured < math.sqrt(sigma_px2)
    np.testing.assert_allclose(out.rgb, out.alpha[..., None] * [1.0, 0.5, 0.25], atol=1e-6)
    assert np.allclose(out.depth[out.alpha > 0], z) and (out.depth[out.alpha == 0] == 0).all()


def test_fragment_alpha_is_clamped_and_background_shows_through():
    cam = _axis_camera(width=32, height=32, f=40.0, cx=16.5, cy=16.5)  # axis on a pixel centre
    out = render(prepare(cam, [(_chunk([[0, 0, 2.0]], 0.2, opacity=0.99999), None)]), cam,
                 background=(0.0, 0.0, 1.0))
    assert out.alpha.max() == pytest.approx(0.99)
    centre = out.rgb[16, 16]
    np.testing.assert_allclose(centre, 0.99 * np.array([1.0, 0.5, 0.25]) + [0, 0, 0.01], atol=1e-6)
    np.testing.assert_allclose(out.rgb[0, 0], [0, 0, 1.0])  # nothing drawn there


def test_front_splat_covers_the_back_one_whatever_the_input_order():
    cam = _axis_camera(width=32, height=32, f=40.0, cx=16.5, cy=16.5)
    front = _chunk([[0, 0, 2.0]], 0.2, opacity=0.9, rgb=(1, 0, 0))
    back = _chunk([[0, 0, 3.0]], 0.3, opacity=0.9, rgb=(0, 1, 0))
    a = render(prepare(cam, [(front, None), (back, None)]), cam)
    b = render(prepare(cam, [(back, None), (front, None)]), cam)
    np.testing.assert_allclose(a.rgb, b.rgb, atol=1e-7)
    red, green = a.rgb[16, 16, 0], a.rgb[16, 16, 1]
    assert red == pytest.approx(0.9, abs=1e-6) and green == pytest.approx(0.1 * 0.9, abs=1e-6)
    # expected depth: weights 0.9 (front) and 0.09 (back)
    assert a.depth[16, 16] == pytest.approx((0.9 * 2 + 0.09 * 3) / 0.99, rel=1e-6)


def test_modulation_scales_opacity_like_the_reference_formula():
    cam = _axis_camera(width=32, height=32, f=40.0, cx=16.5, cy=16.5)
    z = 2.0
    s_render = z / cam.focal
    # s_render halfway (in log space) between native and parent: alpha = 0.5
    s_native, s_parent = s_render / 2.0, s_render * 2.0
    chunk = _chunk([[0, 0, z]], 0.2, opacity=0.8, s_native=[s_native])
    links = LodLinks(np.array([s_parent], np.float32), np.zeros(1, np.float32))
    prepared = prepare(cam, [(chunk, links)])
    out = render(prepared, cam)
    expected = float(modulation_alpha(s_render, np.float32(s_native), np.float32(s_parent), 0.0))
    assert expected == pytest.approx(0.5, abs=1e-6)
    assert out.alpha.max() == pytest.approx(0.8 * expected, rel=1e-5)


def test_prepare_culls_behind_outside_faded_and_faint_splats():
    cam = _axis_camera(width=64, height=64, f=64.0)  # 53 degree square frustum
    cam = Camera(cam.T_world_camera, cam.fx, cam.fy, cam.cx, cam.cy, 64, 64, near=0.1, far=100.0)
    s_here = 5.0 / cam.focal  # pixel scale at depth 5
    points = [
        [0.0, 0.0, 5.0],  # 0 visible
        [0.0, 0.0, -1.0],  # 1 behind the camera
        [0.0, 0.0, 0.05],  # 2 in front of the eye but before the near plane
        [0.0, 0.0, 200.0],  # 3 beyond the far plane
        [20.0, 0.0, 5.0],  # 4 far outside the right side
        [2.5 + 0.2, 0.0, 5.0],  # 5 just outside the right side, within 3 sigma: kept
        [0.0, -8.0, 5.0],  # 6 outside the top
        [0.0, 1.0, 5.0],  # 7 faded: rendered far coarser than its parent
        [1.0, 0.0, 5.0],  # 8 faint: opacity * alpha < 1/255
        [-1.0, 1.0, 5.0],  # 9 visible, half faded in
    ]
    n = len(points)
    opacity = [0.5] * n
    opacity[8] = 0.003
    s_native = np.full(n, s_here)
    s_parent = np.full(n, np.inf)
    s_parent[7] = s_here / 4  # s_native must be finer than the parent...
    s_native[7] = s_here / 8  # ...and the render scale is 4x the parent: alpha 0
    s_child = np.zeros(n)
    s_native[9], s_child[9] = s_here * 2, s_here / 2  # halfway up the rising ramp
    chunk = _chunk(points, 0.1, opacity=opacity, s_native=s_native)
    links = LodLinks(s_parent.astype(np.float32), s_child.astype(np.float32))
    prepared = prepare(cam, [(chunk, links)])
    assert sorted(prepared.source_row.tolist()) == [0, 5, 9]
    s = prepared.stats
    assert (s.total, s.behind, s.outside, s.faded, s.faint, s.drawn) == (10, 3, 2, 1, 1, 3)
    assert (prepared.source_chunk == 0).all() and prepared.packed.shape == (3, PACKED_WIDTH)
    assert prepared.packed.dtype == np.float32


def test_prepare_sorts_back_to_front_and_keeps_input_order_on_ties():
    rng = np.random.default_rng(3)
    cam = _axis_camera(width=64, height=64, f=64.0)
    n = 500
    pts = np.stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.3, 0.3, n),
                    rng.uniform(1.0, 50.0, n)], 1)
    pts[10:20, 2] = 7.0  # exact ties
    prepared = prepare(cam, [(_chunk(pts, 0.01), None)])
    keys = depth_sort_keys(prepared.packed[:, 2])
    assert (np.diff(keys.astype(np.int64)) <= 0).all()  # furthest first
    z = prepared.packed[:, 2]
    # 16-bit log-depth keys: order errors are below one key step of relative depth
    step = math.log(z.max() / z.min()) / 65535
    assert (np.diff(np.log(z)) <= step + 1e-7).all()
    rows = prepared.source_row
    tied = rows[(rows >= 10) & (rows < 20)]
    assert tied.tolist() == list(range(10, 20))


def test_prepare_is_camera_relative_and_exact_far_from_the_origin():
    """The same view 1e4 units from the world origin packs the same float32 numbers."""
    rng = np.random.default_rng(0)
    local = rng.normal(0, 1e-6, (50, 3)) + [0, 0, 1e-5]  # 1e-6-sized splats 1e-5 ahead
    shift = np.array([1e4, -3e3, 2e3])
    near_cam = Camera.look_at([0, 0, 0], [1e-6, 2e-6, 1e-5], fov_y_deg=20, width=64, height=64)
    far_cam = Camera.look_at(shift, shift + [1e-6, 2e-6, 1e-5], fov_y_deg=20, width=64, height=64)
    near = prepare(near_cam, [(_chunk(local, 3e-7, origin=np.zeros(3)), None)])
    far = prepare(far_cam, [(_chunk(local + shift, 3e-7, origin=shift), None)])
    assert near.count == far.count > 0
    np.testing.assert_allclose(far.packed[:, COL_MEAN], near.packed[:, COL_MEAN],
                               rtol=0, atol=1e-6 * 1e-5)  # a millionth of the view distance
    # what the packing avoids: world coordinates in float32 lose the splat entirely
    assert np.float32(shift[0]) + np.float32(3e-6) == np.float32(shift[0])


def test_reference_of_an_empty_frame_is_the_background():
    cam = _axis_camera(width=16, height=8)
    prepared = prepare(cam, [(_chunk([[0, 0, -5.0]], 0.1), None)])  # behind: nothing drawn
    assert prepared.count == 0
    out = render(prepared, cam, background=(0.1, 0.2, 0.3))
    assert out.rgb.shape == (8, 16, 3) and out.alpha.shape == out.depth.shape == (8, 16)
    np.testing.assert_allclose(out.rgb, np.broadcast_to([0.1, 0.2, 0.3], (8, 16, 3)), atol=1e-7)
    assert (out.alpha == 0).all() and (out.depth == 0).all()


def test_packed_colour_and_opacity_columns():
    cam = _axis_camera(width=16, height=16, f=16.0)
    chunk = _chunk([[0, 0, 2.0], [0.1, 0, 2.0]], 0.05, opacity=[0.25, 0.75],
                   rgb=np.array([[0.2, 0.4, 0.6], [1.5, -0.5, 0.5]]))
    prepared = prepare(cam, [(chunk, None)])
    by_row = np.argsort(prepared.source_row)
    np.testing.assert_allclose(prepared.packed[by_row, COL_OPACITY], [0.25, 0.75], rtol=1e-5)
    np.testing.assert_allclose(prepared.packed[by_row][:, COL_RGB],
                               [[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]], atol=1e-6)  # clamped


def test_reference_handles_random_anisotropic_splats():
    """Random rotations and scales: outputs finite and in range, alpha = 1 - transmittance."""
    rng = np.random.default_rng(1)
    cam = _axis_camera(width=48, height=40, f=50.0)
    n = 300
    pts = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2, 4, n)], 1)
    chunk = _chunk(pts, np.exp(rng.uniform(-4, -1.5, (n, 3))), opacity=rng.uniform(0.05, 0.95, n),
                   rotations=normalize_quaternions(rng.normal(size=(n, 4))))
    out = render(prepare(cam, [(chunk, None)]), cam, background=(1.0, 1.0, 1.0))
    assert np.isfinite(out.rgb).all() and out.rgb.min() >= -1e-6 and out.rgb.max() <= 1 + 1e-6
    assert 0 <= out.alpha.min() and out.alpha.max() < 1.0
    covered = out.alpha > 0.5
    assert covered.mean() > 0.2
    assert ((out.depth[covered] > 2 - 0.5) & (out.depth[covered] < 4 + 0.5)).all()


def test_rendering_with_another_camera_pose_is_refused():
    cam = _axis_camera(width=16, height=16)
    prepared = prepare(cam, [(_chunk([[0, 0, 2.0]], 0.1), None)])
    moved = _axis_camera(width=16, height=16, eye=(0.0, 0.0, 0.5))
    with pytest.raises(ValueError, match="prepare"):
        render(prepared, moved)
    render(prepared, cam.with_fov_scale(2.0))  # intrinsics may change: same positions



@pytest.mark.parametrize("x, z, sigma, tol", [
    (0.05, 0.5, 0.05, 0.01),  # in view: EWA is close to exact
    (0.2, 0.02, 0.2, 0.15), (0.3, 0.05, 0.15, 0.15), (0.4, 0.02, 0.2, 0.15),  # beside
])
def test_a_splat_beside_the_camera_covers_the_view_about_as_much_as_it_does(x, z, sigma, tol):
    """A large splat just in front of the camera plane and far to its side (x / z = 4..20; the
    image's edge is at 0.64) is linearised at the edge of the widened view, not at its own
    centre where the projection is steepest. Its opacity per pixel is then close to the exact
    one of an isotropic Gaussian along each pixel's ray, o exp(-d^2 / 2 sigma^2) with d the
    ray's distance from the centre (unclamped: the whole image opaque, mean error 0.3-0.7)."""
    cam = _axis_camera(width=64, height=48, f=50.0)
    a = render(prepare(cam, [(_chunk([[x, 0.0, z]], sigma, opacity=0.9), None)]), cam).alpha
    v, u = np.mgrid[0:48, 0:64] + 0.5
    ray = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    centre = np.array([x, 0.0, z])
    d2 = centre @ centre - (ray @ centre) ** 2
    exact = np.minimum(0.99, 0.9 * np.exp(-0.5 * d2 / sigma**2))
    assert np.abs(a - exact).mean() <= tol
