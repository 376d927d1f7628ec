// Pinhole cameras in float64 (JavaScript numbers), the twin of engine/camera.py, and the fly
// controller of engine/controller.py.
//
// Axes follow OpenCV: x right, y down, z forward; R holds the camera axes in world
// coordinates as columns (T_world_camera[:3, :3], row-major), eye the camera position.
// Everything that touches world positions subtracts the eye first, in float64, so a view
// zoomed 10^6x far from the world origin keeps its precision (DESIGN.md).

export const UP = [0, -1, 0];
export const ZOOM_PER_STEP = 1.25; // one wheel notch shrinks the pixel scale by this factor
export const ZOOM_SMOOTHING_S = 0.12;
export const SCREENS_PER_SECOND = 0.6;
export const NEAR_FRACTION = 1e-3;
const MAX_PITCH = (89 * Math.PI) / 180;

export class CameraError extends Error {}

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const norm = (a) => Math.hypot(a[0], a[1], a[2]);
const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];

export class Camera {
  // R: [9] row-major world-from-camera rotation; eye: [3]
  constructor(R, eye, fx, fy, cx, cy, width, height, near = 1e-6, far = 1e9) {
    Object.assign(this, { R: Array.from(R), eye: Array.from(eye), fx, fy, cx, cy, width, height, near, far });
  }

  get focal() { return Math.sqrt(this.fx * this.fy); }
  get forward() { return [this.R[2], this.R[5], this.R[8]]; }
  column(j) { return [this.R[j], this.R[3 + j], this.R[6 + j]]; }

  // world point -> camera coordinates (float64)
  toCamera(p) {
    const d = sub(p, this.eye);
    const R = this.R;
    return [d[0] * R[0] + d[1] * R[3] + d[2] * R[6],
            d[0] * R[1] + d[1] * R[4] + d[2] * R[7],
            d[0] * R[2] + d[1] * R[5] + d[2] * R[8]];
  }

  project(p) {
    const c = this.toCamera(p);
    return [this.fx * c[0] / c[2] + this.cx, this.fy * c[1] / c[2] + this.cy, c[2]];
  }

  unproject(u, v, depth) {
    const c = [(u - this.cx) / this.fx * depth, (v - this.cy) / this.fy * depth, depth];
    const R = this.R;
    return [this.eye[0] + R[0] * c[0] + R[1] * c[1] + R[2] * c[2],
            this.eye[1] + R[3] * c[0] + R[4] * c[1] + R[5] * c[2],
            this.eye[2] + R[6] * c[0] + R[7] * c[1] + R[8] * c[2]];
  }

  pixelScale(p) { return this.toCamera(p)[2] / this.focal; }

  // side planes in camera space: unit normals n with n . p >= 0 inside (frustum_planes_camera)
  sidePlanes() {
    const l = -this.cx / this.fx, r = (this.width - this.cx) / this.fx;
    const t = -this.cy / this.fy, b = (this.height - this.cy) / this.fy;
    return [[1, 0, -l], [-1, 0, r], [0, 1, -t], [0, -1, b]].map((n) => scale(n, 1 / norm(n)));
  }

  // [zmin, zmax] camera depth of an AABB (extremes at corners), and whether it may touch
  // the frustum (conservative: no false negatives)
  aabbView(lo, hi) {
    const planes = this.sidePlanes();
    const out = [false, false, false, false, false, false];
    const inside = [false, false, false, false, false, false];
    let zmin = Infinity, zmax = -Infinity;
    for (let i = 0; i < 8; i++) {
      const c = this.toCamera([i & 1 ? hi[0] : lo[0], i & 2 ? hi[1] : lo[1], i & 4 ? hi[2] : lo[2]]);
      zmin = Math.min(zmin, c[2]);
      zmax = Math.max(zmax, c[2]);
      for (let k = 0; k < 4; k++) if (dot(planes[k], c) >= 0) inside[k] = true;
      if (c[2] >= this.near) inside[4] = true;
      if (c[2] <= this.far) inside[5] = true;
    }
    for (let k = 0; k < 6; k++) out[k] = !inside[k];
    return { zmin, zmax, inFrustum: !out.some(Boolean) };
  }

