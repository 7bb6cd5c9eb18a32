// Vectorised transcendental kernels for the CPU backend (AVX-512 / AVX2, chosen at run time):
// exp within about one ulp over the whole float range, and the activations built on it.
// libm's scalar calls cannot vectorise and dominated transformer time.
#pragma once
#include <cstdint>

namespace dc::cpu {

/** y[i] = e^x[i]. */
void vector_exp(const float* x, float* y, int64_t n);
/** y[i] = 1 / (1 + e^-x[i]). */
void vector_sigmoid(const float* x, float* y, int64_t n);
/** y[i] = x[i] / (1 + e^-x[i]). */
void vector_silu(const float* x, float* y, int64_t n);
/** GELU's tanh form, computed as x * sigmoid(2u) with u = sqrt(2/pi) (x + 0.044715 x^3), which equals 0.5 x (1 + tanh(u)). */
void vector_gelu_tanh(const float* x, float* y, int64_t n);
/** y[i] = e^(x[i] - shift); returns the sum of the y[i] (for softmax). */
double vector_exp_shifted_sum(const float* x, float shift, float* y, int64_t n);

}  // namespace dc::cpu
