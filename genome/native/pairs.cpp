// Fused per-pair MLP and row standardisation for the CPU decode path.
//
// Compiled on first use by genome/native/__init__.py, specialised for one
// floating-point type (REAL) and one set of MLP widths (WIDTHS, N_WIDTHS), so
// that every loop over a hidden layer has a constant trip count: the compiler
// unrolls it and keeps the activations of TILES x LANES neuron pairs in
// vector registers. Nothing of shape [pairs, hidden] is ever written to memory, which
// is what makes the batched torch path memory-bound.
//
// Floating-point contraction is off (-ffp-contract=off): the MLP's products
// and sums use explicit fused multiply-adds (`fmadd`, one rounding, so the
// same bits from the FMA instructions of x86 and ARM or from std::fma), the
// rest separate operations, and every sum runs in a fixed order. A weight's
// bits therefore depend neither on the thread count nor on the instruction set
// the compiler targets.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#ifdef __AVX__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef REAL
#define REAL float
#endif
#ifndef WIDTHS
#define WIDTHS 8, 8
#define N_WIDTHS 2
#endif

// The vector width in bytes: 64 where the build targets AVX-512, else 32. A
// lane is one neuron pair computed alone, so the width changes only how many
// pairs run side by side, never a result's bits.
#ifndef VBYTES
#define VBYTES 32
#endif
typedef REAL vec __attribute__((vector_size(VBYTES)));
static constexpr int LANES = VBYTES / sizeof(REAL);
// Partial sums of a row's standardisation: fixed, whatever the vector width,
// so that every build sums in the same order.
static constexpr int PARTS = 32 / sizeof(REAL);
static constexpr int W[N_WIDTHS] = {WIDTHS};
static constexpr int H0 = W[0];

static constexpr int max_width() {
    int m = 0;
    for (int i = 0; i < N_WIDTHS; i++) m = W[i] > m ? W[i] : m;
    return m;
}
static constexpr int HMAX = max_width();

// Per-individual parameters, packed: for each further layer l (1..N_WIDTHS-1)
// its weight [W[l]][W[l-1]] (row-major, as the genome stores it) then its bias
// [W[l]]; then the output weights [W[N_WIDTHS-1]].
static constexpr int n_params() {
    int n = 0;
    for (int l = 1; l < N_WIDTHS; l++) n += W[l] * W[l - 1] + W[l];
    return n + W[N_WIDTHS - 1];
}
static constexpr int N_PARAMS = n_params();
// Tiles of pairs computed together (each weight broadcast once for all), and
// the unrolling of a hidden layer's inner loop: full for narrow layers, whose
// activations stay in registers, partial for wide ones, whose full unrolling
// overflows the instruction cache. Neither changes a result's bits.
static constexpr int TILES = VBYTES == 64 ? 4 : 3;
static constexpr int K_UNROLL = HMAX <= 8 ? 64 : 4;
// Units of a layer computed together: J_BLOCK x TILES accumulators, plus the
// TILES activations and one weight, fit the 32 vector registers of AVX-512
// (4 tiles) or the 16 of AVX2 (3 tiles): of the counts tried (tiles 2 to 7,
// blocks of 3 to 8 units, timed with bench/kernels.py after editing these
// constants) the fastest over widths 4 to 168.
static constexpr int J_BLOCK = 4;

static inline vec splat(REAL v) { return vec{} + v; }

// a * b + c with one rounding, lane by lane.
static inline vec fmadd(vec a, vec b, vec c) {
#if VBYTES == 64 && defined(__AVX512F__)
    if constexpr (sizeof(REAL) == 4)
        return (vec)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
    else
        return (vec)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif VBYTES == 32 && defined(__AVX__) && defined(__FMA__)
    if constexpr (sizeof(REAL) == 4)
        return (vec)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
    else
        return (vec)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
    vec r;
    for (int l = 0; l < LANES; l++) r[l] = std::fma(a[l], b[l], c[l]);
    return r;
#endif
}

