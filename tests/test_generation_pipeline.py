"""The zoom pipeline end to end at a tiny size: what it promises about the new level."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut

from engine.lod import LodLinks
from engine.messages import ZoomRequest
from engine.zoom import zoom_camera
from generation.config import GenerationConfig
from generation.pipeline import Cancelled, run_new, run_zoom, zoom

CFG = GenerationConfig(new_long_side=64, zoom_long_side=64, new_iterations=2, zoom_iterations=2,
                       aux_views_new=1, aux_views_zoom=2)


@pytest.fixture(scope="module")
def e0():
    nw = run_new(astronaut(), "an astronaut", 0, CFG)
    return nw, tuple((c, LodLinks.root(len(c))) for c in nw.chunks)


def request(e0, prompt="a ladybug", rid=1):
    nw, scene = e0
    cam = nw.camera
    u, v = int(cam.width * 0.4), int(cam.height * 0.45)
    point = cam.unproject(np.array([[u + 0.5, v + 0.5]]), np.array([nw.depth[v, u]]))[0]
    return ZoomRequest(rid, 0, zoom_camera(cam, point, 4.0), tuple(point), prompt, seed=rid,
                       scene=scene, level=1, context=("an astronaut",))


def test_new_world_is_one_level_with_camera_and_timings(e0):
    nw, _ = e0
    assert nw.camera.width == 64 and all(c.level == 0 for c in nw.chunks)
    n = sum(len(c) for c in nw.chunks)
    assert n >= 64 * 42  # one splat per pixel, plus the auxiliary views' hole splats
    assert set(nw.timings) >= {"depth", "aux_views", "init", "optimize", "total"}
    assert nw.backend["name"] == "builtin" and nw.backend["seed"] == 0


def test_zoom_level_sits_on_the_coarse_geometry_and_leaves_the_old_world_alone(e0):
    _, scene = e0
    before = [(c.positions.copy(), c.opacity_logits.copy()) for c, _ in scene]
    run = run_zoom(request(e0), CFG)
    assert run.factor == pytest.approx(4.0, rel=0.05)
    main = run.optimized.chunks[0]
    cam = run.camera
    uv, z = cam.project(main.world_positions())
    iu, iv = np.floor(uv).astype(int).T
    coarse = run.observed.depth[iv, iu]
    free = (run.edited.mask[iv, iu] < 0.05) & np.isfinite(coarse)
    rel = np.abs(z[free] - coarse[free]) / coarse[free]
    assert np.median(rel) < 0.02
    # the inserted structure stands out toward the camera
    on = run.edited.mask[iv, iu] > 0.9
    assert (z[on] < coarse[on]).mean() > 0.9
    for (c, _), (p, o) in zip(scene, before):
        assert np.array_equal(c.positions, p) and np.array_equal(c.opacity_logits, o)
    res = run.result()
    assert res.ok and res.request.request_id == 1
    assert sum(len(c) for c in res.chunks.values()) == sum(len(c) for c in run.optimized.chunks)
    for c in res.chunks.values():
        c.validate()
    assert res.backend["caption"].startswith("close-up (level 1) of an astronaut")


def test_cancel_and_errors_become_failed_results(e0):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2  # cancelled after two stages

    with pytest.raises(Cancelled):
        run_zoom(request(e0), CFG, cancel=cancel)
    assert zoom(request(e0), CFG, cancel=lambda: True).error == "cancelled"
    empty = ZoomRequest(2, 0, request(e0).camera, (0.0, 0.0, 0.0), "x", scene=())
    r = zoom(empty, CFG)
    assert not r.ok and r.error == "the request carries no existing world to zoom into"
    r = zoom(ZoomRequest(3, 0, request(e0).camera, (0.0, 0.0, 0.0), "x", scene=request(e0).scene,
                         settings={"bogus": 1}), CFG)
    assert not r.ok and r.error.startswith("unknown setting 'bogus'")  # a user error: no class name


def test_a_level_made_smaller_than_it_is_shown_is_solid_where_it_is_shown(e0):
    """A CPU-sized level is fitted at fewer pixels than the window shows it with: it is fitted
    with the display's antialias term and its thin spots are closed, so drawn at the request
    camera's size it covers its view (the old world no longer shows through a level at its own
    scale, the background would; issue 21)."""
    from generation.stages.observe import render_view
    from generation.stages.optimize import COVERED_ALPHA

    req = request(e0)
    shown = req.camera.resampled(192, 192 * req.camera.height // req.camera.width)
    req = ZoomRequest(req.request_id, req.parent_step, shown, req.point, req.prompt,
                      seed=req.seed, scene=req.scene, level=req.level, context=req.context)
    run = run_zoom(req, CFG)
    assert run.camera.width == 64 and run.backend["fit_alpha"] is not None

    def coverage(chunks):
        _, alpha, _, _ = render_view(shown, tuple((c, None) for c in chunks))
        h, w = alpha.shape
        return alpha[h // 8: -h // 8, w // 8: -w // 8]

    fitted, solid = coverage(run.optimized.chunks), coverage(run.chunks)
    assert solid.mean() >= COVERED_ALPHA > fitted.mean()
    assert np.percentile(solid, 5) > np.percentile(fitted, 5) + 0.01


def test_a_level_made_smaller_than_it_is_shown_gets_less_synthesized_texture(e0, monkeypatch):
    from dataclasses import replace

    from generation import pipeline
    from generation.sizes import DETAIL_FALLOFF
    from generation.stages import super_resolve

    seen = []
    real = super_resolve.run  # pipeline.sr_stage is this module

    def bicubic(inp, backend="builtin", **options):
        seen.append((inp.width, inp.detail_strength))
        return real(inp, "bicubic")

    monkeypatch.setattr(pipeline.sr_stage, "run", bicubic)
    req = request(e0)
    shown = req.camera.width  # 64: the request camera's size
    for made, share in ((shown, 1.0), (shown // 2, 0.5 ** DETAIL_FALLOFF)):
        seen.clear()
        run_zoom(req, replace(CFG, zoom_long_side=made, detail_strength=0.8))
        assert seen[0][0] == made and seen[0][1] == pytest.approx(0.8 * share)
