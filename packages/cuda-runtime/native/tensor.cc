#include "tensor.h"

namespace dc {

Shape Tensor::contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return st;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  int64_t n = checked_numel("empty", shape);
  Tensor t;
  t.storage = Storage::allocate(size_t(n) * dtype_size(dtype), device);
  t.dtype = dtype;
  t.shape = shape;
  t.strides = contiguous_strides(shape);
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape[i] == 1) continue;
    if (strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

Tensor Tensor::view(const Shape& new_shape, const Shape& new_strides, int64_t element_offset) const {
  Tensor t = *this;
  t.shape = new_shape;
  t.strides = new_strides;
  t.byte_offset = size_t(int64_t(byte_offset) + element_offset * int64_t(dtype_size(dtype)));
  return t;
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype)) + " " + shape_str(shape) + " on " + device().str();
}

}  // namespace dc
