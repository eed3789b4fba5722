// The whole DeepSeek-V2 forward pass: embedding, L decoder layers, final norm, lm_head.
#pragma once

#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/mla.hpp"
#include "dsv2/moe.hpp"
#include "dsv2/rope.hpp"
#include "dsv2/tensor.hpp"
#include "dsv2/trace.hpp"
#include "dsv2/weights.hpp"

namespace dsv2 {

/// Throws std::invalid_argument naming the first tensor that is missing or mis-shaped.
template <typename S>
void check_weights(const Config& cfg, const Weights<S>& w, const std::string& where = "weights");

/// Which positions forward() returns logits for: all of them (scoring a text, the golden
/// comparisons) or only the last (generation's prefill: the lm_head of the other T − 1 rows
/// would be thrown away, and at V = 102400 it is the largest product of a prefill).
enum class Logits { all, last };

/// A model ready to run: config, weights and rotary tables. S = float (default) or double.
template <typename S>
class Model {
public:
    Model(Config cfg, Weights<S> weights);

    const Config& config() const { return cfg_; }
    const Weights<S>& weights() const { return w_; }

    /// Runs the T tokens at positions cache.length() … cache.length() + T − 1 through every
    /// layer, appends their latent rows to `cache`, and returns their logits.
    /// A prefill is one call with the whole prompt; decode is further calls with one (or a
    /// few) tokens. Throws std::invalid_argument for a token outside [0, V).
    ///   tokens [T] → logits [T, V]   (which = Logits::last: [1, V], the last position's)
    Mat<S> forward(const std::vector<int32_t>& tokens, LatentCache<S>& cache,
                   AttentionForm form = AttentionForm::absorbed, Trace* trace = nullptr,
                   Logits which = Logits::all) const;

    /// One decoder layer, h' = h + Attn(RMSNorm(h)); out = h' + FFN(RMSNorm(h')).
    ///   h [T, d] → [T, d]
    Mat<S> decoder_layer(int64_t l, MatCRef<S> h, const std::vector<int64_t>& positions,
                         LatentCache<S>& cache, AttentionForm form, Trace* trace) const;

private:
    Config cfg_;
    Weights<S> w_;
    Rope rope_;
};

}  // namespace dsv2
