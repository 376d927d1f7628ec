"""Camera control math, input mapping and bindings, without a window."""

import math

import numpy as np
import pygame
import pytest

from engine.camera import Camera
from engine.clock import FakeClock
from engine.controller import CameraInput, FlyController, ZOOM_PER_STEP
from engine.loop import (APPLY_DEFERRED, DRAW_NOTHING, DRAW_OVERLAY, DRAW_WORLD, STAGE_ORDER,
                         FrameLoop)
from engine.world import World
from ui.bindings import ACTIONS, Bindings, BindingsError, load_bindings
from ui.input import InputSystem


def _controller(distance=4.0):
    cam = Camera.look_at([0, 0, -distance], [0, 0, 0.0], fov_y_deg=50, width=320, height=240)
    return FlyController(cam, focus_distance=distance)


def test_controller_round_trips_its_camera():
    cam = Camera.look_at([1.0, -2.0, -4.0], [0, 0, 0.0], fov_y_deg=40, width=320, height=240)
    c = FlyController(cam, 3.0)
    np.testing.assert_allclose(c.camera.T_world_camera, cam.T_world_camera, atol=1e-12)
    assert abs(c.camera.fy - cam.fy) < 1e-9


def test_wheel_zoom_shrinks_pixel_scale_geometrically_over_orders_of_magnitude():
    c = _controller()
    s0 = c.pixel_scale
    for _ in range(200):  # 60 notches in total, eased over frames
        c.update(CameraInput(zoom_steps=0.3), 1 / 60)
    for _ in range(200):
        c.update(CameraInput(), 1 / 60)
    np.testing.assert_allclose(s0 / c.pixel_scale, ZOOM_PER_STEP ** 60, rtol=1e-6)
    assert c.zoom_factor > 1e5
    # the point zoomed toward stays in front, at the centre
    uv, z = c.camera.project(np.zeros((1, 3)))
    assert z[0] > 0 and np.allclose(uv[0], [160, 120], atol=1e-6)


def test_zoom_toward_cursor_keeps_that_point_under_the_cursor():
    c = _controller()
    anchor = (250.0, 60.0)
    target = c.camera.unproject(np.array([anchor]), np.array([4.0]))[0]
    c.update(CameraInput(zoom_steps=5, zoom_anchor=anchor), 10.0)  # long dt: fully applied
    uv, z = c.camera.project(target[None])
    np.testing.assert_allclose(uv[0], anchor, atol=1e-6)
    np.testing.assert_allclose(z[0], 4.0 / ZOOM_PER_STEP ** 5, rtol=1e-9)


def test_fly_speed_scales_with_pixel_scale():
    shallow, deep = _controller(4.0), _controller(4e-6)
    for c in (shallow, deep):
        c.update(CameraInput(move=(0, 0, 1)), 0.5)
    d_shallow = shallow.position[2] + 4.0
    d_deep = deep.position[2] + 4e-6
    np.testing.assert_allclose(d_deep / d_shallow, 1e-6, rtol=1e-9)


def test_pitch_is_clamped_and_look_turns():
    c = _controller()
    c.update(CameraInput(look=(0.5, 10.0)), 0.016)
    assert c.pitch < math.radians(90) and abs(c.yaw - 0.5) < 1e-12


def test_frame_loop_runs_stages_in_the_fixed_order_with_a_fake_clock():
    calls = []
    world = World()
    ours = [name for name in STAGE_ORDER if name != APPLY_DEFERRED]
    stages = {name: (lambda n: (lambda ctx: calls.append((n, ctx.frame, ctx.dt))))(name) for name in ours}
    clock = FakeClock()
    loop = FrameLoop(world, stages, clock=clock, fps_cap=50)
    loop.run(3)
    assert [c[0] for c in calls] == ours * 3
    assert [c[2] for c in calls[::len(ours)]] == [0.0, 0.02, 0.02]
    assert STAGE_ORDER.index("render") < STAGE_ORDER.index(APPLY_DEFERRED) < STAGE_ORDER.index("present")
    with pytest.raises(ValueError):
        FrameLoop(world, {"physics": lambda ctx: None})
    with pytest.raises(ValueError):  # the engine applies deferred commands itself
        FrameLoop(world, {APPLY_DEFERRED: lambda ctx: None})


def test_a_frame_that_draws_nothing_sleeps_and_is_not_a_drawn_frame():
    """`detect_changes` decides what a frame draws; a frame that draws nothing leaves the
    CPU to others for the idle frame time, and the frame statistics count drawn frames."""
    plans = iter([DRAW_WORLD, DRAW_NOTHING, DRAW_NOTHING, DRAW_OVERLAY])
    starts = []

    def detect(ctx):
        starts.append(ctx.started)
        ctx.draw = next(plans)
        ctx.clock.advance(0.004)  # each frame's own work

    clock = FakeClock()
    loop = FrameLoop(World(), {"detect_changes": detect}, clock=clock, fps_cap=None, idle_fps=20)
    loop.run(4)
    assert np.diff(starts).tolist() == pytest.approx([0.004, 0.05, 0.05])
    assert len(loop.times._times) == 2 and loop.times.last_ms == pytest.approx(4.0)
    with pytest.raises(ValueError):
        FrameLoop(World(), {"detect_changes": lambda ctx: setattr(ctx, "draw", "maybe")},
                  clock=FakeClock()).step()
    world = World()
    assert world.changes == 0
    world.commands.spawn()
    world.apply_commands()
    world.apply_commands()  # nothing queued: no change
    assert world.changes == 1


