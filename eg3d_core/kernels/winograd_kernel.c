/*
 * Winograd F(2x2, 3x3), F(3x3, 3x3) and (reduced precision) F(6x6, 3x3) convolutions of one channels-last image
 * (called from eg3d_core/kernels/winograd.py): the tile transforms, the products between them, and a driver that
 * runs them chunk by chunk; then the same for the stride-2 transposed convolutions.
 *
 * Each 2x2 output tile comes from a 4x4 input tile d: Y = A^T [ (G g G^T) .* (B^T d B) ] A, with
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1],
 * where the 16 element-wise products over all tiles and input channels are 16 matrix products
 * [tiles, I] @ [I, O] (wino_gemm). The loops run over channels, innermost and contiguous, 8 at a time (AVX2); channel
 * counts must be multiples of 8. The transforms work on a range of tiles at a time; wino_conv runs a thread's range in
 * chunks, each transformed, multiplied and transformed back while it is still in the caches.
 *
 * The transformed filters are stored packed for the products: for each slot, output channels in panels of 16 (the
 * last one 8 wide when O is not a multiple of 16), each panel [I][width] (see put_filters).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

typedef __m256 vec;

/* Floats from one slot to the next in the transformed tiles [slots][count][channels] and in the products: one cache
 * line more than a slot's data. A transform writes (or reads) all 16-64 slots of a tile at once; at the exact size,
 * a multiple of 4 KiB for the usual chunks (128-512 tiles of 128-512 channels), they all fell into one set of the
 * first-level cache, which holds 8, and the transforms ran at half speed. */
int64_t wino_slot_stride(int64_t count, int64_t channels) { return count * channels + 16; }

/* One output channel's weights laid out channels-last: t[k][i] = w[i][k] for the 9 taps k of w [I][3][3] (the
 * convolution's own layout). */
static void taps(const float *restrict w, int64_t i_count, float *restrict t) {
    for (int64_t i = 0; i < i_count; ++i)
        for (int k = 0; k < 9; ++k) t[k * i_count + i] = w[i * 9 + k];
}

/* Transpose the 8x8 block r[row][lane] in place. */
static inline void transpose8(vec r[8]) {
    vec t[8], q[8];
    for (int k = 0; k < 4; ++k) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 2; ++k)
        for (int h = 0; h < 2; ++h) {
            q[4 * k + h] = _mm256_shuffle_ps(t[4 * k + h], t[4 * k + 2 + h], _MM_SHUFFLE(1, 0, 1, 0));
            q[4 * k + 2 + h] = _mm256_shuffle_ps(t[4 * k + h], t[4 * k + 2 + h], _MM_SHUFFLE(3, 2, 3, 2));
        }
    /* q[0..3]: rows 0-3 of columns (0,4), (2,6), (1,5), (3,7) ... in 128-bit halves; combine with rows 4-7. */
    const int order[4] = {0, 2, 1, 3};
    for (int k = 0; k < 4; ++k) {
        r[order[k]] = _mm256_permute2f128_ps(q[k], q[4 + k], 0x20);
        r[order[k] + 4] = _mm256_permute2f128_ps(q[k], q[4 + k], 0x31);
    }
}

/* The n x n input patch of a tile whose first pixel is (y0, x0) (-1 for the zero padding): d[r * n + c] points at
 * the channels of x [H][W][I] at (y0 + r, x0 + c), inside[r * n + c] says whether that pixel is in the image (the
 * others read as zeros). */
static inline void input_patch(int n, int64_t y0, int64_t x0, int64_t h, int64_t w, int64_t i_count,
                               const float *x, const float **d, int *inside) {
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c) {
            const int64_t yy = y0 + r, xx = x0 + c;
            inside[r * n + c] = yy >= 0 && yy < h && xx >= 0 && xx < w;
            d[r * n + c] = inside[r * n + c] ? x + (yy * w + xx) * i_count : x;
        }
}

/* The n x n output block of a tile whose first pixel is (y0, x0), in y [OH][OW][O]: out[a * n + b] points at pixel
 * (y0 + a, x0 + b), inside[a * n + b] says whether it is in the image (edge tiles drop the rest). */
static inline void output_block(int n, int64_t y0, int64_t x0, int64_t oh, int64_t ow, int64_t o_count, float *y,
                                float **out, int *inside) {
    for (int a = 0; a < n; ++a)
        for (int b = 0; b < n; ++b) {
            inside[a * n + b] = y0 + a < oh && x0 + b < ow;
            out[a * n + b] = y + ((y0 + a) * ow + x0 + b) * o_count;
        }
}

/* Packed store of the transformed filters of output channels o .. o + 7 (o a multiple of 8): scratch [slots][8][I]
 * -> u [slots][O x I, packed], i.e. for each slot, panel o / 16, rows 0 .. I - 1, columns o % 16 .. o % 16 + 7. */
static void put_filters(int slots, int64_t o_count, int64_t i_count, int64_t o, const float *restrict scratch,
                        float *restrict u) {
    const int64_t first = o / 16 * 16, width = o_count - first < 16 ? o_count - first : 16;
    for (int s = 0; s < slots; ++s) {
        const float *src = scratch + (int64_t)s * 8 * i_count;
        float *dst = u + s * o_count * i_count + first * i_count + (o - first);
        for (int64_t i = 0; i < i_count; i += 8) {
            vec r[8];
            for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(src + l * i_count + i);
            transpose8(r);
            for (int l = 0; l < 8; ++l) _mm256_storeu_ps(dst + (i + l) * width, r[l]);
        }
    }
}


/*
 * The three tile sizes share one driver per transform (filters_3x3, input_tiles, output_tiles), specialised by
 * their constant arguments: the tile sizes, the 1-D transforms (bt*, at*) and G.
 */

/* Four input channels' values of tap k (of the layout `taps` writes), in double precision. */
#define TAP(g, k, i_count, i) _mm256_cvtps_pd(_mm_loadu_ps((g) + (k) * (i_count) + (i)))
/* Store four channels' double values, rounded once to float, into slot `slot` of a filter scratch [slots][8][I]. */
#define PUT4(dst, slot, i_count, i, value) \
    _mm_storeu_ps((dst) + (int64_t)(slot) * 8 * (i_count) + (i), _mm256_cvtpd_ps(value))

/* Filter transform of an F(m x m, 3x3) with n = m + 2 and G = g_mat [n][3]: weight [O][I][3][3] -> u [n*n][O x I,
 * packed], for output channels o0 .. o1 - 1 (multiples of 8); G g G^T in double precision, four input channels at a
 * time, rounded once. Returns 0, or -1 (nothing written) if its buffers could not be allocated. */
