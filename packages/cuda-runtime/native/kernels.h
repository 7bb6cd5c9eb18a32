// The kernel interface that both backends implement: dc::cpu (always) and dc::cuda (when
// built with nvcc). The op layer (ops_*.cc) validates arguments, allocates outputs and brings
// inputs into the layout each kernel documents; kernels trust it and never throw OpError.
// Compute is float32: inputs of other dtypes are converted by the op layer first, except in the
// 16-bit products (gemm_half, attention), which read bfloat16 / float16 operands as they are and
// accumulate in float32, as PyTorch's 16-bit matmul and scaled_dot_product_attention do.
#pragma once
#include "tensor.h"

namespace dc {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Max, Min, Pow };
enum class UnaryOp : uint8_t {
  Neg, Abs, Exp, Log, Sqrt, Rsqrt, Sin, Cos, Tanh, Sigmoid, Silu, Relu, GeluTanh, GeluErf,
  Square, Reciprocal, Clamp
};
enum class ReduceOp : uint8_t { Sum, Mean, Max, Min };

// Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; A is m x k after op.
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.f;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.f;
  float* c = nullptr;
  int64_t ldc = 0;
  // Batched: the i-th product uses a + i * stride_a, and so on.
  int64_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;
};

// The same product with A and B both bfloat16 or both float16 (raw 16-bit storage), products
// and sums in float32. The result alpha * op(A) op(B) + beta * C + bias (bias: n floats added to
// every row, optional) goes to C (float32) or, when c16 is set, is rounded once to the 16-bit
// dtype into c16 (leading dimension ldc, batch stride stride_c; C is then unused and beta must be
// 0): a 16-bit linear layer writes its output directly, as PyTorch's does.
struct HalfGemmArgs {
  DType dtype = DType::BF16;  // of A and B: BF16 or F16
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.f;
  const uint16_t* a = nullptr;
  int64_t lda = 0;
  const uint16_t* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.f;
  float* c = nullptr;
  uint16_t* c16 = nullptr;
  const float* bias = nullptr;
  int64_t ldc = 0;
  int64_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;
};

// Multi-head attention on float32 (or, when dtype is BF16 / F16, on 16-bit Q, K, V and output
// with float32 scores, softmax statistics and accumulators; the probabilities are rounded to
// the 16-bit dtype before the product with V, as PyTorch's CPU flash attention does) with the last (feature) dimension contiguous. Strides are
// in elements for (batch, head, sequence). K and V may have fewer heads than Q (grouped
// query attention): head h reads key head h / (heads / heads_kv).
struct AttentionArgs {
  DType dtype = DType::F32;  // of q, k, v and out
  const void* q = nullptr; int64_t q_sb = 0, q_sh = 0, q_ss = 0;
  const void* k = nullptr; int64_t k_sb = 0, k_sh = 0, k_ss = 0;
  const void* v = nullptr; int64_t v_sb = 0, v_sh = 0, v_ss = 0;
  // Optional additive mask over (batch, head, query, key); zero strides broadcast.
  const float* mask = nullptr; int64_t m_sb = 0, m_sh = 0, m_sq = 0, m_sk = 0;
  void* out = nullptr; int64_t o_sb = 0, o_sh = 0, o_ss = 0;
  int64_t batch = 0, heads = 0, heads_kv = 0, sq = 0, sk = 0, d = 0, dv = 0;
  float scale = 1.f;
};

// One image of a 2-D (depth 1) or 3-D convolution: input (channels, depth, height, width).
struct ConvGeometry {
  int64_t channels = 0, depth = 1, height = 0, width = 0;
  int64_t kernel_d = 1, kernel_h = 0, kernel_w = 0;
  int64_t stride_d = 1, stride_h = 1, stride_w = 1;
  int64_t pad_d = 0, pad_h = 0, pad_w = 0;
  int64_t dilation_d = 1, dilation_h = 1, dilation_w = 1;
  int64_t out_d = 1, out_h = 0, out_w = 0;
};