// max(x, 0) that keeps NaN (and -0), as torch.relu does.
static inline vec relu(vec x) {
    // vmax returns its second operand when either is NaN or both are zeros.
#if VBYTES == 64 && defined(__AVX512F__)
    if constexpr (sizeof(REAL) == 4)
        return (vec)_mm512_max_ps(_mm512_setzero_ps(), (__m512)x);
    else
        return (vec)_mm512_max_pd(_mm512_setzero_pd(), (__m512d)x);
#elif VBYTES == 32 && defined(__AVX__)
    if constexpr (sizeof(REAL) == 4)
        return (vec)_mm256_max_ps(_mm256_setzero_ps(), (__m256)x);
    else
        return (vec)_mm256_max_pd(_mm256_setzero_pd(), (__m256d)x);
#else
    return x < 0 ? vec{} : x;
#endif
}

// Units j .. j+JB-1 of layer l for NT tiles: y = relu(bias + weights . x), each
// sum over the layer's inputs k in order.
template <int NT, int JB>
static inline void units(int l, int j, const REAL* wl, const REAL* bl, const vec (*x)[HMAX],
                         vec (*y)[HMAX]) {
    const int n_in = W[l - 1];
    vec acc[JB][NT];
#pragma GCC unroll 8
    for (int b = 0; b < JB; b++)
#pragma GCC unroll 8
        for (int u = 0; u < NT; u++) acc[b][u] = splat(bl[j + b]);
#pragma GCC unroll K_UNROLL
    for (int k = 0; k < n_in; k++) {
#pragma GCC unroll 8
        for (int b = 0; b < JB; b++) {
            const vec wk = splat(wl[(j + b) * n_in + k]);
#pragma GCC unroll 8
            for (int u = 0; u < NT; u++) acc[b][u] = fmadd(wk, x[u][k], acc[b][u]);
        }
    }
#pragma GCC unroll 8
    for (int b = 0; b < JB; b++)
#pragma GCC unroll 8
        for (int u = 0; u < NT; u++) y[u][j + b] = relu(acc[b][u]);
}

// Weights of TILES x LANES pairs (one post neuron; pre neurons t .. t+TILES*LANES-1):
// each weight is broadcast once and used for every tile.
template <int NT>
static inline void pair_tiles(const REAL* a, int64_t n_pad, const REAL* bpost, const REAL* prm,
                              vec* r) {
    // 2 x NT x HMAX vectors on the thread's stack: 86 KB at width 168 with
    // AVX-512, well within the default stacks of glibc's threads (8 MB).
    vec x[NT][HMAX], y[NT][HMAX];
#pragma GCC unroll 64
    for (int k = 0; k < H0; k++)
#pragma GCC unroll 8
        for (int u = 0; u < NT; u++) {
            vec v;
            std::memcpy(&v, a + k * n_pad + u * LANES, sizeof v);
            x[u][k] = relu(v + bpost[k]);
        }
    const REAL* q = prm;
#pragma GCC unroll 8
    for (int l = 1; l < N_WIDTHS; l++) {
        const REAL* wl = q;
        const REAL* bl = q + W[l] * W[l - 1];
        // Units in blocks of J_BLOCK (then one by one): each activation loaded
        // for a step of k serves J_BLOCK x NT sums, enough to keep the FMA
        // units busy when a wide layer's activations live in cache, not in
        // registers. Each unit's sum still runs over k in order.
        int j = 0;
        for (; j + J_BLOCK <= W[l]; j += J_BLOCK) units<NT, J_BLOCK>(l, j, wl, bl, x, y);
        for (; j < W[l]; j++) units<NT, 1>(l, j, wl, bl, x, y);
#pragma GCC unroll 64
        for (int j = 0; j < W[l]; j++)
#pragma GCC unroll 8
            for (int u = 0; u < NT; u++) x[u][j] = y[u][j];
        q = bl + W[l];
    }
#pragma GCC unroll 8
    for (int u = 0; u < NT; u++) r[u] = vec{};
#pragma GCC unroll 64
    for (int j = 0; j < W[N_WIDTHS - 1]; j++) {
        const vec oj = splat(q[j]);
#pragma GCC unroll 8
        for (int u = 0; u < NT; u++) r[u] = fmadd(oj, x[u][j], r[u]);
    }
}

// Standardise G rows in place (zero mean, unit variance over n), each times
// its own mult. A row's sums run over PARTS partial sums (one 32-byte vector,
// `part`), combined in a fixed order, the same whatever G and the build's
// vector width; the G rows' sums only run side by side, so that one row's
// additions fill the latency of another's.
typedef REAL part_vec __attribute__((vector_size(32)));
static_assert(sizeof(part_vec) == PARTS * sizeof(REAL), "PARTS lanes make one part_vec");

