"""The LoD index: links derived from history, and a coarse splat fading as its child fades in."""

import numpy as np

from engine.lod import build_lod_index
from engine.modulation import alpha
from engine.synthetic import nested_plane_world


def _two_levels():
    (c0, l0), (c1, l1) = nested_plane_world(levels=2, factor=4.0, size=64)
    index = build_lod_index([(None, {0: l0}), (c1, {1: l1})])
    return c0, l0, c1, l1, index


def test_links_cover_only_the_zoomed_patch():
    c0, l0, c1, l1, index = _two_levels()
    child_of_coarse = index.links[0].s_child
    uv, _ = c1.project(l0.world_positions())
    inside = (uv[:, 0] > 2) & (uv[:, 0] < 62) & (uv[:, 1] > 2) & (uv[:, 1] < 62)
    outside = (uv[:, 0] < -2) | (uv[:, 0] > 66) | (uv[:, 1] < -2) | (uv[:, 1] > 66)
    assert (child_of_coarse[inside] > 0).all()  # covered: will fade out when zoomed in
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
    l0, l1 = levels[0][1], levels[1][1]
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