  toDict() {
    const R = this.R, e = this.eye;
    return {
      T_world_camera: [[R[0], R[1], R[2], e[0]], [R[3], R[4], R[5], e[1]], [R[6], R[7], R[8], e[2]], [0, 0, 0, 1]],
      fx: this.fx, fy: this.fy, cx: this.cx, cy: this.cy, width: this.width, height: this.height,
      near: this.near, far: this.far,
    };
  }

  static fromDict(d) {
    const num = (v, what) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new CameraError(`camera ${what} is not a finite number`);
      return v;
    };
    if (!d || typeof d !== 'object') throw new CameraError('camera must be an object');
    const T = d.T_world_camera;
    if (!Array.isArray(T) || T.length !== 4 || !T.every((r) => Array.isArray(r) && r.length === 4)) {
      throw new CameraError('camera pose must be a 4x4 list');
    }
    const R = [];
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) R.push(num(T[i][j], 'pose'));
    const eye = [0, 1, 2].map((i) => num(T[i][3], 'pose'));
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        const d2 = R[i] * R[j] + R[3 + i] * R[3 + j] + R[6 + i] * R[6 + j];
        if (Math.abs(d2 - (i === j ? 1 : 0)) > 1e-6) throw new CameraError('camera rotation is not orthonormal');
      }
    }
    const c = new Camera(R, eye, num(d.fx, 'fx'), num(d.fy, 'fy'), num(d.cx, 'cx'), num(d.cy, 'cy'),
      num(d.width, 'width'), num(d.height, 'height'), num(d.near ?? 1e-6, 'near'), num(d.far ?? 1e9, 'far'));
    if (!(c.fx > 0 && c.fy > 0) || !(c.near > 0 && c.near < c.far) || !(c.width >= 1 && c.height >= 1)) {
      throw new CameraError('camera intrinsics out of range');
    }
    return c;
  }

  // Camera.look_at: OpenCV axes, `up` shown upward
  static lookAt(eye, target, up = UP, fovYDeg = 60, width = 640, height = 480, near = 1e-6, far = 1e9) {
    let f = sub(target, eye);
    f = scale(f, 1 / norm(f));
    let right = cross(f, up);
    if (norm(right) < 1e-9) {
      right = cross(f, [1, 0, 0]);
      if (norm(right) < 1e-9) right = cross(f, [0, 0, 1]);
    }
    right = scale(right, 1 / norm(right));
    const down = cross(f, right);
    const R = [right[0], down[0], f[0], right[1], down[1], f[1], right[2], down[2], f[2]];
    const focal = (0.5 * height) / Math.tan(((fovYDeg * Math.PI) / 180) / 2);
    return new Camera(R, eye, focal, focal, width / 2, height / 2, width, height, near, far);
  }

  get fovYDeg() { return (2 * Math.atan((0.5 * this.height) / this.fy) * 180) / Math.PI; }

  // same pose and vertical field of view at another image size (camera_path.with_image_size)
  withImageSize(width, height) {
    const f = (0.5 * height) / Math.tan(((this.fovYDeg * Math.PI) / 180) / 2);
    return new Camera(this.R, this.eye, f, f, width / 2, height / 2, width, height, this.near, this.far);
  }
}

// engine.render.camera_path.centring: how far (0..1) the sweep has slid its target from where
// the start view shows it toward the centre on one axis, its frame shrunk to s of the start's
export const MIN_MARGIN = 0.05;
export function centring(s, offset) {
  const o = Math.abs(offset);
  if (o === 0) return 1;
  const margin = o < 1 ? 1 - o : MIN_MARGIN;
  return Math.min(1, Math.max(0, ((1 - s) * margin) / (s * o)));
}

// engine.render.camera_path.zoom_sweep: fly toward `target`, the pixel scale there shrinking
// geometrically to sEnd, keeping the start's orientation and intrinsics while the target slides
// to the centre (never showing past the start view's edge); sweepCamera gives the camera at u
export function sweepCamera(start, target, sEnd, u) {
  const eye0 = start.eye;
  const d0 = norm(sub(target, eye0));
  if (!(d0 > 0)) throw new CameraError('the zoom target is at the camera position');
  let dEnd = sEnd * start.focal;
  if (!(Number.isFinite(dEnd) && dEnd > 0)) throw new CameraError('no finite end scale for the zoom');
  dEnd = Math.min(dEnd, d0);
  const [x, y, z] = start.toCamera(target);
  if (!(z > 0)) throw new CameraError('the zoom target is behind the start camera');
  const off = [(start.fx * x) / z, (start.fy * y) / z];
  const half = [0.5 * start.width, 0.5 * start.height];
  const d = d0 * (dEnd / d0) ** u;
  const px = off.map((o, i) => o * (1 - centring(d / z, o / half[i])));
  const r = [px[0] / start.fx, px[1] / start.fy, 1];
  const R = start.R;
  const ray = [0, 1, 2].map((i) => R[3 * i] * r[0] + R[3 * i + 1] * r[1] + R[3 * i + 2] * r[2]);
  const n = norm(ray);
  const eye = [0, 1, 2].map((i) => target[i] - (d * ray[i]) / n);
  return new Camera(R, eye, start.fx, start.fy, start.cx, start.cy, start.width, start.height,
    Math.min(start.near, d * 1e-3), start.far);
}

