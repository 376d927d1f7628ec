"""Properties of the scale-aware opacity modulation (docs/design.md idea 3)."""

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.camera import Camera
from engine.modulation import (ALPHA_CULL, alpha, chunk_render_scale_range,
                               chunks_possibly_visible, visible_band)

log_s = st.floats(min_value=-30.0, max_value=30.0, allow_nan=False)
gap = st.floats(min_value=1e-3, max_value=10.0)


def _a(x, n, b, a):
    """alpha with log-space arguments (b = +inf / a = -inf allowed)."""
    return float(alpha(math.exp(x), math.exp(n), math.exp(b) if b != math.inf else math.inf,
                       math.exp(a) if a != -math.inf else 0.0))


@given(x=log_s, n=log_s, up=gap, down=gap)
def test_alpha_is_in_unit_interval(x, n, up, down):
    assert 0.0 <= _a(x, n, n + up, n - down) <= 1.0


@given(n=log_s, up=st.one_of(gap, st.just(math.inf)), down=st.one_of(gap, st.just(math.inf)))
def test_alpha_is_one_at_native_scale(n, up, down):
    assert _a(n, n, n + up, n - down) == 1.0


@given(n=log_s, up=gap, down=gap, beyond=st.floats(0.0, 50.0))
def test_alpha_is_zero_beyond_neighbours(n, up, down, beyond):
    assert _a(n + up + beyond, n, n + up, n - down) == 0.0
    assert _a(n - down - beyond, n, n + up, n - down) == 0.0


@given(n_child=log_s, ratio=st.floats(0.01, 12.0), t=st.floats(0.0, 1.0),
       grand_up=st.one_of(gap, st.just(math.inf)), grand_down=st.one_of(gap, st.just(math.inf)))
def test_partition_of_unity_parent_plus_child_is_one(n_child, ratio, t, grand_up, grand_down):
    """Parent p and child c at one place: alpha_p + alpha_c = 1 on [s_c, s_p] (1e-6), whatever
    the parent's own parent and the child's own child are."""
    n_parent = n_child + ratio
    x = n_child + t * ratio
    s_r = math.exp(x)
    s_c, s_p = math.exp(n_child), math.exp(n_parent)
    a_p = alpha(s_r, s_p, math.exp(n_parent + grand_up) if grand_up != math.inf else math.inf, s_c)
    a_c = alpha(s_r, s_c, s_p, math.exp(n_child - grand_down) if grand_down != math.inf else 0.0)
    assert abs(float(a_p + a_c) - 1.0) <= 1e-6


def test_partition_of_unity_vectorised_sweep():
    s_c, s_p = 1e-3, 4e-3
    s_r = np.geomspace(s_c, s_p, 10001)
    total = alpha(s_r, s_p, np.inf, s_c) + alpha(s_r, s_c, s_p, 0.0)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@given(x=log_s, n=log_s)
def test_infinite_boundaries_stay_one(x, n):
    """A root splat with nothing finer (s_parent = inf, s_child = 0) is always fully opaque."""
    assert float(alpha(math.exp(x), math.exp(n), math.inf, 0.0)) == 1.0


@given(n=log_s, up=gap, down=gap, xs=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=20))
def test_monotone_on_each_side(n, up, down, xs):
    b, a = n + up, n - down
    above = sorted(n + abs(x) * (up + 1) for x in xs)  # from native upward, past the parent
    below = sorted(n - abs(x) * (down + 1) for x in xs)
    vals_above = [_a(x, n, b, a) for x in above]
    vals_below = [_a(x, n, b, a) for x in below]
    assert all(p >= q for p, q in zip(vals_above, vals_above[1:]))  # falls as views get coarser
    assert all(p <= q for p, q in zip(vals_below, vals_below[1:]))  # rises towards native


@given(n=log_s, up=gap, down=gap, x=log_s)
def test_matches_released_viewer_in_q_units(n, up, down, x):
    """The released viewer: q = 1/s, alpha = max(rising, falling) ramps in log q, clipped."""
    q, q_n, q_p, q_c = (math.exp(-v) for v in (x, n, n + up, n - down))
    lq, lqn, lqp, lqc = map(math.log, (q, q_n, q_p, q_c))
    clip = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
    # each ramp lives on its own side of the native q and is 0 on the other side
    rising = clip((lq - lqp) / (lqn - lqp)) if lq <= lqn else 0.0  # 0 at parent's q -> 1 at native
    falling = clip((lqc - lq) / (lqc - lqn)) if lq >= lqn else 0.0  # 1 at native -> 0 at child's q
    ref = max(rising, falling)
    assert abs(_a(x, n, n + up, n - down) - ref) <= 1e-9


@given(n=log_s, up=st.one_of(gap, st.just(math.inf)), down=st.one_of(gap, st.just(math.inf)),
       x=log_s)
def test_visible_band_is_exactly_where_alpha_exceeds_cull(n, up, down, x):
    s_par = math.exp(n + up) if up != math.inf else math.inf
    s_ch = math.exp(n - down) if down != math.inf else 0.0
    lo, hi = visible_band(math.exp(n), s_par, s_ch)
    a = float(alpha(math.exp(x), math.exp(n), s_par, s_ch))
    inside = float(lo) < math.exp(x) < float(hi)
    assume(abs(a - ALPHA_CULL) > 1e-9)  # floating point right at the threshold
    assert inside == (a > ALPHA_CULL)


def test_wrong_way_links_do_not_produce_nan():
    out = alpha(np.array([1.0, 2.0, 0.5]), 1.0, 0.5, 2.0)  # parent finer, child coarser
    assert np.isfinite(out).all() and (out == 1.0).all()


@settings(max_examples=60)
@given(seed=st.integers(0, 2**31 - 1))
def test_chunk_bounds_never_skip_a_visible_splat(seed):
    """Chunk culling from bounds is conservative: sample points of a box inside the frustum;
    if any would get alpha > cull, the chunk is kept."""
    rng = np.random.default_rng(seed)
    cam = Camera.look_at(rng.normal(size=3) * 3, rng.normal(size=3) * 0.1, fov_y_deg=rng.uniform(5, 90),
                         width=64, height=48, near=1e-3)
    centre = rng.normal(size=3)
    half = np.abs(rng.normal(size=3)) * rng.uniform(0.01, 2)
    lo, hi = centre - half, centre + half
    pts = rng.uniform(lo, hi, size=(400, 3))
    s_native = np.exp(rng.uniform(-6, 0, 400))
    s_parent = np.where(rng.random(400) < 0.3, np.inf, s_native * np.exp(rng.uniform(0.1, 3, 400)))
    s_child = np.where(rng.random(400) < 0.3, 0.0, s_native * np.exp(-rng.uniform(0.1, 3, 400)))
    uv, z = cam.project(pts)
    in_view = (z > cam.near) & (uv[:, 0] >= 0) & (uv[:, 0] < 64) & (uv[:, 1] >= 0) & (uv[:, 1] < 48)
    a = alpha(z / cam.focal, s_native, s_parent, s_child)
    band_lo, band_hi = visible_band(s_native, s_parent, s_child)
    r_lo, r_hi = chunk_render_scale_range(cam, lo[None], hi[None])
    keep = chunks_possibly_visible(r_lo, r_hi, band_lo.min(keepdims=True), band_hi.max(keepdims=True))
    in_frustum = cam.aabbs_in_frustum(lo[None], hi[None])
    if (in_view & (a > ALPHA_CULL)).any():
        assert keep[0] and in_frustum[0]
