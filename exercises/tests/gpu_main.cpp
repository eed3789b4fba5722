// The main of the CUDA exercise tests: without a device it says why and exits 77, which CTest
// reports as skipped (as tests/cuda/test_cuda_rmsnorm.cpp does); with one it runs the Catch2 tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "dsv2/cuda/ops.hpp"

int main(int argc, char** argv) {
    if (!dsv2::cuda::announce_device()) return dsv2::cuda::kSkipExitCode;
    return Catch::Session().run(argc, argv);
}
