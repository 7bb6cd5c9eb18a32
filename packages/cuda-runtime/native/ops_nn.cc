// Neural-network ops: normalisations, products, attention, rotary embeddings, convolution.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "ops_common.h"

namespace dc::ops {
namespace {

// A vector parameter (norm weight, bias) of length n on x's device, as contiguous float32.
Tensor param_vector(const char* op, const char* what, const Tensor& p, int64_t n, const Tensor& x) {
  check_float(op, p, what);
  check_same_device(op, {&x, &p});
  if (p.dim() != 1 || p.shape[0] != n)
    fail(op, what, " must have shape (", n, ",), got ", shape_str(p.shape));
  return staged_f32(p, true);
}

const float* ptr_or_null(const std::optional<Tensor>& t) { return t ? t->f32() : nullptr; }

// Row-major matrix access for a (rows x cols) view: either plain (trans = false, elements at
// r * ld + c) or transposed storage (trans = true, at c * ld + r). None when neither applies.
struct MatrixLayout {
  bool ok = false, trans = false;
  int64_t ld = 0;
};
MatrixLayout matrix_layout(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  MatrixLayout m;
  if (rows <= 1) s_row = std::max<int64_t>(cols, 1);
  if (cols <= 1) s_col = 1;
  if (s_col == 1 && s_row >= std::max<int64_t>(cols, 1)) {
    m.ok = true;
    m.ld = s_row;
  } else if (s_row == 1 && s_col >= std::max<int64_t>(rows, 1)) {
    m.ok = true;
    m.trans = true;
    m.ld = s_col;
  }
  return m;
}

// Collapses batch dimensions into one stride (flat batch index i at offset i * stride) when the
// layout allows it; broadcast (all-zero-stride) batches collapse to stride 0.
bool single_batch_stride(const Shape& shape, const Shape& strides, int64_t* stride) {
  int64_t inner_stride = 0, prev_stride = 0, prev_size = 0;
  bool have = false;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    if (shape[size_t(i)] == 1) continue;
    if (!have) {
      inner_stride = strides[size_t(i)];
      have = true;
    } else if (strides[size_t(i)] != prev_stride * prev_size) {
      return false;
    }
    prev_stride = strides[size_t(i)];
    prev_size = shape[size_t(i)];
  }
  *stride = inner_stride;
  return true;
}

// True when the product runs on 16-bit operands as they are (gemm_half): every operand shares
// one 16-bit dtype. Mixed dtypes compute in float32, as before.
bool half_product(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

// Operands of a product: as float32 (staged) or, for a 16-bit product, in their own dtype.
Tensor product_operand(const Tensor& t, bool half, bool need_contiguous) {
  if (!half) return staged_f32(t, need_contiguous);
  return need_contiguous && !t.is_contiguous() ? contiguous(t) : t;
}

template <typename Args>
void set_operands(Args& g, const Tensor& a, const Tensor& b) {
  if constexpr (std::is_same_v<Args, HalfGemmArgs>) {
    g.dtype = a.dtype;
    g.a = a.ptr<uint16_t>();
    g.b = b.ptr<uint16_t>();
  } else {
    g.a = a.f32();
    g.b = b.f32();
  }
}

}  // namespace

// The row kernels (softmax, layer and RMS norm, rotary embedding) take contiguous rows: of any
// float dtype where the device's kernels read every dtype, else float32.
namespace {
Tensor row_input(const Tensor& x) {
  if (!reads_any_float(x.device())) return staged_f32(x, true);
  return x.is_contiguous() ? x : contiguous(x);
}
DType row_output_dtype(const Tensor& x) { return reads_any_float(x.device()) ? x.dtype : DType::F32; }
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  check_float("softmax", x, "input");
  const int d = normalize_dim("softmax", dim, x.dim());
  const int last = x.dim() - 1;
  Tensor src = d == last ? x : transpose(x, d, last);
  Tensor fx = row_input(src);
  const int64_t cols = fx.shape[size_t(last)];
  const int64_t rows = cols ? fx.numel() / cols : 0;
  Tensor out = Tensor::empty(fx.shape, row_output_dtype(x), x.device());
  DC_DISPATCH(x.device(), softmax, fx, out, rows, cols);
  if (d != last) out = contiguous(transpose(out, d, last));
  return finish(out, x.dtype);
}

Tensor layer_norm(const Tensor& x, const std::optional<Tensor>& weight,
                  const std::optional<Tensor>& bias, double eps) {
  check_float("layerNorm", x, "input");
  if (x.dim() < 1) fail("layerNorm", "input must have at least one dimension");
  if (!(eps >= 0)) fail("layerNorm", "eps must be non-negative, got ", eps);
  const int64_t cols = x.shape.back();
  std::optional<Tensor> w, b;
  if (weight) w = param_vector("layerNorm", "weight", *weight, cols, x);
  if (bias) b = param_vector("layerNorm", "bias", *bias, cols, x);
  Tensor fx = row_input(x);
  Tensor out = Tensor::empty(x.shape, row_output_dtype(x), x.device());
  const int64_t rows = cols ? x.numel() / cols : 0;
  DC_DISPATCH(x.device(), layer_norm, fx, ptr_or_null(w), ptr_or_null(b), out, rows, cols, float(eps));
  return finish(out, x.dtype);
}

Tensor rms_norm(const Tensor& x, const std::optional<Tensor>& weight, double eps) {
  check_float("rmsNorm", x, "input");
  if (x.dim() < 1) fail("rmsNorm", "input must have at least one dimension");
  if (!(eps >= 0)) fail("rmsNorm", "eps must be non-negative, got ", eps);
  const int64_t cols = x.shape.back();
  std::optional<Tensor> w;
  if (weight) w = param_vector("rmsNorm", "weight", *weight, cols, x);
  Tensor fx = row_input(x);
  Tensor out = Tensor::empty(x.shape, row_output_dtype(x), x.device());
  const int64_t rows = cols ? x.numel() / cols : 0;
  DC_DISPATCH(x.device(), rms_norm, fx, ptr_or_null(w), out, rows, cols, float(eps));
  return finish(out, x.dtype);
}

Tensor group_norm(const Tensor& x, int64_t groups, const std::optional<Tensor>& weight,
                  const std::optional<Tensor>& bias, double eps) {
  check_float("groupNorm", x, "input");
  if (x.dim() < 2) fail("groupNorm", "input must be (N, C, ...), got ", shape_str(x.shape));
  const int64_t c = x.shape[1];
  if (groups <= 0 || c % groups != 0)
    fail("groupNorm", "groups (", groups, ") must divide the ", c, " channels");
  if (!(eps >= 0)) fail("groupNorm", "eps must be non-negative, got ", eps);
  std::optional<Tensor> w, b;
  if (weight) w = param_vector("groupNorm", "weight", *weight, c, x);
  if (bias) b = param_vector("groupNorm", "bias", *bias, c, x);
  Tensor fx = staged_f32(x, true);
  Tensor out = Tensor::empty(x.shape, DType::F32, x.device());
  const int64_t n = x.shape[0];
  const int64_t spatial = (n && c) ? x.numel() / (n * c) : 0;
  DC_DISPATCH(x.device(), group_norm, fx, ptr_or_null(w), ptr_or_null(b), out, n, c, spatial, groups, float(eps));
  return finish(out, x.dtype);
}

Tensor linear(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias) {
  check_float("linear", x, "input");
  check_float("linear", weight, "weight");
  check_same_device("linear", {&x, &weight});
  if (x.dim() < 1) fail("linear", "input must have at least one dimension");
  if (weight.dim() != 2) fail("linear", "weight must be 2-D (out, in), got ", shape_str(weight.shape));
  const int64_t k = x.shape.back(), n = weight.shape[0];
  if (weight.shape[1] != k)
    fail("linear", "input ", shape_str(x.shape), " has ", k, " features but weight ", shape_str(weight.shape), " expects ", weight.shape[1]);
  std::optional<Tensor> b;
  if (bias) b = param_vector("linear", "bias", *bias, n, x);
  const DType dtype = result_dtype({&x, &weight, bias ? &*bias : nullptr});
  const bool half = half_product(dtype);
  Tensor fx = product_operand(x, half, true);
  Tensor fw = product_operand(weight, half, false);
  // weight (n, k) as B = W^T: stored (n, k) row-major means trans_b.
  MatrixLayout wl = matrix_layout(n, k, fw.strides[0], fw.strides[1]);
  if (!wl.ok) {
    fw = contiguous(fw);
    wl = matrix_layout(n, k, fw.strides[0], fw.strides[1]);
  }
  Shape out_shape = x.shape;
  out_shape.back() = n;
  // A 16-bit product writes its rounded result (bias included) itself; float32 starts from the bias.
  Tensor out = Tensor::empty(out_shape, half ? dtype : DType::F32, x.device());
  const int64_t m = k ? fx.numel() / k : (n ? out.numel() / n : 0);
  auto run = [&](auto g) {
    g.m = m;
    g.n = n;
    g.k = k;
    g.lda = std::max<int64_t>(k, 1);
    g.trans_b = !wl.trans;
    g.ldb = wl.ld;
    set_operands(g, fx, fw);
    g.ldc = std::max<int64_t>(n, 1);
    if constexpr (std::is_same_v<decltype(g), HalfGemmArgs>) {
      g.bias = b ? b->f32() : nullptr;
      g.c16 = out.ptr<uint16_t>();
      DC_DISPATCH(x.device(), gemm_half, g, x.device());
    } else {
      if (b) DC_DISPATCH(x.device(), broadcast_rows, out.f32(), b->f32(), m, n, x.device());
      g.beta = b ? 1.f : 0.f;
      g.c = out.f32();
      DC_DISPATCH(x.device(), gemm, g, x.device());
    }
  };
  if (half)
    run(HalfGemmArgs{});
  else
    run(GemmArgs{});
  return finish(out, dtype);
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  check_float("matmul", a_in, "first operand");
  check_float("matmul", b_in, "second operand");
  check_same_device("matmul", {&a_in, &b_in});
  if (a_in.dim() < 1 || b_in.dim() < 1) fail("matmul", "operands must have at least one dimension");
  const DType dtype = result_dtype({&a_in, &b_in});
  const bool half = half_product(dtype);
  Tensor a = product_operand(a_in, half, false), b = product_operand(b_in, half, false);
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  if (a_vec) a = unsqueeze(a, 0);
  if (b_vec) b = unsqueeze(b, 1);
  const int64_t m = a.shape[size_t(a.dim() - 2)], k = a.shape.back();
  const int64_t n = b.shape.back();
  if (b.shape[size_t(b.dim() - 2)] != k)
    fail("matmul", "shapes ", shape_str(a_in.shape), " and ", shape_str(b_in.shape), " cannot be multiplied (", k, " vs ", b.shape[size_t(b.dim() - 2)], ")");
  const Shape a_batch(a.shape.begin(), a.shape.end() - 2), b_batch(b.shape.begin(), b.shape.end() - 2);
  const Shape batch = broadcast_shapes("matmul", a_batch, b_batch);
  const int64_t nbatch = checked_numel("matmul", batch);

  // Expand each operand to the full batch; collapse batch dims to one stride, or copy.
  auto prepare = [&](Tensor t, int64_t rows, int64_t cols, MatrixLayout* layout, int64_t* bstride) {
    Shape full = batch;
    full.push_back(rows);
    full.push_back(cols);
    t = broadcast_to(t, full);
    const Shape bs(t.shape.begin(), t.shape.end() - 2), bst(t.strides.begin(), t.strides.end() - 2);
    *layout = matrix_layout(rows, cols, t.strides[full.size() - 2], t.strides.back());
    if (!layout->ok || !single_batch_stride(bs, bst, bstride)) {
      t = contiguous(t);
      *layout = matrix_layout(rows, cols, t.strides[full.size() - 2], t.strides.back());
      *bstride = rows * cols;
    }
    if (nbatch <= 1) *bstride = 0;
    return t;
  };
  MatrixLayout la, lb;
  int64_t sa = 0, sb = 0;
  a = prepare(a, m, k, &la, &sa);
  b = prepare(b, k, n, &lb, &sb);

  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, half ? dtype : DType::F32, a.device());
  auto run = [&](auto g) {
    g.m = m;
    g.n = n;
    g.k = k;
    g.trans_a = la.trans;
    g.lda = la.ld;
    g.trans_b = lb.trans;
    g.ldb = lb.ld;
    set_operands(g, a, b);
    g.ldc = std::max<int64_t>(n, 1);
    g.batch = nbatch;
    g.stride_a = sa;
    g.stride_b = sb;
    g.stride_c = m * n;
    if constexpr (std::is_same_v<decltype(g), HalfGemmArgs>) {
      g.c16 = out.ptr<uint16_t>();
      DC_DISPATCH(a.device(), gemm_half, g, a.device());
    } else {
      g.c = out.f32();
      DC_DISPATCH(a.device(), gemm, g, a.device());
    }
  };
  if (half)
    run(HalfGemmArgs{});
  else
    run(GemmArgs{});
  if (a_vec) out = squeeze(out, -2);
  if (b_vec) out = squeeze(out, -1);
  return finish(out, dtype);
}

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                 const std::optional<Tensor>& mask_in, std::optional<double> scale, bool heads_last) {
  const char* op = "attention";
  check_float(op, q_in, "query");
  check_float(op, k_in, "key");
  check_float(op, v_in, "value");
  check_same_device(op, {&q_in, &k_in, &v_in, mask_in ? &*mask_in : nullptr});
  if (q_in.dim() != 4 || k_in.dim() != 4 || v_in.dim() != 4)
    fail(op, "query, key and value must be 4-D (batch, heads, seq, dim), got ", shape_str(q_in.shape),
         ", ", shape_str(k_in.shape), ", ", shape_str(v_in.shape));
  const int64_t B = q_in.shape[0], H = q_in.shape[1], Sq = q_in.shape[2], D = q_in.shape[3];
  const int64_t Hkv = k_in.shape[1], Sk = k_in.shape[2], Dv = v_in.shape[3];
  if (k_in.shape[0] != B || v_in.shape[0] != B)
    fail(op, "batch sizes differ: query ", shape_str(q_in.shape), ", key ", shape_str(k_in.shape), ", value ", shape_str(v_in.shape));
  if (k_in.shape[3] != D) fail(op, "query dim ", D, " differs from key dim ", k_in.shape[3], " (", shape_str(q_in.shape), " vs ", shape_str(k_in.shape), ")");
  if (v_in.shape[1] != Hkv || v_in.shape[2] != Sk)
    fail(op, "key ", shape_str(k_in.shape), " and value ", shape_str(v_in.shape), " must agree in heads and length");
  if (Hkv == 0 || H % Hkv != 0) fail(op, "query heads (", H, ") must be a multiple of key heads (", Hkv, ")");
  const double sc = scale ? *scale : (D > 0 ? 1.0 / std::sqrt(double(D)) : 1.0);
  if (!std::isfinite(sc)) fail(op, "scale must be finite, got ", sc);
  const DType dtype = result_dtype({&q_in, &k_in, &v_in});
  const bool half = half_product(dtype);

  // The kernel needs a unit stride on the feature dimension and row strides that cover it.
  auto prep = [half](const Tensor& t, int64_t rows, int64_t cols) {
    Tensor f = product_operand(t, half, false);
    const int64_t ss = f.strides[2], ds = f.strides[3];
    if (!((cols <= 1 || ds == 1) && (rows <= 1 || ss >= cols))) f = contiguous(f);
    return f;
  };
  Tensor q = prep(q_in, Sq, D), k = prep(k_in, Sk, D), v = prep(v_in, Sk, Dv);
  std::optional<Tensor> mask;
  if (mask_in) {
    check_float(op, *mask_in, "mask");
    const Shape target = {B, H, Sq, Sk};
    if (mask_in->dim() > 4) fail(op, "mask ", shape_str(mask_in->shape), " has more than 4 dimensions");
    const Shape bs = broadcast_shapes(op, mask_in->shape, target);
    if (bs != target) fail(op, "mask ", shape_str(mask_in->shape), " does not broadcast to ", shape_str(target));
    mask = broadcast_to(staged_f32(*mask_in, false), target);
  }
  const Shape out_shape = heads_last ? Shape{B, Sq, H, Dv} : Shape{B, H, Sq, Dv};
  Tensor out = Tensor::empty(out_shape, half ? dtype : DType::F32, q.device());
  if (out.numel() == 0) return finish(out, dtype);
  AttentionArgs a;
  a.dtype = out.dtype;
  auto row_stride = [](const Tensor& t, int64_t rows, int64_t cols) { return rows <= 1 ? std::max<int64_t>(cols, 1) : t.strides[2]; };
  a.q = q.raw(); a.q_sb = q.strides[0]; a.q_sh = q.strides[1]; a.q_ss = row_stride(q, Sq, D);
  a.k = k.raw(); a.k_sb = k.strides[0]; a.k_sh = k.strides[1]; a.k_ss = row_stride(k, Sk, D);
  a.v = v.raw(); a.v_sb = v.strides[0]; a.v_sh = v.strides[1]; a.v_ss = row_stride(v, Sk, Dv);
  if (mask) {
    a.mask = mask->f32();
    a.m_sb = mask->strides[0]; a.m_sh = mask->strides[1]; a.m_sq = mask->strides[2]; a.m_sk = mask->strides[3];
  }
  a.out = out.raw();
  if (heads_last) {
    a.o_sb = Sq * H * Dv; a.o_sh = Dv; a.o_ss = H * Dv;
  } else {
    a.o_sb = H * Sq * Dv; a.o_sh = Sq * Dv; a.o_ss = Dv;
  }
  a.batch = B; a.heads = H; a.heads_kv = Hkv; a.sq = Sq; a.sk = Sk; a.d = D; a.dv = Dv;
  a.scale = float(sc);
  if (Sk == 0) fail(op, "key length is 0: softmax over no keys is undefined");
  DC_DISPATCH(q.device(), attention, a, q.device());
  return finish(out, dtype);
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool interleaved) {
  const char* op = "rope";
  check_float(op, x, "input");
  check_float(op, cos, "cos");
  check_float(op, sin, "sin");
  check_same_device(op, {&x, &cos, &sin});
  if (x.dim() < 1 || x.shape.back() % 2 != 0)
    fail(op, "the last dimension of the input must be even, got ", shape_str(x.shape));
  auto prep = [&](const Tensor& t, const char* what) {
    if (t.dim() < 1 || t.shape.back() != x.shape.back())
      fail(op, what, " ", shape_str(t.shape), " must end in the input's last dimension ", x.shape.back());
    if (broadcast_shapes(op, t.shape, x.shape) != x.shape)
      fail(op, what, " ", shape_str(t.shape), " does not broadcast to the input ", shape_str(x.shape));
    Tensor f = staged_f32(t, false);
    if (f.strides.back() != 1 && f.shape.back() > 1) f = contiguous(f);
    return broadcast_to(f, x.shape);
  };
  Tensor c = prep(cos, "cos"), s = prep(sin, "sin");
  Tensor fx = row_input(x);
  Tensor out = Tensor::empty(x.shape, row_output_dtype(x), x.device());
  DC_DISPATCH(x.device(), rope, fx, c, s, out, interleaved);
  return finish(out, x.dtype);
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  const char* op = "embedding";
  check_same_device(op, {&weight, &indices});
  if (weight.dim() != 2) fail(op, "weight must be 2-D (vocab, dim), got ", shape_str(weight.shape));
  if (indices.dtype != DType::I32) fail(op, "indices must be int32, got ", indices.describe());
  Tensor w = contiguous(weight), idx = contiguous(indices);
  Shape out_shape = indices.shape;
  out_shape.push_back(weight.shape[1]);
  if (out_shape.size() > size_t(kMaxDims)) fail(op, "indices have too many dimensions");
  Tensor out = Tensor::empty(out_shape, weight.dtype, weight.device());
  const int64_t bad = DC_DISPATCH(weight.device(), embedding, w, idx, out);
  if (bad > 0)
    fail(op, bad, " of ", indices.numel(), " indices lie outside [0, ", weight.shape[0], ")");
  return out;
}

