// Instanced Gaussian splats: one screen-aligned quad per splat, drawn back to front.
//
// Compile with "#version 330" and "#define VERTEX_SHADER" (or FRAGMENT_SHADER) prepended
// (engine/render/gl.py does this). The per-instance attributes are the columns of
// engine.render.prepare.PreparedSplats.packed (camera-space centre, world-frame quaternion,
// scales, colour, opacity, LoD link columns); the maths is engine.render.reference, in float32:
//   EWA: cov2d = (J W R S)(J W R S)^T + 0.3 px^2 I, conic = inverse, 3-sigma ellipse footprint;
//   alpha = min(0.99, opacity * modulation * exp(-0.5 d^T conic d)), discarded below 1/255;
//   modulation = engine.modulation.alpha in log space with explicit "has link" flags.
// Outputs (premultiplied, blended with ONE, ONE_MINUS_SRC_ALPHA):
//   out_color = (rgb * a, a);  out_depth = (z * a, 0, 0, a)  -> expected depth = R / A.

#if defined VERTEX_SHADER

uniform mat3 u_R_camera_world;  // world -> camera rotation (the splat quaternions are world frame)
uniform vec2 u_focal;           // fx, fy (pixels)
uniform vec2 u_principal;       // cx, cy (pixels)
uniform vec2 u_image_size;      // camera width, height (pixels)
uniform float u_log_focal;      // log(sqrt(fx * fy))
uniform float u_near;
uniform float u_far;
uniform int u_lod_mode;         // 0: soft modulation (default), 1: hard switch (alpha >= 0.5
                                // -> 1, else 0), 2: none (alpha = 1: the no-modulation ablation)

in vec2 in_corner;              // per vertex: quad corner in [-1, 1]^2
in vec3 in_mean;                // per instance, packed columns 0:3 (camera space)
in vec4 in_quat;                // 3:7   (w, x, y, z), world frame
in vec3 in_scale;               // 7:10  std-devs, world units
in vec4 in_color;               // 10:14 rgb, opacity
in vec4 in_lod;                 // 14:18 log_s_native, log_s_parent, log_s_child, link flags

flat out vec2 v_mean2d;         // splat centre, OpenCV pixel coordinates (v down)
flat out vec3 v_conic;          // (xx, xy, yy) of the inverse 2D covariance
flat out vec4 v_color;          // rgb, opacity * modulation
flat out float v_depth;

const float ALPHA_CULL = 0.01;
const float LOW_PASS_PX2 = 0.3;
const float JACOBIAN_MARGIN = 0.3;  // engine.render.reference.JACOBIAN_MARGIN
const float FOOTPRINT_SIGMAS = 3.0;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float QUAD_MARGIN_PX = 0.1;  // float slack: every pixel centre of the ellipse is inside
const int FLAG_HAS_PARENT = 1;
const int FLAG_HAS_CHILD = 2;

// engine.modulation.alpha with x = log s_render; absent links are flags, never +-inf.
float modulation(float x, vec4 lod) {
    if (u_lod_mode == 2) return 1.0;
    float n = lod.x;
    int flags = int(lod.w + 0.5);
    float m = 1.0;
    if (x >= n) {
        if ((flags & FLAG_HAS_PARENT) != 0) m = (lod.y - x) / (lod.y - n);
    } else {
        if ((flags & FLAG_HAS_CHILD) != 0) m = (x - lod.z) / (n - lod.z);
    }
    m = clamp(m, 0.0, 1.0);
    return u_lod_mode == 1 ? (m >= 0.5 ? 1.0 : 0.0) : m;
}

