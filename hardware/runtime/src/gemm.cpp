// Linear layers on weights packed once at load (x86-64 with AVX-512F, or AVX2 + FMA).
//
// ggml's f32 product on x86 (llamafile's tinyBLAS) reads both operands as unpacked rows and ends every output
// tile in horizontal sums; on a Zen 5 it ran the towers' products at about three quarters of the machine's fp32
// GEMM ceiling, and they are 80 % of the runtime's time. This is the GotoBLAS/BLIS scheme instead: each weight
// is re-ordered once at load into panels of NR output rows (in-major), so the inner loop loads NR weights as
// two vectors, broadcasts one input value per row and keeps an MR x NR tile of outputs in registers over a block
// of KC inputs; the blocks are sized so that a weight micro-panel stays in L1 across a block of rows and the
// block of rows stays in L2 across the panels. Bias, activation and residual are applied while the finished
// tile is still in L1, so a layer is one pass over its output instead of three or four.
#include "gemm.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "activation.h"

#if defined(__x86_64__) && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)))
#include <immintrin.h>
#define PMM_PACKED_GEMM 1
#endif

namespace pmm {

#ifdef PMM_PACKED_GEMM
namespace {

#if defined(__AVX512F__)
using vec = __m512;
constexpr int VL = 16, MR = 12;  // 24 accumulators, 2 weight vectors and a broadcast: 27 of the 32 registers
inline vec vload(const float * p) { return _mm512_loadu_ps(p); }
inline void vstore(float * p, vec v) { _mm512_storeu_ps(p, v); }
inline vec vbroadcast(const float * p) { return _mm512_set1_ps(*p); }
inline vec vfmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec vzero() { return _mm512_setzero_ps(); }
#else
using vec = __m256;
constexpr int VL = 8, MR = 6;  // 12 accumulators, 2 weight vectors and a broadcast: 15 of the 16 registers
inline vec vload(const float * p) { return _mm256_loadu_ps(p); }
inline void vstore(float * p, vec v) { _mm256_storeu_ps(p, v); }
inline vec vbroadcast(const float * p) { return _mm256_broadcast_ss(p); }
inline vec vfmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline vec vzero() { return _mm256_setzero_ps(); }
#endif

constexpr int NR = 2 * VL;      // outputs per panel
constexpr int64_t KC = 256;     // inputs per block: a KC x NR weight micro-panel is 32 KiB (AVX-512), in L1
constexpr int64_t MC = 8 * MR;  // rows per block: the MC x KC block of x (96 KiB) stays in L2 over the panels
constexpr int64_t NC = 8;       // panels per block: the KC x NC*NR weights (256 KiB) stay in L2 over the rows

// c[R][NR] (row stride ldc) = (first ? bias or 0 : c) + a[R][kc] (row stride lda) . b[kc][NR]
template <int R>
void tile(int64_t kc, const float * a, int64_t lda, const float * b, float * c, int64_t ldc, const float * bias, bool first) {
    vec acc[R][2];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        acc[r][0] = first ? (bias ? vload(bias) : vzero()) : vload(c + r * ldc);
        acc[r][1] = first ? (bias ? vload(bias + VL) : vzero()) : vload(c + r * ldc + VL);
    }
    for (int64_t k = 0; k < kc; ++k) {
        const vec b0 = vload(b + k * NR), b1 = vload(b + k * NR + VL);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const vec x = vbroadcast(a + r * lda + k);
            acc[r][0] = vfmadd(x, b0, acc[r][0]);
            acc[r][1] = vfmadd(x, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        vstore(c + r * ldc, acc[r][0]);
        vstore(c + r * ldc + VL, acc[r][1]);
    }
}

using Tile = void (*)(int64_t, const float *, int64_t, const float *, float *, int64_t, const float *, bool);
template <size_t... R>
constexpr std::array<Tile, sizeof...(R)> tiles(std::index_sequence<R...>) {
    return {tile<int(R) + 1>...};
}
constexpr auto kTiles = tiles(std::make_index_sequence<MR>());  // kTiles[R - 1]: a tile of R rows

void epilogue(float * y, int64_t n, Act act, const float * residual) {
    if (act == Act::quick_gelu) quick_gelu_inplace(y, n);
    if (act == Act::gelu_erf) gelu_erf_inplace(y, n);
    if (residual)
        for (int64_t i = 0; i < n; ++i) y[i] += residual[i];
}

}  // namespace

bool packed_gemm_available() { return true; }
bool packable(int64_t out) { return out % NR == 0; }
int64_t packed_panel_width() { return NR; }

void pack_weight(float * w, int64_t in, int64_t out) {
    std::vector<float> rows(w, w + in * out);
    for (int64_t p = 0; p < out / NR; ++p)
        for (int64_t k = 0; k < in; ++k)
            for (int j = 0; j < NR; ++j) w[(p * in + k) * NR + j] = rows[(p * NR + j) * in + k];
}

void gemm_packed(const float * x, const float * w, const float * b, const float * residual, float * y, int64_t rows,
                 int64_t in, int64_t out, int64_t o0, int64_t o1, Act act) {
    for (int64_t p0 = o0 / NR, pend = o1 / NR; p0 < pend; p0 += NC) {
        const int64_t p1 = std::min(p0 + NC, pend);
        for (int64_t k0 = 0; k0 < in; k0 += KC) {
            const int64_t kc = std::min(KC, in - k0);
            const bool first = k0 == 0, last = k0 + kc == in;
            for (int64_t m0 = 0; m0 < rows; m0 += MC) {
                const int64_t m1 = std::min(m0 + MC, rows);
                for (int64_t p = p0; p < p1; ++p) {
                    const float * panel = w + (p * in + k0) * NR;
                    for (int64_t r = m0; r < m1; r += MR) {
                        const int R = int(std::min<int64_t>(MR, m1 - r));
                        float * c = y + r * out + p * NR;
                        kTiles[R - 1](kc, x + r * in + k0, in, panel, c, out, b ? b + p * NR : nullptr, first);
                        if (last && (act != Act::none || residual))
                            for (int i = 0; i < R; ++i)
                                epilogue(c + i * out, NR, act, residual ? residual + (r + i) * out + p * NR : nullptr);
                    }
                }
            }
        }
    }
}

namespace {

const Act kActs[] = {Act::none, Act::quick_gelu, Act::gelu_erf};

// dst [out, rows] = act(w . src[0] + src[2]) + src[3]; src[2] / src[3] may be absent (null). Each of the nth
// threads takes a range of whole panels (output columns), so no two threads write the same bytes.
void linear_op(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const ggml_tensor *x = dst->src[0], *w = dst->src[1], *b = dst->src[2], *res = dst->src[3];
    const int64_t in = x->ne[0], out = dst->ne[0], rows = dst->ne[1], panels = out / NR;
    gemm_packed(static_cast<const float *>(x->data), static_cast<const float *>(w->data),
                b ? static_cast<const float *>(b->data) : nullptr, res ? static_cast<const float *>(res->data) : nullptr,
                static_cast<float *>(dst->data), rows, in, out, panels * ith / nth * NR, panels * (ith + 1) / nth * NR,
                *static_cast<const Act *>(userdata));
}

}  // namespace

ggml_tensor * linear_packed(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, Act act,
                            ggml_tensor * residual) {
    if (!ggml_is_contiguous(x)) x = ggml_cont(ctx, x);
    const int64_t rows = ggml_nrows(x);
    GGML_ASSERT(x->type == GGML_TYPE_F32 && w->ne[0] == x->ne[0] && packable(w->ne[1]));
    GGML_ASSERT(!residual || (ggml_is_contiguous(residual) && residual->ne[0] == w->ne[1] && ggml_nrows(residual) == rows));
    ggml_tensor * args[4] = {x, w, b, residual};
    return ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], rows, 1, 1, args, 4, linear_op, GGML_N_TASKS_MAX,
                          const_cast<Act *>(&kActs[int(act)]));
}

#else  // no packed kernel on this target: ggml's own products (and each board's kernels) do the work

bool packed_gemm_available() { return false; }
bool packable(int64_t) { return false; }
int64_t packed_panel_width() { return 0; }
void pack_weight(float *, int64_t, int64_t) {}
void gemm_packed(const float *, const float *, const float *, const float *, float *, int64_t, int64_t, int64_t,
                 int64_t, int64_t, Act) {}
ggml_tensor * linear_packed(ggml_context *, ggml_tensor *, ggml_tensor *, ggml_tensor *, Act, ggml_tensor *) {
    GGML_ABORT("no packed GEMM in this build");
}

#endif

}  // namespace pmm
