"""CPU culling shortcuts against the per-splat rules they stand in for (no GL needed)."""

import numpy as np
import pytest

from engine.camera import Camera
from engine.lod import LodLinks
from engine.render.visibility import (DrawItem, Guard, View, _big_footprints, build_draw_list,
                                      chunk_bands, chunk_layout)
from engine.splats import SplatChunk, normalize_quaternions, rgb_to_sh_dc


def _items(rng, n=12000, chunks=4):
    """Anisotropic splats spread well beyond the view, in chunks of many cull groups; the ones
    at x > 2 have very different sizes (some far wider than a GL point), the others are
    small, so some groups can hold a big footprint and some cannot."""
    pts = np.stack([rng.uniform(-6, 6, n), rng.uniform(-4, 4, n), rng.uniform(2, 8, n)], 1)
    pts = pts[np.argsort(pts[:, 0])]  # chunks are slabs along x
    log_sigma = np.where((pts[:, :1] > 2) & (rng.uniform(size=(n, 1)) < 0.3),
                         rng.uniform(-2.5, 0.5, (n, 3)), rng.uniform(-7.0, -5.0, (n, 3)))
    chunk = SplatChunk.from_world(pts, normalize_quaternions(rng.normal(size=(n, 4))),
                                  log_sigma, rng.normal(0.0, 1.5, n),
                                  rgb_to_sh_dc(rng.uniform(0, 1, (n, 3))), np.full(n, 1e-3))
    items = []
    for k, part in enumerate(np.array_split(np.arange(n), chunks)):
        layout = chunk_layout(chunk.take(part))
        links = LodLinks.root(layout.count)
        rows = np.arange(layout.count, dtype=np.uint32) + np.uint32(k << 20)
        items.append(DrawItem(k, layout, chunk_bands(layout, links), rows, links))
    return items


@pytest.mark.parametrize("seed", range(6))
def test_big_footprint_flags_match_the_per_splat_rule(seed):
    """Groups whose bound rules out footprints wider than a point skip the per-splat test;
    the flags must equal the per-splat rule on every kept splat, guard or not."""
    rng = np.random.default_rng(seed)
    items = _items(rng)
    for k in range(4):
        cam = Camera.look_at(rng.normal(0, 0.5, 3), [rng.uniform(-2, 2), rng.uniform(-1, 1), 4.0],
                             fov_y_deg=float(rng.uniform(20, 90)), width=160, height=120,
                             near=0.05)
        guard = Guard(angle=0.01, log_scale=0.01) if k % 2 else Guard()
        view = View.of(cam, guard, max_point_px=float(rng.uniform(4.0, 40.0)))
        drawn = build_draw_list(view, items)
        assert 0 < drawn.count and drawn.unsorted_big.any() and not drawn.unsorted_big.all()
        start = 0
        for item, rows, count in zip(items, drawn.item_rows, drawn.item_counts.tolist()):
            rows = np.arange(item.layout.count) if rows is None else rows
            origin = view.chunk_origin(item.layout.centre).astype(np.float32)
            p = item.layout.local[rows] @ view.R32 + origin
            expected = _big_footprints(view, p, item.layout.radius[rows])
            np.testing.assert_array_equal(drawn.unsorted_big[start:start + count], expected)
            start += count
        assert start == drawn.count


@pytest.mark.parametrize("seed", range(4))
def test_back_to_front_is_a_stable_sort_on_float32_log_depth_keys(seed):
    """The draw order: 16-bit keys of float32 log depth over the set's own range, furthest
    first, ties in input order (what prepare's keys are, computed in float32)."""
    from engine.render.prepare import SORT_KEY_MAX
    from engine.render.visibility import back_to_front

    rng = np.random.default_rng(seed)
    depth = np.exp(rng.normal(0.0, 2.0, 5000)).astype(np.float32)
    depth[rng.integers(0, 5000, 500)] = depth[0]  # ties
    log_z = np.log(depth)
    keys = np.rint((log_z - log_z.min()) * np.float32(SORT_KEY_MAX / (float(log_z.max())
                                                                       - float(log_z.min()))))
    expected = np.argsort(SORT_KEY_MAX - np.clip(keys, 0, SORT_KEY_MAX).astype(np.uint16),
                          kind="stable")
    order = back_to_front(depth)
    np.testing.assert_array_equal(order, expected)
    assert np.all(np.diff(np.log(depth[order])) <= 2 * (log_z.max() - log_z.min()) / SORT_KEY_MAX)
    np.testing.assert_array_equal(back_to_front(np.full(7, 2.5, np.float32)), np.arange(7))
