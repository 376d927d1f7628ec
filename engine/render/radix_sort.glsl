// A portable, stable LSD radix sort of (uint key, uint value) pairs: compute shaders only
// (GL 4.3 or ARB_compute_shader + ARB_shader_storage_buffer_object; no subgroup operations),
// RADIX_BITS = 4 bits of the key per pass, so 16-bit depth keys take four passes. The CPU
// never learns the count: it is read from a GPU buffer (`counts[u_count_index]`, e.g. the
// indirect draw command the cull pass filled) and the per-pass dispatches are indirect.
//
// Compile with "#version 430", "#define THREADS <n>", "#define ITEMS <n>",
// "#define MAX_GROUPS_X <n>" and one of DISPATCH_SHADER, HISTOGRAM_SHADER, SCAN_SHADER,
// SCATTER_SHADER prepended (engine/render/gpu_sort.py does). One pass over the bits
// [u_shift, u_shift + 4):
//   HISTOGRAM: tile g (TILE = THREADS * ITEMS consecutive elements) counts its digits into
//              hist[digit * tiles + g] (digit-major, so one exclusive scan per digit row
//              gives every tile its place among the earlier tiles);
//   SCAN:      one workgroup per digit scans its row in place and leaves the digit's total
//              in args[ARG_DIGIT_TOTAL + digit];
//   SCATTER:   tile g ranks each element among the equal digits before it in the tile
//              (per-thread counts packed 16 bits per digit, scanned across the workgroup:
//              one scan per pass instead of one 1-bit split per key bit) and writes it to
//              digit base + its tile's row prefix + that rank. Elements keep their order
//              among equal digits, so the whole sort is stable.
// DISPATCH (one invocation) turns the count into the indirect dispatch of the tiles: a grid
// of at most MAX_GROUPS_X groups a row (GL guarantees 65535), so any count fits one dispatch.

#define RADIX_BITS 4u
#define BINS 16u
#define DIGIT_MASK 15u
#define TILE (THREADS * ITEMS)
#define ARG_TILES 3
#define ARG_DIGIT_TOTAL 4

layout(local_size_x = THREADS) in;

layout(std430, binding = 0) buffer KeysIn { uint keys_in[]; };
layout(std430, binding = 1) buffer ValuesIn { uint values_in[]; };
layout(std430, binding = 2) buffer KeysOut { uint keys_out[]; };
layout(std430, binding = 3) buffer ValuesOut { uint values_out[]; };
layout(std430, binding = 4) buffer Histogram { uint hist[]; };   // [BINS * tiles]
layout(std430, binding = 5) buffer Args { uint args[]; };        // dispatch x, y, z, tiles,
                                                                 // digit totals [BINS]
layout(std430, binding = 6) readonly buffer Counts { uint counts[]; };

uniform uint u_count_index;  // counts[u_count_index] = elements to sort
uniform uint u_shift;        // the pass's lowest key bit

uint element_count() { return counts[u_count_index]; }

uint tile_count(uint count) { return (count + TILE - 1u) / TILE; }

uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

uint digit_of(uint key) { return (key >> u_shift) & DIGIT_MASK; }

#if defined DISPATCH_SHADER

void main() {
    if (gl_LocalInvocationID.x != 0u) return;
    uint tiles = tile_count(element_count());
    uint x = min(tiles, uint(MAX_GROUPS_X));
    args[0] = x;
    args[1] = x == 0u ? 0u : (tiles + x - 1u) / x;
    args[2] = 1u;
    args[ARG_TILES] = tiles;
}

#elif defined HISTOGRAM_SHADER

shared uint s_bins[BINS];

void main() {
    uint count = element_count();
    uint tiles = tile_count(count);
    uint g = group_index();
    if (g >= tiles) return;  // the last row of the grid may run past the tiles
    uint t = gl_LocalInvocationID.x;
    if (t < BINS) s_bins[t] = 0u;
    barrier();
    uint first = g * TILE + t * ITEMS;
    for (uint k = 0u; k < uint(ITEMS); ++k) {
        if (first + k < count) atomicAdd(s_bins[digit_of(keys_in[first + k])], 1u);
    }
    barrier();
    if (t < BINS) hist[t * tiles + g] = s_bins[t];
}

