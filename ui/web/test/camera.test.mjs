// Cameras and the zoom sweep against engine/camera.py and engine/render/camera_path.py.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Camera, FlyController, zoomSweep } from '../viewer/camera.js';
import { runPython } from './python.mjs';

const fx = runPython(`
import json, numpy as np
from engine.camera import Camera
from engine.render.camera_path import zoom_sweep
start = Camera.look_at([0.3, -0.2, -4.0], [0.0, 0.0, 0.0], fov_y_deg=50, width=320, height=240, near=1e-4)
target = np.array([0.61, -0.37, 0.002])  # well off-centre: the sweep turns toward it
sweep = zoom_sweep(start, target, 1e-7, 9)
pts = np.array([[0.1, 0.2, 0.3], [1e6 + 0.5, -2.0, 7.0]])
print(json.dumps(dict(start=start.to_dict(), target=target.tolist(), sweep=[c.to_dict() for c in sweep],
                      pts=pts.tolist(), cam=sweep[-1].points_to_camera(pts).tolist())))
`);

const close = (a, b, tol, what) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('to_dict / from_dict round trip', () => {
  const c = Camera.fromDict(fx.start);
  assert.deepEqual(c.toDict(), { ...fx.start });
});

test('the zoom sweep equals engine.render.camera_path.zoom_sweep, down to 1e-7 per pixel', () => {
  const ours = zoomSweep(Camera.fromDict(fx.start), fx.target, 1e-7, 9);
  ours.forEach((c, k) => {
    const want = fx.sweep[k], got = c.toDict();
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) close(got.T_world_camera[i][j], want.T_world_camera[i][j], 1e-12, `frame ${k} T[${i}][${j}]`);
    for (const key of ['fx', 'fy', 'cx', 'cy', 'near', 'far']) close(got[key], want[key], 1e-12, `frame ${k} ${key}`);
  });
});

test('points go to camera space in float64 (camera-relative)', () => {
  const c = Camera.fromDict(fx.sweep[fx.sweep.length - 1]);
  fx.pts.forEach((p, i) => c.toCamera(p).forEach((v, k) => close(v, fx.cam[i][k], 1e-12, `point ${i}`)));
});

test('a wheel zoom keeps the point under the cursor where it is', () => {
  const cam = Camera.fromDict(fx.start);
  const fly = new FlyController(cam, 4.0);
  const anchor = [250, 60];
  const before = fly.camera.unproject(anchor[0], anchor[1], fly.focusDistance);
  for (let k = 0; k < 40; k++) fly.update({ move: [0, 0, 0], look: [0, 0], zoomSteps: k === 0 ? 10 : 0, anchor }, 1 / 60);
  const [u, v] = fly.camera.project(before);
  close(u, anchor[0], 1e-6, 'u');
  close(v, anchor[1], 1e-6, 'v');
  assert.ok(fly.zoomFactor > 8, `zoomed ${fly.zoomFactor}x`);
});