static inline __attribute__((always_inline)) int filters_3x3(int n, const double (*g_mat)[3], int64_t o_count,
                                                               int64_t i_count, const float *restrict weight,
                                                               int64_t o0, int64_t o1, float *restrict u) {
    float *g = malloc(sizeof(float) * 9 * i_count);
    float *scratch = malloc(sizeof(float) * n * n * 8 * i_count);
    if (!g || !scratch) {
        free(scratch);
        free(g);
        return -1;
    }
    for (int64_t o = o0; o < o1; ++o) {
        taps(weight + o * 9 * i_count, i_count, g);
        float *dst = scratch + o % 8 * i_count;
        for (int64_t i = 0; i < i_count; i += 4) {
            __m256d k[9], t[8][3];
            for (int j = 0; j < 9; ++j) k[j] = TAP(g, j, i_count, i);
            for (int r = 0; r < n; ++r) /* G g */
                for (int c = 0; c < 3; ++c)
                    t[r][c] = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(g_mat[r][0]), k[c]),
                                                          _mm256_mul_pd(_mm256_set1_pd(g_mat[r][1]), k[3 + c])),
                                            _mm256_mul_pd(_mm256_set1_pd(g_mat[r][2]), k[6 + c]));
            for (int r = 0; r < n; ++r) /* ... G^T */
                for (int c = 0; c < n; ++c)
                    PUT4(dst, n * r + c, i_count, i,
                         _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(t[r][0], _mm256_set1_pd(g_mat[c][0])),
                                                     _mm256_mul_pd(t[r][1], _mm256_set1_pd(g_mat[c][1]))),
                                       _mm256_mul_pd(t[r][2], _mm256_set1_pd(g_mat[c][2]))));
        }
        if (o % 8 == 7) put_filters(n * n, o_count, i_count, o - 7, scratch, u);
    }
    free(scratch);
    free(g);
    return 0;
}

/* Input transform of an F(m x m, 3x3) with n = m + 2 and the 1-D transform bt (B^T applied to n values): x [H][W][I]
 * (zero padding 1), times scale[i] (if not NULL) -> v [n*n][count][I] for the tiles first .. first + count - 1,
 * numbered row by row, tw = (W + m - 1) / m to a row; tile (ty, tx) reads x[m ty - 1 .. m ty + m][m tx - 1 ..]. */
static inline __attribute__((always_inline)) void input_tiles(int n, int m, void (*bt)(const vec *, vec *), int64_t h,
                                                               int64_t w, int64_t i_count, const float *restrict x,
                                                               const float *restrict scale, int64_t first,
                                                               int64_t count, float *restrict v) {
    const int64_t tw = (w + m - 1) / m;
    const int64_t plane = wino_slot_stride(count, i_count);
    const vec zero = _mm256_setzero_ps();
    for (int64_t tile = 0; tile < count; ++tile) {
        const int64_t ty = (first + tile) / tw, tx = (first + tile) % tw;
        const float *d[64];
        int inside[64];
        input_patch(n, m * ty - 1, m * tx - 1, h, w, i_count, x, d, inside);
        float *dst = v + tile * i_count;
        for (int64_t i = 0; i < i_count; i += 8) {
            const vec sc = scale ? _mm256_loadu_ps(scale + i) : _mm256_set1_ps(1.0f);
            vec t[8][8]; /* B^T d: along the rows */
            for (int c = 0; c < n; ++c) {
                vec dd[8], e[8];
                for (int r = 0; r < n; ++r)
                    dd[r] = inside[r * n + c] ? _mm256_mul_ps(_mm256_loadu_ps(d[r * n + c] + i), sc) : zero;
                bt(dd, e);
                for (int r = 0; r < n; ++r) t[r][c] = e[r];
            }
            for (int r = 0; r < n; ++r) { /* ... B: along the columns */
                vec e[8];
                bt(t[r], e);
                for (int c = 0; c < n; ++c) _mm256_storeu_ps(dst + (n * r + c) * plane + i, e[c]);
            }
        }
    }
}

/* One output vector v of a tile as a synthesis layer finishes it, each step rounded as PyTorch's separate operations
 * would: times sc, + b, + nz (if has_noise), leaky ReLU with this slope (if slope != 1), clamp to [lo, hi] (if
 * limit > 0); stored at dst. */
static inline __attribute__((always_inline)) void finish(vec v, vec sc, vec b, int has_noise, vec nz, float slope,
                                                          vec slope_v, float limit, vec lo, vec hi, float *dst) {
    v = _mm256_add_ps(_mm256_mul_ps(v, sc), b);
    if (has_noise) v = _mm256_add_ps(v, nz);
    if (slope != 1.0f) v = _mm256_max_ps(v, _mm256_mul_ps(v, slope_v)); /* 0 < slope < 1 */
    if (limit > 0.0f) v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    _mm256_storeu_ps(dst, v);
}

/* Output transform of an F(m x m, 3x3) with n = m + 2 and the 1-D transform at (A^T applied to n values, m out):
 * m [n*n][count][O] -> y [H][W][O] for the tiles first .. first + count - 1 (numbered as in input_tiles), with what a
 * synthesis layer does next fused in, each step as PyTorch would do it: times scale[o] (if not NULL), + bias[o] (if
 * not NULL), + noise[y][x] (if not NULL), leaky ReLU with this slope (if slope != 1), clamp to [-limit, limit] (if
 * limit > 0). */
static inline __attribute__((always_inline)) void output_tiles(int n, int m, void (*at)(const vec *, vec *), int64_t h,
                                                                int64_t w, int64_t o_count,
                                                                const float *restrict prod, const float *restrict scale,
                                                                const float *restrict bias,
                                                                const float *restrict noise, float slope, float limit,
                                                                int64_t first, int64_t count, float *restrict y) {
    const int64_t tw = (w + m - 1) / m;
    const int64_t plane = wino_slot_stride(count, o_count);
    const vec slope_v = _mm256_set1_ps(slope), hi = _mm256_set1_ps(limit), lo = _mm256_set1_ps(-limit);
    for (int64_t tile = 0; tile < count; ++tile) {
        const int64_t ty = (first + tile) / tw, tx = (first + tile) % tw;
        const float *src = prod + tile * o_count;
        const int64_t y0 = m * ty, x0 = m * tx;
        float *out[36];
        int inside[36];
        float nz[36];
        output_block(m, y0, x0, h, w, o_count, y, out, inside);
        for (int a = 0; a < m; ++a)
            for (int b = 0; b < m; ++b)
                nz[a * m + b] = noise && inside[a * m + b] ? noise[(y0 + a) * w + x0 + b] : 0.0f;
        for (int64_t o = 0; o < o_count; o += 8) {
            vec t[6][8]; /* A^T m: along the rows */
            for (int c = 0; c < n; ++c) {
                vec mm[8], e[6];
                for (int r = 0; r < n; ++r) mm[r] = _mm256_loadu_ps(src + (n * r + c) * plane + o);
                at(mm, e);
                for (int r = 0; r < m; ++r) t[r][c] = e[r];
            }
            const vec b = bias ? _mm256_loadu_ps(bias + o) : _mm256_setzero_ps();
            const vec sc = scale ? _mm256_loadu_ps(scale + o) : _mm256_set1_ps(1.0f);
            for (int r = 0; r < m; ++r) { /* ... A: along the columns */
                vec e[6];
                at(t[r], e);
                for (int c = 0; c < m; ++c)
                    if (inside[r * m + c])
                        finish(e[c], sc, b, noise != NULL, _mm256_set1_ps(nz[r * m + c]), slope, slope_v, limit, lo,
                               hi, out[r * m + c] + o);
            }
        }
    }
}

