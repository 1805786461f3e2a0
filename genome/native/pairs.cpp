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

// Standardise one row in place (zero mean, unit variance over n), times mult.
// Sums run over PARTS partial sums, combined in a fixed order.
static void standardize_row(REAL* w, int64_t n, REAL mult, REAL rel_eps, REAL tiny) {
    if (n == 1) {
        // One input: centring would zero it; keep its sign at the unit's scale.
        REAL v = w[0];
        w[0] = v * (REAL(1) / std::sqrt(v * v + tiny)) * mult;
        return;
    }
    REAL part[PARTS] = {};
    int64_t i = 0;
    for (; i + PARTS <= n; i += PARTS)
        for (int l = 0; l < PARTS; l++) part[l] += w[i + l];
    for (int l = 0; i < n; i++, l++) part[l] += w[i];
    REAL s = 0;
    for (int l = 0; l < PARTS; l++) s += part[l];
    const REAL mean = s / REAL(n);
    REAL sq[PARTS] = {};
    i = 0;
    for (; i + PARTS <= n; i += PARTS)
        for (int l = 0; l < PARTS; l++) {
            REAL d = w[i + l] - mean;
            sq[l] += d * d;
        }
    for (int l = 0; i < n; i++, l++) {
        REAL d = w[i] - mean;
        sq[l] += d * d;
    }
    REAL ss = 0;
    for (int l = 0; l < PARTS; l++) ss += sq[l];
    const REAL var = ss / REAL(n);
    const REAL floor = rel_eps * mean * mean + tiny;
    const REAL inv = REAL(1) / std::sqrt(var + floor);
    for (int64_t j = 0; j < n; j++) w[j] = (w[j] - mean) * inv * mult;
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
        for (int64_t r = r0; r < r1; r++) {
            const int64_t i = r / n_post, o = r % n_post;
            const REAL* ai = a + i * H0 * n_pad;
            REAL bo[H0];
            for (int k = 0; k < H0; k++) bo[k] = b[(i * H0 + k) * b_stride + o];
            const REAL* pi = prm + i * N_PARAMS;
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
            if (mult) standardize_row(wr, n_pre, mult[i], REAL(rel_eps), REAL(tiny));
        }
    });
}

// Projections of neuron codes through per-individual weights, in the layout
// innate_pairs reads: rows [row0, row1) of out [p][h][n_pad], one row per
// (individual, hidden unit); out[i][k][t] = sum_j codes_t[j][t] * wt[i][k][j]
// (+ bias[i][k]), summed in order of j. codes_t: [d][n_pad], zero-padded.
void innate_project(int threads, int64_t row0, int64_t row1, int64_t d, int64_t n_pad,
                    const REAL* codes_t, const REAL* wt, const REAL* bias, REAL* out) {
    split_rows(row0, row1, threads, [=](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
            const REAL* wr = wt + r * d;
            REAL* o = out + r * n_pad;
            for (int64_t t = 0; t < n_pad; t += LANES) {
                vec acc{};
                for (int64_t j = 0; j < d; j++) {
                    vec c;
                    std::memcpy(&c, codes_t + j * n_pad + t, sizeof c);
                    acc = fmadd(c, splat(wr[j]), acc);
                }
                if (bias) acc += bias[r];
                std::memcpy(o + t, &acc, sizeof acc);
            }
        }
    });
}

// Rows [row0, row1) of src [rows][n]: dst = standardise(src) * mult[row / per].
void innate_standardize(int threads, int64_t row0, int64_t row1, int64_t n, int64_t per,
                        const REAL* src, REAL* dst, const REAL* mult, double rel_eps,
                        double tiny) {
    split_rows(row0, row1, threads, [=](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
            REAL* d = dst + r * n;
            if (d != src + r * n) std::memcpy(d, src + r * n, n * sizeof(REAL));
            standardize_row(d, n, mult[r / per], REAL(rel_eps), REAL(tiny));
        }
    });
}

}  // extern "C"
