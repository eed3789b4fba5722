#include <cstdio>
#include <cstdlib>
#include <string>

#include "dsv2/cuda/check.cuh"
#include "dsv2/cuda/ops.hpp"

namespace dsv2::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

bool sync_after_launch() {
    static const bool on = [] {
        const char* v = std::getenv("DSV2_CUDA_SYNC");
        return v && std::string(v) == "1";
    }();
    return on;
}

int device_count(std::string* why) {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device";
    return n;
}

bool announce_device() {
    std::string why;
    if (device_count(&why) == 0) {
        std::printf("SKIPPED: no CUDA device (%s)\n", why.c_str());
        return false;
    }
    std::printf("device: %s\n", device_name().c_str());
    return true;
}

bool gpu_test_quick() {
    const char* v = std::getenv("DSV2_GPU_TEST_QUICK");
    return v && std::string(v) == "1";
}

std::string device_name() {
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    return std::string(p.name) + ", sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
           std::to_string(p.totalGlobalMem >> 30) + " GiB";
}

}  // namespace dsv2::cuda