/* F(2x2, 3x3) (matrices in the header comment): B^T and A^T applied to four values. */
static inline __attribute__((always_inline)) void bt4x4(const vec *d, vec *e) {
    e[0] = _mm256_sub_ps(d[0], d[2]);
    e[1] = _mm256_add_ps(d[1], d[2]);
    e[2] = _mm256_sub_ps(d[2], d[1]);
    e[3] = _mm256_sub_ps(d[1], d[3]);
}

static inline __attribute__((always_inline)) void at4x2(const vec *m, vec *y) {
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], m[1]), m[2]);
    y[1] = _mm256_sub_ps(_mm256_sub_ps(m[1], m[2]), m[3]);
}

static const double G2X2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};


/*
 * Winograd F(3x3, 3x3): each 3x3 output tile from a 5x5 input tile (interpolation points 0, 1, -1, 2 and infinity),
 * 25 products for 9 outputs instead of F(2x2, 3x3)'s 16 for 4 (1.44x fewer), with
 *   B^T = [2 -1 -2 1 0; 0 -2 -1 1 0; 0 2 -3 1 0; 0 -1 0 1 0; 0 2 -1 -2 1],
 *   G = [1/2 0 0; -1/2 -1/2 -1/2; -1/6 1/6 -1/6; 1/6 1/3 2/3; 0 0 1],  A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 1].
 * Its transforms carry larger coefficients, so its rounding error is about that of the direct convolution (F(2x2,
 * 3x3)'s is several times smaller); the fractions are all in G, applied in double precision to the filters.
 */

/* B^T applied to five values, rows written around r3 = d3 - d1 (row 3 itself, a part of every other). */
static inline __attribute__((always_inline)) void bt5(const vec *d, vec *e) {
    const vec r3 = _mm256_sub_ps(d[3], d[1]);
    e[0] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), _mm256_sub_ps(d[0], d[2]), r3);
    e[1] = _mm256_sub_ps(r3, _mm256_add_ps(d[1], d[2]));
    e[2] = _mm256_fmadd_ps(_mm256_set1_ps(3.0f), _mm256_sub_ps(d[1], d[2]), r3);
    e[3] = r3;
    e[4] = _mm256_fnmadd_ps(_mm256_set1_ps(2.0f), r3, _mm256_sub_ps(d[4], d[2]));
}

/* A^T applied to five values. */
static inline __attribute__((always_inline)) void at5(const vec *m, vec *y) {
    const vec s = _mm256_add_ps(m[1], m[2]);
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], s), m[3]);
    y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), m[3], _mm256_sub_ps(m[1], m[2]));
    y[2] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(4.0f), m[3], s), m[4]);
}

static const double G3X3[5][3] = {{0.5, 0, 0}, {-0.5, -0.5, -0.5}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 6, 1.0 / 3, 2.0 / 3}, {0, 0, 1}};


/*
 * Winograd F(6x6, 3x3), for reduced precision only: each 6x6 output tile from an 8x8 input tile (points 0, +-1, +-2,
 * +-1/2 and infinity), 64 products for 36 outputs, 1.56x fewer than F(3x3, 3x3). Its transforms' coefficients reach
 * 21/4 and 32, so its rounding error is a few times the direct convolution's (still hundreds of times below
 * bfloat16's); float32 inference keeps F(2x2, 3x3) / F(3x3, 3x3). Row j of B^T holds the coefficients of
 * prod_{l != j} (x - p_l) over the finite points (row 0 negated, the last row the product over all of them), G's
 * row j is (1, p_j, p_j^2) / prod_{l != j} (p_j - p_l) (row 0 negated, the last row (0, 0, 1)), A^T's column j is
 * (1, p_j, ..., p_j^5) (the last column (0, ..., 0, 1)):
 *   B^T = [1 0 -21/4 0 21/4 0 -1 0; 0 1 1 -17/4 -17/4 1 1 0; 0 -1 1 17/4 -17/4 -1 1 0;
 *          0 1/2 1/4 -5/2 -5/4 2 1 0; 0 -1/2 1/4 5/2 -5/4 -2 1 0; 0 2 4 -5/2 -5 1/2 1 0;
 *          0 -2 4 5/2 -5 -1/2 1 0; 0 -1 0 21/4 0 -21/4 0 1],
 *   G = [1 0 0; -2/9 -2/9 -2/9; -2/9 2/9 -2/9; 1/90 1/45 2/45; 1/90 -1/45 2/45; 32/45 16/45 8/45;
 *        32/45 -16/45 8/45; 0 0 1].
 */

/* B^T applied to eight values, the rows in pairs (j, j + 1) = a +- b. */
static inline __attribute__((always_inline)) void bt8(const vec *d, vec *e) {
    const vec c21_4 = _mm256_set1_ps(5.25f), c17_4 = _mm256_set1_ps(4.25f), c5_4 = _mm256_set1_ps(1.25f);
    const vec c5_2 = _mm256_set1_ps(2.5f), c5 = _mm256_set1_ps(5.0f), c4 = _mm256_set1_ps(4.0f);
    const vec c2 = _mm256_set1_ps(2.0f), c1_2 = _mm256_set1_ps(0.5f), c1_4 = _mm256_set1_ps(0.25f);
    e[0] = _mm256_fmadd_ps(c21_4, _mm256_sub_ps(d[4], d[2]), _mm256_sub_ps(d[0], d[6]));
    e[7] = _mm256_fmadd_ps(c21_4, _mm256_sub_ps(d[3], d[5]), _mm256_sub_ps(d[7], d[1]));
    vec a = _mm256_fnmadd_ps(c17_4, d[4], _mm256_add_ps(d[2], d[6]));
    vec b = _mm256_fnmadd_ps(c17_4, d[3], _mm256_add_ps(d[1], d[5]));
    e[1] = _mm256_add_ps(a, b);
    e[2] = _mm256_sub_ps(a, b);
    a = _mm256_fnmadd_ps(c5_4, d[4], _mm256_fmadd_ps(c1_4, d[2], d[6]));
    b = _mm256_fmadd_ps(c2, d[5], _mm256_fnmadd_ps(c5_2, d[3], _mm256_mul_ps(c1_2, d[1])));
    e[3] = _mm256_add_ps(a, b);
    e[4] = _mm256_sub_ps(a, b);
    a = _mm256_fnmadd_ps(c5, d[4], _mm256_fmadd_ps(c4, d[2], d[6]));
    b = _mm256_fmadd_ps(c1_2, d[5], _mm256_fnmadd_ps(c5_2, d[3], _mm256_mul_ps(c2, d[1])));
    e[5] = _mm256_add_ps(a, b);
    e[6] = _mm256_sub_ps(a, b);
}

