// Linear layers on weights packed once at load: y = act(W x + b) in one pass, as a ggml custom op.
#pragma once

#include <cstdint>

#include "ggml.h"

namespace pmm {

enum class Act { none, quick_gelu, gelu_erf };

// Whether this build has the packed kernel (x86-64 with AVX-512F, or AVX2 + FMA). Elsewhere linear layers
// stay on ggml_mul_mat (each board's own ggml kernels) and nothing is packed.
bool packed_gemm_available();
// Whether a weight with `out` rows can be packed (its rows come in whole panels of the kernel's width).
bool packable(int64_t out);
// Re-orders a linear weight (ggml [in, out]: out rows of in floats) in place into panels of NR output rows,
// each panel in-major: panel p holds w[p*NR + j][k] at [k*NR + j]. Only linear_packed may read it afterwards.
void pack_weight(float * w, int64_t in, int64_t out);
// y [out, rows] = act(w x + b) + residual for x [in, rows] and w packed by pack_weight; b [out] and residual
// [out, rows] may be null.
ggml_tensor * linear_packed(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, Act act,
                            ggml_tensor * residual);

// The kernel itself on plain arrays (pmm-selftest compares it with a double-precision product):
// y[r*out + o] = act(sum_k x[r*in + k] * w[o][k] + b[o]) + residual[r*out + o], w packed; b and residual may
// be null; the columns [o0, o1) only (whole panels).
void gemm_packed(const float * x, const float * w, const float * b, const float * residual, float * y, int64_t rows,
                 int64_t in, int64_t out, int64_t o0, int64_t o1, Act act);
int64_t packed_panel_width();

}  // namespace pmm
