/*
 * The transforms of a Winograd F(2x2, 3x3) convolution for one channels-last image; the 16 products between them
 * are batched matrix products done by the caller (eg3d_core/networks/winograd.py).
 *
 * Each 2x2 output tile comes from a 4x4 input tile d: Y = A^T [ (G g G^T) .* (B^T d B) ] A, with
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1],
 * where the 16 element-wise products over all tiles and input channels are 16 matrix products
 * [tiles, I] @ [I, O]. The loops run over channels, innermost and contiguous, 8 at a time (AVX2); channel counts
 * must be multiples of 8. The input and output transforms take a range of a band's tile rows, so that callers can
 * split a band over threads.
 */
#include <immintrin.h>
#include <stdint.h>

typedef __m256 vec;

/* Filter transform: weight [O][3][3][I] (channels-last) -> u [16][O][I]. */
void wino_weights(int64_t o_count, int64_t i_count, const float *restrict weight, float *restrict u) {
    const int64_t plane = o_count * i_count;
    const vec half = _mm256_set1_ps(0.5f);
    for (int64_t o = 0; o < o_count; ++o) {
        const float *g = weight + o * 9 * i_count;
        float *dst = u + o * i_count;
        for (int64_t i = 0; i < i_count; i += 8) {
            vec t[4][3]; /* G g: the 4x3 intermediate */
            for (int c = 0; c < 3; ++c) {
                const vec g0 = _mm256_loadu_ps(g + (0 * 3 + c) * i_count + i);
                const vec g1 = _mm256_loadu_ps(g + (1 * 3 + c) * i_count + i);
                const vec g2 = _mm256_loadu_ps(g + (2 * 3 + c) * i_count + i);
                t[0][c] = g0;
                t[1][c] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(g0, g1), g2));
                t[2][c] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(g0, g1), g2));
                t[3][c] = g2;
            }
            for (int r = 0; r < 4; ++r) { /* ... G^T */
                _mm256_storeu_ps(dst + (4 * r + 0) * plane + i, t[r][0]);
                _mm256_storeu_ps(dst + (4 * r + 1) * plane + i,
                                 _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(t[r][0], t[r][1]), t[r][2])));
                _mm256_storeu_ps(dst + (4 * r + 2) * plane + i,
                                 _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(t[r][0], t[r][1]), t[r][2])));
                _mm256_storeu_ps(dst + (4 * r + 3) * plane + i, t[r][2]);
            }
        }
    }
}

/*
 * Input transform: x [H][W][I] (zero padding 1) -> v [16][band_rows * tw][I] for the tile rows r0 .. r1 - 1 of the
 * band starting at tile row ty0.
 */
void wino_input(int64_t h, int64_t w, int64_t i_count, const float *restrict x, int64_t ty0, int64_t band_rows,
                int64_t r0, int64_t r1, float *restrict v) {
    const int64_t tw = (w + 1) / 2;
    const int64_t plane = band_rows * tw * i_count;
    const vec zero = _mm256_setzero_ps();
    for (int64_t ty = r0; ty < r1; ++ty) {
        for (int64_t tx = 0; tx < tw; ++tx) {
            const float *d[4][4];
            int inside[4][4];
            for (int r = 0; r < 4; ++r) {
                const int64_t y = 2 * (ty0 + ty) - 1 + r;
                for (int c = 0; c < 4; ++c) {
                    const int64_t xx = 2 * tx - 1 + c;
                    inside[r][c] = y >= 0 && y < h && xx >= 0 && xx < w;
                    d[r][c] = inside[r][c] ? x + (y * w + xx) * i_count : x;
                }
            }
            float *dst = v + (ty * tw + tx) * i_count;
            for (int64_t i = 0; i < i_count; i += 8) {
                vec t[4][4]; /* B^T d: along the rows */
                for (int c = 0; c < 4; ++c) {
                    vec dd[4];
                    for (int r = 0; r < 4; ++r) dd[r] = inside[r][c] ? _mm256_loadu_ps(d[r][c] + i) : zero;
                    t[0][c] = _mm256_sub_ps(dd[0], dd[2]);
                    t[1][c] = _mm256_add_ps(dd[1], dd[2]);
                    t[2][c] = _mm256_sub_ps(dd[2], dd[1]);
                    t[3][c] = _mm256_sub_ps(dd[1], dd[3]);
                }
                for (int r = 0; r < 4; ++r) { /* ... B: along the columns */
                    _mm256_storeu_ps(dst + (4 * r + 0) * plane + i, _mm256_sub_ps(t[r][0], t[r][2]));
                    _mm256_storeu_ps(dst + (4 * r + 1) * plane + i, _mm256_add_ps(t[r][1], t[r][2]));
                    _mm256_storeu_ps(dst + (4 * r + 2) * plane + i, _mm256_sub_ps(t[r][2], t[r][1]));
                    _mm256_storeu_ps(dst + (4 * r + 3) * plane + i, _mm256_sub_ps(t[r][1], t[r][3]));
                }
            }
        }
    }
}

