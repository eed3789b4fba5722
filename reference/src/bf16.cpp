#include "dsv2/bf16.hpp"

#include <algorithm>
#include <cstring>

namespace dsv2 {

uint16_t float_to_bf16_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN
    const uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;  // round to nearest, ties to even (overflow to inf is correct rounding)
    return uint16_t(u >> 16);
}

float bf16_bits_to_float(uint16_t b) {
    const uint32_t u = uint32_t(b) << 16;
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& x) {
    std::vector<uint16_t> y(x.size());
    std::transform(x.begin(), x.end(), y.begin(), float_to_bf16_bits);
    return y;
}

std::vector<float> from_bf16(const std::vector<uint16_t>& x) {
    std::vector<float> y(x.size());
    std::transform(x.begin(), x.end(), y.begin(), bf16_bits_to_float);
    return y;
}

}  // namespace dsv2
