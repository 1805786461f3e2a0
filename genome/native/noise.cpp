// Standard normal noise, bit for bit what torch's CPU `Tensor.normal_` draws, faster.
//
// torch fills a contiguous float tensor of 16 or more elements (normal_fill in
// ATen/native/cpu/DistributionTemplates.h) with uniforms from its generator's
// Mersenne Twister, one 32-bit output each (two for a double), then turns each
// block of 16 into normals by the Box-Muller transform, in place; where the
// size is not a multiple of 16, the last 16 elements are drawn again and
// transformed. Its generator makes one virtual call per number; here the
// twister runs on its whole state at once, and the transform (two thirds of the
// time) is split over threads.
//
// The transform must round as torch's build does. Where torch dispatches the
// kernel at AVX2 (and, on x86, at AVX-512, which reuses it), floats go through
// the 8-lane log and sincos of ATen's avx_mathfun.h, included from torch's own
// headers (TORCH_AVX2 here); at the baseline instruction set, and for doubles,
// through the C library's scalar log, cos and sin. The bindings
// (genome/native/noise.py) build the variant that matches the machine and use
// it only after it has drawn exactly what torch draws there.
//
// The generator's state is read and written in torch's serialised layout
// (`torch.Generator.get_state`): the 32-bit words of the twister stored as
// 64-bit integers from byte 24, `left` (an int32) at byte 8, `seeded` at 12
// and `next` (a uint64) at 16.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#ifdef TORCH_AVX2
#include <ATen/native/cpu/avx_mathfun.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef INNATE_NOISE_STALL_US
#include <unistd.h>
#endif

namespace {

constexpr int N = 624, M = 397;
constexpr int64_t STATE_BYTES = 24 + 8 * N;

struct Twister {
    uint32_t s[N];
    int64_t left;  // as torch's engine: a draw first decrements it, and twists at 0
    int64_t next;  // the word the next draw tempers
};

bool load(const uint8_t* state, Twister& t) {
    int32_t left, seeded;
    uint64_t next;
    std::memcpy(&left, state + 8, 4);
    std::memcpy(&seeded, state + 12, 4);
    std::memcpy(&next, state + 16, 8);
    if (!seeded || left < 1 || left > N || next > static_cast<uint64_t>(N)) return false;
    // What torch's engine reaches: a twist due (left 1), or next + left = N + 1 after one.
    if (left != 1 && next + left != static_cast<uint64_t>(N) + 1) return false;
    for (int i = 0; i < N; i++) {
        uint64_t w;
        std::memcpy(&w, state + 24 + 8 * i, 8);
        t.s[i] = static_cast<uint32_t>(w);
    }
    t.left = left;
    t.next = static_cast<int64_t>(next);
    return true;
}

void store(const Twister& t, uint8_t* state) {
    const int32_t left = static_cast<int32_t>(t.left);
    const uint64_t next = static_cast<uint64_t>(t.next);
    std::memcpy(state + 8, &left, 4);
    std::memcpy(state + 16, &next, 8);
    for (int i = 0; i < N; i++) {
        const uint64_t w = t.s[i];
        std::memcpy(state + 24 + 8 * i, &w, 8);
    }
}

inline uint32_t twist(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

// at::mt19937_engine::next_state, in three loops the compiler vectorises.
void next_state(uint32_t* s) {
    for (int i = 0; i < N - M; i++) s[i] = s[i + M] ^ twist(s[i], s[i + 1]);
    for (int i = N - M; i < N - 1; i++) s[i] = s[i + M - N] ^ twist(s[i], s[i + 1]);
    s[N - 1] = s[M - 1] ^ twist(s[N - 1], s[0]);
}

inline uint32_t temper(uint32_t y) {
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

// `n` outputs of the engine, each through `put(i, word)`, as n calls of
// at::mt19937_engine::operator() would give them.
template <class F>
void words(Twister& t, int64_t n, F put) {
    int64_t i = 0;
    while (i < n) {
        if (t.left == 1) {  // this draw's decrement reaches 0: twist, then take word 0
            next_state(t.s);
            t.left = N + 1;
            t.next = 0;
        }
        const int64_t k = n - i < t.left - 1 ? n - i : t.left - 1;
        const uint32_t* src = t.s + t.next;
        for (int64_t j = 0; j < k; j++) put(i + j, temper(src[j]));
        i += k;
        t.next += k;
        t.left -= k;
    }
}

// at::uniform_real_distribution<T>(0, 1): the type's mantissa bits of one
// output (float) or of two (double, the first as the high half), scaled.
void uniforms(Twister& t, float* out, int64_t n) {
    words(t, n, [out](int64_t i, uint32_t w) {
        out[i] = static_cast<float>(w & 0xffffffu) * (1.0f / 16777216.0f);
    });
}

void uniforms(Twister& t, double* out, int64_t n) {
    uint32_t hi = 0;
    words(t, 2 * n, [out, &hi](int64_t i, uint32_t w) {
        if (i % 2 == 0) {
            hi = w;
        } else {
            const uint64_t v = (static_cast<uint64_t>(hi & 0x1fffffu) << 32) | w;
            out[i / 2] = static_cast<double>(v) * (1.0 / 9007199254740992.0);
        }
    });
}

constexpr double PI = 3.14159265358979323846;

// NormalFill16 with mean 0 and std 1, as torch compiles it: its primary
// template (doubles, and floats at the baseline instruction set), and its
// specialisation for floats at AVX2.
template <class T>
inline void scalar_box_muller16(T* data) {
    for (int j = 0; j < 8; j++) {
        const T u1 = 1 - data[j];
        const T u2 = data[j + 8];
        const T radius = std::sqrt(-2 * std::log(u1));
        const T theta = 2.0f * PI * u2;
        data[j] = std::fma(radius * std::cos(theta), T(1), T(0));
        data[j + 8] = std::fma(radius * std::sin(theta), T(1), T(0));
    }
}

#ifdef TORCH_AVX2
inline void box_muller16(float* data) {
    const __m256 mean = _mm256_set1_ps(0.0f), std_ = _mm256_set1_ps(1.0f);
    const __m256 two_pi = _mm256_set1_ps(2.0f * PI);
    const __m256 u1 = _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_loadu_ps(data));
    const __m256 u2 = _mm256_loadu_ps(data + 8);
    const __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log256_ps(u1)));
    const __m256 theta = _mm256_mul_ps(two_pi, u2);
    __m256 sintheta, costheta;
    sincos256_ps(theta, &sintheta, &costheta);
    const __m256 n1 = _mm256_mul_ps(radius, costheta);
    const __m256 n2 = _mm256_mul_ps(radius, sintheta);
    _mm256_storeu_ps(data, _mm256_fmadd_ps(n1, std_, mean));
    _mm256_storeu_ps(data + 8, _mm256_fmadd_ps(n2, std_, mean));
}
#else
inline void box_muller16(float* data) { scalar_box_muller16(data); }
#endif