/* A^T applied to eight values, from the sums and differences of the pairs of points +-p. */
static inline __attribute__((always_inline)) void at8(const vec *m, vec *y) {
    const vec s1 = _mm256_add_ps(m[1], m[2]), d1 = _mm256_sub_ps(m[1], m[2]);
    const vec s2 = _mm256_add_ps(m[3], m[4]), d2 = _mm256_sub_ps(m[3], m[4]);
    const vec s3 = _mm256_add_ps(m[5], m[6]), d3 = _mm256_sub_ps(m[5], m[6]);
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], s1), _mm256_add_ps(s2, s3));
    y[1] = _mm256_fmadd_ps(_mm256_set1_ps(0.5f), d3, _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d2, d1));
    y[2] = _mm256_fmadd_ps(_mm256_set1_ps(0.25f), s3, _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s2, s1));
    y[3] = _mm256_fmadd_ps(_mm256_set1_ps(0.125f), d3, _mm256_fmadd_ps(_mm256_set1_ps(8.0f), d2, d1));
    y[4] = _mm256_fmadd_ps(_mm256_set1_ps(0.0625f), s3, _mm256_fmadd_ps(_mm256_set1_ps(16.0f), s2, s1));
    y[5] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(0.03125f), d3, _mm256_fmadd_ps(_mm256_set1_ps(32.0f), d2, d1)),
                         m[7]);
}

static const double G6X6[8][3] = {{1, 0, 0}, {-2.0 / 9, -2.0 / 9, -2.0 / 9}, {-2.0 / 9, 2.0 / 9, -2.0 / 9},
                                  {1.0 / 90, 1.0 / 45, 2.0 / 45}, {1.0 / 90, -1.0 / 45, 2.0 / 45},
                                  {32.0 / 45, 16.0 / 45, 8.0 / 45}, {32.0 / 45, -16.0 / 45, 8.0 / 45}, {0, 0, 1}};



/* The exported transforms of an F(size x size, 3x3), size 2, 3 or 6: weight [O][I][3][3] -> u [(size + 2)^2][O x I,
 * packed] for output channels o0 .. o1 - 1 (filters_3x3); x -> v [(size + 2)^2][count][I] (input_tiles);
 * m [(size + 2)^2][count][O] -> y (output_tiles). wino_weights returns 0, or -1 if out of memory. */
int wino_weights(int64_t size, int64_t o_count, int64_t i_count, const float *restrict weight, int64_t o0,
                 int64_t o1, float *restrict u) {
    if (size == 6) return filters_3x3(8, G6X6, o_count, i_count, weight, o0, o1, u);
    if (size == 3) return filters_3x3(5, G3X3, o_count, i_count, weight, o0, o1, u);
    return filters_3x3(4, G2X2, o_count, i_count, weight, o0, o1, u);
}

void wino_input(int64_t size, int64_t h, int64_t w, int64_t i_count, const float *restrict x,
                const float *restrict scale, int64_t first, int64_t count, float *restrict v) {
    if (size == 6) input_tiles(8, 6, bt8, h, w, i_count, x, scale, first, count, v);
    else if (size == 3) input_tiles(5, 3, bt5, h, w, i_count, x, scale, first, count, v);
    else input_tiles(4, 2, bt4x4, h, w, i_count, x, scale, first, count, v);
}

void wino_output(int64_t size, int64_t h, int64_t w, int64_t o_count, const float *restrict m,
                 const float *restrict scale, const float *restrict bias, const float *restrict noise, float slope,
                 float limit, int64_t first, int64_t count, float *restrict y) {
    if (size == 6) output_tiles(8, 6, at8, h, w, o_count, m, scale, bias, noise, slope, limit, first, count, y);
    else if (size == 3) output_tiles(5, 3, at5, h, w, o_count, m, scale, bias, noise, slope, limit, first, count, y);
    else output_tiles(4, 2, at4x2, h, w, o_count, m, scale, bias, noise, slope, limit, first, count, y);
}

/*
 * Stride-2 transposed 3x3 convolution (weights unflipped; output 2H+1 square) by its four output phases:
 * y[2a][2b] is a 2x2 correlation of x (taps W[2-2u][2-2v] on x[a-1+u][b-1+v]), y[2a][2b+1] and y[2a+1][2b] are
 * 2-tap ones (rows, resp. columns), y[2a+1][2b+1] = W[1][1] x[a][b]. Winograd F(2x2, 2x2) for the first and
 * F(2, 2) along the 2-tap axis for the next two give a 2x2 block of a's and b's (a 4x4 output block) from one 3x3
 * input patch with 25 products instead of 36:
 *   F(2, 2): B^T = [1 -1 0; 0 1 0; 0 -1 1], G = [1 0; 1 1; 0 1], A^T = [1 1 0; 0 1 1].
 * Slots: 0-8 phase (0,0) [3x3], 9-14 phase (0,1) [3 rows x 2 columns], 15-20 phase (1,0) [2 rows x 3 columns],
 * 21-24 phase (1,1) [2x2].
 */

/* Filter transform: weight [O][I][3][3] -> u [25][O x I, packed], for output channels o0 .. o1 - 1 (multiples of 8).
 * Returns 0, or -1 (nothing written) if its buffer could not be allocated. */
