/*
 * The radiance field of a tri-plane generator, one point at a time: tri-plane lookup + decoder MLP.
 *
 * For each world point: bilinear features from the three planes (zero outside the box), averaged; a hidden layer
 * with softplus; an output layer giving the raw density and sigmoid colours. Same arithmetic as the PyTorch path
 * (eg3d_core.rendering.triplane.sample_planes followed by eg3d_core.rendering.decoder.Decoder), fused so that no
 * intermediate leaves the registers: the PyTorch path streams each stage's [points, channels] result through memory.
 * Built by eg3d_core/kernels/build.py with the system C compiler for AVX2 + FMA (x86-64 only), written with
 * 8-wide vector intrinsics: channel counts are fixed, so every stage is a few registers; no libm calls (exp and
 * log1p are evaluated by polynomials on the vectors).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef CH
#define CH 32     /* tri-plane channels = decoder input (a multiple of 8; set with -DCH=...) */
#endif
#define HID 64    /* decoder hidden width */
#define OUT 32    /* decoder colour features (the output layer has 1 + OUT rows: density first) */
#define PLANES 3

typedef __m256 vec;

static inline vec splat(float x) { return _mm256_set1_ps(x); }

/* e^x for x in [-87, 88] (clamped), relative error ~2e-7: x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial. */
static inline vec exp_v(vec x) {
    x = _mm256_min_ps(_mm256_max_ps(x, splat(-87.0f)), splat(88.0f));
    vec n = _mm256_round_ps(_mm256_mul_ps(x, splat(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm256_fnmadd_ps(n, splat(0.693145752f), x); /* ln2 split in two: n * hi is exact */
    r = _mm256_fnmadd_ps(n, splat(1.42860677e-6f), r);
    vec p = splat(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, splat(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, splat(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, splat(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, splat(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, splat(0.5f));
    p = _mm256_fmadd_ps(p, r, splat(1.0f));
    p = _mm256_fmadd_ps(p, r, splat(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23); /* 2^n */
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* log(1 + y) for y in [0, 1]: 2 atanh(s) with s = y / (2 + y) <= 1/3, by its odd series (relative error ~1e-8). */
static inline vec log1p_v(vec y) {
    vec s = _mm256_div_ps(y, _mm256_add_ps(splat(2.0f), y));
    vec s2 = _mm256_mul_ps(s, s);
    vec p = splat(1.0f / 17.0f);
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 15.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 13.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 11.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 9.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 7.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 5.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f / 3.0f));
    p = _mm256_fmadd_ps(p, s2, splat(1.0f));
    return _mm256_mul_ps(_mm256_add_ps(s, s), p);
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|). */
static inline vec softplus_v(vec x) {
    vec neg_abs = _mm256_or_ps(x, splat(-0.0f)); /* -|x|: set the sign bit */
    return _mm256_add_ps(_mm256_max_ps(x, _mm256_setzero_ps()), log1p_v(exp_v(neg_abs)));
}

static inline vec sigmoid_v(vec x) {
    return _mm256_div_ps(splat(1.0f), _mm256_add_ps(splat(1.0f), exp_v(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* The 12 texel rows (3 planes x 4 corners) and bilinear weights / 3 of one point, as in triplane.plane_corners. */
typedef struct {
    const float *row[PLANES * 4];
    float weight[PLANES * 4];
} Corners;

static inline void corners(const float *pt, const float *batch_table, int64_t height, int64_t width, float scale,
                           const int32_t *axes, Corners *out) {
    const int64_t stride = width + 2;
    const int64_t plane_rows = (height + 2) * stride;
    const float size_x = (float)width, size_y = (float)height;
    for (int k = 0; k < PLANES; ++k) {
        /* align_corners=False, +1 for the zero border, clamped so that the far edge reads the border. */
        float tx = ((pt[axes[k]] * scale + 1.0f) * size_x - 1.0f) * 0.5f + 1.0f;
        float ty = ((pt[axes[PLANES + k]] * scale + 1.0f) * size_y - 1.0f) * 0.5f + 1.0f;
        tx = tx < 0.0f ? 0.0f : (tx > size_x + 1.0f ? size_x + 1.0f : tx);
        ty = ty < 0.0f ? 0.0f : (ty > size_y + 1.0f ? size_y + 1.0f : ty);
        int64_t x0 = (int64_t)tx, y0 = (int64_t)ty; /* floor: both are >= 0 */
        x0 = x0 > width ? width : x0;
        y0 = y0 > height ? height : y0;
        const float fx = tx - (float)x0, fy = ty - (float)y0;
        const float third = 1.0f / 3.0f;
        const float *row = batch_table + (k * plane_rows + y0 * stride + x0) * CH;
        out->row[4 * k] = row;
        out->row[4 * k + 1] = row + CH;
        out->row[4 * k + 2] = row + stride * CH;
        out->row[4 * k + 3] = row + (stride + 1) * CH;
        out->weight[4 * k] = ((1.0f - fy) * (1.0f - fx)) * third;
        out->weight[4 * k + 1] = ((1.0f - fy) * fx) * third;
        out->weight[4 * k + 2] = (fy * (1.0f - fx)) * third;
        out->weight[4 * k + 3] = (fy * fx) * third;
    }
}

/*
 * Evaluates points begin .. end - 1 of the n * m (callers split a large query across threads with these).
 * points:  n * m world points [n, m, 3]
 * table:   n * PLANES * (height + 2) * (width + 2) texel rows of CH floats: the planes channels-last with a
 *          one-texel zero border (eg3d_core.rendering.triplane.plane_table)
 * axes:    grid x axis of the three planes, then their grid y axis (world axis indices)
 * w0t, b0: hidden layer, transposed [CH][HID], bias [HID] (learning-rate gains applied)
 * w1t, b1: output layer, transposed [HID][1 + OUT], bias [1 + OUT]
 * sigma:   out [n * m] raw densities; rgb: out [n * m][OUT] colour features
 */
void eg3d_field(int64_t n, int64_t m, int64_t begin, int64_t end, const float *restrict points, const float *restrict table, int64_t height,
                int64_t width, float scale, const int32_t *restrict axes, const float *restrict w0t,
                const float *restrict b0, const float *restrict w1t, const float *restrict b1, float *restrict sigma,
                float *restrict rgb) {
    const int64_t plane_floats = PLANES * (height + 2) * (width + 2) * CH;
    /* The output layer split: density row [HID] and colour rows transposed [HID][OUT]. */
    float w_sigma[HID], w_rgb[HID * OUT];
    for (int c = 0; c < HID; ++c) {
        w_sigma[c] = w1t[c * (1 + OUT)];
        for (int o = 0; o < OUT; ++o) w_rgb[c * OUT + o] = w1t[c * (1 + OUT) + 1 + o];
    }
    (void)n;
    Corners cur, next;
    if (begin < end) corners(points + 3 * begin, table + (begin / m) * plane_floats, height, width, scale, axes, &next);
    for (int64_t p = begin; p < end; ++p) {
        cur = next;
        /* The next point's texel rows are fetched while this point's decoder runs: the tables exceed the caches. */
        if (p + 1 < end) {
            corners(points + 3 * (p + 1), table + ((p + 1) / m) * plane_floats, height, width, scale, axes, &next);
            for (int q = 0; q < PLANES * 4; ++q) {
                _mm_prefetch((const char *)next.row[q], _MM_HINT_T0);
                _mm_prefetch((const char *)(next.row[q] + 16), _MM_HINT_T0);
            }
        }
        /* Features: the weighted sum of the 12 rows, in the PyTorch path's order. */
        vec f[CH / 8];
        for (int j = 0; j < CH / 8; ++j) f[j] = _mm256_setzero_ps();
        for (int q = 0; q < PLANES * 4; ++q) {
            vec wq = splat(cur.weight[q]);
            for (int j = 0; j < CH / 8; ++j) f[j] = _mm256_fmadd_ps(wq, _mm256_loadu_ps(cur.row[q] + 8 * j), f[j]);
        }
        float feat[CH];
        for (int j = 0; j < CH / 8; ++j) _mm256_storeu_ps(feat + 8 * j, f[j]);
        /* Hidden layer + softplus; the density row's dot product as the activations come out. */
        vec h[HID / 8];
        for (int j = 0; j < HID / 8; ++j) h[j] = _mm256_loadu_ps(b0 + 8 * j);
        for (int c = 0; c < CH; ++c) {
            vec fc = splat(feat[c]);
            for (int j = 0; j < HID / 8; ++j) h[j] = _mm256_fmadd_ps(fc, _mm256_loadu_ps(w0t + c * HID + 8 * j), h[j]);
        }
        float hidden[HID];
        vec s = _mm256_setzero_ps();
        for (int j = 0; j < HID / 8; ++j) {
            vec a = softplus_v(h[j]);
            s = _mm256_fmadd_ps(a, _mm256_loadu_ps(w_sigma + 8 * j), s);
            _mm256_storeu_ps(hidden + 8 * j, a);
        }
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
        sigma[p] = _mm_cvtss_f32(s4) + b1[0];
        /* Colours: two partial sums per output vector (even and odd inputs), so that 8 independent FMA chains keep
         * both FMA units busy; then the widened sigmoid. */
        vec o[OUT / 8], o2[OUT / 8];
        for (int j = 0; j < OUT / 8; ++j) {
            o[j] = _mm256_loadu_ps(b1 + 1 + 8 * j);
            o2[j] = _mm256_setzero_ps();
        }
        for (int c = 0; c < HID; c += 2) {
            vec hc = splat(hidden[c]), hd = splat(hidden[c + 1]);
            for (int j = 0; j < OUT / 8; ++j) {
                o[j] = _mm256_fmadd_ps(hc, _mm256_loadu_ps(w_rgb + c * OUT + 8 * j), o[j]);
                o2[j] = _mm256_fmadd_ps(hd, _mm256_loadu_ps(w_rgb + (c + 1) * OUT + 8 * j), o2[j]);
            }
        }
        float *colour = rgb + p * OUT;
        for (int j = 0; j < OUT / 8; ++j)
            _mm256_storeu_ps(colour + 8 * j, _mm256_fmsub_ps(sigmoid_v(_mm256_add_ps(o[j], o2[j])),
                                                             splat(1.0f + 2.0f * 0.001f), splat(0.001f)));
    }
}

/*
 * The ray marcher's compositing for a chunk of rays (eg3d_core/kernels/field.py: march): per ray, the coarse and
 * the fine samples merged by depth, the interval weights of the original's MipRayMarcher2 and the weighted sums the
 * renderer needs, without sorting or moving the colours. On the depth-sorted samples j = 0 .. T-1 (T = S + F),
 * interval k has density softplus((sigma_k + sigma_k+1) / 2 - 1), alpha_k = 1 - exp(-density (d_k+1 - d_k)) and
 * weight w_k = alpha_k prod over l < k of (1 - alpha_l + 1e-10); the features are sum over k of w_k (c_k + c_k+1) / 2
 * = sum over j of c_j (w_j-1 + w_j) / 2.
 */

/* alpha [n - 1] of the intervals between n depth-sorted samples (depths d, raw densities sig; both readable 8 floats
 * past n - 1, alpha writable as far): 1 - exp(-softplus((sig_k + sig_k+1) / 2 - 1) (d_k+1 - d_k)), 8 at a time. */
static inline void interval_alphas(int64_t n, const float *restrict d, const float *restrict sig,
                                   float *restrict alpha) {
    for (int64_t k = 0; k + 1 < n; k += 8) {
        const vec sum = _mm256_add_ps(_mm256_loadu_ps(sig + k), _mm256_loadu_ps(sig + k + 1));
        const vec mid = _mm256_sub_ps(_mm256_mul_ps(sum, splat(0.5f)), splat(1.0f));
        const vec delta = _mm256_sub_ps(_mm256_loadu_ps(d + k + 1), _mm256_loadu_ps(d + k));
        const vec e = exp_v(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(softplus_v(mid), delta)));
        _mm256_storeu_ps(alpha + k, _mm256_sub_ps(splat(1.0f), e));
    }
}

/* w [n - 1] = the intervals' weights from their alphas (w may be alpha itself): w_k = alpha_k times the
 * transmittance, the product over l < k of (1 - alpha_l + 1e-10). */
static inline void interval_weights(int64_t n, const float *alpha, float *w) {
    float transmittance = 1.0f;
    for (int64_t k = 0; k + 1 < n; ++k) {
        const float a = alpha[k];
        w[k] = a * transmittance;
        transmittance *= 1 - a + 1e-10f;
    }
}

/* Indices 0 .. n-1 ordered by d (insertion sort: linear for the sorted lists it usually gets). */
static void order_by_depth(int64_t n, const float *restrict d, int32_t *restrict idx) {
    for (int64_t j = 0; j < n; ++j) {
        int64_t k = j;
        while (k > 0 && d[idx[k - 1]] > d[j]) {
            idx[k] = idx[k - 1];
            --k;
        }
        idx[k] = (int32_t)j;
    }
}

/*
 * For each of `rays` rays: coarse depths dc [S], raw densities sc [S], colours cc [S][C]; fine ones df [F], sf [F],
 * cf [F][C] -> rgb [C] (the colours times their per-sample weights), depth_sum (w_k times the interval's mid depth)
 * and total (sum of w_k). A tie between a coarse and a fine depth takes the coarse sample first. C: a multiple of 8.
 * Returns 0, or -1 (nothing written) if its buffers could not be allocated.
 */
int eg3d_march(int64_t rays, int64_t s, int64_t f, int64_t c, const float *restrict dc, const float *restrict sc,
                const float *restrict cc, const float *restrict df, const float *restrict sf,
                const float *restrict cf, float *restrict rgb, float *restrict depth_sum, float *restrict total) {
    const int64_t t = s + f, padded = t + 16;
    int32_t *oc = malloc(sizeof(int32_t) * (size_t)(t + 1));
    float *d = calloc((size_t)(4 * padded), sizeof(float)); /* zero padding for the 8-wide loads past the end */
    const float **col = malloc(sizeof(float *) * (size_t)(t + 1));
    if (!oc || !d || !col) {
        free(col);
        free(d);
        free(oc);
        return -1;
    }
    int32_t *of = oc + s;
    float *sig = d + padded, *alpha = d + 2 * padded, *per = d + 3 * padded;
    for (int64_t r = 0; r < rays; ++r) {
        const float *rdc = dc + r * s, *rsc = sc + r * s, *rcc = cc + r * s * c;
        const float *rdf = df + r * f, *rsf = sf + r * f, *rcf = cf + r * f * c;
        order_by_depth(s, rdc, oc);
        order_by_depth(f, rdf, of);
        for (int64_t a = 0, b = 0, j = 0; j < t; ++j) { /* merge the two sorted lists */
            const int coarse = b >= f || (a < s && rdc[oc[a]] <= rdf[of[b]]);
            const int64_t k = coarse ? oc[a++] : of[b++];
            d[j] = coarse ? rdc[k] : rdf[k];
            sig[j] = coarse ? rsc[k] : rsf[k];
            col[j] = coarse ? rcc + k * c : rcf + k * c;
        }
        interval_alphas(t, d, sig, alpha);
        interval_weights(t, alpha, alpha); /* in place: alpha now holds the weights */
        float dsum = 0.0f, wsum = 0.0f, previous = 0.0f;
        for (int64_t k = 0; k + 1 < t; ++k) {
            const float w = alpha[k];
            dsum += w * ((d[k] + d[k + 1]) / 2);
            wsum += w;
            per[k] = (previous + w) / 2;
            previous = w;
        }
        if (t > 0) per[t - 1] = previous / 2;
        float *out = rgb + r * c;
        for (int64_t ch = 0; ch < c; ch += 8) {
            vec acc = _mm256_setzero_ps();
            for (int64_t j = 0; j < t; ++j) acc = _mm256_fmadd_ps(splat(per[j]), _mm256_loadu_ps(col[j] + ch), acc);
            _mm256_storeu_ps(out + ch, acc);
        }
        depth_sum[r] = dsum;
        total[r] = wsum;
    }
    free(col);
    free(d);
    free(oc);
    return 0;
}

/*
 * The importance sampler's depths for a chunk of rays (eg3d_core/kernels/field.py: importance), as
 * renderer.importance_depths(depths, marcher.composite_weights(densities, depths), ...) computes them: per ray, the
 * coarse interval weights (as in eg3d_march; the coarse depths come sorted), max-pooled and average-pooled (kernel 2)
 * and floored by 0.01; a pdf over the interior weights (+ 1e-5) and its cdf (cumulative sums in double, as PyTorch's
 * CPU cumsum); then each u is placed by the cdf (the first entry above it, as searchsorted(right=True)) and
 * interpolated linearly between the midpoints of the coarse depths.
 * dc, sc [rays][S] (S >= 4): coarse depths, raw densities; u: [rays][F] if u_stride = F, or one [F] shared by all rays
 * if u_stride = 0 -> df [rays][F]. Returns 0, or -1 (nothing written) if its buffer could not be allocated.
 */
int eg3d_importance(int64_t rays, int64_t s, int64_t f, const float *restrict dc, const float *restrict sc,
                     const float *restrict u, int64_t u_stride, float *restrict df) {
    const int64_t padded = s + 16, n_cdf = s - 2;
    float *alpha = calloc((size_t)(6 * padded), sizeof(float)); /* zero padding for the 8-wide loads past the end */
    if (!alpha) return -1;
    float *w = alpha + padded, *bins = alpha + 2 * padded, *cdf = alpha + 3 * padded;
    float *d = alpha + 4 * padded, *sig = alpha + 5 * padded;
    for (int64_t r = 0; r < rays; ++r) {
        for (int64_t k = 0; k < s; ++k) {
            d[k] = dc[r * s + k];
            sig[k] = sc[r * s + k];
        }
        interval_alphas(s, d, sig, alpha);
        interval_weights(s, alpha, w);
        /* max-pool (kernel 2, padding 1) then average-pool (kernel 2) over the s - 1 weights, + 0.01 */
        float prev_max = w[0];
        for (int64_t k = 0; k + 1 < s; ++k) {
            const float next_max = k + 2 < s ? (w[k] > w[k + 1] ? w[k] : w[k + 1]) : w[k];
            w[k] = (prev_max + next_max) / 2 + 0.01f;
            prev_max = next_max;
            bins[k] = 0.5f * (d[k] + d[k + 1]);
        }
        float total = 0.0f;
        for (int64_t k = 1; k + 2 < s; ++k) total += w[k] + 1e-5f;
        double running = 0.0;
        cdf[0] = 0.0f;
        for (int64_t k = 1; k < n_cdf; ++k) {
            running += (double)((w[k] + 1e-5f) / total);
            cdf[k] = (float)running;
        }
        const float *ur = u + r * u_stride;
        float *out = df + r * f;
        for (int64_t j = 0; j < f; ++j) {
            const float x = ur[j];
            int64_t lo = 0, hi = n_cdf; /* the first index with cdf > x */
            while (lo < hi) {
                const int64_t mid = (lo + hi) / 2;
                if (cdf[mid] <= x) lo = mid + 1;
                else hi = mid;
            }
            const int64_t below = lo - 1 > 0 ? lo - 1 : 0, above = lo < s - 3 ? lo : s - 3;
            float denom = cdf[above] - cdf[below];
            if (denom < 1e-5f) denom = 1.0f;
            out[j] = bins[below] + (x - cdf[below]) / denom * (bins[above] - bins[below]);
        }
    }
    free(alpha);
    return 0;
}
