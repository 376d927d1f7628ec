// WebGL2 splat renderer: the browser twin of engine/render/points.glsl (+ splats.glsl's
// quads for footprints wider than the largest point), drawing from a static arena.
//
// Arena: a page is 1024 splats; page p is row p of two float textures, `main` (4 RGBA32F
// texels per splat: local xyz, M = R diag(scale) by columns, rgb, opacity: the native
// renderer's 16-float row) and `lod` (1 texel: log s_native, log s_parent, log s_child, the
// step from which the child link applies). Per frame only the sorted list of arena rows
// (4 B per splat, a vertex attribute) and the camera-space origin of each page's chunk
// (float64 subtraction on the CPU, then float32) are uploaded; the shader computes the EWA
// footprint and the scale-aware modulation exactly as points.glsl does.
// Draws: one GL_POINTS draw over the list (a point is a square of whole pixels covering the
// 3-sigma box), except runs of splats wider than the largest point, which go out as
// instanced quads, interleaved in back-to-front order.

export const PAGE_BITS = 10;
export const PAGE_SPLATS = 1 << PAGE_BITS;
const ORIGIN_TEXELS = 1024;
const SOFTWARE = /llvmpipe|softpipe|swiftshader/i;
const FLUSH_SPLATS = 32768;

export class NoWebGL2Error extends Error {}

