// Building blocks shared by attention and the FFNs: RMSNorm, Linear, SwiGLU, row softmax.
#pragma once

#include "dsv2/tensor.hpp"

namespace dsv2 {

/// RMSNorm: y_t = w ⊙ x_t / sqrt(mean(x_t²) + eps), one row per token.
///   x [T, n], w [n] → [T, n]
template <typename S>
Mat<S> rms_norm(MatCRef<S> x, const Eigen::Ref<const Vec<S>>& w, double eps);

/// nn.Linear without bias: y = x Wᵀ.
///   x [T, in], W [out, in] (PyTorch layout) → [T, out]
template <typename S>
Mat<S> linear(MatCRef<S> x, MatCRef<S> W);

/// SiLU(z) = z·sigmoid(z), elementwise.
template <typename S>
Mat<S> silu(MatCRef<S> z);

/// SwiGLU FFN: W_down (SiLU(x W_gateᵀ) ⊙ x W_upᵀ).
///   x [T, d], W_gate [w, d], W_up [w, d], W_down [d, w] → [T, d]
template <typename S>
Mat<S> swiglu(MatCRef<S> x, MatCRef<S> W_gate, MatCRef<S> W_up, MatCRef<S> W_down);

/// Softmax of each row, in place, max-subtracted.
///   z [R, C]
template <typename S>
void softmax_rows(Mat<S>& z);

}  // namespace dsv2
