// Matrix aliases of the oracle.
//
// Every 2-D tensor — activations [T, width] and weights — is a dense row-major Eigen matrix, so
// that a PyTorch nn.Linear weight of shape (out, in) maps onto Mat<S> without a transpose and a
// token's activations are one contiguous row. y = x Wᵀ is written `x * W.transpose()`.
// 1-D tensors (norm weights) are Vec<S>.
#pragma once

#include <Eigen/Dense>
#include <cstdint>

namespace dsv2 {

template <typename S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <typename S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;

template <typename S>
using RowVec = Eigen::Matrix<S, 1, Eigen::Dynamic>;

/// Read-only view of any row-major matrix or block of one (function parameters).
template <typename S>
using MatCRef = Eigen::Ref<const Mat<S>, 0, Eigen::OuterStride<>>;

/// A row-major matrix over borrowed memory: PyTorch (out, in) weights mapped in place.
template <typename S>
using MatMap = Eigen::Map<const Mat<S>>;

using IdxMat = Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace dsv2
