"""Fly-and-zoom camera control, in float64, the same at every zoom depth.

Owns: `FlyController`, the camera state (position, yaw, pitch, field of view, focus distance)
and how device-neutral motion (`CameraInput`) changes it. Zoom is first-class: it dollies the
camera toward the point under the cursor so the pixel scale there shrinks geometrically, and
fly speed is proportional to the pixel scale at the focus, so motion feels the same at x1 and
at x10^6.
Does not own: which keys or sticks produce the motion (`ui/`), or picking depth (renderer).

World "up" is -y (the OpenCV-style axes of `engine.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.camera import Camera

UP = np.array([0.0, -1.0, 0.0])
ZOOM_PER_STEP = 1.25  # one wheel notch shrinks the pixel scale at the focus by this factor
ZOOM_SMOOTHING_S = 0.12  # time constant of the eased zoom
SCREENS_PER_SECOND = 0.6  # fly speed: this many screen widths (at the focus depth) per second
NEAR_FRACTION = 1e-3  # near plane as a fraction of the focus distance
MAX_PITCH = math.radians(89.0)


@dataclass
class CameraInput:
    """One frame of device-neutral camera motion."""

    move: tuple[float, float, float] = (0.0, 0.0, 0.0)  # right, up, forward in [-1, 1]
    look: tuple[float, float] = (0.0, 0.0)  # yaw, pitch change in radians (already scaled)
    zoom_steps: float = 0.0  # wheel notches this frame (+ in, - out)
    zoom_rate: float = 0.0  # continuous zoom in notches per second (triggers)
    zoom_anchor: tuple[float, float] | None = None  # pixel to zoom toward; None = centre
    speed: float = 1.0  # boost (>1) / slow (<1) multiplier


class FlyController:
    def __init__(self, camera: Camera, focus_distance: float | None = None) -> None:
        f = camera.T_world_camera[:3, 2]
        self.position = camera.position
        self.yaw = math.atan2(f[0], f[2])
        self.pitch = math.asin(float(np.clip(-f[1], -1.0, 1.0)))
        self.fov_y_deg = 2 * math.degrees(math.atan(0.5 * camera.height / camera.fy))
        self.width, self.height = camera.width, camera.height
        self.far = camera.far
        self.focus_distance = float(focus_distance or 1.0)
        self._pending_zoom_log = 0.0  # log of the zoom still to ease in
        self._anchor: tuple[float, float] | None = None
        self.reference_scale = self.pixel_scale  # "x1" of the zoom factor shown in the HUD

    # ---- derived ------------------------------------------------------------------------
    @property
    def forward(self) -> np.ndarray:
        cp = math.cos(self.pitch)
        return np.array([math.sin(self.yaw) * cp, -math.sin(self.pitch), math.cos(self.yaw) * cp])

    @property
    def camera(self) -> Camera:
        near = max(self.focus_distance * NEAR_FRACTION, 1e-300)
        return Camera.look_at(self.position, self.position + self.forward, up=UP,
                              fov_y_deg=self.fov_y_deg, width=self.width, height=self.height,
                              near=near, far=max(self.far, near * 10))

    @property
    def pixel_scale(self) -> float:
        """World length per pixel at the focus distance."""
        return self.focus_distance / self.camera.focal

    @property
    def zoom_factor(self) -> float:
        return self.reference_scale / self.pixel_scale

    # ---- updates ------------------------------------------------------------------------
    def set_focus(self, distance: float) -> None:
        """Depth of what the user is looking at (from the last frame's depth buffer)."""
        if math.isfinite(distance) and distance > 0:
            self.focus_distance = float(distance)

    def look_at(self, point: np.ndarray) -> None:
        """Turn (yaw, pitch) to face `point`, and focus at its distance."""
        d = np.asarray(point, np.float64) - self.position
        distance = float(np.linalg.norm(d))
        if not distance > 0:
            return
        f = d / distance
        self.yaw = math.atan2(f[0], f[2])
        self.pitch = float(np.clip(math.asin(float(np.clip(-f[1], -1.0, 1.0))), -MAX_PITCH, MAX_PITCH))
        self.set_focus(distance)

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = int(width), int(height)

    def update(self, inp: CameraInput, dt: float) -> None:
        self.yaw += inp.look[0]
        self.pitch = float(np.clip(self.pitch + inp.look[1], -MAX_PITCH, MAX_PITCH))
        cam = self.camera
        R = cam.T_world_camera[:3, :3]  # columns: right, down, forward
        move = np.asarray(inp.move, np.float64)
        if np.any(move):
            speed = SCREENS_PER_SECOND * self.width * self.pixel_scale * inp.speed
            direction = R[:, 0] * move[0] - R[:, 1] * move[1] + R[:, 2] * move[2]
            self.position = self.position + direction * speed * dt
        if inp.zoom_steps or inp.zoom_rate:
            self._pending_zoom_log += math.log(ZOOM_PER_STEP) * (inp.zoom_steps + inp.zoom_rate * dt)
            self._anchor = inp.zoom_anchor
        if self._pending_zoom_log:
            # ease: apply the fraction of the pending zoom that this dt covers
            share = 1.0 if dt <= 0 else 1.0 - math.exp(-dt / ZOOM_SMOOTHING_S)
            if abs(self._pending_zoom_log) < 1e-4:
                share = 1.0
            step = self._pending_zoom_log * share
            self._pending_zoom_log -= step
            self.dolly(math.exp(step), self._anchor)

    def dolly(self, factor: float, anchor_px: tuple[float, float] | None = None) -> None:
        """Move toward the point under `anchor_px` (default: centre) at the focus depth so its
        distance, and so the pixel scale there, shrinks by `factor` (factor < 1 zooms out)."""
        cam = self.camera
        if anchor_px is None:
            anchor_px = (cam.cx, cam.cy)
        target = cam.unproject(np.array([anchor_px], np.float64), np.array([self.focus_distance]))[0]
        self.position = target + (self.position - target) / factor
        self.focus_distance /= factor
