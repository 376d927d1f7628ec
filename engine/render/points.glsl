// Resident splats drawn as GL points: one vertex per splat, fetched through a sorted index
// list (the element buffer) from the static arena of engine/render/residency.py.
//
// Compile with "#version 330", "#define PAGE_BITS <n>" and "#define VERTEX_SHADER" (or
// FRAGMENT_SHADER; add "#define WITH_DEPTH" for the expected-depth output) prepended; this is
// what engine/render/streaming.py does. The image is engine.render.reference's, in float32:
//   p_camera = R_camera_world * local + origin[page]   (origin: float64 on the CPU, per chunk)
//   EWA: cov2d = (J W M)(J W M)^T + 0.3 px^2 I with M = R S, conic = inverse;
//   alpha = min(0.99, opacity * modulation * exp(-0.5 d^T conic d)), discarded below 1/255
//   and outside the 3-sigma ellipse (d^T conic d > 9); modulation = engine.modulation.alpha.
// Why points: llvmpipe (and any GPU) then runs the vertex stage once per splat instead of four
// times (instanced quads); the point is a square of whole pixels covering the pixels of the
// 3-sigma ellipse's bounding box inside the viewport (GL clips a point by its centre: the
// square is kept inside; the fragment shader measures from the true centre). Whole pixels
// make the coverage the same for sprite points (core profiles) and GL 2.1 points (what a
// compatibility profile draws by default, which llvmpipe rasterizes as rectangles, faster;
// see engine.render.gl.create_headless_context). Footprints wider than the largest point
// size never come here: the CPU routes them to the quad path (splats.glsl).
// Outputs (premultiplied, blended with ONE, ONE_MINUS_SRC_ALPHA, back to front):
//   out_color = (rgb * a, a);  out_depth = (z * a, 0, 0, a) -> expected depth = R / A.
// Why two packed varyings: llvmpipe's frame thread sets up and stores every flat input of
// every point (48 bytes each), and its rasterizer threads, often on the other core, read
// those records back; the nine values the fragment shader needs fit two vec4 slots once the
// colour travels as 16-bit unorm (1/65535: far below the 8-bit output). Three slots (vec2,
// vec3, vec4) cost the render bench's deep frame 1-2% more CPU (100 interleaved pairs).
// SORTED_QUADS (GPU-driven path, engine/render/gpu_driven.py; "#version 430"): the same
// splat as an instanced 4-vertex strip covering the same square of whole pixels, hence the
// same pixels, for frames whose footprints may exceed the largest GL point; instance i reads
// its arena row from the sorted list and its attributes from the arena bound as storage
// buffers.

#if defined VERTEX_SHADER

uniform sampler2D u_page_origin;  // RGBA32F, texel (p % 1024, p / 1024): page p's chunk centre
                                  // in camera space (xyz)
uniform mat3 u_R_camera_world;    // world -> camera rotation
uniform vec2 u_focal;             // fx, fy (camera pixels)
uniform vec2 u_principal;         // cx, cy (camera pixels)
uniform vec2 u_image_size;        // camera width, height (pixels)
uniform float u_log_focal;        // log(sqrt(fx * fy))
uniform float u_near;
uniform float u_far;              // culled at or beyond, as in engine.render.prepare
uniform vec4 u_viewport;          // framebuffer viewport x, y, width, height (window pixels)
uniform float u_max_point_size;   // GL_POINT_SIZE_RANGE max (window pixels)
uniform int u_lod_mode;           // 0: soft modulation, 1: hard switch (alpha >= 0.5 -> 1),
                                  // 2: none (alpha = 1: the no-modulation ablation)

// The main row is fetched as four vec4s: llvmpipe fetches a vec3 attribute (or a mat3's
// columns) with more work than a vec4. The render bench's deep frame drawn with rasterization
// off (vertex stage, cull and sort) took ~3 ms less of ~22 this way.
#ifdef SORTED_QUADS
layout(std430, binding = 0) readonly buffer MainRows { mat4 main_rows[]; };
layout(std430, binding = 1) readonly buffer LodRows { float lod_rows[]; };  // 3 per row
layout(std430, binding = 2) readonly buffer SortedRows { uint sorted_rows[]; };
mat4 in_main;       // read from the buffers at the start of main()
vec3 in_lod;
#else
in mat4 in_main;    // main 0:16: local xyz (splat centre - chunk centre, world axes), then
                    // M = R diag(scale) by columns (world axes; Sigma = M M^T), rgb, opacity