static int up2_weights(int64_t o_count, int64_t i_count, const float *restrict weight, int64_t o0, int64_t o1,
                        float *restrict u) {
    float g[9 * i_count];
    float *scratch = malloc(sizeof(float) * 25 * 8 * i_count);
    if (!scratch) return -1;
    for (int64_t o = o0; o < o1; ++o) {
        taps(weight + o * 9 * i_count, i_count, g);
        float *dst = scratch + o % 8 * i_count;
#define W(ky, kx) _mm256_loadu_ps(g + ((ky) * 3 + (kx)) * i_count + i)
#define PUT(slot, value) _mm256_storeu_ps(dst + (slot) * 8 * i_count + i, (value))
        for (int64_t i = 0; i < i_count; i += 8) {
            /* Phase (0,0): k[u][v] = W[2-2u][2-2v]; G k G^T. */
            const vec k00 = W(2, 2), k01 = W(2, 0), k10 = W(0, 2), k11 = W(0, 0);
            const vec t[3][2] = {{k00, k01}, {_mm256_add_ps(k00, k10), _mm256_add_ps(k01, k11)}, {k10, k11}};
            for (int r = 0; r < 3; ++r) {
                PUT(3 * r + 0, t[r][0]);
                PUT(3 * r + 1, _mm256_add_ps(t[r][0], t[r][1]));
                PUT(3 * r + 2, t[r][1]);
            }
            /* Phase (0,1): rows k0 = W[2][1], k1 = W[0][1]; the same for both columns. */
            const vec a0 = W(2, 1), a1 = W(0, 1);
            const vec ra[3] = {a0, _mm256_add_ps(a0, a1), a1};
            /* Phase (1,0): columns k0 = W[1][2], k1 = W[1][0]; the same for both rows. */
            const vec b0 = W(1, 2), b1 = W(1, 0);
            const vec cb[3] = {b0, _mm256_add_ps(b0, b1), b1};
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 2; ++c) PUT(9 + 2 * r + c, ra[r]);
            for (int r = 0; r < 2; ++r)
                for (int c = 0; c < 3; ++c) PUT(15 + 3 * r + c, cb[c]);
            for (int s = 21; s < 25; ++s) PUT(s, W(1, 1));
        }
#undef W
#undef PUT
        if (o % 8 == 7) put_filters(25, o_count, i_count, o - 7, scratch, u);
    }
    free(scratch);
    return 0;
}

/* Input transform of the tiles first .. first + count - 1 (row by row, tw = (W + 2) / 2 to a row): x [H][W][I] times
 * scale[i] (if not NULL) -> v [25][count][I]; tile (ta, tb) reads x[2ta-1 .. 2ta+1][2tb-1 .. 2tb+1] (zero outside). */
static void up2_input(int64_t h, int64_t w, int64_t i_count, const float *restrict x, const float *restrict scale,
                      int64_t first, int64_t count, float *restrict v) {
    const int64_t tw = (w + 2) / 2;
    const int64_t plane = wino_slot_stride(count, i_count);
    const vec zero = _mm256_setzero_ps();
    for (int64_t tile = 0; tile < count; ++tile) {
        const int64_t ty = (first + tile) / tw, tx = (first + tile) % tw;
        const float *d[3][3];
        int inside[3][3];
        input_patch(3, 2 * ty - 1, 2 * tx - 1, h, w, i_count, x, &d[0][0], &inside[0][0]);
        float *dst = v + tile * i_count;
        for (int64_t i = 0; i < i_count; i += 8) {
            const vec sc = scale ? _mm256_loadu_ps(scale + i) : _mm256_set1_ps(1.0f);
            vec p[3][3];
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c)
                    p[r][c] = inside[r][c] ? _mm256_mul_ps(_mm256_loadu_ps(d[r][c] + i), sc) : zero;
            vec t[3][3]; /* B^T along the rows */
            for (int c = 0; c < 3; ++c) {
                t[0][c] = _mm256_sub_ps(p[0][c], p[1][c]);
                t[1][c] = p[1][c];
                t[2][c] = _mm256_sub_ps(p[2][c], p[1][c]);
            }
            for (int r = 0; r < 3; ++r) { /* phase (0,0): ... and B along the columns */
                _mm256_storeu_ps(dst + (3 * r + 0) * plane + i, _mm256_sub_ps(t[r][0], t[r][1]));
                _mm256_storeu_ps(dst + (3 * r + 1) * plane + i, t[r][1]);
                _mm256_storeu_ps(dst + (3 * r + 2) * plane + i, _mm256_sub_ps(t[r][2], t[r][1]));
            }
            for (int r = 0; r < 3; ++r) /* phase (0,1): rows transformed, columns b, b+1 */
                for (int c = 0; c < 2; ++c) _mm256_storeu_ps(dst + (9 + 2 * r + c) * plane + i, t[r][1 + c]);
            for (int r = 0; r < 2; ++r) { /* phase (1,0): rows a, a+1, columns transformed */
                const vec *e = p[1 + r];
                _mm256_storeu_ps(dst + (15 + 3 * r + 0) * plane + i, _mm256_sub_ps(e[0], e[1]));
                _mm256_storeu_ps(dst + (15 + 3 * r + 1) * plane + i, e[1]);
                _mm256_storeu_ps(dst + (15 + 3 * r + 2) * plane + i, _mm256_sub_ps(e[2], e[1]));
            }
            for (int r = 0; r < 2; ++r) /* phase (1,1) */
                for (int c = 0; c < 2; ++c) _mm256_storeu_ps(dst + (21 + 2 * r + c) * plane + i, p[1 + r][1 + c]);
        }
    }
}

/* Output transform of the tiles first .. first + count - 1: m [25][count][O] -> y [2H+1][2W+1][O], times scale[o] (if
 * not NULL); tile (ta, tb) writes the output block rows 4ta .. 4ta+3, columns 4tb .. 4tb+3 (those inside). */