namespace {

// 2-D (dims = 2) or 3-D (dims = 3) convolution through im2col and one GEMM per image and group.
Tensor convolution(const char* op, int dims, const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                   const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                   const std::vector<int64_t>& dilation, int64_t groups) {
  const char* layout = dims == 2 ? "(N, C, H, W)" : "(N, C, D, H, W)";
  check_float(op, x, "input");
  check_float(op, weight, "weight");
  check_same_device(op, {&x, &weight});
  if (x.dim() != dims + 2) fail(op, "input must be ", dims + 2, "-D ", layout, ", got ", shape_str(x.shape));
  if (weight.dim() != dims + 2)
    fail(op, "weight must be ", dims + 2, "-D (out, in / groups, kernel...), got ", shape_str(weight.shape));
  if (int(stride.size()) != dims || int(padding.size()) != dims || int(dilation.size()) != dims)
    fail(op, "stride, padding and dilation need ", dims, " values each");
  for (int i = 0; i < dims; ++i) {
    if (stride[size_t(i)] < 1) fail(op, "stride must be >= 1, got ", stride[size_t(i)]);
    if (dilation[size_t(i)] < 1) fail(op, "dilation must be >= 1, got ", dilation[size_t(i)]);
    if (padding[size_t(i)] < 0) fail(op, "padding must be >= 0, got ", padding[size_t(i)]);
  }
  const int64_t N = x.shape[0], C = x.shape[1], O = weight.shape[0];
  if (groups < 1 || C % groups != 0 || O % groups != 0)
    fail(op, "groups (", groups, ") must divide the input channels (", C, ") and output channels (", O, ")");
  const int64_t Cg = C / groups, Og = O / groups;
  if (weight.shape[1] != Cg)
    fail(op, "weight ", shape_str(weight.shape), " expects ", weight.shape[1], " input channels per group, input ", shape_str(x.shape), " has ", Cg);
  // Spatial axes right-aligned into (depth, height, width); a 2-D convolution has depth 1.
  int64_t in[3] = {1, 1, 1}, kern[3] = {1, 1, 1}, st[3] = {1, 1, 1}, pad[3] = {0, 0, 0}, dil[3] = {1, 1, 1}, out[3];
  for (int i = 0; i < dims; ++i) {
    const int a = 3 - dims + i;
    in[a] = x.shape[size_t(2 + i)];
    kern[a] = weight.shape[size_t(2 + i)];
    st[a] = stride[size_t(i)];
    pad[a] = padding[size_t(i)];
    dil[a] = dilation[size_t(i)];
  }
  for (int a = 0; a < 3; ++a) {
    const int64_t span = dil[a] * (kern[a] - 1) + 1;
    if (in[a] + 2 * pad[a] < span)
      fail(op, "kernel ", shape_str(weight.shape), " does not fit the padded input ", shape_str(x.shape));
    out[a] = (in[a] + 2 * pad[a] - span) / st[a] + 1;
  }
  ConvGeometry g;
  g.channels = Cg;
  g.depth = in[0]; g.height = in[1]; g.width = in[2];
  g.kernel_d = kern[0]; g.kernel_h = kern[1]; g.kernel_w = kern[2];
  g.stride_d = st[0]; g.stride_h = st[1]; g.stride_w = st[2];
  g.pad_d = pad[0]; g.pad_h = pad[1]; g.pad_w = pad[2];
  g.dilation_d = dil[0]; g.dilation_h = dil[1]; g.dilation_w = dil[2];
  g.out_d = out[0]; g.out_h = out[1]; g.out_w = out[2];
  std::optional<Tensor> b;
  if (bias) b = param_vector(op, "bias", *bias, O, x);
  const DType dtype = result_dtype({&x, &weight, bias ? &*bias : nullptr});
  Tensor fx = staged_f32(x, true), fw = staged_f32(weight, true);
  Shape out_shape = {N, O};
  for (int i = 0; i < dims; ++i) out_shape.push_back(out[3 - dims + i]);
  Tensor result = Tensor::empty(out_shape, DType::F32, x.device());
  const int64_t spatial = g.out_d * g.out_h * g.out_w, patch = Cg * g.kernel_d * g.kernel_h * g.kernel_w;
  const int64_t image = g.depth * g.height * g.width;
  const bool pointwise = patch == Cg && st[0] * st[1] * st[2] == 1 && pad[0] + pad[1] + pad[2] == 0;
  std::optional<Tensor> col;
  if (!pointwise) col = Tensor::empty({patch, spatial}, DType::F32, x.device());
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* xin = fx.f32() + (n * C + gi * Cg) * image;
      if (!pointwise) DC_DISPATCH(x.device(), im2col, xin, col->f32(), g, x.device());
      GemmArgs mm;
      mm.m = Og;
      mm.n = spatial;
      mm.k = patch;
      mm.a = fw.f32() + gi * Og * patch;
      mm.lda = std::max<int64_t>(patch, 1);
      mm.b = pointwise ? xin : col->f32();
      mm.ldb = std::max<int64_t>(spatial, 1);
      mm.c = result.f32() + (n * O + gi * Og) * spatial;
      mm.ldc = std::max<int64_t>(spatial, 1);
      DC_DISPATCH(x.device(), gemm, mm, x.device());
    }
  }
  if (b) DC_DISPATCH(x.device(), add_channel_bias, result.f32(), b->f32(), N, O, spatial, x.device());
  return finish(result, dtype);
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
              const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
              const std::vector<int64_t>& dilation, int64_t groups) {
  return convolution("conv2d", 2, x, weight, bias, stride, padding, dilation, groups);
}

