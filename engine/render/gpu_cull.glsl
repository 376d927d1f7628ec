// The GPU-driven frame's cull and key passes over the resident splats of the visible chunks
// (engine/render/gpu_driven.py runs them; the radix sort of radix_sort.glsl comes after).
//
// Compile with "#version 430", "#define PAGE_BITS <n>", "#define THREADS <n>",
// "#define MAX_GROUPS_X <n>" and one of CULL_SHADER, ORDER_SHADER, KEYS_SHADER prepended.
//
// CULL (one workgroup per work page, i.e. per 2^PAGE_BITS arena rows of one chunk): per splat
//   p = R_camera_world * local + origin[chunk]   (origin: float64 on the CPU, per chunk)
//   and the rules of engine.render.prepare, in float32, in its order:
//   behind   not near < z < far;
//   outside  the sphere of 3 sigma (largest axis; |column| of M = R S) plus
//            FRUSTUM_MARGIN_PX pixels at its depth lies outside one side plane;
//   faded    modulation (engine.modulation.alpha at x = log z - log f, as points.glsl
//            computes it, u_lod_mode included) <= ALPHA_CULL;
//   faint    opacity * modulation < 1/255.
//   Survivors are compacted in row order inside the page (a workgroup prefix sum) and the
//   page's block is appended to the compacted list with one atomicAdd on the count of the
//   indirect draw command (state[STATE_DRAW_COUNT]), so that count is the number drawn.
//   atomicMin / atomicMax of the depth bits (positive floats order as their bits) give the
//   depth range of the survivors. Thread 0 also writes the page's camera-space chunk origin
//   into the page-origin image points.glsl reads.
// ORDER (one workgroup): exclusive prefix sum of the pages' survivor counts, in work-page
//   order: where each page's survivors go in the ordered list. Atomic appends land blocks
//   in any order; this puts them back in the order of the CPU path (chunks in order, layout
//   rows ascending), so equal depth keys keep that order through the stable sort.
// KEYS (one workgroup per work page): each survivor's 16-bit back-to-front key, the key of
//   engine.render.visibility.back_to_front (log depth quantized over the survivors' own
//   range, in float32, round half to even, furthest first), and its arena row, written at
//   the page's ordered offset: the input of the radix sort.

#define PAGE_SPLATS (1u << PAGE_BITS)
#define ROWS (PAGE_SPLATS / uint(THREADS))  // rows per invocation (consecutive)
#define SORT_KEY_MAX 65535.0
// frame state words (engine/render/gpu_driven.py: STATE_*)
#define STATE_DRAW_COUNT 0    // DrawElementsIndirect: count, 1, 0, 0, 0 (words 0..4)
#define STATE_QUAD_INSTANCES 6  // DrawArraysIndirect at word 5: 4, instances, 0, 0
#define STATE_Z_MIN 12
#define STATE_Z_MAX 13
#define STATE_ORDERED 14
#define FLOAT_INF_BITS 0x7F800000u

layout(local_size_x = THREADS) in;

layout(std430, binding = 4) buffer FrameState { uint state[]; };
layout(std430, binding = 5) buffer PageInfo { uvec4 page_info[]; };  // survivors, compacted
                                                                     // base, ordered offset
layout(std430, binding = 6) buffer Compacted { uvec2 compacted[]; };  // arena row, depth bits

uniform uint u_work_pages;

uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

#if defined CULL_SHADER

layout(std430, binding = 0) readonly buffer MainRows { mat4 main_rows[]; };  // arena main
layout(std430, binding = 1) readonly buffer LodRows { float lod_rows[]; };   // arena lod, 3/row
layout(std430, binding = 2) readonly buffer WorkPages { uvec4 work_pages[]; };  // arena page,
                                                                  // chunk slot, rows, -
layout(std430, binding = 3) readonly buffer ChunkOrigins { vec4 chunk_origins[]; };
layout(rgba32f, binding = 0) writeonly uniform image2D u_page_origin;

uniform mat3 u_R_camera_world;
uniform float u_log_focal;
uniform float u_near;
uniform float u_far;
uniform vec3 u_planes[4];         // unit normals of the side planes (through the eye)
uniform float u_margin_per_depth; // FRUSTUM_MARGIN_PX / min(fx, fy)
uniform int u_lod_mode;           // as points.glsl: 0 soft, 1 hard, 2 none

const float ALPHA_CULL = 0.01;
const float MIN_FRAGMENT_ALPHA = 1.0 / 255.0;
const float FOOTPRINT_SIGMAS = 3.0;
const int PAGE_TEXELS_BITS = 10;

shared uint s_scan[THREADS];
shared uint s_base;
shared uint s_z_min;
shared uint s_z_max;

// points.glsl's modulation, on a row's link columns
float modulation(float x, vec3 lod) {
    if (u_lod_mode == 2) return 1.0;
    float n = lod.x;
    float m = x >= n ? (lod.y - x) / (lod.y - n) : (x - lod.z) / (n - lod.z);
    m = clamp(m, 0.0, 1.0);
    return u_lod_mode == 1 ? (m >= 0.5 ? 1.0 : 0.0) : m;
}