static void up2_output(int64_t h, int64_t w, int64_t o_count, const float *restrict m, const float *restrict scale,
                       int64_t first, int64_t count, float *restrict y) {
    const int64_t tw = (w + 2) / 2;
    const int64_t plane = wino_slot_stride(count, o_count);
    const int64_t oh = 2 * h + 1, ow = 2 * w + 1;
    for (int64_t tile = 0; tile < count; ++tile) {
        const int64_t ty = (first + tile) / tw, tx = (first + tile) % tw;
        const float *src = m + tile * o_count;
        const int64_t y0 = 4 * ty, x0 = 4 * tx;
        float *out[4][4];
        int inside[4][4];
        output_block(4, y0, x0, oh, ow, o_count, y, &out[0][0], &inside[0][0]);
        for (int64_t o = 0; o < o_count; o += 8) {
            const vec sc = scale ? _mm256_loadu_ps(scale + o) : _mm256_set1_ps(1.0f);
#define M(slot) _mm256_loadu_ps(src + (slot) * plane + o)
#define PUT(a, b, value) if (inside[a][b]) _mm256_storeu_ps(out[a][b] + o, _mm256_mul_ps((value), sc))
            vec s[2][3]; /* phase (0,0): A^T along the rows, then A along the columns */
            for (int c = 0; c < 3; ++c) {
                const vec m0 = M(c), m1 = M(3 + c), m2 = M(6 + c);
                s[0][c] = _mm256_add_ps(m0, m1);
                s[1][c] = _mm256_add_ps(m1, m2);
            }
            for (int i = 0; i < 2; ++i) {
                PUT(2 * i, 0, _mm256_add_ps(s[i][0], s[i][1]));
                PUT(2 * i, 2, _mm256_add_ps(s[i][1], s[i][2]));
            }
            for (int c = 0; c < 2; ++c) { /* phase (0,1): A^T along the rows */
                const vec m0 = M(9 + c), m1 = M(11 + c), m2 = M(13 + c);
                PUT(0, 2 * c + 1, _mm256_add_ps(m0, m1));
                PUT(2, 2 * c + 1, _mm256_add_ps(m1, m2));
            }
            for (int r = 0; r < 2; ++r) { /* phase (1,0): A along the columns */
                const vec m0 = M(15 + 3 * r), m1 = M(16 + 3 * r), m2 = M(17 + 3 * r);
                PUT(2 * r + 1, 0, _mm256_add_ps(m0, m1));
                PUT(2 * r + 1, 2, _mm256_add_ps(m1, m2));
            }
            for (int r = 0; r < 2; ++r) /* phase (1,1) */
                for (int c = 0; c < 2; ++c) PUT(2 * r + 1, 2 * c + 1, M(21 + 2 * r + c));
#undef M
#undef PUT
        }
    }
}

/*
 * The same transposed convolution with larger tiles: a 3x3 block of input positions (a, b) per tile (a 6x6 output
 * block from the 4x4 input patch x[3ta-1 .. 3ta+2][3tb-1 .. 3tb+2]), 49 products per 9 positions instead of 25 per
 * 4 (1.15x fewer), by F(3x3, 2x2) for phase (0,0) and F(3, 2) along the 2-tap axis for phases (0,1) and (1,0), with
 * the interpolation points 0, 1, -1 and infinity (entries 0, +-1 and 1/2, as exact as the F(2, 2) above):
 *   F(3, 2): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 -1 0 1], G = [1 0; 1/2 1/2; 1/2 -1/2; 0 1],
 *            A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1].
 * Slots: 0-15 phase (0,0) [4x4], 16-27 phase (0,1) [4 rows x 3 columns], 28-39 phase (1,0) [3 rows x 4 columns],
 * 40-48 phase (1,1) [3x3]. Tiles are numbered row by row, (W + 3) / 3 to a row.
 */

/* B^T of F(3, 2) applied to four values. */
static inline __attribute__((always_inline)) void bt4(const vec d[4], vec e[4]) {
    e[0] = _mm256_sub_ps(d[0], d[2]);
    e[1] = _mm256_add_ps(d[1], d[2]);
    e[2] = _mm256_sub_ps(d[2], d[1]);
    e[3] = _mm256_sub_ps(d[3], d[1]);
}

/* A^T of F(3, 2) applied to four values. */
static inline __attribute__((always_inline)) void at4(vec m0, vec m1, vec m2, vec m3, vec y[3]) {
    const vec s = _mm256_add_ps(m1, m2);
    y[0] = _mm256_add_ps(m0, s);
    y[1] = _mm256_sub_ps(m1, m2);
    y[2] = _mm256_add_ps(s, m3);
}

/* Filter transform: weight [O][I][3][3] -> u [49][O x I, packed], for output channels o0 .. o1 - 1 (multiples of 8);
 * in double precision, four input channels at a time, rounded once. Returns 0, or -1 (nothing written) if its buffer
 * could not be allocated. */
static int up3_weights(int64_t o_count, int64_t i_count, const float *restrict weight, int64_t o0, int64_t o1,
                        float *restrict u) {
    const __m256d half = _mm256_set1_pd(0.5);
    float g[9 * i_count];
    float *scratch = malloc(sizeof(float) * 49 * 8 * i_count);
    if (!scratch) return -1;
    for (int64_t o = o0; o < o1; ++o) {
        taps(weight + o * 9 * i_count, i_count, g);
        float *dst = scratch + o % 8 * i_count;
        for (int64_t i = 0; i < i_count; i += 4) {
            __m256d k[9];
            for (int j = 0; j < 9; ++j) k[j] = TAP(g, j, i_count, i); /* k[3 ky + kx] = W[ky][kx] */
#define G2(k0, k1, out) do { out[0] = (k0); out[1] = _mm256_mul_pd(half, _mm256_add_pd((k0), (k1))); \
                             out[2] = _mm256_mul_pd(half, _mm256_sub_pd((k0), (k1))); out[3] = (k1); } while (0)
            __m256d col[2][4], k00[4][4]; /* phase (0,0): k[u][v] = W[2-2u][2-2v]; G k, then ... G^T */
            G2(k[8], k[2], col[0]);
            G2(k[6], k[0], col[1]);
            for (int r = 0; r < 4; ++r) G2(col[0][r], col[1][r], k00[r]);
            __m256d ga[4], gb[4];
            G2(k[7], k[1], ga); /* phase (0,1): taps W[2][1], W[0][1] along the rows */
            G2(k[5], k[3], gb); /* phase (1,0): taps W[1][2], W[1][0] along the columns */
#undef G2
            for (int r = 0; r < 4; ++r)
                for (int c = 0; c < 4; ++c) PUT4(dst, 4 * r + c, i_count, i, k00[r][c]);
            for (int r = 0; r < 4; ++r)
                for (int j = 0; j < 3; ++j) PUT4(dst, 16 + 3 * r + j, i_count, i, ga[r]);
            for (int j = 0; j < 3; ++j)
                for (int c = 0; c < 4; ++c) PUT4(dst, 28 + 4 * j + c, i_count, i, gb[c]);
            for (int s = 40; s < 49; ++s) PUT4(dst, s, i_count, i, k[4]);
        }
        if (o % 8 == 7) put_filters(49, o_count, i_count, o - 7, scratch, u);
    }
    free(scratch);
    return 0;
}

/* Input transform of the tiles first .. first + count - 1: x [H][W][I] times scale[i] (if not NULL) ->
 * v [49][count][I]. */
