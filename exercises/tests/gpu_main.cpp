// The main of the CUDA exercise tests: without a device it says why and exits 77, which CTest
// reports as skipped (as tests/test_cuda_rmsnorm.cpp does); with one it runs the Catch2 tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "dsv2/cuda/ops.hpp"

int main(int argc, char** argv) {
    std::string why;
    if (dsv2::cuda::device_count(&why) == 0) {
        std::printf("SKIPPED: no CUDA device (%s)\n", why.c_str());
        return 77;
    }
    std::printf("device: %s\n", dsv2::cuda::device_name().c_str());
    return Catch::Session().run(argc, argv);
}
