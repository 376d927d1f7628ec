"""The LoD index: links derived from history, and a coarse splat fading as its child fades in."""

import numpy as np

from engine.lod import build_lod_index, footprint_cells
from engine.modulation import alpha
from engine.synthetic import nested_plane_world


def _two_levels():
    (c0, l0), (c1, l1) = nested_plane_world(levels=2, factor=4.0, size=64)
    index = build_lod_index([(None, {0: l0}), (c1, {1: l1})])
    return c0, l0, c1, l1, index


def test_links_cover_only_the_zoomed_patch():
    c0, l0, c1, l1, index = _two_levels()
    child_of_coarse = index.links[0].s_child
    uv, z = c1.project(l0.world_positions())
    # how far each coarse splat's footprint reaches in the fine view (BORDER_SIGMAS std-devs)
    r = footprint_cells(c1, l0, np.arange(len(l0)), z, 1.0)
    edge = np.minimum(np.minimum(uv[:, 0], 64 - uv[:, 0]), np.minimum(uv[:, 1], 64 - uv[:, 1]))
    inside = edge > r + 1  # the patch covers the whole footprint
    ring = (edge > 0) & (edge < r - 1)  # the centre is in the patch, the footprint reaches out
    outside = edge < -2
    assert inside.sum() > 100 and ring.sum() > 100
    assert (child_of_coarse[inside] > 0).all()  # covered: will fade out when zoomed in
    assert (child_of_coarse[ring] == 0).all()  # the border: stays whole, no see-through edge
    assert (child_of_coarse[outside] == 0).all()  # outside the patch: never fades
    # the fine level's parent is the coarse level's native scale; roots have none
    np.testing.assert_allclose(index.links[1].s_parent, np.median(l0.s_native), rtol=1e-5)
    assert np.isinf(index.links[0].s_parent).all()
    # links point the right way: a child is finer, a parent is coarser
    linked = child_of_coarse > 0
    assert (child_of_coarse[linked] < l0.s_native[linked]).all()
    assert (index.links[1].s_parent > l1.s_native).all()


def test_coarse_splat_fades_out_exactly_as_its_child_fades_in():
    c0, l0, c1, l1, index = _two_levels()
    target = c1.T_world_camera[:3, 3] + c1.T_world_camera[:3, 2] * 4.0  # on the plane
    p = int(np.argmin(np.linalg.norm(l0.world_positions() - target, axis=1)))
    c = int(np.argmin(np.linalg.norm(l1.world_positions() - l0.world_positions()[p], axis=1)))
    # zoom the coarse camera's focal length from 0.5x to 8x: s_render sweeps across both levels
    zooms = np.geomspace(0.5, 8.0, 200)
    s_render = np.array([c0.with_fov_scale(z).pixel_scale(l0.world_positions()[p:p + 1])[0] for z in zooms])
    a_parent = alpha(s_render, l0.s_native[p], index.links[0].s_parent[p], index.links[0].s_child[p])
    a_child = alpha(s_render, l1.s_native[c], index.links[1].s_parent[c], index.links[1].s_child[c])
    band = (s_render >= l1.s_native[c]) & (s_render <= l0.s_native[p])
    assert band.sum() > 50
    np.testing.assert_allclose(a_parent[band] + a_child[band], 1.0, atol=1e-5)
    assert np.all(np.diff(a_parent) <= 1e-12)  # zooming in: the parent only fades out
    assert np.all(np.diff(a_child[band]) >= -1e-12)  # ... while the child only fades in
    assert a_parent[0] == 1.0 and a_child[0] == 0.0  # coarse view: only the parent
    assert a_parent[-1] == 0.0 and a_child[-1] == 1.0  # 8x zoom: only the child


def test_coarse_splat_outside_patch_never_fades():
    c0, l0, c1, l1, index = _two_levels()
    outside = np.flatnonzero(index.links[0].s_child == 0)
    assert len(outside) > 1000
    s_render = np.geomspace(1e-6, 1e3, 50)[:, None]
    a = alpha(s_render, l0.s_native[outside][None], index.links[0].s_parent[outside][None],
              index.links[0].s_child[outside][None])
    assert (a == 1.0).all()


def test_three_levels_keep_the_adjacent_child():
    levels = nested_plane_world(levels=3, factor=4.0, size=64)
    index = build_lod_index([(cam if i else None, {i: ch}) for i, (cam, ch) in enumerate(levels)])
    l1 = levels[1][1]
    linked0 = index.links[0].s_child > 0
    # level 0 splats point at level 1 (adjacent), never at the finer level 2
    np.testing.assert_allclose(index.links[0].s_child[linked0], np.median(l1.s_native), rtol=2e-2)
    assert (index.links[1].s_child > 0).any()
    np.testing.assert_allclose(index.links[2].s_parent, np.median(l1.s_native), rtol=2e-2)