static void up3_input(int64_t h, int64_t w, int64_t i_count, const float *restrict x, const float *restrict scale,
                      int64_t first, int64_t count, float *restrict v) {
    const int64_t tw = (w + 3) / 3;
    const int64_t plane = wino_slot_stride(count, i_count);
    const vec zero = _mm256_setzero_ps();
    for (int64_t tile = 0; tile < count; ++tile) {
        const int64_t ty = (first + tile) / tw, tx = (first + tile) % tw;
        const float *d[4][4];
        int inside[4][4];
        input_patch(4, 3 * ty - 1, 3 * tx - 1, h, w, i_count, x, &d[0][0], &inside[0][0]);
        float *dst = v + tile * i_count;
#define PUT(slot, value) _mm256_storeu_ps(dst + (int64_t)(slot) * plane + i, (value))
        for (int64_t i = 0; i < i_count; i += 8) {
            const vec sc = scale ? _mm256_loadu_ps(scale + i) : _mm256_set1_ps(1.0f);
            vec p[4][4], t[4][4], e[4];
            for (int r = 0; r < 4; ++r)
                for (int c = 0; c < 4; ++c)
                    p[r][c] = inside[r][c] ? _mm256_mul_ps(_mm256_loadu_ps(d[r][c] + i), sc) : zero;
            for (int c = 0; c < 4; ++c) { /* B^T along the rows */
                const vec col[4] = {p[0][c], p[1][c], p[2][c], p[3][c]};
                bt4(col, e);
                for (int r = 0; r < 4; ++r) t[r][c] = e[r];
            }
            for (int r = 0; r < 4; ++r) { /* phase (0,0): ... and B along the columns */
                bt4(t[r], e);
                for (int c = 0; c < 4; ++c) PUT(4 * r + c, e[c]);
            }
            for (int r = 0; r < 4; ++r) /* phase (0,1): rows transformed, columns b = 3tb .. 3tb+2 */
                for (int j = 0; j < 3; ++j) PUT(16 + 3 * r + j, t[r][1 + j]);
            for (int j = 0; j < 3; ++j) { /* phase (1,0): rows a = 3ta .. 3ta+2, columns transformed */
                bt4(p[1 + j], e);
                for (int c = 0; c < 4; ++c) PUT(28 + 4 * j + c, e[c]);
            }
            for (int r = 0; r < 3; ++r) /* phase (1,1) */
                for (int c = 0; c < 3; ++c) PUT(40 + 3 * r + c, p[1 + r][1 + c]);
        }
#undef PUT
    }
}

/* Output transform of the tiles first .. first + count - 1: m [49][count][O] -> y [2H+1][2W+1][O], times scale[o] (if
 * not NULL); tile (ta, tb) writes the output rows 6ta .. 6ta+5, columns 6tb .. 6tb+5 (those inside). */
static void up3_output(int64_t h, int64_t w, int64_t o_count, const float *restrict m, const float *restrict scale,
                       int64_t first, int64_t count, float *restrict y) {
    const int64_t tw = (w + 3) / 3;
    const int64_t plane = wino_slot_stride(count, o_count);
    const int64_t oh = 2 * h + 1, ow = 2 * w + 1;
    for (int64_t tile = 0; tile < count; ++tile) {
        const int64_t ty = (first + tile) / tw, tx = (first + tile) % tw;
        const float *src = m + tile * o_count;
        const int64_t y0 = 6 * ty, x0 = 6 * tx;
        float *out[6][6];
        int inside[6][6];
        output_block(6, y0, x0, oh, ow, o_count, y, &out[0][0], &inside[0][0]);
        for (int64_t o = 0; o < o_count; o += 8) {
            const vec sc = scale ? _mm256_loadu_ps(scale + o) : _mm256_set1_ps(1.0f);
#define M(slot) _mm256_loadu_ps(src + (int64_t)(slot) * plane + o)
#define PUT(a, b, value) if (inside[a][b]) _mm256_storeu_ps(out[a][b] + o, _mm256_mul_ps((value), sc))
            vec s[3][4], e[3];
            for (int c = 0; c < 4; ++c) { /* phase (0,0): A^T along the rows, then A along the columns */
                at4(M(c), M(4 + c), M(8 + c), M(12 + c), e);
                for (int r = 0; r < 3; ++r) s[r][c] = e[r];
            }
            for (int r = 0; r < 3; ++r) {
                at4(s[r][0], s[r][1], s[r][2], s[r][3], e);
                for (int c = 0; c < 3; ++c) PUT(2 * r, 2 * c, e[c]);
            }
            for (int c = 0; c < 3; ++c) { /* phase (0,1): A^T along the rows */
                at4(M(16 + c), M(19 + c), M(22 + c), M(25 + c), e);
                for (int r = 0; r < 3; ++r) PUT(2 * r, 2 * c + 1, e[r]);
            }
            for (int r = 0; r < 3; ++r) { /* phase (1,0): A along the columns */
                at4(M(28 + 4 * r), M(29 + 4 * r), M(30 + 4 * r), M(31 + 4 * r), e);
                for (int c = 0; c < 3; ++c) PUT(2 * r + 1, 2 * c, e[c]);
            }
            for (int r = 0; r < 3; ++r) /* phase (1,1) */
                for (int c = 0; c < 3; ++c) PUT(2 * r + 1, 2 * c + 1, M(40 + 3 * r + c));
#undef M
#undef PUT
        }
    }
}

/* The exported transforms of the stride-2 transposed convolution on tiles of size x size input positions, size 2
 * (up2_*, 25 slots) or 3 (up3_*, 49 slots). wino_up_weights returns 0, or -1 if out of memory. */
int wino_up_weights(int64_t size, int64_t o_count, int64_t i_count, const float *restrict weight, int64_t o0,
                    int64_t o1, float *restrict u) {
    return (size == 3 ? up3_weights : up2_weights)(o_count, i_count, weight, o0, o1, u);
}

void wino_up_input(int64_t size, int64_t h, int64_t w, int64_t i_count, const float *restrict x,
                   const float *restrict scale, int64_t first, int64_t count, float *restrict v) {
    (size == 3 ? up3_input : up2_input)(h, w, i_count, x, scale, first, count, v);
}

void wino_up_output(int64_t size, int64_t h, int64_t w, int64_t o_count, const float *restrict m,
                    const float *restrict scale, int64_t first, int64_t count, float *restrict y) {
    (size == 3 ? up3_output : up2_output)(h, w, o_count, m, scale, first, count, y);
}

