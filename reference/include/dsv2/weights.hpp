// The model's tensors, keyed by their Hugging Face names, in PyTorch (out, in) layout.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace dsv2 {

/// One tensor a checkpoint must hold: its Hugging Face name and PyTorch shape.
struct TensorSpec {
    std::string name;            ///< e.g. "model.layers.3.self_attn.kv_b_proj.weight"
    std::vector<int64_t> shape;  ///< (out, in) for a Linear, (n,) for a norm
    int64_t numel() const;
};

/// Every tensor of a DeepSeek-V2 checkpoint for `cfg`, in a fixed order.
std::vector<TensorSpec> tensor_specs(const Config& cfg);

/// "model.layers.{l}." — the prefix of layer l's tensors.
std::string layer_prefix(int64_t l);

/// Parameter counts from the config's shapes.
struct ParamCount {
    int64_t total = 0;      ///< every tensor, embeddings and lm_head included
    int64_t activated = 0;  ///< used per token: total less the embedding table (a lookup, no
                            ///< FLOPs) and the N_r − K_r routed experts a token does not visit
    int64_t embedding = 0, attention = 0, dense_mlp = 0, moe_routed = 0, moe_shared = 0,
            router = 0, norms = 0, lm_head = 0;
};
ParamCount count_params(const Config& cfg);

/// All tensors of one model, in the compute type S.
/// 2-D tensors are Mat<S> [out, in]; 1-D tensors are stored as Mat<S> [1, n].
template <typename S>
class Weights {
public:
    /// The tensor called `name`; throws std::out_of_range naming it if absent.
    const Mat<S>& mat(const std::string& name) const;
    /// A 1-D tensor viewed as a column vector.
    Eigen::Map<const Vec<S>> vec(const std::string& name) const;
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    void set(const std::string& name, Mat<S> value) { tensors_[name] = std::move(value); }
    Mat<S>& mutable_mat(const std::string& name);
    const std::map<std::string, Mat<S>>& all() const { return tensors_; }

private:
    std::map<std::string, Mat<S>> tensors_;
};

/// Seeded random weights for any config, so every preset runs without a checkpoint.
///
/// Each tensor draws from its own stream, seeded by (seed, name), so a tensor's values do not
/// depend on which other tensors exist. Values are drawn in double and rounded to float before
/// conversion to S: the fp32 and fp64 oracles see bit-identical weights. Values are uniform
/// with the stated mean and standard deviation (cheap to draw for billion-parameter shapes):
///   Linear (out, in): std 1/sqrt(in) — keeps activations O(1) through the layers.
///   embed_tokens:     std 1.
///   norm weights:     1 ± std 0.1 — not all ones, so a missing norm weight is caught.
template <typename S>
Weights<S> random_weights(const Config& cfg, uint64_t seed);

/// Bytes the weights of `cfg` take in type S (to refuse a model that cannot fit in memory).
int64_t weight_bytes(const Config& cfg, int64_t bytes_per_element);

}  // namespace dsv2