template <int G>
static void standardize_rows(REAL* const* w, int64_t n, const REAL* mult, REAL rel_eps,
                             REAL tiny) {
    if (n == 1) {
        // One input: centring would zero it; keep its sign at the unit's scale.
        for (int g = 0; g < G; g++) {
            REAL v = w[g][0];
            w[g][0] = v * (REAL(1) / std::sqrt(v * v + tiny)) * mult[g];
        }
        return;
    }
    const int64_t whole = n / PARTS * PARTS;
    part_vec part[G] = {};
    for (int64_t i = 0; i < whole; i += PARTS)
        for (int g = 0; g < G; g++) {
            part_vec x;
            std::memcpy(&x, w[g] + i, sizeof x);
            part[g] += x;
        }
    REAL mean[G];
    for (int g = 0; g < G; g++) {
        for (int64_t i = whole, l = 0; i < n; i++, l++) part[g][l] += w[g][i];
        REAL s = 0;
        for (int l = 0; l < PARTS; l++) s += part[g][l];
        mean[g] = s / REAL(n);
    }
    part_vec sq[G] = {};
    for (int64_t i = 0; i < whole; i += PARTS)
        for (int g = 0; g < G; g++) {
            part_vec x;
            std::memcpy(&x, w[g] + i, sizeof x);
            const part_vec d = x - mean[g];
            sq[g] += d * d;
        }
    for (int g = 0; g < G; g++) {
        for (int64_t i = whole, l = 0; i < n; i++, l++) {
            REAL d = w[g][i] - mean[g];
            sq[g][l] += d * d;
        }
        REAL ss = 0;
        for (int l = 0; l < PARTS; l++) ss += sq[g][l];
        const REAL var = ss / REAL(n);
        const REAL floor = rel_eps * mean[g] * mean[g] + tiny;
        const REAL inv = REAL(1) / std::sqrt(var + floor);
        REAL* wg = w[g];
        const REAL m = mean[g], mg = mult[g];
        int64_t j = 0;
        for (; j + LANES <= n; j += LANES) {
            vec x;
            std::memcpy(&x, wg + j, sizeof x);
            x = (x - m) * inv * mg;
            std::memcpy(wg + j, &x, sizeof x);
        }
        for (; j < n; j++) wg[j] = (wg[j] - m) * inv * mg;
    }
}

// Rows standardised together (see standardize_rows): 4 rows of a layer 784
// wide stay in the level-1 cache.
static constexpr int ROW_GROUP = 4;

// Standardise `count` rows (rows[k], each times mults[k]): in groups of
// ROW_GROUP, the rest one by one, with the same bits either way.
static void standardize_some(REAL* const* rows, const REAL* mults, int count, int64_t n,
                             REAL rel_eps, REAL tiny) {
    int k = 0;
    for (; k + ROW_GROUP <= count; k += ROW_GROUP)
        standardize_rows<ROW_GROUP>(rows + k, n, mults + k, rel_eps, tiny);
    for (; k < count; k++) standardize_rows<1>(rows + k, n, mults + k, rel_eps, tiny);
}

// body(r0, r1) over rows [row0, row1), split into `threads` contiguous parts.
// Built with OpenMP, the parts run on OpenMP's threads: in a process where
// torch runs on OpenMP, the same threads as torch's own operations, so that
// the kernels never compete with torch's idle threads for the cores. Rows are
// independent, so the split never changes a result.
template <class F>
static void split_rows(int64_t row0, int64_t row1, int threads, F body) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            const int64_t n = row1 - row0, t = omp_get_thread_num(), m = omp_get_num_threads();
            body(row0 + n * t / m, row0 + n * (t + 1) / m);
        }
        return;
    }
#endif
    body(row0, row1);
}