/*
 * The products between the transforms: for each of `slots`, c [m][n] = a [m][k] @ b (the slots of a and c
 * wino_slot_stride(m, k) and wino_slot_stride(m, n) floats apart), with b packed as the filter
 * transforms store it (panels of 16 output channels, the last one 8 wide if n is not a multiple of 16); only the
 * columns n0 .. n1 - 1 (n0 a multiple of 16, n1 one of 16 or n). A register block of 6 rows x one panel accumulates
 * over kc values of k at a time, each such partial sum then added into c: shorter running sums than one over all of k
 * (256-512 here), which keeps the rounding error below that of oneDNN's direct convolution (with 256 it was not, for
 * the backbone's b256 upsampling layer) for a few per cent of speed. KC = 64 serves all but F(3x3, 3x3) with 128 input
 * channels, whose larger transform coefficients need 32 to stay within the direct convolution's error (at some cost
 * in speed; tests/test_winograd.py). MC rows of a are reused from the first-level caches across all panels of b. For the
 * narrow shapes here (k, n of 128-512) this runs faster than MKL's batched product, which spends a larger share of the
 * time packing.
 */
enum { MR = 6, MC = 48, KC = 64 };

/* c [rows][width] (row stride ldc) = (c if add else 0) + a [rows][k] (row stride lda) @ b [k][width], for rows <= MR
 * and a panel width of 16 (nv = 2 vectors) or 8 (nv = 1). Constant arguments let the compiler specialise it. */
static inline __attribute__((always_inline)) void block(int rows, int nv, int64_t k, const float *restrict a,
                                                         int64_t lda, const float *restrict b, float *restrict c,
                                                         int64_t ldc, int add) {
    vec acc[MR][2];
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const int width = 8 * nv;
    for (int64_t p = 0; p < k; ++p) {
        const vec b0 = _mm256_loadu_ps(b + width * p);
        const vec b1 = nv == 2 ? _mm256_loadu_ps(b + width * p + 8) : b0;
        for (int r = 0; r < MR; ++r) {
            if (r >= rows) break;
            const vec x = _mm256_broadcast_ss(a + r * lda + p);
            acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
            if (nv == 2) acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < rows; ++r)
        for (int v = 0; v < nv; ++v) {
            float *dst = c + r * ldc + 8 * v;
            _mm256_storeu_ps(dst, add ? _mm256_add_ps(acc[r][v], _mm256_loadu_ps(dst)) : acc[r][v]);
        }
}

static void block_any(int rows, int nv, int64_t k, const float *a, int64_t lda, const float *b, float *c,
                      int64_t ldc, int add) {
    if (nv == 2) {
        if (rows == MR) block(MR, 2, k, a, lda, b, c, ldc, add);
        else block(rows, 2, k, a, lda, b, c, ldc, add);
    } else {
        if (rows == MR) block(MR, 1, k, a, lda, b, c, ldc, add);
        else block(rows, 1, k, a, lda, b, c, ldc, add);
    }
}

/* wino_gemm for a constant kc (the compiler specialises the loops for it; with kc an ordinary argument the products
 * ran several times slower). */
static inline __attribute__((always_inline)) void gemm(int64_t slots, int64_t m, int64_t k, int64_t n, int64_t n0,
                                                        int64_t n1, const int64_t kc, const float *restrict a,
                                                        const float *restrict b, float *restrict c) {
    for (int64_t s = 0; s < slots; ++s) {
        const float *as = a + s * wino_slot_stride(m, k), *bs = b + s * k * n;
        float *cs = c + s * wino_slot_stride(m, n);
        for (int64_t m0 = 0; m0 < m; m0 += MC) {
            const int64_t m1 = m0 + MC < m ? m0 + MC : m;
            for (int64_t k0 = 0; k0 < k; k0 += kc) {
                const int64_t kk = k0 + kc < k ? kc : k - k0;
                for (int64_t j = n0; j < n1; j += 16) {
                    const int nv = n - j >= 16 ? 2 : 1;
                    const float *panel = bs + j * k + 8 * nv * k0;
                    for (int64_t r = m0; r < m1; r += MR) {
                        const int rows = m1 - r < MR ? (int)(m1 - r) : MR;
                        block_any(rows, nv, kk, as + r * k + k0, k, panel, cs + r * n + j, n, k0 > 0);
                    }
                }
            }
        }
    }
}

void wino_gemm(int64_t slots, int64_t m, int64_t k, int64_t n, int64_t n0, int64_t n1, int64_t kc,
               const float *restrict a, const float *restrict b, float *restrict c) {
    if (kc == 32) gemm(slots, m, k, n, n0, n1, 32, a, b, c);
    else gemm(slots, m, k, n, n0, n1, KC, a, b, c);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/*
 * A whole F(size x size, 3x3) convolution (size 2, 3 or 6; products summed kc at a time, see wino_gemm) over the tiles
 * first .. first + count - 1, `chunk` tiles at a time: each chunk is transformed into v [slots][chunk][I], multiplied into m [slots][chunk][O] and transformed back
 * into y (with the steps of wino_output) while both are still in the core's caches; scratch holds v and then m.
 * u: the packed filters (slots = (size + 2)^2).
 */
void wino_conv(int64_t size, int64_t kc, int64_t h, int64_t w, int64_t i_count, int64_t o_count, const float *restrict x,
               const float *restrict scale_in, const float *restrict u, const float *restrict scale_out,
               const float *restrict bias, const float *restrict noise, float slope, float limit, int64_t first,
               int64_t count, int64_t chunk, float *restrict scratch, float *restrict y) {
    const int64_t slots = (size + 2) * (size + 2);
    float *v = scratch, *m = scratch + slots * wino_slot_stride(chunk, i_count);
    for (int64_t c0 = first; c0 < first + count; c0 += chunk) {
        const int64_t n = min64(chunk, first + count - c0);
        wino_input(size, h, w, i_count, x, scale_in, c0, n, v);
        wino_gemm(slots, n, i_count, o_count, 0, o_count, kc, v, u, m);
        wino_output(size, h, w, o_count, m, scale_out, bias, noise, slope, limit, c0, n, y);
    }
}

/* The same for the stride-2 transposed convolution, with tiles of size x size input positions (size 2: 25 slots, see
 * up2_input; size 3: 49 slots, see up3_input). */
void wino_up_conv(int64_t size, int64_t h, int64_t w, int64_t i_count, int64_t o_count, const float *restrict x,
                  const float *restrict scale_in, const float *restrict u, const float *restrict scale_out,
                  int64_t first, int64_t count, int64_t chunk, float *restrict scratch, float *restrict y) {
    const int64_t slots = size == 3 ? 49 : 25;
    float *v = scratch, *m = scratch + slots * wino_slot_stride(chunk, i_count);
    for (int64_t c0 = first; c0 < first + count; c0 += chunk) {
        const int64_t n = min64(chunk, first + count - c0);
        wino_up_input(size, h, w, i_count, x, scale_in, c0, n, v);
        wino_gemm(slots, n, i_count, o_count, 0, o_count, KC, v, u, m);
        wino_up_output(size, h, w, o_count, m, scale_out, c0, n, y);
    }
}