export function zoomSweep(start, target, sEnd, frames) {
  return Array.from({ length: frames }, (_, k) => sweepCamera(start, target, sEnd, frames === 1 ? 0 : k / (frames - 1)));
}

// engine/controller.py FlyController: yaw/pitch about world up (-y), zoom as a dolly toward the
// point under the cursor at the focus depth, fly speed proportional to the pixel scale there
export class FlyController {
  constructor(camera, focusDistance) {
    const f = camera.forward;
    this.position = camera.eye.slice();
    this.yaw = Math.atan2(f[0], f[2]);
    this.pitch = Math.asin(Math.max(-1, Math.min(1, -f[1])));
    this.fovYDeg = camera.fovYDeg;
    this.width = camera.width;
    this.height = camera.height;
    this.far = camera.far;
    this.focusDistance = focusDistance > 0 ? focusDistance : 1;
    this.pendingZoomLog = 0;
    this.anchor = null;
    this.referenceScale = this.pixelScale;
  }

  get forward() {
    const cp = Math.cos(this.pitch);
    return [Math.sin(this.yaw) * cp, -Math.sin(this.pitch), Math.cos(this.yaw) * cp];
  }

  get camera() {
    const near = Math.max(this.focusDistance * NEAR_FRACTION, 1e-300);
    const p = this.position, f = this.forward;
    return Camera.lookAt(p, [p[0] + f[0], p[1] + f[1], p[2] + f[2]], UP, this.fovYDeg, this.width,
      this.height, near, Math.max(this.far, near * 10));
  }

  get pixelScale() { return this.focusDistance / this.camera.focal; }
  get zoomFactor() { return this.referenceScale / this.pixelScale; }
  get busy() { return Math.abs(this.pendingZoomLog) > 1e-4; }

  setFocus(distance) {
    if (Number.isFinite(distance) && distance > 0) this.focusDistance = distance;
  }

  resize(width, height) { this.width = width; this.height = height; }

  // input: {move: [right, up, forward], look: [yaw, pitch], zoomSteps, zoomRate, anchor, speed}
  update(input, dt) {
    this.yaw += input.look[0];
    this.pitch = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, this.pitch + input.look[1]));
    const cam = this.camera;
    const m = input.move;
    if (m[0] || m[1] || m[2]) {
      const speed = SCREENS_PER_SECOND * this.width * this.pixelScale * (input.speed || 1);
      const r = cam.column(0), d = cam.column(1), f = cam.column(2);
      for (let i = 0; i < 3; i++) this.position[i] += (r[i] * m[0] - d[i] * m[1] + f[i] * m[2]) * speed * dt;
    }
    if (input.zoomSteps || input.zoomRate) {
      this.pendingZoomLog += Math.log(ZOOM_PER_STEP) * ((input.zoomSteps || 0) + (input.zoomRate || 0) * dt);
      this.anchor = input.anchor || null;
    }
    if (this.pendingZoomLog) {
      let share = dt <= 0 ? 1 : 1 - Math.exp(-dt / ZOOM_SMOOTHING_S);
      if (Math.abs(this.pendingZoomLog) < 1e-4) share = 1;
      const step = this.pendingZoomLog * share;
      this.pendingZoomLog -= step;
      this.dolly(Math.exp(step), this.anchor);
    }
  }

  dolly(factor, anchor) {
    const cam = this.camera;
    const [u, v] = anchor || [cam.cx, cam.cy];
    const target = cam.unproject(u, v, this.focusDistance);
    for (let i = 0; i < 3; i++) this.position[i] = target[i] + (this.position[i] - target[i]) / factor;
    this.focusDistance /= factor;
  }
}