// Rows [r0, r1) of the weights w [p][n_post][n_pre], one row per (individual,
// post neuron); see innate_pairs. The individual's parameters start at
// prm + i * prm_stride.
static void pairs_rows(int64_t r0, int64_t r1, int64_t n_post, int64_t n_pre, int64_t n_pad,
                       int64_t b_stride, const REAL* a, const REAL* b, const REAL* prm,
                       int64_t prm_stride, REAL* w, const REAL* mult, REAL rel_eps, REAL tiny) {
    // Rows in groups of ROW_GROUP: each row's weights, then the group's standardisation.
    REAL* rows[ROW_GROUP];
    REAL mults[ROW_GROUP];
    for (int64_t next = r0; next < r1;) {
        const int count = int(r1 - next < ROW_GROUP ? r1 - next : ROW_GROUP);
        for (int g = 0; g < count; g++, next++) {
            const int64_t r = next, i = r / n_post, o = r % n_post;
            const REAL* ai = a + i * H0 * n_pad;
            REAL bo[H0];
            for (int k = 0; k < H0; k++) bo[k] = b[(i * H0 + k) * b_stride + o];
            const REAL* pi = prm + i * prm_stride;
            REAL* wr = w + r * n_pre;
            int64_t t = 0;
            vec v[TILES];
            for (; t + TILES * LANES <= n_pre; t += TILES * LANES) {
                pair_tiles<TILES>(ai + t, n_pad, bo, pi, v);
                std::memcpy(wr + t, v, sizeof v);
            }
            for (; t + LANES <= n_pre; t += LANES) {
                pair_tiles<1>(ai + t, n_pad, bo, pi, v);
                std::memcpy(wr + t, v, sizeof v[0]);
            }
            if (t < n_pre) {
                pair_tiles<1>(ai + t, n_pad, bo, pi, v);
                REAL tmp[LANES];
                std::memcpy(tmp, v, sizeof v[0]);
                for (int64_t l = 0; t + l < n_pre; l++) wr[t + l] = tmp[l];
            }
            rows[g] = wr;
            mults[g] = mult ? mult[i] : REAL(0);
        }
        if (mult) standardize_some(rows, mults, count, n_pre, rel_eps, tiny);
    }
}

// Rows [r0, r1) of out [p][h][n_pad], one row per (individual i = r / h, unit
// k = r % h): out[i][k][t] = sum_j codes_t[j][t] * wt[i * w_stride + k * d + j]
// (+ bias[i * b_stride + k]), summed in order of j. codes_t: [d][n_pad], zero-padded.
static void project_rows(int64_t r0, int64_t r1, int64_t h, int64_t d, int64_t n_pad,
                         const REAL* codes_t, const REAL* wt, int64_t w_stride, const REAL* bias,
                         int64_t b_stride, REAL* out) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i = r / h, k = r % h;
        const REAL* wr = wt + i * w_stride + k * d;
        REAL* o = out + r * n_pad;
        for (int64_t t = 0; t < n_pad; t += LANES) {
            vec acc{};
            for (int64_t j = 0; j < d; j++) {
                vec c;
                std::memcpy(&c, codes_t + j * n_pad + t, sizeof c);
                acc = fmadd(c, splat(wr[j]), acc);
            }
            if (bias) acc += bias[i * b_stride + k];
            std::memcpy(o + t, &acc, sizeof acc);
        }
    }
}