def test_redraw_tracker_draws_only_what_changed():
    from ui.redraw import RedrawTracker

    r = RedrawTracker()
    assert r.plan("view", "hud") == DRAW_WORLD  # no image yet
    r.drew_world("view", busy=True)
    r.drew_hud("hud")
    assert r.plan("view", "hud") == DRAW_WORLD  # chunks were still uploading
    r.drew_world("view", busy=False)
    assert r.plan("view", "hud") == DRAW_NOTHING
    assert r.plan("view", "hud", force_present=True) == DRAW_OVERLAY  # e.g. a screenshot
    assert r.plan("view", "hud 2") == DRAW_OVERLAY
    assert r.plan("moved", "hud") == DRAW_WORLD
    r.forget()  # a resized or uncovered window
    assert r.plan("view", "hud") == DRAW_WORLD


def test_deferred_commands_apply_at_the_apply_point():
    world = World()
    seen = []

    class Marker:
        pass

    stages = {
        "input": lambda ctx: ctx.world.commands.spawn(Marker()),
        "render": lambda ctx: seen.append(len(list(ctx.world.query(Marker)))),
    }
    loop = FrameLoop(world, stages, clock=FakeClock())
    loop.run(2)
    assert seen == [0, 1]  # spawned in frame 0, visible to systems from frame 1


def _key(key, down=True, mod=0):
    return pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=key, mod=mod,
                              unicode="", scancode=0)


def test_keyboard_mouse_and_wheel_become_actions():
    inp = InputSystem()
    fi = inp.process([_key(pygame.K_w), _key(pygame.K_LSHIFT)], 0.1)
    assert fi.camera.move[2] == 1 and fi.camera.speed == 4.0
    fi = inp.process([_key(pygame.K_w, False)], 0.1)
    assert fi.camera.move[2] == 0
    fi = inp.process([_key(pygame.K_s, mod=pygame.KMOD_CTRL)], 0.1)
    assert "save" in fi.pressed and fi.camera.move[2] == 0  # ctrl+s saves, does not fly back
    fi = inp.process([pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=3, pos=(10, 10)),
                      pygame.event.Event(pygame.MOUSEMOTION, pos=(60, 10), rel=(50, 0), buttons=(0, 0, 1))], 0.1)
    assert fi.camera.look[0] == pytest.approx(50 * inp.mouse_radians_per_px)
    fi = inp.process([pygame.event.Event(pygame.MOUSEWHEEL, x=0, y=2, precise_x=0.0, precise_y=2.0,
                                         flipped=False, which=0)], 0.1)
    assert fi.camera.zoom_steps == 2 and fi.camera.zoom_anchor == (60, 10)
    fi = inp.process([pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(30, 40))], 0.1)
    assert "pick" in fi.pressed and fi.click == (30, 40)


def test_text_mode_sends_keys_to_the_prompt():
    inp = InputSystem()
    inp.text_mode = True
    fi = inp.process([_key(pygame.K_w), pygame.event.Event(pygame.TEXTINPUT, text="a bug"),
                      _key(pygame.K_BACKSPACE), _key(pygame.K_RETURN)], 0.1)
    assert fi.camera.move == (0.0, 0.0, 0.0)
    assert fi.text == "a bug" and fi.backspaces == 1 and "generate" in fi.pressed


def test_gamepad_axes_have_dead_zones_and_buttons_fire_actions():
    inp = InputSystem()
    ev = lambda axis, v: pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=7, axis=axis, value=v)  # noqa: E731
    fi = inp.process([ev(1, -3000)], 0.1)  # inside the dead zone
    assert fi.camera.move[2] == 0
    fi = inp.process([ev(1, -32767), ev(5, 32767)], 0.1)
    assert fi.camera.move[2] == pytest.approx(1.0) and fi.camera.zoom_rate > 0
    fi = inp.process([pygame.event.Event(pygame.CONTROLLERBUTTONDOWN, instance_id=7, button=0)], 0.1)
    assert "pick" in fi.pressed
    fi = inp.process([pygame.event.Event(pygame.CONTROLLERBUTTONDOWN, instance_id=7, button=10)], 0.1)
    assert fi.camera.move[1] == 1  # right shoulder held: up


def test_bindings_toml_rebinds_and_refuses_garbage(tmp_path):
    good = tmp_path / "b.toml"
    good.write_text('[keyboard]\nmove_forward = ["i"]\nsave = "ctrl+w"\n[gamepad]\npick = ["x"]\n')
    b = load_bindings(good)
    assert b.keyboard["move_forward"] == ["i"] and b.gamepad["pick"] == ["x"]
    inp = InputSystem(b)
    assert inp.process([_key(pygame.K_i)], 0.1).camera.move[2] == 1
    for text in ['[keyboard]\nfly = ["w"]\n', '[keyboard]\nsave = ["ctrl+nosuchkey"]\n',
                 '[mouse]\nx = 1\n', 'not toml [', '[gamepad]\npick = ["z"]\n', '[keyboard]\nsave = 3\n']:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(BindingsError) as err:
            load_bindings(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(BindingsError):
        load_bindings(tmp_path / "missing.toml")
    assert len(Bindings().help_lines()) >= len(ACTIONS)