// engine.splats.quaternions_to_matrices
mat3 quat_to_matrix(vec4 q) {
    q = normalize(q);
    float w = q.x, x = q.y, y = q.z, z = q.w;
    // GLSL matrices are built column by column
    return mat3(
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
        2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
        2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
}

void emit_nothing() {
    // degenerate (all four corners on one point) inside the clip volume: the quad produces no
    // fragment, and no clipping (see points.glsl: a clipped vertex costs its whole batch)
    gl_Position = vec4(0.0, 0.0, 0.0, 1.0);
    v_mean2d = vec2(0.0);
    v_conic = vec3(0.0);
    v_color = vec4(0.0);
    v_depth = 0.0;
}

void main() {
    float z = in_mean.z;
    if (!(z > u_near && z < u_far)) { emit_nothing(); return; }
    float m = modulation(log(z) - u_log_focal, in_lod);
    float opacity = in_color.a * m;
    if (m <= ALPHA_CULL || opacity < MIN_FRAGMENT_ALPHA) { emit_nothing(); return; }

    // J W R S as rows: row 0 = d u / d world-aligned splat axes, row 1 = d v / d ...
    vec2 xy_over_z = in_mean.xy / z;
    // linearised along the centre's direction clamped to the widened image
    // (engine.render.reference.jacobian_directions)
    vec2 j_margin = JACOBIAN_MARGIN * 0.5 * u_image_size / u_focal;
    vec2 j_dir = clamp(xy_over_z, -u_principal / u_focal - j_margin,
                       (u_image_size - u_principal) / u_focal + j_margin);
    vec3 j0 = vec3(u_focal.x / z, 0.0, -u_focal.x * j_dir.x / z);
    vec3 j1 = vec3(0.0, u_focal.y / z, -u_focal.y * j_dir.y / z);
    mat3 WR = u_R_camera_world * quat_to_matrix(in_quat);
    vec3 t0 = (j0 * WR) * in_scale;  // row vector j0 times WR, then scaled per axis
    vec3 t1 = (j1 * WR) * in_scale;
    float sxx = dot(t0, t0);
    float syy = dot(t1, t1);
    float cxx = sxx + LOW_PASS_PX2;
    float cxy = dot(t0, t1);
    float cyy = syy + LOW_PASS_PX2;
    // det = cxx cyy - cxy^2 without cancellation (Lagrange: |t0|^2 |t1|^2 - (t0.t1)^2 =
    // |t0 x t1|^2), so needle-thin splats keep an accurate conic in float32
    vec3 t0_x_t1 = cross(t0, t1);
    float det = dot(t0_x_t1, t0_x_t1) + LOW_PASS_PX2 * (sxx + syy + LOW_PASS_PX2);
    if (!(det > 0.0)) { emit_nothing(); return; }

    // quad = the 3-sigma ellipse's bounding rectangle along its principal axes
    float mid = 0.5 * (cxx + cyy);
    float root = sqrt(max(mid * mid - det, 0.0));
    float lambda_major = mid + root;
    float lambda_minor = det / lambda_major;  // = mid - root, without the cancellation
    vec2 axis_major = abs(cxy) > 1e-6 * mid ? normalize(vec2(cxy, lambda_major - cxx))
                                             : (cxx >= cyy ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
    vec2 axis_minor = vec2(-axis_major.y, axis_major.x);
    // fragments need opacity * exp(-power / 2) >= 1/255: beyond sqrt(2 ln(255 opacity)) sigmas
    // every one is discarded, so fainter splats get smaller quads (same image, less fill)
    float sigmas = min(FOOTPRINT_SIGMAS, sqrt(2.0 * log(opacity / MIN_FRAGMENT_ALPHA)));
    vec2 half_extent = sigmas * sqrt(vec2(lambda_major, lambda_minor)) + QUAD_MARGIN_PX;
    vec2 mean2d = u_focal * xy_over_z + u_principal;
    vec2 pixel = mean2d + in_corner.x * half_extent.x * axis_major
                        + in_corner.y * half_extent.y * axis_minor;
    // OpenCV pixels (v down) -> GL clip space (y up): row 0 of the image is the top row
    vec2 ndc = vec2(2.0 * pixel.x / u_image_size.x - 1.0, 1.0 - 2.0 * pixel.y / u_image_size.y);
    gl_Position = vec4(ndc, 0.0, 1.0);
    v_mean2d = mean2d;
    v_conic = vec3(cyy, -cxy, cxx) / det;
    v_color = vec4(in_color.rgb, opacity);
    v_depth = z;
}

#elif defined FRAGMENT_SHADER

uniform vec2 u_image_size;      // camera width, height (pixels)
uniform vec2 u_viewport_scale;  // framebuffer viewport size / camera image size

flat in vec2 v_mean2d;
flat in vec3 v_conic;
flat in vec4 v_color;
flat in float v_depth;

layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_depth;

const float MAX_FRAGMENT_ALPHA = 0.99;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float FOOTPRINT_POWER = 9.0;  // (3 sigma)^2

void main() {
    // window coordinates (y up, pixel centres at +0.5) -> OpenCV pixel coordinates (v down)
    vec2 window = gl_FragCoord.xy / u_viewport_scale;
    vec2 pixel = vec2(window.x, u_image_size.y - window.y);
    vec2 d = pixel - v_mean2d;
    float power = v_conic.x * d.x * d.x + 2.0 * v_conic.y * d.x * d.y + v_conic.z * d.y * d.y;
    if (power > FOOTPRINT_POWER) discard;
    float a = min(MAX_FRAGMENT_ALPHA, v_color.a * exp(-0.5 * power));
    if (a < MIN_FRAGMENT_ALPHA) discard;
    out_color = vec4(v_color.rgb * a, a);
    out_depth = vec4(v_depth * a, 0.0, 0.0, a);
}

#endif