in vec3 in_lod;     // lod 0:3    log s_native, log s_parent, log s_child (absent: +-1e30)
#endif

flat out vec4 v_centre_conic;  // splat centre (window pixels); conic xx, xy
flat out uvec4 v_packed;        // conic yy (float bits); r << 16 | g, b (16-bit unorm);
                                // opacity * modulation (float bits)
#ifdef WITH_DEPTH
flat out float v_depth;
#endif

const float ALPHA_CULL = 0.01;
const float LOW_PASS_PX2 = 0.3;
const float JACOBIAN_MARGIN = 0.3;  // engine.render.reference.JACOBIAN_MARGIN
const float FOOTPRINT_SIGMAS = 3.0;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float POINT_MARGIN_PX = 0.1;  // float slack: every pixel centre of the ellipse is inside
const int PAGE_TEXELS_BITS = 10;

// engine.modulation.alpha with x = log s_render (absent links give a ramp of exactly 1)
float modulation(float x) {
    if (u_lod_mode == 2) return 1.0;
    float n = in_lod.x;
    float m = x >= n ? (in_lod.y - x) / (in_lod.y - n) : (x - in_lod.z) / (n - in_lod.z);
    m = clamp(m, 0.0, 1.0);
    return u_lod_mode == 1 ? (m >= 0.5 ? 1.0 : 0.0) : m;
}

// A splat the CPU kept (its tests are a superset) but that shows nothing: a one-pixel point
// at the viewport centre whose fragment discards itself (opacity 0). Not a vertex outside the
// clip volume: in Mesa's draw module (llvmpipe) one such vertex sends its whole batch of
// vertices through the clipping pipeline instead of straight to setup, which cost the deep
// bench frame 8% with under 1% of its points culled here.
void emit_nothing() {
    gl_Position = vec4(0.0, 0.0, 0.0, 1.0);
    gl_PointSize = 1.0;
    v_centre_conic = vec4(0.0);
    v_packed = uvec4(0u);  // opacity 0.0 < MIN_FRAGMENT_ALPHA: discarded
#ifdef WITH_DEPTH
    v_depth = 0.0;
#endif
}

// (centre, conic xx xy yy, rgb, opacity) -> the two packed varyings
void emit(vec2 centre, vec3 conic, vec3 rgb, float opacity) {
    v_centre_conic = vec4(centre, conic.xy);
    uvec3 q = uvec3(round(clamp(rgb, 0.0, 1.0) * 65535.0));
    v_packed = uvec4(floatBitsToUint(conic.z), (q.r << 16) | q.g, q.b, floatBitsToUint(opacity));
}

