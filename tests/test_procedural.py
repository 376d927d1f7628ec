"""The procedural levels (`wonderzoom demo`'s world and `play --generator procedural`) join
their parents as the pipeline's levels do: faded into the parent's look along their border
(issue 21)."""

from __future__ import annotations

import time

import numpy as np

from cli.demo import RELIEF
from engine.camera import Camera
from engine.lod import build_lod_index
from engine.messages import Observation, ZoomRequest, ZoomResult
from engine.render.prepare import prepare
from engine.render.reference import render
from engine.synthetic import fractal_plane_world, procedural_texture
from generation.imaging import blur
from generation.procedural import ProceduralGenerator, border_fade, fade_into_parent


def _render(levels, camera):
    """As the app draws `levels` (root first) at `camera`: the engine's reference renderer."""
    index = build_lod_index([(cam, {i: chunk}) for i, (cam, chunk) in enumerate(levels)])
    out = render(prepare(camera, [(chunk, index.links[i])
                                  for i, (_, chunk) in enumerate(levels)]), camera)
    return np.clip(out.rgb.astype(np.float64), 0.0, 1.0), out.alpha


def test_fade_into_parent_is_the_parent_at_the_edge_and_the_drawing_inside():
    levels = fractal_plane_world(levels=2, size=48, relief=RELIEF)
    camera = levels[1][0]
    drawn = procedural_texture(48, 48, seed=5, detail=3.0)
    out = fade_into_parent(camera, drawn, levels[:1])
    seen, alpha = _render(levels[:1], camera)
    assert (alpha > 0.5).all()  # the plane covers C_1
    np.testing.assert_allclose(out[0], seen[0], atol=1e-6)  # the outermost ring: the parent
    np.testing.assert_allclose(out[:, -1], seen[:, -1], atol=1e-6)
    w = border_fade(48, 48)
    inside = w == 1.0
    assert inside.sum() > 0.2 * w.size
    np.testing.assert_allclose(out[inside], drawn[inside], atol=1e-12)
    # in between, a convex blend of the two
    lo, hi = np.minimum(drawn, seen), np.maximum(drawn, seen)
    assert ((out >= lo - 1e-9) & (out <= hi + 1e-9)).all()


def _patch_ring(view: Camera, c1: Camera, fraction: float = 1 / 12) -> np.ndarray:
    """[H, W] bool: the pixels of `view` inside C_1's footprint on the plane z = 0 and within
    `fraction` of its width of its edge (the seam band of bench/quality.py, drawn around the
    patch as a user sees it from further out)."""
    R, eye = c1.T_world_camera[:3, :3], c1.T_world_camera[:3, 3]
    corners = []
    for u, v in ((0, 0), (c1.width, 0), (0, c1.height), (c1.width, c1.height)):
        ray = R @ np.array([(u - c1.cx) / c1.fx, (v - c1.cy) / c1.fy, 1.0])
        corners.append(eye - eye[2] / ray[2] * ray)
    uv, _ = view.project(np.array(corners))
    (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
    b = fraction * (x1 - x0)
    y, x = np.mgrid[0:view.height, 0:view.width] + 0.5
    inside = (x > x0) & (x < x1) & (y > y0) & (y < y1)
    return inside & ~((x > x0 + b) & (x < x1 - b) & (y > y0 + b) & (y < y1 - b))


def test_the_demo_world_joins_its_parent_where_the_app_opens_it():
    """From the root's camera in a window 6x its size (as `play` opens the demo, level 1 is
    drawn whole there), the band just inside level 1's edge against level 0 alone, low-passed
    at 4 px as bench/quality.py's seam: as drawn, the level ends in a hard edge; faded into
    its parent it does not, but only on a plane with relief: seen head-on every splat of a
    flat plane has the same depth, the draw order of the ties decides what shows, and C_1,
    turned towards its target, orders them differently from the root's camera, so the
    parent's look the fade copies at C_1 is not the look the root's camera shows."""
    figures = {}
    for relief, join in ((0.0, None), (0.0, fade_into_parent), (RELIEF, fade_into_parent)):
        levels = fractal_plane_world(levels=2, size=64, relief=relief, join=join)
        view = levels[0][0].reframed(6 * 64, 6 * 64)
        ours, _ = _render(levels, view)
        coarse, _ = _render(levels[:1], view)
        ring = _patch_ring(view, levels[1][0])
        figures[relief, join is not None] = float(np.abs(blur(ours - coarse, 4.0)[ring]).mean()
                                                  * 255)
    assert figures[0.0, False] > 6.0 and figures[0.0, True] > 6.0, figures
    assert figures[RELIEF, True] < 2.0, figures  # 1.07 at the demo's 192 px (docs/benchmarks.md)


def test_the_procedural_generator_leaves_the_observation_at_its_edge():
    camera = Camera.look_at([0.0, 0.0, -2.0], [0.0, 0.0, 0.0], fov_y_deg=40, width=40, height=30)
    rng = np.random.default_rng(1)
    observed = rng.uniform(0.2, 0.8, (30, 40, 3))
    depth = np.full((30, 40), 2.0)
    generator = ProceduralGenerator()
    try:
        generator.submit(ZoomRequest(7, 0, camera, (0.0, 0.0, 0.0), "moss", seed=3,
                                     observation=Observation(observed, depth)))
        deadline = time.monotonic() + 60
        result = None
        while result is None and time.monotonic() < deadline:
            result = next((e for e in generator.poll() if isinstance(e, ZoomResult)), None)
            time.sleep(0.01)
    finally:
        generator.close()
    assert result is not None and result.ok, result
    rgb = result.chunks[0].rgb().reshape(30, 40, 3)  # one splat a pixel, row-major
    np.testing.assert_allclose(rgb[0], observed[0], atol=1e-5)
    np.testing.assert_allclose(rgb[:, 0], observed[:, 0], atol=1e-5)
    assert np.abs(rgb[12:18, 15:25] - observed[12:18, 15:25]).mean() > 0.02  # detail inside