const VERTEX = `
precision highp float;
precision highp int;
precision highp sampler2D;

uniform sampler2D u_main;         // 4 texels per splat, 1024 splats per row (page)
uniform sampler2D u_lod;          // 1 texel per splat
uniform sampler2D u_page_origin;  // page p's chunk origin in camera space, texel (p % 1024, p / 1024)
uniform mat3 u_R_camera_world;
uniform vec2 u_focal;
uniform vec2 u_principal;
uniform vec2 u_image_size;
uniform float u_log_focal;
uniform float u_near;
uniform float u_far;
uniform vec4 u_viewport;
uniform float u_max_point_size;
uniform float u_step;             // timeline: child links that appear after it do not count
uniform int u_lod_mode;           // 0 soft modulation, 2 none (alpha = 1)

in uint a_row;

flat out vec4 v_centre_conic;
flat out uvec4 v_packed;

const float ALPHA_CULL = 0.01;
const float LOW_PASS_PX2 = 0.3;
const float JACOBIAN_MARGIN = 0.3;  // engine.render.reference.JACOBIAN_MARGIN
const float FOOTPRINT_SIGMAS = 3.0;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float POINT_MARGIN_PX = 0.1;

vec4 g_lod;

float modulation(float x) {
  if (u_lod_mode == 2) return 1.0;
  float n = g_lod.x;
  float a = g_lod.w <= u_step ? g_lod.z : -1e30;
  float m = x >= n ? (g_lod.y - x) / (g_lod.y - n) : (x - a) / (n - a);
  return clamp(m, 0.0, 1.0);
}

// a one-pixel point that discards itself (opacity 0), never a vertex outside the clip
// volume (on llvmpipe one such vertex sends its whole batch through clipping: points.glsl)
void emit_nothing() {
  gl_Position = vec4(0.0, 0.0, 0.0, 1.0);
  gl_PointSize = 1.0;
  v_centre_conic = vec4(0.0);
  v_packed = uvec4(0u);
}

void main() {
  int row = int(a_row);
  int page = row >> ${PAGE_BITS};
  int col = row & ${PAGE_SPLATS - 1};
  vec4 m0 = texelFetch(u_main, ivec2(4 * col, page), 0);
  vec4 m1 = texelFetch(u_main, ivec2(4 * col + 1, page), 0);
  vec4 m2 = texelFetch(u_main, ivec2(4 * col + 2, page), 0);
  vec4 color = texelFetch(u_main, ivec2(4 * col + 3, page), 0);
  g_lod = texelFetch(u_lod, ivec2(col, page), 0);
  vec3 origin = texelFetch(u_page_origin, ivec2(page & ${ORIGIN_TEXELS - 1}, page >> 10), 0).xyz;
  vec3 local = m0.xyz;
  mat3 M = mat3(vec3(m0.w, m1.xy), vec3(m1.zw, m2.x), m2.yzw);
  vec3 mean = u_R_camera_world * local + origin;
  float z = mean.z;
  if (!(z > u_near && z < u_far)) { emit_nothing(); return; }
  float m = modulation(log(z) - u_log_focal);
  float opacity = color.a * m;
  if (m <= ALPHA_CULL || opacity < MIN_FRAGMENT_ALPHA) { emit_nothing(); return; }

  vec2 xy_over_z = mean.xy / z;
  // linearised along the centre's direction clamped to the widened image
  // (engine.render.reference.jacobian_directions)
  vec2 j_margin = JACOBIAN_MARGIN * 0.5 * u_image_size / u_focal;
  vec2 j_dir = clamp(xy_over_z, -u_principal / u_focal - j_margin,
             (u_image_size - u_principal) / u_focal + j_margin);
  vec3 j0 = vec3(u_focal.x / z, 0.0, -u_focal.x * j_dir.x / z);
  vec3 j1 = vec3(0.0, u_focal.y / z, -u_focal.y * j_dir.y / z);
  mat3 WM = u_R_camera_world * M;
  vec3 t0 = j0 * WM;
  vec3 t1 = j1 * WM;
  float sxx = dot(t0, t0);
  float syy = dot(t1, t1);
  float cxx = sxx + LOW_PASS_PX2;
  float cxy = dot(t0, t1);
  float cyy = syy + LOW_PASS_PX2;
  vec3 t0_x_t1 = cross(t0, t1);
  float det = dot(t0_x_t1, t0_x_t1) + LOW_PASS_PX2 * (sxx + syy + LOW_PASS_PX2);
  if (!(det > 0.0)) { emit_nothing(); return; }

  float sigmas = min(FOOTPRINT_SIGMAS, sqrt(2.0 * log(opacity / MIN_FRAGMENT_ALPHA)));
  vec2 scale = u_viewport.zw / u_image_size;
  vec2 half_extent = sigmas * sqrt(vec2(cxx, cyy)) * scale + POINT_MARGIN_PX;
  vec2 mean2d = u_focal * xy_over_z + u_principal;
  vec2 centre = u_viewport.xy + vec2(mean2d.x, u_image_size.y - mean2d.y) * scale;
  vec2 viewport_end = u_viewport.xy + u_viewport.zw;
  vec2 first = max(ceil(centre - half_extent - 0.5), u_viewport.xy);
  vec2 last = min(floor(centre + half_extent - 0.5), viewport_end - 1.0);
  if (any(greaterThan(first, last))) { emit_nothing(); return; }
#ifdef QUADS
  // corner gl_VertexID of a triangle strip over the pixels first..last
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));
  vec2 p = mix(first, last + 1.0, corner);
  gl_Position = vec4(2.0 * (p - u_viewport.xy) / u_viewport.zw - 1.0, 0.0, 1.0);
#else
  float side = max(last.x - first.x, last.y - first.y) + 1.0;
  vec2 start = max(min(first, viewport_end - side), u_viewport.xy);
  vec2 square = start + 0.5 * side;
  gl_PointSize = min(side, u_max_point_size);
  gl_Position = vec4(2.0 * (square - u_viewport.xy) / u_viewport.zw - 1.0, 0.0, 1.0);
#endif
  vec3 conic = vec3(cyy / (scale.x * scale.x), cxy / (scale.x * scale.y), cxx / (scale.y * scale.y)) / det;
  v_centre_conic = vec4(centre, conic.xy);
  uvec3 q = uvec3(round(clamp(color.rgb, 0.0, 1.0) * 65535.0));
  v_packed = uvec4(floatBitsToUint(conic.z), (q.r << 16) | q.g, q.b, floatBitsToUint(opacity));
}
`;

