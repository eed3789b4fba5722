// ex10 — the split-KV combine as a CUDA kernel: a solution. One block per row; every thread
// recomputes the (cheap) chunk weights and combines a strided set of the d_v columns.
#include <stdexcept>

#include "dsv2/cuda/buffer.cuh"
#include "dsv2/cuda/check.cuh"
#include "ex10.hpp"

namespace ex10 {

namespace {

constexpr int kThreads = 128;

__global__ void combine_kernel(const float* __restrict__ o_part, const float* __restrict__ lse_part, int C, int d_v,
                               float* __restrict__ o, float* __restrict__ lse) {
    const int r = blockIdx.x;
    const float* l = lse_part + size_t(r) * C;
    float m = -INFINITY;
    for (int c = 0; c < C; ++c) m = fmaxf(m, l[c]);
    float* out = o + size_t(r) * d_v;
    if (m == -INFINITY) {  // every chunk masked
        for (int k = threadIdx.x; k < d_v; k += blockDim.x) out[k] = 0.f;
        if (threadIdx.x == 0) lse[r] = -INFINITY;
        return;
    }
    float sum = 0.f;
    for (int c = 0; c < C; ++c) sum += expf(l[c] - m);  // expf(−inf) = 0
    for (int k = threadIdx.x; k < d_v; k += blockDim.x) {
        float acc = 0.f;
        for (int c = 0; c < C; ++c) {
            const float w = expf(l[c] - m);
            if (w > 0.f) acc += w * o_part[(size_t(r) * C + c) * d_v + k];
        }
        out[k] = acc / sum;
    }
    if (threadIdx.x == 0) lse[r] = m + logf(sum);
}

}  // namespace

void combine(const std::vector<float>& o_part, const std::vector<float>& lse_part, int R, int C, int d_v,
             std::vector<float>* o, std::vector<float>* lse) {
    if (R < 0 || C <= 0 || d_v <= 0 || o_part.size() != size_t(R) * C * d_v || lse_part.size() != size_t(R) * C)
        throw std::invalid_argument("ex10::combine: shape mismatch");
    if (R == 0) {
        o->clear();
        lse->clear();
        return;
    }
    dsv2::cuda::DeviceBuffer<float> d_o_part(o_part), d_lse_part(lse_part), d_o(size_t(R) * d_v), d_lse(static_cast<size_t>(R));
    combine_kernel<<<R, kThreads>>>(d_o_part.data(), d_lse_part.data(), C, d_v, d_o.data(), d_lse.data());
    DSV2_LAUNCH_CHECK(combine_kernel);
    *o = d_o.download();
    *lse = d_lse.download();
}

}  // namespace ex10
