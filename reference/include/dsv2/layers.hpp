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
/// Computed by linear_gemm for more than kSmallBatch rows, by linear_rows for fewer: the same
/// product, in the loop order that is fast for that many tokens (docs/benchmarks.md).
template <typename S>
Mat<S> linear(MatCRef<S> x, MatCRef<S> W);

/// Up to this many rows, linear() uses linear_rows.
inline constexpr int64_t kSmallBatch = 16;

/// The plain form of linear(): one Eigen product x Wᵀ (Eigen's blocked GEMM, on all threads
/// when called outside a parallel region).   x [T, in], W [out, in] → [T, out]
template <typename S>
Mat<S> linear_gemm(MatCRef<S> x, MatCRef<S> W);

/// The same product for a few tokens (decode; the tokens of one expert), in another loop order:
/// y(t, j) = x_t · W_j, one dot product per token and output row, the output rows split over
/// the threads. Each weight row is read from memory once and used for all T tokens while it is
/// in L1, so the product runs at the speed of reading W. The GEMM form first copies (packs) W
/// into blocks and, for T = 1, runs on one thread; at T = 2…16 it is 2–6× slower on V2-Lite
/// shapes. Equal to linear_gemm up to the order of the sums (test_layers, "linear forms").
///   x [T, in], W [out, in] → [T, out]
template <typename S>
Mat<S> linear_rows(MatCRef<S> x, MatCRef<S> W);

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
