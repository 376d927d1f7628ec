"""Camera-path files, keyframe interpolation and zoom sweeps (pure numpy, no GL)."""

import json
import math

import numpy as np
import pytest

from engine.camera import Camera
from engine.render.camera_path import (CameraPathError, default_camera, load_camera_path,
                                       parse_camera_path, zoom_sweep)


def test_keyframes_interpolate_positions_linearly_and_focal_geometrically():
    cams = parse_camera_path({
        "version": 1, "width": 64, "height": 48, "frames": 5,
        "keyframes": [{"eye": [0, 0, -4], "target": [0, 0, 0], "fov_y_deg": 60},
                      {"eye": [2, 0, -2], "target": [0, 0, 0], "fov_y_deg": 10}]})
    assert len(cams) == 5 and all((c.width, c.height) == (64, 48) for c in cams)
    np.testing.assert_allclose([c.position for c in cams],
                               np.linspace([0, 0, -4], [2, 0, -2], 5), atol=1e-12)
    focal = np.array([c.fy for c in cams])
    ratios = focal[1:] / focal[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # equal zoom per frame
    assert focal[0] == pytest.approx(24 / math.tan(math.radians(30)))
    for c in cams:  # each looks at the target: it projects to the image centre
        uv, z = c.project(np.zeros((1, 3)))
        np.testing.assert_allclose(uv[0], [32, 24], atol=1e-9)
        assert z[0] > 0


def test_explicit_cameras_round_trip_and_rescale(tmp_path):
    cam = Camera.look_at([1.0, 2.0, -3.0], [0.0, 0.0, 0.0], fov_y_deg=40, width=80, height=60)
    path = tmp_path / "cams.json"
    path.write_text(json.dumps({"version": 1, "cameras": [cam.to_dict(), cam.to_dict()]}))
    same = load_camera_path(path)
    assert len(same) == 2 and np.array_equal(same[0].T_world_camera, cam.T_world_camera)
    assert (same[0].fx, same[0].width) == (cam.fx, 80)
    half = load_camera_path(path, width=40, height=30)
    assert (half[0].fx, half[0].cx, half[0].height) == (cam.fx / 2, cam.cx / 2, 30)
    with pytest.raises(CameraPathError, match="one frame per camera"):
        load_camera_path(path, frames=3)


def test_a_single_keyframe_and_the_defaults():
    (cam,) = parse_camera_path({"version": 1,
                                "keyframes": [{"eye": [0, 0, -1], "target": [0, 0, 1]}]})
    assert (cam.width, cam.height) == (1280, 720)  # play's window
    assert 2 * math.degrees(math.atan(360 / cam.fy)) == pytest.approx(50.0)
    assert np.allclose(cam.T_world_camera[:3, 1], [0, 1, 0])  # image v grows along +y


def test_up_parallel_to_the_view_is_refused():
    with pytest.raises(CameraPathError, match="parallel"):
        parse_camera_path({"version": 1, "keyframes": [
            {"eye": [0, 0, 0], "target": [0, 3, 0], "up": [0, -1, 0]}]})


def test_zoom_sweep_shrinks_the_pixel_scale_geometrically():
    start = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=64,
                           height=48)
    target = np.array([0.1, -0.05, 0.0])
    cams = zoom_sweep(start, target, s_end=1e-6, frames=9)
    scales = np.array([np.linalg.norm(c.position - target) / c.focal for c in cams])
    assert scales[-1] == pytest.approx(1e-6, rel=1e-9)
    np.testing.assert_allclose(scales[1:] / scales[:-1], (1e-6 / scales[0]) ** (1 / 8),
                               rtol=1e-9)
    for c in cams:
        assert c.near < np.linalg.norm(c.position - target)


def test_zoom_sweep_starts_as_the_start_view_and_slides_its_target_to_the_centre():
    """Frame 0 is the start's view; the orientation never changes; the target moves to the
    centre monotonically and is there at the end; and no frame sees past the start view's
    edge on a plane facing the camera (the photo of a new world), however off-centre."""
    start = Camera.look_at([0.0, 0.0, -4.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=64,
                           height=48)
    rng = np.random.default_rng(1)
    for tx, ty in [(1.2, -0.6), (-1.9, 1.5), (0.0, 1.8), *rng.uniform(-1.5, 1.5, (5, 2))]:
        target = np.array([tx, ty, 0.0])
        cams = zoom_sweep(start, target, s_end=1e-4, frames=31)
        np.testing.assert_allclose(cams[0].T_world_camera, start.T_world_camera, atol=1e-12)
        off = []
        for c in cams:
            np.testing.assert_allclose(c.T_world_camera[:3, :3], start.T_world_camera[:3, :3])
            uv, z = c.project(target[None])
            assert z[0] > 0
            off.append(np.abs(uv[0] - [32, 24]))
            # the frame's corners on the plane z = 0 lie inside the start view
            corners = np.array([[0, 0], [64, 0], [0, 48], [64, 48]], np.float64)
            rays = (corners - [c.cx, c.cy]) / [c.fx, c.fy]
            pts = c.position[None, :2] + rays * (0.0 - c.position[2])
            suv, _ = start.project(np.c_[pts, np.zeros(4)])
            assert np.all(suv >= -1e-6) and np.all(suv <= [64 + 1e-6, 48 + 1e-6]), (tx, ty)
        off = np.array(off)
        assert np.all(np.diff(off, axis=0) <= 1e-9) and np.all(off[-1] < 1e-6)


def test_default_camera_frames_the_bulk_of_the_points():
    rng = np.random.default_rng(0)
    pts = rng.normal([5.0, -2.0, 30.0], [2.0, 1.0, 0.5], (5000, 3))
    pts[:10] += 1e4  # far floaters must not shrink the view
    cam = default_camera(pts, 160, 120)
    uv, z = cam.project(pts[10:])
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 160) & (uv[:, 1] >= 0) & (uv[:, 1] < 120) & (z > 0)
    assert inside.mean() > 0.9
    spread = uv[inside].std(axis=0)
    assert spread[0] > 15  # the points fill a good part of the view, not a speck