extern "C" {

int innate_lanes() { return LANES; }
int innate_n_params() { return N_PARAMS; }
#ifdef _OPENMP
int innate_openmp() { return 1; }
// The thread count the calling thread's next parallel region would use.
int innate_omp_max_threads() { return omp_get_max_threads(); }
#else
int innate_openmp() { return 0; }
int innate_omp_max_threads() { return 0; }
#endif

// Rows [row0, row1) of the weights w [p][n_post][n_pre], one row per (individual,
// post neuron). a: [p][H0][n_pad] presynaptic projections, zero-padded to n_pad
// (a multiple of LANES); b: [p][H0][b_stride] postsynaptic projections plus the
// first bias; prm: [p][N_PARAMS]. If mult is not null, each row is then
// standardised and multiplied by mult[individual] while it is still in cache.
void innate_pairs(int threads, int64_t row0, int64_t row1, int64_t n_post, int64_t n_pre,
                  int64_t n_pad, int64_t b_stride, const REAL* a, const REAL* b, const REAL* prm,
                  REAL* w, const REAL* mult, double rel_eps, double tiny) {
    split_rows(row0, row1, threads, [=](int64_t r0, int64_t r1) {
        pairs_rows(r0, r1, n_post, n_pre, n_pad, b_stride, a, b, prm, N_PARAMS, w, mult,
                   REAL(rel_eps), REAL(tiny));
    });
}

// Projections of neuron codes through per-individual weights, in the layout
// innate_pairs reads: rows [row0, row1) of out [p][h][n_pad], one row per
// (individual, hidden unit); out[i][k][t] = sum_j codes_t[j][t] * wt[i][k][j]
// (+ bias[i][k]), summed in order of j. codes_t: [d][n_pad], zero-padded.
void innate_project(int threads, int64_t row0, int64_t row1, int64_t h, int64_t d,
                    int64_t n_pad, const REAL* codes_t, const REAL* wt, const REAL* bias,
                    REAL* out) {
    split_rows(row0, row1, threads, [=](int64_t r0, int64_t r1) {
        project_rows(r0, r1, h, d, n_pad, codes_t, wt, h * d, bias, h, out);
    });
}

// One layer of a g-network decode in one call, read straight from the genomes
// g [p][g_stride]: the projections (pre [H0][d_pre] at off_pre, post [H0][d_post]
// at off_post plus the first bias [H0] at off_b1, as innate_project computes
// them), then the weights w [p][n_post][n_pre] as innate_pairs computes them,
// with the parameters at off_prm. On `threads` OpenMP threads: the projections
// split over them, then the rows. Returns 0, or 1 when the projections' memory
// cannot be had.
int innate_gnet_layer(int threads, int64_t p, const REAL* g, int64_t g_stride, int64_t off_pre,
                      int64_t off_post, int64_t off_b1, int64_t off_prm, int64_t d_pre,
                      int64_t d_post, int64_t n_post, int64_t n_pre, int64_t pad_pre,
                      int64_t pad_post, const REAL* codes_pre, const REAL* codes_post, REAL* w,
                      const REAL* mult, double rel_eps, double tiny) {
    if (p < 1 || n_post < 1) return 0;
    const size_t a_bytes = size_t(p * H0 * pad_pre) * sizeof(REAL);
    const size_t b_bytes = size_t(p * H0 * pad_post) * sizeof(REAL);
    // Rows padded to whole 512-bit vectors are whole multiples of 64 bytes.
    REAL* a = static_cast<REAL*>(std::aligned_alloc(64, a_bytes));
    REAL* b = static_cast<REAL*>(std::aligned_alloc(64, b_bytes));
    if (!a || !b) {
        std::free(a);
        std::free(b);
        return 1;
    }
    auto body = [=](int t, int m) {
        const int64_t n = p * H0, rows = p * n_post;
        project_rows(n * t / m, n * (t + 1) / m, H0, d_pre, pad_pre, codes_pre, g + off_pre,
                     g_stride, nullptr, 0, a);
        project_rows(n * t / m, n * (t + 1) / m, H0, d_post, pad_post, codes_post, g + off_post,
                     g_stride, g + off_b1, g_stride, b);
#ifdef _OPENMP
        // Only inside this function's own team: a barrier reached outside it would
        // bind to a caller's team, if any.
        if (m > 1) {
#pragma omp barrier
        }
#endif
        pairs_rows(rows * t / m, rows * (t + 1) / m, n_post, n_pre, pad_pre, pad_post, a, b,
                   g + off_prm, g_stride, w, mult, REAL(rel_eps), REAL(tiny));
    };
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        body(omp_get_thread_num(), omp_get_num_threads());
    } else {
        body(0, 1);
    }
#else
    body(0, 1);
#endif
    std::free(a);
    std::free(b);
    return 0;
}

// Rows [row0, row1) of src [rows][n]: dst = standardise(src) * mult[row / per].
void innate_standardize(int threads, int64_t row0, int64_t row1, int64_t n, int64_t per,
                        const REAL* src, REAL* dst, const REAL* mult, double rel_eps,
                        double tiny) {
    split_rows(row0, row1, threads, [=](int64_t r0, int64_t r1) {
        REAL* rows[ROW_GROUP];
        REAL mults[ROW_GROUP];
        for (int64_t r = r0; r < r1;) {
            const int count = int(r1 - r < ROW_GROUP ? r1 - r : ROW_GROUP);
            for (int g = 0; g < count; g++, r++) {
                REAL* d = dst + r * n;
                if (d != src + r * n) std::memcpy(d, src + r * n, n * sizeof(REAL));
                rows[g] = d;
                mults[g] = mult[r / per];
            }
            standardize_some(rows, mults, count, n, REAL(rel_eps), REAL(tiny));
        }
    });
}

}  // extern "C"
