"""The working size of a new level: the size it is shown at, within what the machine affords."""

import numpy as np
import pytest

from engine.camera import Camera
from engine.messages import ZoomRequest
from generation.config import ConfigError, GenerationConfig
from generation.pipeline import working_camera
from generation.sizes import (CPU_NEW_LONG_SIDE, CPU_ZOOM_LONG_SIDE, DISPLAY_LONG_SIDE,
                              display_low_pass_px2, working_long_side)


def test_a_level_is_made_at_the_size_it_is_shown_where_the_machine_affords_it():
    # an accelerator: the window's size for a zoom, the display size (never above the photo)
    assert working_long_side("zoom", 1920, fast=True).long_side == 1920
    assert working_long_side("new", 4000, fast=True).long_side == DISPLAY_LONG_SIDE
    assert working_long_side("new", 600, fast=True).long_side == 600
    # a CPU: capped, and it says so
    cpu = working_long_side("zoom", 1280, fast=False)
    assert (cpu.long_side, cpu.rule) == (CPU_ZOOM_LONG_SIDE, "CPU limit")
    assert working_long_side("new", 4000, fast=False).long_side == CPU_NEW_LONG_SIDE
    assert working_long_side("zoom", 200, fast=False) == working_long_side("zoom", 200, fast=True)
    # a size set explicitly wins everywhere
    assert working_long_side("zoom", 1280, 96, fast=True).rule == "set"
    assert working_long_side("new", 1280, 96, fast=False).long_side == 96
    with pytest.raises(ValueError):
        working_long_side("render", 100)


def test_sizes_are_automatic_by_default_and_explicit_ones_are_checked():
    assert GenerationConfig().zoom_long_side == 0 and GenerationConfig().new_long_side == 0
    assert GenerationConfig.from_settings({"zoom_long_side": "480"}).zoom_long_side == 480
    for bad in (1, 15, 5000, -1):
        with pytest.raises(ConfigError):
            GenerationConfig.from_settings({"zoom_long_side": bad})


def test_the_zoom_camera_keeps_its_view_at_the_working_size():
    window = Camera.look_at([0, 0, -4.0], [0, 0, 0.0], fov_y_deg=40, width=1280, height=720)
    request = ZoomRequest(1, 0, window, (0.0, 0.0, 0.0), "x")
    cam, size = working_camera(request, GenerationConfig(device="cpu"))
    assert (cam.width, cam.height, size.rule) == (CPU_ZOOM_LONG_SIDE, 270, "CPU limit")
    np.testing.assert_allclose(cam.fx / cam.width, window.fx / window.width)  # same view
    cam, size = working_camera(request, GenerationConfig(zoom_long_side=320))
    assert (cam.width, size.rule) == (320, "set")


def test_the_fit_s_antialias_term_is_the_display_s_in_working_pixels():
    from engine.render.reference import LOW_PASS_PX2

    assert display_low_pass_px2(1280, 1280) == LOW_PASS_PX2  # the GPU-size path: unchanged
    assert display_low_pass_px2(1280, 640) == LOW_PASS_PX2  # never more than the viewers'
    assert display_low_pass_px2(480, 1280) == pytest.approx(LOW_PASS_PX2 * (480 / 1280) ** 2)
    assert display_low_pass_px2(0, 1280) == LOW_PASS_PX2
    terms = [display_low_pass_px2(w, 1280) for w in (160, 320, 480, 640, 960, 1280)]
    assert terms == sorted(terms)


def test_a_magnified_level_gets_less_synthesized_texture():
    from generation.sizes import detail_scale

    assert detail_scale(1280, 1280) == 1.0  # the GPU-size path: the parent band's share
    assert detail_scale(1280, 640) == 1.0  # shown smaller than made: never more
    assert detail_scale(0, 1280) == 1.0
    # the CPU default, as measured: the default share (2) falls to 0.5 of the parent band
    assert detail_scale(480, 1280) == pytest.approx(0.25)
    assert GenerationConfig().detail_strength * detail_scale(480, 1280) == pytest.approx(0.5)
    shares = [detail_scale(w, 1280) for w in (160, 320, 480, 640, 960, 1280)]
    assert shares == sorted(shares) and 0 < shares[0] < 0.25
    # a ratio of sizes, not sizes: the same magnification gets the same share
    assert detail_scale(240, 640) == pytest.approx(detail_scale(480, 1280))
