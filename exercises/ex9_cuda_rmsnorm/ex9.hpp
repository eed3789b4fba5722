// ex9 — RMSNorm as a CUDA kernel (the twin of ex1). Plain C++ interface: the tests need no CUDA
// headers. Do not change this file.
#pragma once

#include <vector>

namespace ex9 {

/// RMSNorm on the GPU over host arrays, fp32: y_t = w ⊙ x_t / sqrt(mean(x_t²) + eps).
///   x [T, n] row-major, w [n] → y [T, n]. T = 0 gives an empty result.
std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, int T, int n, float eps);

}  // namespace ex9
