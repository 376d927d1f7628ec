// Scale-aware opacity modulation: the JavaScript twin of engine/modulation.py (and of the
// modulation() of the vertex shader in renderer.js, which is points.glsl's).
//
// With x = log s_render, a = log s_child, n = log s_native, b = log s_parent:
//   alpha = (b - x) / (b - n) for n <= x <= b, (x - a) / (n - a) for a <= x <= n, 0 outside;
//   an absent link (s_parent = Infinity, s_child = 0) keeps alpha at 1 on that side.
// Splats with alpha <= ALPHA_CULL are not drawn at all.

export const ALPHA_CULL = 0.01;
export const MIN_FRAGMENT_ALPHA = 1 / 255;

// alpha from logs; b = +Infinity / a = -Infinity for absent links (float64, like the reference)
export function alphaLog(x, n, b, a) {
  if (!(b > n)) b = Infinity; // a link pointing the wrong way counts as absent
  if (!(a < n)) a = -Infinity;
  let m;
  if (x >= n) m = b === Infinity ? 1 : (b - x) / (b - n);
  else m = a === -Infinity ? 1 : (x - a) / (n - a);
  if (Number.isNaN(m)) return 0; // s_render = 0 or Infinity at an absent link's far side
  return m < 0 ? 0 : m > 1 ? 1 : m;
}

// engine.modulation.alpha for scalars: scales in world length per pixel
export function alpha(sRender, sNative, sParent, sChild) {
  return alphaLog(Math.log(sRender), Math.log(sNative), Math.log(sParent), Math.log(sChild));
}

// engine.modulation.visible_band: [lo, hi] of s_render where alpha > threshold
export function visibleBand(sNative, sParent, sChild, threshold = ALPHA_CULL) {
  const n = Math.log(sNative);
  let a = Math.log(sChild);
  let b = Math.log(sParent);
  if (!(a < n)) a = -Infinity;
  if (!(b > n)) b = Infinity;
  const lo = a === -Infinity ? 0 : Math.exp(a + threshold * (n - a));
  const hi = b === Infinity ? Infinity : Math.exp(b - threshold * (b - n));
  return [lo, hi];
}

// engine.modulation.chunks_possibly_visible for one chunk
export function chunkPossiblyVisible(renderLo, renderHi, bandLo, bandHi) {
  return renderLo <= renderHi && renderHi > bandLo && renderLo < bandHi;
}