#define DC_KERNELS                                                                             \
  /* dst[i] = src[i] for any dtypes and strides of the same shape */                            \
  void copy(const Tensor& src, Tensor& dst);                                                    \
  /* contiguous dst */                                                                          \
  void fill(Tensor& dst, double value);                                                         \
  void arange(Tensor& dst, double start, double step);                                          \
  /* a, b: views expanded to out's shape; out contiguous. CPU: any float dtypes (computed in */ \
  /* float32, rounded once to out's dtype); CUDA: float32 only (the op layer widens for it) */   \
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);                     \
  /* op(a, s), or op(s, a) when scalar_first; a and out as for binary (CUDA: a contiguous) */    \
  void binary_scalar(BinaryOp op, const Tensor& a, float s, bool scalar_first, Tensor& out);   \
  void unary(UnaryOp op, const Tensor& x, Tensor& out, float p0, float p1);                    \
  /* x contiguous float32 viewed as (outer, r, inner) -> out (outer, inner) */                  \
  void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner,           \
              Tensor& out);                                                                     \
  /* sum |a - b| and sum |a| in float64 (b null: only sum |a|); contiguous float32 */          \
  void abs_diff_sums(const Tensor& a, const Tensor* b, double* sum_abs_diff, double* sum_abs_a); \
  /* softmax, layer_norm, rms_norm: x and out contiguous (rows, cols); CPU: any float dtypes, */ \
  /* CUDA: float32 only (the op layer widens for it) */                                        \
  void softmax(const Tensor& x, Tensor& out, int64_t rows, int64_t cols);                      \
  void layer_norm(const Tensor& x, const float* weight, const float* bias, Tensor& out,         \
                  int64_t rows, int64_t cols, float eps);                                       \
  void rms_norm(const Tensor& x, const float* weight, Tensor& out, int64_t rows, int64_t cols,  \
                float eps);                                                                     \
  /* x contiguous (n, channels, spatial) */                                                    \
  void group_norm(const Tensor& x, const float* weight, const float* bias, Tensor& out,         \
                  int64_t n, int64_t channels, int64_t spatial, int64_t groups, float eps);     \
  void gemm(const GemmArgs& g, Device device);                                                  \
  void gemm_half(const HalfGemmArgs& g, Device device);                                         \
  /* out (rows, cols) contiguous: out[r][c] = bias[c] */                                        \
  void broadcast_rows(float* out, const float* bias, int64_t rows, int64_t cols, Device device); \
  /* out (n, c, s) contiguous: out[i][j][k] += bias[j] */                                      \
  void add_channel_bias(float* out, const float* bias, int64_t n, int64_t c, int64_t s,         \
                        Device device);                                                         \
  void attention(const AttentionArgs& a, Device device);                                        \
  /* x (..., d) and out contiguous, dtypes as for softmax; cos / sin float32 expanded to x's */ \
  /* shape, last stride 1 */                                                                    \
  void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out, bool interleaved); \
  /* rows of weight (v, row_bytes) gathered by idx into out; returns out-of-range count */      \
  int64_t embedding(const Tensor& weight, const Tensor& idx, Tensor& out);                      \
  /* one image (channels, d, h, w) -> columns (channels*kd*kh*kw, out_d*out_h*out_w) */         \
  void im2col(const float* x, float* col, const ConvGeometry& g, Device device);                 \
  /* x contiguous float32 (rows, cols): the k largest (or smallest) of each row, in order */     \
  void topk(const Tensor& x, int64_t rows, int64_t cols, int64_t k, bool largest, Tensor& values, \
            Tensor& indices);                                                                   \
  /* x contiguous (planes, h, w) -> out (planes, oh, ow), nearest neighbour */                  \
  void upsample_nearest(const Tensor& x, Tensor& out, int64_t planes, int64_t h, int64_t w,     \
                        int64_t oh, int64_t ow);

namespace cpu {
DC_KERNELS
}
#if DITCACHE_WITH_CUDA
namespace cuda {
DC_KERNELS
}
#endif

}  // namespace dc