#elif defined SCAN_SHADER

shared uint s_sums[THREADS];

void main() {
    uint tiles = tile_count(element_count());
    uint d = gl_WorkGroupID.x;  // one workgroup per digit
    uint t = gl_LocalInvocationID.x;
    uint carry = 0u;
    for (uint start = 0u; start < tiles; start += TILE) {  // same trip count for the group
        uint v[ITEMS];
        uint sum = 0u;
        for (uint k = 0u; k < uint(ITEMS); ++k) {
            uint i = start + t * ITEMS + k;
            v[k] = i < tiles ? hist[d * tiles + i] : 0u;
            sum += v[k];
        }
        s_sums[t] = sum;
        barrier();
        for (uint offset = 1u; offset < uint(THREADS); offset <<= 1) {  // inclusive scan
            uint x = t >= offset ? s_sums[t - offset] : 0u;
            barrier();
            s_sums[t] += x;
            barrier();
        }
        uint running = carry + s_sums[t] - sum;
        for (uint k = 0u; k < uint(ITEMS); ++k) {
            uint i = start + t * ITEMS + k;
            if (i < tiles) hist[d * tiles + i] = running;
            running += v[k];
        }
        carry += s_sums[THREADS - 1];
        barrier();  // every thread has read s_sums before the next chunk overwrites it
    }
    if (t == 0u) args[ARG_DIGIT_TOTAL + d] = carry;
}

#elif defined SCATTER_SHADER

shared uint s_scan[8 * THREADS];  // lane j of thread t at [j * THREADS + t]
shared uint s_offset[BINS];

void main() {
    uint count = element_count();
    uint tiles = tile_count(count);
    uint g = group_index();
    if (g >= tiles) return;
    uint t = gl_LocalInvocationID.x;
    if (t < BINS) {
        uint base = 0u;  // elements with a smaller digit, in every tile
        for (uint d = 0u; d < t; ++d) base += args[ARG_DIGIT_TOTAL + d];
        s_offset[t] = base + hist[t * tiles + g];
    }
    // this thread's elements, in order; counts_of[d / 2] holds digit d's count in 16 bits
    // (a tile has at most TILE <= 65535 elements, so the lanes never carry into each other)
    uint keys[ITEMS];
    uint values[ITEMS];
    uint rank[ITEMS];
    uint counts_of[8];
    for (uint j = 0u; j < 8u; ++j) counts_of[j] = 0u;
    uint first = g * TILE + t * ITEMS;
    for (uint k = 0u; k < uint(ITEMS); ++k) {
        if (first + k < count) {
            keys[k] = keys_in[first + k];
            values[k] = values_in[first + k];
            uint d = digit_of(keys[k]);
            uint shift = (d & 1u) * 16u;
            rank[k] = (counts_of[d >> 1] >> shift) & 0xFFFFu;
            counts_of[d >> 1] += 1u << shift;
        }
    }
    for (uint j = 0u; j < 8u; ++j) s_scan[j * THREADS + t] = counts_of[j];
    barrier();
    for (uint offset = 1u; offset < uint(THREADS); offset <<= 1) {  // inclusive scan
        uint x[8];
        for (uint j = 0u; j < 8u; ++j) x[j] = t >= offset ? s_scan[j * THREADS + t - offset] : 0u;
        barrier();
        for (uint j = 0u; j < 8u; ++j) s_scan[j * THREADS + t] += x[j];
        barrier();
    }
    for (uint k = 0u; k < uint(ITEMS); ++k) {
        if (first + k < count) {
            uint d = digit_of(keys[k]);
            uint shift = (d & 1u) * 16u;
            // inclusive minus own: each 16-bit lane is at least this thread's own count
            uint before = ((s_scan[(d >> 1) * THREADS + t] - counts_of[d >> 1]) >> shift) & 0xFFFFu;
            uint position = s_offset[d] + before + rank[k];
            keys_out[position] = keys[k];
            values_out[position] = values[k];
        }
    }
}

#endif
