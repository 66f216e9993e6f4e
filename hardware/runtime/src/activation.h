// Feed-forward activations fused with their bias add (ggml custom ops), and the polynomials they use.
#pragma once

#include <cstdint>

#include "ggml.h"

namespace pmm {

// QuickGELU (CLIP's ViT): y = v * sigmoid(1.702 v), v = x + b; x [N, rows], b [N].
ggml_tensor * bias_quick_gelu(ggml_context * ctx, ggml_tensor * x, ggml_tensor * b);
// erf GELU (BERT): y = v / 2 * (1 + erf(v / sqrt(2))), v = x + b.
ggml_tensor * bias_gelu_erf(ggml_context * ctx, ggml_tensor * x, ggml_tensor * b);

// The same activations in place on n floats (the packed linear layers' epilogue, src/gemm.cpp).
void quick_gelu_inplace(float * y, int64_t n);
void gelu_erf_inplace(float * y, int64_t n);

float exp_poly(float x);  // relative error < 1e-7 on [-87, 88] (clamped outside)
float erf_poly(float x);  // absolute error < 5e-7

}  // namespace pmm
