// CudaBackend (cuda/src/backend_cuda.cu): the engine's Backend interface (dsv2/engine/backend.hpp)
// on the GPU, through the kernels of cuda/src and cuBLAS. Only in builds with the CUDA path (the
// dsv2_cuda library; DSV2_HAVE_CUDA for the app). Proved operation by operation against
// HostBackend by tests/cuda/test_cuda_backend.cpp. NOT YET RUN ON A GPU.
#pragma once

#include <memory>

#include "dsv2/engine/backend.hpp"

namespace dsv2::cuda {

/// The GPU (device 0). Throws std::runtime_error saying why when there is no usable device.
std::unique_ptr<engine::Backend> make_cuda_backend();

}  // namespace dsv2::cuda
