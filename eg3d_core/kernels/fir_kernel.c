/*
 * The tail of a StyleGAN2 upsampling layer for one channels-last image, in one pass: the [1, 3, 3, 1] low-pass filter
 * (gain 4) that follows the stride-2 transposed convolution, then + bias, + noise, leaky ReLU and clamp.
 *
 * x [XH][XW][C] (the transposed convolution's output, XH = 2H + 1) -> y [XH - 1][XW - 1][C] with
 *   y[r][q] = sum over a, b of f[a] (4 f[b]) x[r + a - 1][q + b - 1],  f = [1, 3, 3, 1] / 8, x zero outside,
 * what a depthwise 4x4 convolution with padding 1 computes, done separably: the column filter into a row buffer, then
 * the row filter. Channels are innermost and contiguous, 8 at a time (AVX2); C must be a multiple of 8.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

typedef __m256 vec;

/* Output rows r0 .. r1 - 1, each followed by: + bias[c] (if not NULL), + noise[r][q] (if not NULL), leaky ReLU with
 * this slope (if slope != 1), clamp to [-limit, limit] (if limit > 0); each step rounded as PyTorch's would be.
 * Returns 0, or -1 (nothing written) if its row buffer could not be allocated. */
int fir_up_post(int64_t xh, int64_t xw, int64_t c, const float *restrict x, const float *restrict bias,
                 const float *restrict noise, float slope, float limit, int64_t r0, int64_t r1, float *restrict y) {
    const int64_t ow = xw - 1;
    const vec f0 = _mm256_set1_ps(0.125f), f1 = _mm256_set1_ps(0.375f);
    const vec g0 = _mm256_set1_ps(0.5f), g1 = _mm256_set1_ps(1.5f);
    const vec slope_v = _mm256_set1_ps(slope), hi = _mm256_set1_ps(limit), lo = _mm256_set1_ps(-limit);
    const vec zero = _mm256_setzero_ps();
    /* Column-filtered row, columns -1 .. xw (index + 1). */
    float *row = malloc(sizeof(float) * (size_t)((xw + 2) * c));
    if (!row) return -1;
    for (int64_t k = 0; k < c; k += 8) {
        _mm256_storeu_ps(row + k, zero);
        _mm256_storeu_ps(row + (xw + 1) * c + k, zero);
    }
    for (int64_t r = r0; r < r1; ++r) {
        const float *src[4];
        int inside[4];
        for (int a = 0; a < 4; ++a) {
            const int64_t yy = r + a - 1;
            inside[a] = yy >= 0 && yy < xh;
            src[a] = inside[a] ? x + yy * xw * c : x;
        }
        for (int64_t q = 0; q < xw; ++q) {
            for (int64_t k = 0; k < c; k += 8) {
                const int64_t at = q * c + k;
                const vec v0 = inside[0] ? _mm256_loadu_ps(src[0] + at) : zero;
                const vec v1 = inside[1] ? _mm256_loadu_ps(src[1] + at) : zero;
                const vec v2 = inside[2] ? _mm256_loadu_ps(src[2] + at) : zero;
                const vec v3 = inside[3] ? _mm256_loadu_ps(src[3] + at) : zero;
                const vec s = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(v0, v3), f0),
                                            _mm256_mul_ps(_mm256_add_ps(v1, v2), f1));
                _mm256_storeu_ps(row + (q + 1) * c + k, s);
            }
        }
        float *out = y + r * ow * c;
        for (int64_t q = 0; q < ow; ++q) {
            const vec nz = _mm256_set1_ps(noise ? noise[r * ow + q] : 0.0f);
            const float *p = row + q * c; /* columns q - 1 .. q + 2 */
            for (int64_t k = 0; k < c; k += 8) {
                vec v = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(p + k), _mm256_loadu_ps(p + 3 * c + k)), g0),
                                      _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(p + c + k), _mm256_loadu_ps(p + 2 * c + k)), g1));
                if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + k));
                if (noise) v = _mm256_add_ps(v, nz);
                if (slope != 1.0f) v = _mm256_max_ps(v, _mm256_mul_ps(v, slope_v)); /* 0 < slope < 1 */
                if (limit > 0.0f) v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
                _mm256_storeu_ps(out + q * c + k, v);
            }
        }
    }
    free(row);
    return 0;
}
