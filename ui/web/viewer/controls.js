// Devices -> one frame of camera motion ({move, look, zoomSteps, zoomRate, anchor, speed}),
// as the app's ui/input.py does: the wheel zooms toward the cursor, dragging looks around,
// W A S D fly, Q E go down / up, = and - zoom, Shift 4x faster, Alt 4x slower; on a touch
// screen one finger looks and two fingers pinch-zoom toward their midpoint; a gamepad (the
// Gamepad API's standard mapping): left stick flies, right stick looks, triggers zoom,
// shoulders go down / up.

const MOUSE_RADIANS_PER_PX = 0.003;
const PAD_LOOK_RADIANS_PER_S = 2.2;
const PAD_ZOOM_NOTCHES_PER_S = 6;
const KEY_ZOOM_NOTCHES_PER_S = 5;
const DEAD_ZONE = 0.15;
const WHEEL_PX_PER_NOTCH = 100;
const LOG_ZOOM_PER_STEP = Math.log(1.25);
const KEYS = {
  KeyW: 'forward', ArrowUp: 'forward', KeyS: 'back', ArrowDown: 'back', KeyA: 'left', ArrowLeft: 'left',
  KeyD: 'right', ArrowRight: 'right', KeyE: 'up', KeyQ: 'down', Equal: 'zoomIn', PageUp: 'zoomIn',
  Minus: 'zoomOut', PageDown: 'zoomOut', ShiftLeft: 'boost', ShiftRight: 'boost', AltLeft: 'slow',
};

function deadZone(v) {
  if (Math.abs(v) < DEAD_ZONE) return 0;
  return Math.sign(v) * (Math.abs(v) - DEAD_ZONE) / (1 - DEAD_ZONE);
}

export class Controls {
  // element: the canvas; pixelRatio(): drawing-buffer pixels per CSS pixel
  constructor(element, pixelRatio = () => 1) {
    this.element = element;
    this.pixelRatio = pixelRatio;
    this.held = new Set();
    this.look = [0, 0];
    this.wheel = 0;
    this.anchor = null;
    this.pointers = new Map(); // pointerId -> [x, y] (CSS px)
    this.pinch = null; // last distance between two touches
    this.touched = false; // any input since the last poll (a user took over the camera)
    const opts = { passive: false };
    element.addEventListener('wheel', (e) => this.onWheel(e), opts);
    element.addEventListener('pointerdown', (e) => this.onPointerDown(e));
    element.addEventListener('pointermove', (e) => this.onPointerMove(e));
    for (const type of ['pointerup', 'pointercancel', 'pointerleave']) {
      element.addEventListener(type, (e) => this.onPointerUp(e));
    }
    element.addEventListener('contextmenu', (e) => e.preventDefault());
    window.addEventListener('keydown', (e) => this.onKey(e, true));
    window.addEventListener('keyup', (e) => this.onKey(e, false));
    window.addEventListener('blur', () => this.held.clear());
  }

  toCanvas(e) {
    const rect = this.element.getBoundingClientRect();
    const r = this.pixelRatio();
    return [(e.clientX - rect.left) * r, (e.clientY - rect.top) * r];
  }

  onWheel(e) {
    e.preventDefault();
    const px = e.deltaMode === 1 ? e.deltaY * 40 : e.deltaMode === 2 ? e.deltaY * 800 : e.deltaY;
    this.wheel -= px / WHEEL_PX_PER_NOTCH;
    this.anchor = this.toCanvas(e);
    this.touched = true;
  }

  onPointerDown(e) {
    try {
      this.element.setPointerCapture(e.pointerId); // keep the drag when it leaves the canvas
    } catch (err) {
      // a pointer the browser does not track (synthetic events): no capture, still handled
    }
    this.pointers.set(e.pointerId, [e.clientX, e.clientY]);
    this.pinch = null;
    this.touched = true;
  }

  onPointerMove(e) {
    const last = this.pointers.get(e.pointerId);
    if (!last) return;
    const now = [e.clientX, e.clientY];
    this.pointers.set(e.pointerId, now);
    if (this.pointers.size === 1) {
      // one finger or a held button: look (drag down looks down, as in the app)
      this.look[0] += (now[0] - last[0]) * MOUSE_RADIANS_PER_PX;
      this.look[1] -= (now[1] - last[1]) * MOUSE_RADIANS_PER_PX;
    } else if (this.pointers.size === 2) {
      const [a, b] = [...this.pointers.values()];
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
      if (this.pinch && dist > 0) {
        this.wheel += Math.log(dist / this.pinch) / LOG_ZOOM_PER_STEP;
        const rect = this.element.getBoundingClientRect();
        const r = this.pixelRatio();
        this.anchor = [((a[0] + b[0]) / 2 - rect.left) * r, ((a[1] + b[1]) / 2 - rect.top) * r];
      }
      this.pinch = dist;
    }
    this.touched = true;
  }

  onPointerUp(e) {
    this.pointers.delete(e.pointerId);
    this.pinch = null;
  }

  onKey(e, down) {
    if (e.target && (e.target.tagName === 'INPUT' || e.target.tagName === 'TEXTAREA')) return;
    const action = KEYS[e.code];
    if (!action) return;
    if (down) this.held.add(action); else this.held.delete(action);
    this.touched = true;
    e.preventDefault();
  }

  // one frame of motion (and clears what accumulated since the last poll)
  poll(dt) {
    const h = this.held;
    const move = [(h.has('right') ? 1 : 0) - (h.has('left') ? 1 : 0), (h.has('up') ? 1 : 0) - (h.has('down') ? 1 : 0),
      (h.has('forward') ? 1 : 0) - (h.has('back') ? 1 : 0)];
    const look = this.look;
    let zoomRate = ((h.has('zoomIn') ? 1 : 0) - (h.has('zoomOut') ? 1 : 0)) * KEY_ZOOM_NOTCHES_PER_S;
    const pads = navigator.getGamepads ? navigator.getGamepads() : [];
    for (const pad of pads) {
      if (!pad || !pad.connected || pad.axes.length < 4) continue;
      const [lx, ly, rx, ry] = pad.axes;
      const button = (i) => (pad.buttons[i] ? pad.buttons[i].value : 0);
      move[0] += deadZone(lx);
      move[2] -= deadZone(ly);
      move[1] += button(5) - button(4);
      look[0] += deadZone(rx) * PAD_LOOK_RADIANS_PER_S * dt;
      look[1] -= deadZone(ry) * PAD_LOOK_RADIANS_PER_S * dt;
      zoomRate += (deadZone(button(7)) - deadZone(button(6))) * PAD_ZOOM_NOTCHES_PER_S;
      if (move.some((v) => v) || look.some((v) => v) || zoomRate) this.touched = true;
    }
    const speed = (h.has('boost') ? 4 : 1) * (h.has('slow') ? 0.25 : 1);
    const out = {
      move: move.map((v) => Math.max(-1, Math.min(1, v))),
      look: [look[0], look[1]],
      zoomSteps: this.wheel,
      zoomRate: zoomRate * speed,
      anchor: this.wheel ? this.anchor : null,
      speed,
    };
    this.look = [0, 0];
    this.wheel = 0;
    return out;
  }

  get active() {
    return this.held.size > 0 || this.pointers.size > 0;
  }
}