const FRAGMENT = `
precision highp float;
precision highp int;

flat in vec4 v_centre_conic;
flat in uvec4 v_packed;
out vec4 out_color;

const float MAX_FRAGMENT_ALPHA = 0.99;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float FOOTPRINT_POWER = 9.0;
const float HALF_LOG2_E = 0.72134752044448170;

void main() {
  vec2 d = gl_FragCoord.xy - v_centre_conic.xy;
  vec3 conic = vec3(v_centre_conic.zw, uintBitsToFloat(v_packed.x));
  float power = conic.x * d.x * d.x + 2.0 * conic.y * d.x * d.y + conic.z * d.y * d.y;
  float a = min(MAX_FRAGMENT_ALPHA, uintBitsToFloat(v_packed.w) * exp2(-HALF_LOG2_E * power));
  if (power > FOOTPRINT_POWER || a < MIN_FRAGMENT_ALPHA) discard;
  vec3 rgb = vec3(v_packed.y >> 16, v_packed.y & 0xffffu, v_packed.z) * (1.0 / 65535.0);
  out_color = vec4(rgb * a, a);
}
`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`shader: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

function program(gl, defines) {
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl, gl.VERTEX_SHADER, `#version 300 es\n${defines}${VERTEX}`));
  gl.attachShader(p, compile(gl, gl.FRAGMENT_SHADER, `#version 300 es\n${FRAGMENT}`));
  gl.bindAttribLocation(p, 0, 'a_row');
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(`program: ${gl.getProgramInfoLog(p)}`);
  const uniforms = {};
  const n = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < n; i++) {
    const info = gl.getActiveUniform(p, i);
    uniforms[info.name] = gl.getUniformLocation(p, info.name);
  }
  return { program: p, uniforms };
}