def test_building_the_index_never_mutates_chunks():
    levels = nested_plane_world(levels=2, size=48)
    before = [(ch.s_native.copy(), ch.positions.copy()) for _, ch in levels]
    build_lod_index([(cam if i else None, {i: ch}) for i, (cam, ch) in enumerate(levels)])
    for (s, p), (_, ch) in zip(before, levels):
        assert np.array_equal(s, ch.s_native) and np.array_equal(p, ch.positions)


# ---- the border of a new level ------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from engine.lod import CoveredInterior  # noqa: E402
from engine.render.prepare import prepare  # noqa: E402
from engine.render.reference import render  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_covered_interior_is_the_chebyshev_distance_to_the_uncovered(mask):
    inner = CoveredInterior(mask)
    inner.holds(np.zeros(1, np.int64), np.array([20.0]))  # resolve every depth
    H, W = mask.shape
    padded = np.pad(mask, 1)  # outside the image is uncovered
    out_r, out_c = np.nonzero(~padded)
    for i in range(H):
        for j in range(W):
            if not mask[i, j]:
                assert inner.depth[i, j] == 0
                continue
            cheb = np.maximum(np.abs(out_r - (i + 1)), np.abs(out_c - (j + 1))).min()
            assert inner.depth[i, j] == cheb


@settings(max_examples=40, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 10), st.integers(1, 10))),
       st.lists(st.floats(0, 6), min_size=1, max_size=8), st.data())
def test_covered_interior_holds_a_footprint_only_inside_the_coverage(mask, radii, data):
    inner = CoveredInterior(mask)
    flat = np.array([data.draw(st.integers(0, mask.size - 1)) for _ in radii])
    r = np.array(radii)
    held = inner.holds(flat, r)
    assert not held[~mask.reshape(-1)[flat]].any()  # never where nothing covers
    # a wider footprint is never held where a narrower one at the same cell is not
    assert (inner.holds(flat, r + 1.0) <= held).all()


def test_the_join_shows_no_background_along_the_new_level_s_edge():
    """At the fine level's native scale, a view twice as wide as C_1 (same focal length, so
    the same s_render) sees the join: along the patch's edge the world stays as opaque as on
    either side of it (before the border rule, the coarse splats whose centres were just
    inside faded out with their outer halves, leaving a half-transparent line)."""
    (c0, l0), (c1, l1) = nested_plane_world(levels=2, factor=4.0, size=32)
    index = build_lod_index([(None, {0: l0}), (c1, {1: l1})])
    wide = c1.resampled(64, 64)
    wide = type(wide)(c1.T_world_camera, c1.fx, c1.fy, c1.cx + 16, c1.cy + 16, 64, 64,
                      c1.near, c1.far)
    out = render(prepare(wide, [(l0, index.links[0]), (l1, index.links[1])]), wide)
    a = out.alpha.astype(np.float64)
    u = np.arange(64) + 0.5 - 16  # the fine camera's pixel coordinates of the wide view
    edge = np.minimum.outer(np.minimum(u, 32 - u), np.minimum(u, 32 - u))
    far_inside, far_outside = a[edge > 4], a[(edge < -6) & (edge > -14)]
    near_edge = a[np.abs(edge) <= 2]
    floor = min(np.percentile(far_inside, 1), np.percentile(far_outside, 1))
    assert near_edge.min() >= floor - 0.02, (near_edge.min(), floor)


def test_neighbour_extreme_is_the_3x3_min_or_max_with_what_it_carries():
    """Brute force per pixel: the nearest / deepest of the 3x3 neighbourhood (own pixel on a
    tie, then row-major order), and the carried values of that neighbour."""
    from engine.lod import neighbour_extreme

    rng = np.random.default_rng(3)
    for _ in range(50):
        H, W = rng.integers(1, 9, 2)
        depth = np.round(rng.uniform(1, 2, (H, W)), 1)  # coarse values: many ties
        depth[rng.random((H, W)) < 0.2] = np.inf
        carried = rng.random((H, W, 2))
        for deepest in (False, True):
            d, c = neighbour_extreme(depth, carried, deepest)
            for i in range(H):
                for j in range(W):
                    cands = [(i, j)] + [(y, x) for y in range(i - 1, i + 2)
                                        for x in range(j - 1, j + 2) if 0 <= y < H and 0 <= x < W]
                    keyed = [(-depth[p] if deepest else depth[p]) for p in cands]
                    k = int(np.argmin(keyed))
                    assert d[i, j] == depth[cands[k]]
                    np.testing.assert_array_equal(c[i, j], carried[cands[k]])