/*
 * Output transform: m [16][band_rows * tw][O] -> y [H][W][O] for the tile rows r0 .. r1 - 1 of the band starting at
 * tile row ty0, with what a synthesis layer does next fused in, each step as PyTorch would do it:
 * + bias[o] (if not NULL), + noise[y][x] (if not NULL), leaky ReLU with this slope (if slope != 1), clamp to
 * [-limit, limit] (if limit > 0).
 */
void wino_output(int64_t h, int64_t w, int64_t o_count, const float *restrict m, const float *restrict bias,
                 const float *restrict noise, float slope, float limit, int64_t ty0, int64_t band_rows, int64_t r0,
                 int64_t r1, float *restrict y) {
    const int64_t tw = (w + 1) / 2;
    const int64_t plane = band_rows * tw * o_count;
    for (int64_t ty = r0; ty < r1; ++ty) {
        for (int64_t tx = 0; tx < tw; ++tx) {
            const float *src = m + (ty * tw + tx) * o_count;
            const int64_t y0 = 2 * (ty0 + ty), x0 = 2 * tx;
            float *out[2][2];
            int inside[2][2];
            vec nz[2][2];
            for (int a = 0; a < 2; ++a)
                for (int b = 0; b < 2; ++b) {
                    inside[a][b] = y0 + a < h && x0 + b < w; /* an odd edge drops the tile's last row/column */
                    out[a][b] = y + ((y0 + a) * w + x0 + b) * o_count;
                    nz[a][b] = _mm256_set1_ps(noise && inside[a][b] ? noise[(y0 + a) * w + x0 + b] : 0.0f);
                }
            const vec slope_v = _mm256_set1_ps(slope), hi = _mm256_set1_ps(limit), lo = _mm256_set1_ps(-limit);
            for (int64_t o = 0; o < o_count; o += 8) {
                vec t[2][4]; /* A^T m: along the rows */
                for (int c = 0; c < 4; ++c) {
                    const vec m0 = _mm256_loadu_ps(src + (0 + c) * plane + o);
                    const vec m1 = _mm256_loadu_ps(src + (4 + c) * plane + o);
                    const vec m2 = _mm256_loadu_ps(src + (8 + c) * plane + o);
                    const vec m3 = _mm256_loadu_ps(src + (12 + c) * plane + o);
                    t[0][c] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                    t[1][c] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
                }
                const vec b = bias ? _mm256_loadu_ps(bias + o) : _mm256_setzero_ps();
                for (int r = 0; r < 2; ++r) { /* ... A: along the columns */
                    vec v[2] = {_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t[r][0], t[r][1]), t[r][2]), b),
                                _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(t[r][1], t[r][2]), t[r][3]), b)};
                    for (int c = 0; c < 2; ++c) {
                        if (!inside[r][c]) continue;
                        if (noise) v[c] = _mm256_add_ps(v[c], nz[r][c]);
                        if (slope != 1.0f) v[c] = _mm256_max_ps(v[c], _mm256_mul_ps(v[c], slope_v)); /* 0 < slope < 1 */
                        if (limit > 0.0f) v[c] = _mm256_min_ps(_mm256_max_ps(v[c], lo), hi);
                        _mm256_storeu_ps(out[r][c] + o, v[c]);
                    }
                }
            }
        }
    }
}