export class Renderer {
  constructor(canvas) {
    const gl = canvas.getContext('webgl2', {
      antialias: false, alpha: false, depth: false, stencil: false, premultipliedAlpha: true,
      preserveDrawingBuffer: false, powerPreference: 'high-performance',
    });
    if (!gl) throw new NoWebGL2Error('this page needs WebGL2, which this browser or device does not offer');
    this.gl = gl;
    this.canvas = canvas;
    const dbg = gl.getExtension('WEBGL_debug_renderer_info');
    this.rendererName = String(gl.getParameter(dbg ? dbg.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    this.software = SOFTWARE.test(this.rendererName);
    this.maxPointSize = gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE)[1];
    this.maxTextureSize = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    this.points = program(gl, '');
    this.quads = program(gl, '#define QUADS\n');
    this.rowBuffer = gl.createBuffer();
    this.vao = gl.createVertexArray();
    this.count = 0;
    this.big = null;
    this.capacityPages = 0;
    this.originData = null;
  }

  // the arena: `pages` pages of 1024 splats (textures sized once: the budget)
  allocate(pages) {
    const gl = this.gl;
    if (pages > this.maxTextureSize) throw new Error(`the arena needs ${pages} texture rows, this GPU allows ${this.maxTextureSize}`);
    this.capacityPages = pages;
    const tex = (width, height) => {
      const t = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, t);
      gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA32F, width, height);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      return t;
    };
    this.mainTex = tex(4 * PAGE_SPLATS, pages);
    this.lodTex = tex(PAGE_SPLATS, pages);
    const originRows = Math.ceil(pages / ORIGIN_TEXELS);
    this.originTex = tex(ORIGIN_TEXELS, originRows);
    this.originData = new Float32Array(4 * ORIGIN_TEXELS * originRows);
  }

  // decoded chunk rows (main [16 n], lod [4 n]) into its pages
  upload(pages, main, lod) {
    const gl = this.gl;
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 4);
    const n = lod.length / 4;
    pages.forEach((page, k) => {
      const first = k * PAGE_SPLATS;
      const count = Math.min(PAGE_SPLATS, n - first);
      gl.bindTexture(gl.TEXTURE_2D, this.mainTex);
      gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, page, 4 * count, 1, gl.RGBA, gl.FLOAT, main, 16 * first);
      gl.bindTexture(gl.TEXTURE_2D, this.lodTex);
      gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, page, count, 1, gl.RGBA, gl.FLOAT, lod, 4 * first);
    });
  }

  // the sorted arena rows of the next frames (back to front) and which take the quad path
  setList(rows, big) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.rowBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, rows, gl.DYNAMIC_DRAW);
    this.count = rows.length;
    this.runs = null;
    if (big) {
      this.runs = [];
      let start = 0;
      for (let i = 1; i <= rows.length; i++) {
        if (i === rows.length || big[i] !== big[start]) {
          this.runs.push([start, i - start, big[start] === 1]);
          start = i;
        }
      }
    }
  }

  // chunks: [{pages, origin}] of every resident chunk; camera: a Camera (float64)
  draw(camera, step, chunks, lodMode = 0) {
    const gl = this.gl;
    const W = this.canvas.width, H = this.canvas.height;
    gl.viewport(0, 0, W, H);
    gl.disable(gl.DEPTH_TEST);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (this.count === 0 || !this.capacityPages) return;
    // camera-space origin of each page's chunk: float64 here, float32 on the GPU
    const R = camera.R, eye = camera.eye, data = this.originData;
    for (const c of chunks) {
      const dx = c.origin[0] - eye[0], dy = c.origin[1] - eye[1], dz = c.origin[2] - eye[2];
      const ox = dx * R[0] + dy * R[3] + dz * R[6];
      const oy = dx * R[1] + dy * R[4] + dz * R[7];
      const oz = dx * R[2] + dy * R[5] + dz * R[8];
      for (const p of c.pages) { data[4 * p] = ox; data[4 * p + 1] = oy; data[4 * p + 2] = oz; }
    }
    gl.bindTexture(gl.TEXTURE_2D, this.originTex);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, ORIGIN_TEXELS, data.length / (4 * ORIGIN_TEXELS), gl.RGBA, gl.FLOAT, data);

    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.rowBuffer);
    gl.enableVertexAttribArray(0);
    const uniforms = (prog) => {
      const u = prog.uniforms;
      gl.useProgram(prog.program);
      gl.uniformMatrix3fv(u.u_R_camera_world, false, new Float32Array(R));
      gl.uniform2f(u.u_focal, camera.fx, camera.fy);
      gl.uniform2f(u.u_principal, camera.cx, camera.cy);
      gl.uniform2f(u.u_image_size, camera.width, camera.height);
      gl.uniform1f(u.u_log_focal, 0.5 * Math.log(camera.fx * camera.fy));
      gl.uniform1f(u.u_near, camera.near);
      gl.uniform1f(u.u_far, camera.far);
      gl.uniform4f(u.u_viewport, 0, 0, W, H);
      if (u.u_max_point_size) gl.uniform1f(u.u_max_point_size, this.maxPointSize);
      gl.uniform1f(u.u_step, step);
      gl.uniform1i(u.u_lod_mode, lodMode);
      gl.uniform1i(u.u_main, 0);
      gl.uniform1i(u.u_lod, 1);
      gl.uniform1i(u.u_page_origin, 2);
    };
    gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, this.mainTex);
    gl.activeTexture(gl.TEXTURE1); gl.bindTexture(gl.TEXTURE_2D, this.lodTex);
    gl.activeTexture(gl.TEXTURE2); gl.bindTexture(gl.TEXTURE_2D, this.originTex);
    gl.activeTexture(gl.TEXTURE0);
    const runs = this.runs || [[0, this.count, false]];
    let current = null;
    for (const [first, count, quad] of runs) {
      const prog = quad ? this.quads : this.points;
      if (prog !== current) { uniforms(prog); current = prog; }
      if (quad) {
        gl.vertexAttribIPointer(0, 1, gl.UNSIGNED_INT, 0, 4 * first);
        gl.vertexAttribDivisor(0, 1);
        gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, count);
      } else {
        gl.vertexAttribIPointer(0, 1, gl.UNSIGNED_INT, 0, 0);
        gl.vertexAttribDivisor(0, 0);
        // a software rasterizer works on one batch while the next one's vertices are shaded
        const batch = this.software ? FLUSH_SPLATS : count;
        for (let s = first; s < first + count; s += batch) {
          gl.drawArrays(gl.POINTS, s, Math.min(batch, first + count - s));
          if (batch < count) gl.flush();
        }
      }
    }
    gl.disableVertexAttribArray(0);
    gl.bindVertexArray(null);
    gl.disable(gl.BLEND);
  }

  // the drawing buffer as RGBA bytes, top row first (call in the same task as draw())
  readPixels() {
    const gl = this.gl;
    const W = this.canvas.width, H = this.canvas.height;
    const raw = new Uint8Array(W * H * 4);
    gl.readPixels(0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, raw);
    const out = new Uint8Array(W * H * 4);
    for (let y = 0; y < H; y++) out.set(raw.subarray((H - 1 - y) * W * 4, (H - y) * W * 4), y * W * 4);
    return out;
  }

  // wait for the GPU (a one-pixel read is a round trip to it)
  finish() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
  }
}
