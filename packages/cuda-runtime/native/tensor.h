// A strided view of a Storage. Views (reshape, permute, slice, expand) share the storage;
// kernels receive tensors whose layout the op layer has already validated.
#pragma once
#include <memory>

#include "common.h"
#include "storage.h"

namespace dc {

struct Tensor {
  std::shared_ptr<Storage> storage;
  size_t byte_offset = 0;
  DType dtype = DType::F32;
  Shape shape;
  Shape strides;  // in elements

  static Tensor empty(const Shape& shape, DType dtype, Device device);
  static Shape contiguous_strides(const Shape& shape);

  Device device() const { return storage->device(); }
  int dim() const { return int(shape.size()); }
  int64_t numel() const;
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  char* raw() const { return static_cast<char*>(storage->data()) + byte_offset; }
  template <typename T>
  T* ptr() const { return reinterpret_cast<T*>(raw()); }
  float* f32() const { return ptr<float>(); }

  // A view of the same storage with another shape / strides / element offset.
  Tensor view(const Shape& new_shape, const Shape& new_strides, int64_t element_offset = 0) const;
  std::string describe() const;  // "float32 (2, 3) cpu" for error messages
};

}  // namespace dc