inline void box_muller16(double* data) { scalar_box_muller16(data); }

// A spinning wait's step: lets a sibling hardware thread run.
inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Elements a chunk: the uniforms of a chunk are drawn, then transformed while
// they are still in cache.
constexpr int64_t CHUNK = 4096;

template <class T>
void transform(T* data, int64_t begin, int64_t end) {
    for (int64_t i = begin; i + 16 <= end; i += 16) box_muller16(data + i);
}

// x * scale + shift, rounded twice as torch's `x *= scale; x += shift` is: the
// product is kept from being fused into the sum (the AVX2 variant is compiled
// with contraction on, as torch's transform is), by an empty asm statement
// that the compiler must assume changes it.
#ifdef TORCH_AVX2
#define ROUNDED(x) __asm__("" : "+x"(x))
#else
#define ROUNDED(x) (void)0  // compiled with -ffp-contract=off
#endif

template <class T>
inline void scale_run(T* x, const T* scale, const T* shift, int64_t n) {
    int64_t k = 0;
#ifdef TORCH_AVX2
    if constexpr (sizeof(T) == 4) {
        for (; k + 8 <= n; k += 8) {
            __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(scale + k));
            ROUNDED(y);
            _mm256_storeu_ps(x + k, _mm256_add_ps(y, _mm256_loadu_ps(shift + k)));
        }
    } else {
        for (; k + 4 <= n; k += 4) {
            __m256d y = _mm256_mul_pd(_mm256_loadu_pd(x + k), _mm256_loadu_pd(scale + k));
            ROUNDED(y);
            _mm256_storeu_pd(x + k, _mm256_add_pd(y, _mm256_loadu_pd(shift + k)));
        }
    }
#endif
    for (; k < n; k++) {
        T y = x[k] * scale[k];
        ROUNDED(y);
        x[k] = y + shift[k];
    }
}

// Elements [begin, end) of rows of `d` scaled and shifted gene by gene.
template <class T>
struct Affine {
    const T* scale;  // null: none
    const T* shift;
    int64_t d;

    void operator()(T* data, int64_t begin, int64_t end) const {
        if (scale == nullptr) return;
        for (int64_t i = begin, j = begin % d; i < end; j = 0) {
            const int64_t run = std::min(end - i, d - j);
            scale_run(data + i, scale + j, shift + j, run);
            i += run;
        }
    }
};

