// bfloat16 on the host: round to nearest even, and back. One definition for the oracle on
// bf16-rounded weights, the engine's bf16 weights and activations, the CUDA path's bf16 data and
// the tests (the device uses __nv_bfloat16, whose conversions give the same bits).
//
// bf16 keeps fp32's 8 exponent bits and 8 significand bits (7 stored), so rounding to nearest has
// unit roundoff u = 2^-8: round_to_bf16(x) = x (1 + δ), |δ| ≤ u, for every finite x in range.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv2/weights.hpp"

namespace dsv2 {

/// Round-to-nearest-even fp32 → bf16 bits; NaN stays a (quiet) NaN, ±inf stays ±inf.
uint16_t float_to_bf16_bits(float x);
float bf16_bits_to_float(uint16_t b);
/// x rounded to the nearest bf16 value, as a float.
inline float round_to_bf16(float x) { return bf16_bits_to_float(float_to_bf16_bits(x)); }
std::vector<uint16_t> to_bf16(const std::vector<float>& x);
std::vector<float> from_bf16(const std::vector<uint16_t>& x);

/// Every weight rounded to bf16 (through fp32, to nearest even) and held as S: what an
/// implementation with bf16 weights computes with, for the oracle to run on the same values
/// (dsv2 compare --dtype bf16, the engine tests).
template <typename S, typename From>
Weights<S> rounded_to_bf16(const Weights<From>& w) {
    Weights<S> r;
    for (const auto& [name, m] : w.all()) {
        Mat<S> q(m.rows(), m.cols());
        for (int64_t i = 0; i < m.size(); ++i) q.data()[i] = S(round_to_bf16(float(m.data()[i])));
        r.set(name, std::move(q));
    }
    return r;
}

}  // namespace dsv2
