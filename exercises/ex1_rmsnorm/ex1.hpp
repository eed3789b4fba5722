// ex1 — RMSNorm. The function you write (in stub.cpp) and the fixed tests (tests/test_ex1.cpp)
// meet here. Do not change this file.
#pragma once

#include "dsv2/tensor.hpp"

namespace ex1 {

/// y_t = w ⊙ x_t / sqrt(mean_k(x_t,k²) + eps), one row per token.
///   x [T, n], w [n] → y [T, n]
dsv2::Mat<double> rms_norm(const dsv2::Mat<double>& x, const dsv2::Vec<double>& w, double eps);

}  // namespace ex1