// true and the depth when arena row `row` is drawn
bool survives(uint row, vec3 origin, out float z) {
    mat4 m = main_rows[row];
    vec3 p = u_R_camera_world * m[0].xyz + origin;
    z = p.z;
    if (!(z > u_near && z < u_far)) return false;
    // |column i of M| = scale i (R is a rotation)
    vec3 c0 = vec3(m[0].w, m[1].xy), c1 = vec3(m[1].zw, m[2].x), c2 = m[2].yzw;
    float radius = FOOTPRINT_SIGMAS * sqrt(max(max(dot(c0, c0), dot(c1, c1)), dot(c2, c2)))
                   + u_margin_per_depth * z;
    for (int k = 0; k < 4; ++k) {
        if (dot(u_planes[k], p) < -radius) return false;
    }
    vec3 lod = vec3(lod_rows[3u * row], lod_rows[3u * row + 1u], lod_rows[3u * row + 2u]);
    float mod_alpha = modulation(log(z) - u_log_focal, lod);
    return mod_alpha > ALPHA_CULL && m[3].w * mod_alpha >= MIN_FRAGMENT_ALPHA;
}

void main() {
    uint wp = group_index();
    if (wp >= u_work_pages) return;
    uvec4 work = work_pages[wp];
    uint page = work.x;
    vec3 origin = chunk_origins[work.y].xyz;
    uint t = gl_LocalInvocationID.x;
    if (t == 0u) {
        imageStore(u_page_origin, ivec2(int(page) & ((1 << PAGE_TEXELS_BITS) - 1),
                                        int(page) >> PAGE_TEXELS_BITS), vec4(origin, 0.0));
        s_z_min = FLOAT_INF_BITS;
        s_z_max = 0u;
    }
    uint kept = 0u;
    uint z_bits[ROWS];
    uint z_min = FLOAT_INF_BITS, z_max = 0u;
    for (uint k = 0u; k < ROWS; ++k) {
        uint r = t * ROWS + k;
        float z;
        z_bits[k] = FLOAT_INF_BITS;  // not drawn
        if (r < work.z && survives((page << PAGE_BITS) | r, origin, z)) {
            z_bits[k] = floatBitsToUint(z);
            z_min = min(z_min, z_bits[k]);
            z_max = max(z_max, z_bits[k]);
            kept += 1u;
        }
    }
    s_scan[t] = kept;
    barrier();
    for (uint offset = 1u; offset < uint(THREADS); offset <<= 1) {  // inclusive scan
        uint x = t >= offset ? s_scan[t - offset] : 0u;
        barrier();
        s_scan[t] += x;
        barrier();
    }
    uint total = s_scan[THREADS - 1];
    if (kept > 0u) {
        atomicMin(s_z_min, z_min);
        atomicMax(s_z_max, z_max);
    }
    barrier();
    if (t == 0u) {
        uint base = total > 0u ? atomicAdd(state[STATE_DRAW_COUNT], total) : 0u;
        s_base = base;
        page_info[wp] = uvec4(total, base, 0u, 0u);
        if (total > 0u) {
            atomicMin(state[STATE_Z_MIN], s_z_min);
            atomicMax(state[STATE_Z_MAX], s_z_max);
        }
    }
    barrier();
    uint at = s_base + s_scan[t] - kept;
    for (uint k = 0u; k < ROWS; ++k) {
        if (z_bits[k] != FLOAT_INF_BITS) {
            compacted[at] = uvec2((page << PAGE_BITS) | (t * ROWS + k), z_bits[k]);
            at += 1u;
        }
    }
}

#elif defined ORDER_SHADER

shared uint s_sums[THREADS];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint carry = 0u;
    for (uint start = 0u; start < u_work_pages; start += uint(THREADS)) {
        uint i = start + t;
        uint own = i < u_work_pages ? page_info[i].x : 0u;
        s_sums[t] = own;
        barrier();
        for (uint offset = 1u; offset < uint(THREADS); offset <<= 1) {
            uint x = t >= offset ? s_sums[t - offset] : 0u;
            barrier();
            s_sums[t] += x;
            barrier();
        }
        if (i < u_work_pages) page_info[i].z = carry + s_sums[t] - own;
        carry += s_sums[THREADS - 1];
        barrier();
    }
    if (t == 0u) {
        state[STATE_ORDERED] = carry;  // equals the atomic count: a check for the tests
        state[STATE_QUAD_INSTANCES] = carry;
    }
}

#elif defined KEYS_SHADER

layout(std430, binding = 0) writeonly buffer Keys { uint keys[]; };
layout(std430, binding = 1) writeonly buffer Values { uint values[]; };

void main() {
    uint wp = group_index();
    if (wp >= u_work_pages) return;
    uvec4 info = page_info[wp];
    // the survivors' depth range (bits of positive floats order like the floats)
    float lo = log(uintBitsToFloat(state[STATE_Z_MIN]));
    float hi = log(uintBitsToFloat(state[STATE_Z_MAX]));
    float scale = hi > lo ? SORT_KEY_MAX / (hi - lo) : 0.0;
    for (uint i = gl_LocalInvocationID.x; i < info.x; i += uint(THREADS)) {
        uvec2 survivor = compacted[info.y + i];
        float key = clamp(roundEven((log(uintBitsToFloat(survivor.y)) - lo) * scale), 0.0,
                          SORT_KEY_MAX);
        keys[info.z + i] = uint(SORT_KEY_MAX - key);  // furthest first
        values[info.z + i] = survivor.x;
    }
}

#endif