Tensor conv3d(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
              const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
              const std::vector<int64_t>& dilation, int64_t groups) {
  return convolution("conv3d", 3, x, weight, bias, stride, padding, dilation, groups);
}

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  const char* op = "topk";
  check_float(op, x, "input");
  if (x.dim() < 1) fail(op, "input must have at least one dimension");
  const int d = normalize_dim(op, dim, x.dim());
  const int last = x.dim() - 1;
  const int64_t n = x.shape[size_t(d)];
  if (k < 0 || k > n) fail(op, "k = ", k, " is outside [0, ", n, "] for dimension ", dim, " of ", shape_str(x.shape));
  Tensor src = staged_f32(d == last ? x : transpose(x, d, last), true);
  const int64_t rows = n ? src.numel() / n : 0;
  Shape out_shape = src.shape;
  out_shape.back() = k;
  Tensor values = Tensor::empty(out_shape, DType::F32, x.device());
  Tensor indices = Tensor::empty(out_shape, DType::I32, x.device());
  DC_DISPATCH(x.device(), topk, src, rows, n, k, largest, values, indices);
  if (d != last) {
    values = contiguous(transpose(values, d, last));
    indices = contiguous(transpose(indices, d, last));
  }
  return {finish(values, x.dtype), indices};
}

Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = "upsampleNearest2d";
  check_float(op, x, "input");
  if (x.dim() != 4) fail(op, "input must be 4-D (N, C, H, W), got ", shape_str(x.shape));
  if (out_h <= 0 || out_w <= 0) fail(op, "output size must be positive, got ", out_h, "x", out_w);
  const int64_t h = x.shape[2], w = x.shape[3];
  if (h == 0 || w == 0) fail(op, "input ", shape_str(x.shape), " is empty");
  Tensor fx = staged_f32(x, true);
  Tensor out = Tensor::empty({x.shape[0], x.shape[1], out_h, out_w}, DType::F32, x.device());
  checked_numel(op, out.shape);
  DC_DISPATCH(x.device(), upsample_nearest, fx, out, x.shape[0] * x.shape[1], h, w, out_h, out_w);
  return finish(out, x.dtype);
}

}  // namespace dc::ops
