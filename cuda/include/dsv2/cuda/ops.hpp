// Host-side API of the CUDA path, callable from plain C++ (no CUDA headers needed).
#pragma once

#include <string>
#include <vector>

namespace dsv2::cuda {

/// Number of usable CUDA devices; 0 (and `why` says why) when there is no driver or device.
int device_count(std::string* why = nullptr);

/// A one-line description of device 0 ("NVIDIA H200, sm_90, 139 GiB").
std::string device_name();

/// CTest's skip code: a GPU test without a device exits with it (SKIP_RETURN_CODE 77).
inline constexpr int kSkipExitCode = 77;

/// The first lines of every GPU test program: with a device, prints "device: NAME" and returns
/// true; without one, prints "SKIPPED: no CUDA device (why)" and returns false, and the test
/// returns kSkipExitCode, so a skip always says why.
bool announce_device();

/// DSV2_GPU_TEST_QUICK=1 (tools/gpu/gpu_check.sh sets it for its compute-sanitizer runs, which
/// slow a program 10–100×): a GPU test then runs its quick case list — small shapes that still
/// take every code path (n_h ≤ 16, at most a few hundred keys, one bf16 case) — and says so.
bool gpu_test_quick();

/// RMSNorm on the GPU over host arrays: reproduces dsv2::rms_norm (reference/src/layers.cpp),
/// fp32. Proved by tests/cuda/test_cuda_rmsnorm.cpp.
///   x [T, n] row-major, w [n] → y [T, n]
std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, int T, int n, float eps);

}  // namespace dsv2::cuda
