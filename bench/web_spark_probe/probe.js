// bench/web.py --spark: a Spark 2.2 prototype of our renderer, to measure whether the library
// can draw a WonderZoom world exactly and fast enough (docs/web.md has the figures).
// One SplatMesh (ExtSplats: float32 centres) per web chunk named in ?chunks=; a dyno
// objectModifier reads each splat's (log s_native, log s_parent, log s_child, child step)
// from a float texture by splat index and scales its opacity by engine.modulation.alpha at
// s_render = z / focal (0 at or below the cull threshold). SparkRenderer set to our image:
// 3 sigma, 0.3 px^2 low-pass without opacity compensation, 1/255 discard, depth (not radial)
// sort. Splats come from our chunk files through the viewer's own decoder.
import * as THREE from 'three';
import { SparkRenderer, SplatMesh, ExtSplats, dyno } from '@sparkjsdev/spark';
import { decodeChunk } from './viewer/chunkfile.js';
import { Camera } from './viewer/camera.js';

const params = new URLSearchParams(location.search);
const world = params.get('world') || 'world';
const NOMOD = params.has('nomod');
const only = params.get('chunks') ? new Set(params.get('chunks').split(',').map(Number)) : null;
let loaded = 0;
const canvas = document.getElementById('c');
const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, alpha: false, premultipliedAlpha: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.setClearColor(0x000000, 1);
const scene = new THREE.Scene();
const spark = new SparkRenderer({ renderer, maxStdDev: 3, minAlpha: 1 / 255, preBlurAmount: 0.3, blurAmount: 0,
  sortRadial: false, clipXY: 4, falloff: 1, premultipliedAlpha: true, enableLod: false, accumExtSplats: true,
  maxPixelRadius: 4096, minPixelRadius: 0 });
scene.add(spark);
const meshes = [];
const camOrigin = []; const camFwd = [];
const logFocal = dyno.dynoFloat(0, 'logFocal');
const step = dyno.dynoFloat(99, 'step');

function modifier(lodTex, origin, fwd) {
  const tex = dyno.dynoSampler2D(lodTex);
  return dyno.dynoBlock({ gsplat: dyno.Gsplat }, { gsplat: dyno.Gsplat }, ({ gsplat }) => {
    const d = new dyno.Dyno({
      inTypes: { gsplat: dyno.Gsplat, lod: 'sampler2D', origin: 'vec3', fwd: 'vec3', logFocal: 'float', step: 'float' },
      outTypes: { gsplat: dyno.Gsplat },
      inputs: { gsplat, lod: tex, origin, fwd, logFocal, step },
      statements: ({ inputs, outputs }) => dyno.unindentLines(`
        ${outputs.gsplat} = ${inputs.gsplat};
        int idx = ${inputs.gsplat}.index;
        vec4 l = texelFetch(${inputs.lod}, ivec2(idx & 1023, idx >> 10), 0);
        float z = dot(${inputs.gsplat}.center - ${inputs.origin}, ${inputs.fwd});
        float x = log(z) - ${inputs.logFocal};
        float a = l.w <= ${inputs.step} ? l.z : -1e30;
        float m = x >= l.x ? (l.y - x) / (l.y - l.x) : (x - a) / (l.x - a);
        m = clamp(m, 0.0, 1.0);
        if (m <= 0.01 || !(z > 0.0)) m = 0.0;
        ${outputs.gsplat}.rgba.a *= m;
      `),
    });
    return { gsplat: d.outputs.gsplat };
  });
}

