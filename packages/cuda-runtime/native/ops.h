// The op layer: every public tensor operation. Each op validates shapes, dtypes and devices
// (throwing an OpError that names the op and the offending shapes), allocates its output and
// dispatches to the CPU or CUDA kernel. Nothing a caller passes may reach a kernel unchecked.
#pragma once
#include <optional>
#include <vector>

#include "kernels.h"
#include "tensor.h"

namespace dc::ops {

// ---- creation and movement ----
Tensor from_host(const void* data, DType src_type, int64_t count, const Shape& shape, DType dtype,
                 Device device);
Tensor full(const Shape& shape, double value, DType dtype, Device device);
Tensor arange(double start, double end, double step, DType dtype, Device device);
Tensor to_device(const Tensor& t, Device device);
Tensor cast(const Tensor& t, DType dtype);
Tensor contiguous(const Tensor& t);
Tensor clone(const Tensor& t);
// Copies the tensor's elements, in row-major order, to host memory converted to float32
// (or int32 for int32 tensors), or as raw storage-dtype bytes.
void to_host_f32(const Tensor& t, float* dst);
void to_host_i32(const Tensor& t, int32_t* dst);
void to_host_raw(const Tensor& t, void* dst);

// ---- views (no copy unless stated) ----
Tensor reshape(const Tensor& t, const Shape& shape);  // copies when the layout forbids a view
Tensor permute(const Tensor& t, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& t, int64_t d0, int64_t d1);
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step);
Tensor expand(const Tensor& t, const Shape& shape);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor unsqueeze(const Tensor& t, int64_t dim);
std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim);
Tensor concat(const std::vector<Tensor>& ts, int64_t dim);  // copies

// ---- arithmetic ----
const char* op_name(BinaryOp op);
const char* op_name(UnaryOp op);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first);
Tensor unary(UnaryOp op, const Tensor& x, float p0 = 0.f, float p1 = 0.f);
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
double mean_abs(const Tensor& x);
// mean|a - b| / mean|a|: how far b moved from a, relative to a's size (one pass).
double rel_l1(const Tensor& a, const Tensor& b);

// ---- neural-network ops ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor layer_norm(const Tensor& x, const std::optional<Tensor>& weight,
                  const std::optional<Tensor>& bias, double eps);
Tensor rms_norm(const Tensor& x, const std::optional<Tensor>& weight, double eps);
Tensor group_norm(const Tensor& x, int64_t groups, const std::optional<Tensor>& weight,
                  const std::optional<Tensor>& bias, double eps);
Tensor linear(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias);
Tensor matmul(const Tensor& a, const Tensor& b);
// q (B, H, Sq, D), k (B, Hkv, Sk, D), v (B, Hkv, Sk, Dv), mask additive, broadcastable to
// (B, H, Sq, Sk). Output (B, H, Sq, Dv), or (B, Sq, H, Dv) when heads_last.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::optional<Tensor>& mask,
                 std::optional<double> scale, bool heads_last);
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool interleaved);
Tensor embedding(const Tensor& weight, const Tensor& indices);
Tensor conv2d(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
              const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
              const std::vector<int64_t>& dilation, int64_t groups);
Tensor conv3d(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
              const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
              const std::vector<int64_t>& dilation, int64_t groups);
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w);
// The k largest (or smallest) entries along `dim`, in rank order, and their int32 indices.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest);

// ---- files ----
// A view of `shape` elements of `dtype` at byte_offset inside a mapped file (read-only).
Tensor from_mapping(const std::shared_ptr<Storage>& mapping, size_t byte_offset, DType dtype,
                    const Shape& shape);

}  // namespace dc::ops