void main() {
#ifdef SORTED_QUADS
    int row = int(sorted_rows[gl_InstanceID]);
    in_main = main_rows[row];
    in_lod = vec3(lod_rows[3 * row], lod_rows[3 * row + 1], lod_rows[3 * row + 2]);
#else
    // for an indexed draw gl_VertexID is the index: the arena row, whose page names the chunk
    int row = gl_VertexID;
#endif
    int page = row >> PAGE_BITS;
    vec3 origin = texelFetch(u_page_origin, ivec2(page & ((1 << PAGE_TEXELS_BITS) - 1),
                                                  page >> PAGE_TEXELS_BITS), 0).xyz;
    vec3 local = in_main[0].xyz;
    mat3 M = mat3(vec3(in_main[0].w, in_main[1].xy), vec3(in_main[1].zw, in_main[2].x),
                  in_main[2].yzw);
    vec4 color = in_main[3];
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
    vec3 t0 = j0 * WM;  // row vectors: rows of J W M
    vec3 t1 = j1 * WM;
    float sxx = dot(t0, t0);
    float syy = dot(t1, t1);
    float cxx = sxx + LOW_PASS_PX2;
    float cxy = dot(t0, t1);
    float cyy = syy + LOW_PASS_PX2;
    // det without cancellation (Lagrange identity), as in splats.glsl
    vec3 t0_x_t1 = cross(t0, t1);
    float det = dot(t0_x_t1, t0_x_t1) + LOW_PASS_PX2 * (sxx + syy + LOW_PASS_PX2);
    if (!(det > 0.0)) { emit_nothing(); return; }

    // footprint: pixels need opacity * exp(-power / 2) >= 1/255, so beyond
    // sqrt(2 ln(255 opacity)) sigmas (and beyond 3) nothing survives
    float sigmas = min(FOOTPRINT_SIGMAS, sqrt(2.0 * log(opacity / MIN_FRAGMENT_ALPHA)));
    vec2 scale = u_viewport.zw / u_image_size;  // window pixels per camera pixel
    vec2 half_extent = sigmas * sqrt(vec2(cxx, cyy)) * scale + POINT_MARGIN_PX;
    vec2 mean2d = u_focal * xy_over_z + u_principal;  // OpenCV pixels, v down
    vec2 centre = u_viewport.xy + vec2(mean2d.x, u_image_size.y - mean2d.y) * scale;
    // the pixels whose centre (i + 0.5) is in the footprint's box, clipped to the viewport
    vec2 viewport_end = u_viewport.xy + u_viewport.zw;
    vec2 first = max(ceil(centre - half_extent - 0.5), u_viewport.xy);
    vec2 last = min(floor(centre + half_extent - 0.5), viewport_end - 1.0);
    if (any(greaterThan(first, last))) { emit_nothing(); return; }
    // a square of whole pixels from `first` (moved back inside the viewport if it would end
    // past it, since GL drops a point whose centre is outside): its edges lie on pixel
    // boundaries, so sprite points and non-sprite (GL 2.1) points cover the same pixels
    float side = max(last.x - first.x, last.y - first.y) + 1.0;
    vec2 start = max(min(first, viewport_end - side), u_viewport.xy);
    vec2 square = start + 0.5 * side;
    gl_PointSize = min(side, u_max_point_size);
#ifdef SORTED_QUADS
    // strip corners (-1, -1), (1, -1), (-1, 1), (1, 1): the point's square, unclamped
    square += 0.5 * side * (vec2(gl_VertexID & 1, gl_VertexID >> 1) * 2.0 - 1.0);
#endif
    gl_Position = vec4(2.0 * (square - u_viewport.xy) / u_viewport.zw - 1.0, 0.0, 1.0);
    // d_camera = (dx / sx, -dy / sy): the flipped v turns the sign of the cross term
    vec3 conic = vec3(cyy / (scale.x * scale.x), cxy / (scale.x * scale.y),
                      cxx / (scale.y * scale.y)) / det;
    emit(centre, conic, color.rgb, opacity);
#ifdef WITH_DEPTH
    v_depth = z;
#endif
}

#elif defined FRAGMENT_SHADER

flat in vec4 v_centre_conic;
flat in uvec4 v_packed;
#ifdef WITH_DEPTH
flat in float v_depth;
#endif

layout(location = 0) out vec4 out_color;
#ifdef WITH_DEPTH
layout(location = 1) out vec4 out_depth;
#endif

const float MAX_FRAGMENT_ALPHA = 0.99;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float FOOTPRINT_POWER = 9.0;  // (3 sigma)^2
const float HALF_LOG2_E = 0.72134752044448170;  // exp(-power / 2) = exp2(-power * this)

void main() {
    vec2 d = gl_FragCoord.xy - v_centre_conic.xy;
    vec3 conic = vec3(v_centre_conic.zw, uintBitsToFloat(v_packed.x));
    float power = conic.x * d.x * d.x + 2.0 * conic.y * d.x * d.y + conic.z * d.y * d.y;
    float a = min(MAX_FRAGMENT_ALPHA, uintBitsToFloat(v_packed.w) * exp2(-HALF_LOG2_E * power));
    if (power > FOOTPRINT_POWER || a < MIN_FRAGMENT_ALPHA) discard;
    vec3 rgb = vec3(v_packed.y >> 16, v_packed.y & 0xffffu, v_packed.z) * (1.0 / 65535.0);
    out_color = vec4(rgb * a, a);
#ifdef WITH_DEPTH
    out_depth = vec4(v_depth * a, 0.0, 0.0, a);
#endif
}

#endif