async function load() {
  const m = await (await fetch(`${world}/manifest.json`)).json();
  for (const [index, c] of m.chunks.entries()) {
    if (only && !only.has(index)) continue;
    loaded += c.count;
    const buf = await (await fetch(`${world}/${c.file}`)).arrayBuffer();
    const d = decodeChunk(buf, c.count);
    const ext = new ExtSplats({ maxSplats: c.count });
    const center = new THREE.Vector3(), scales = new THREE.Vector3(), q = new THREE.Quaternion(), col = new THREE.Color();
    const mat = new THREE.Matrix4();
    for (let i = 0; i < c.count; i++) {
      const r = d.main.subarray(16 * i, 16 * i + 16);
      center.set(r[0], r[1], r[2]);
      const s = [Math.hypot(r[3], r[4], r[5]), Math.hypot(r[6], r[7], r[8]), Math.hypot(r[9], r[10], r[11])];
      scales.set(s[0], s[1], s[2]);
      mat.set(r[3] / s[0], r[6] / s[1], r[9] / s[2], 0, r[4] / s[0], r[7] / s[1], r[10] / s[2], 0, r[5] / s[0], r[8] / s[1], r[11] / s[2], 0, 0, 0, 0, 1);
      q.setFromRotationMatrix(mat);
      col.setRGB(r[12], r[13], r[14], THREE.LinearSRGBColorSpace);
      ext.pushSplat(center, scales, q, r[15], col);
    }
    ext.updateTextures(); // pushSplat fills the arrays only
    const rows = Math.ceil(c.count / 1024);
    const lod = new Float32Array(4 * 1024 * rows);
    lod.set(d.lod);
    const lodTex = new THREE.DataTexture(lod, 1024, rows, THREE.RGBAFormat, THREE.FloatType);
    lodTex.needsUpdate = true;
    const o = dyno.dynoVec3(new THREE.Vector3()); const f = dyno.dynoVec3(new THREE.Vector3(0, 0, 1));
    const mesh = new SplatMesh(NOMOD ? { splats: ext } : { splats: ext, objectModifier: modifier(lodTex, o, f) });
    await mesh.initialized;
    mesh.position.set(...c.origin);
    mesh.userData = { origin: c.origin, o, f, level: c.level };
    scene.add(mesh);
    meshes.push(mesh);
  }
  return m;
}

const three = new THREE.PerspectiveCamera();
function setCamera(dict, stepIndex) {
  const cam = Camera.fromDict(dict);
  canvas.width = cam.width; canvas.height = cam.height;
  renderer.setSize(cam.width, cam.height, false);
  three.fov = cam.fovYDeg; three.aspect = cam.width / cam.height; three.near = cam.near; three.far = cam.far;
  three.updateProjectionMatrix();
  const r = cam.column(0), dn = cam.column(1), fw = cam.column(2);
  const basis = new THREE.Matrix4().makeBasis(new THREE.Vector3(...r), new THREE.Vector3(-dn[0], -dn[1], -dn[2]), new THREE.Vector3(-fw[0], -fw[1], -fw[2]));
  three.quaternion.setFromRotationMatrix(basis);
  three.position.set(...cam.eye);
  three.updateMatrixWorld(true);
  logFocal.value = Math.log(cam.focal);
  step.value = stepIndex;
  for (const mesh of meshes) {
    const { origin, o, f, level } = mesh.userData;
    mesh.visible = level <= stepIndex;
    o.value.set(cam.eye[0] - origin[0], cam.eye[1] - origin[1], cam.eye[2] - origin[2]); // float64 difference
    f.value.set(fw[0], fw[1], fw[2]);
    mesh.updateVersion();
  }
  return cam;
}

async function frame(dict, stepIndex) {
  setCamera(dict, stepIndex);
  const t0 = performance.now();
  await spark.update({ scene, camera: three });
  for (let i = 0; i < 2000 && (spark.sorting || spark.sortDirty); i++) await new Promise((r) => setTimeout(r, 1));
  renderer.render(scene, three);
  const gl = renderer.getContext();
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
  return performance.now() - t0;
}

window.probe = {
  ready: load().then(() => ({ chunks: meshes.length, splats: loaded })),
  async render(dict, stepIndex = 99) {
    await frame(dict, stepIndex);
    await frame(dict, stepIndex);
    const gl = renderer.getContext();
    const W = canvas.width, H = canvas.height;
    const raw = new Uint8Array(W * H * 4);
    gl.readPixels(0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, raw);
    const out = new Uint8Array(W * H * 4);
    for (let y = 0; y < H; y++) out.set(raw.subarray((H - 1 - y) * W * 4, (H - y) * W * 4), y * W * 4);
    let s = ''; for (let i = 0; i < out.length; i += 0x8000) s += String.fromCharCode.apply(null, out.subarray(i, i + 0x8000));
    return { pixels: btoa(s), width: W, height: H };
  },
  async time(dict, frames = 5) {
    await frame(dict, 99);
    const out = [];
    for (let i = 1; i <= frames; i++) {
      const d = JSON.parse(JSON.stringify(dict)); d.fx *= 1 + 1e-9 * i; d.fy *= 1 + 1e-9 * i;
      out.push(await frame(d, 99) / 1000);
    }
    return out;
  },
};