// Draw n uniforms into data and transform every whole block of 16, chunk by
// chunk. Built with OpenMP, `threads` threads share the work on OpenMP's
// threads (torch's own, where torch runs on it): thread 0 draws the uniforms,
// which only it can (the twister is one stream), keeping a few chunks ahead of
// the threads that transform them, and transforms a chunk itself whenever it is
// that far ahead. A block is transformed alone, so the split never changes a value.
template <class T>
void draw(Twister& t, T* data, int64_t n, int threads, const Affine<T>& affine) {
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    // The last 16 are drawn again where n is not a multiple of 16: scaled then.
    const int64_t final_end = n % 16 != 0 ? n - 16 : n;
    auto uniforms_of = [&](int64_t c) {
        uniforms(t, data + c * CHUNK, std::min(CHUNK, n - c * CHUNK));
    };
    auto transform_of = [&](int64_t c) {
        transform(data, c * CHUNK, std::min((c + 1) * CHUNK, n));
        affine(data, c * CHUNK, std::min((c + 1) * CHUNK, final_end));
    };
#ifdef _OPENMP
    if (threads > 1 && chunks > 1) {
        constexpr int64_t AHEAD = 4;  // chunks drawn ahead of the transform
        alignas(64) std::atomic<int64_t> drawn{0};
        alignas(64) std::atomic<int64_t> claimed{0};
#pragma omp parallel num_threads(threads)
        {
            if (omp_get_thread_num() == 0) {
                for (;;) {
                    const int64_t d = drawn.load(std::memory_order_relaxed);
                    bool draw_next = d < chunks && d - claimed.load(std::memory_order_relaxed) < AHEAD;
#ifdef INNATE_NOISE_STALL_US
                    // Tests only: before the last chunk, claim late, as if `claimed` had been
                    // read just before this thread was descheduled for a while.
                    if (d == chunks - 1) {
                        usleep(INNATE_NOISE_STALL_US);
                        draw_next = false;
                    }
#endif
                    if (draw_next) {
                        uniforms_of(d);
                        drawn.store(d + 1, std::memory_order_release);
                        continue;
                    }
                    const int64_t c = claimed.fetch_add(1, std::memory_order_relaxed);
                    // The other threads may have claimed chunks not drawn yet since d was
                    // read, the last ones included: draw up to this claim, or to the end.
                    const int64_t upto = std::min(c + 1, chunks);
                    for (int64_t e = drawn.load(std::memory_order_relaxed); e < upto; e++) {
                        uniforms_of(e);
                        drawn.store(e + 1, std::memory_order_release);
                    }
                    if (c >= chunks) break;
                    transform_of(c);
                }
            } else {
                for (;;) {
                    const int64_t c = claimed.fetch_add(1, std::memory_order_relaxed);
                    if (c >= chunks) break;
                    while (drawn.load(std::memory_order_acquire) <= c) pause();
                    transform_of(c);
                }
            }
        }
        return;
    }
#endif
    for (int64_t c = 0; c < chunks; c++) {
        uniforms_of(c);
        transform_of(c);
    }
}

template <class T>
int normal(int threads, T* data, int64_t n, uint8_t* state, int64_t state_bytes, const T* scale,
           const T* shift, int64_t d) {
    if (n < 16 || state_bytes < STATE_BYTES) return 1;
    if (scale != nullptr && (shift == nullptr || d < 1 || n % d != 0)) return 1;
    Twister t;
    if (!load(state, t)) return 2;
    const Affine<T> affine{scale, shift, d};
    draw(t, data, n, threads, affine);
    if (n % 16 != 0) {  // torch draws the last 16 again
        uniforms(t, data + n - 16, 16);
        box_muller16(data + n - 16);
        affine(data, n - 16, n);
    }
    store(t, state);
    return 0;
}

}  // namespace

extern "C" {

#ifdef _OPENMP
int innate_openmp() { return 1; }
int innate_omp_max_threads() { return omp_get_max_threads(); }
#else
int innate_openmp() { return 0; }
int innate_omp_max_threads() { return 0; }
#endif
#ifdef TORCH_AVX2
int innate_noise_avx2() { return 1; }
#else
int innate_noise_avx2() { return 0; }
#endif

// Fill data[0, n) with standard normal noise from the generator state `state`
// (torch's serialised layout, `state_bytes` long) and advance that state as
// torch's draw would; where `scale` is not null, then multiply each row of d
// elements by scale[0, d) and add shift[0, d). 0 on success; else nothing was
// written: 1 for fewer than 16 elements, a short state or rows that do not
// divide n, 2 for a state torch would not draw from.
int innate_normal_float(int threads, float* data, int64_t n, uint8_t* state, int64_t state_bytes,
                        const float* scale, const float* shift, int64_t d) {
    return normal(threads, data, n, state, state_bytes, scale, shift, d);
}

int innate_normal_double(int threads, double* data, int64_t n, uint8_t* state,
                         int64_t state_bytes, const double* scale, const double* shift,
                         int64_t d) {
    return normal(threads, data, n, state, state_bytes, scale, shift, d);
}

}  // extern "C"
