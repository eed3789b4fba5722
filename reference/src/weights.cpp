// Tensor names and shapes of a DeepSeek-V2 checkpoint; parameter counts; random weights.
#include "dsv2/weights.hpp"

#include <cmath>
#include <stdexcept>

namespace dsv2 {

int64_t TensorSpec::numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

std::string layer_prefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

std::vector<TensorSpec> tensor_specs(const Config& c) {
    std::vector<TensorSpec> t;
    auto linear = [&](const std::string& name, int64_t out, int64_t in) { t.push_back({name, {out, in}}); };
    auto norm = [&](const std::string& name, int64_t n) { t.push_back({name, {n}}); };
    auto swiglu = [&](const std::string& p, int64_t width) {
        linear(p + "gate_proj.weight", width, c.d);
        linear(p + "up_proj.weight", width, c.d);
        linear(p + "down_proj.weight", c.d, width);
    };

    linear("model.embed_tokens.weight", c.V, c.d);
    for (int64_t l = 0; l < c.L; ++l) {
        const std::string p = layer_prefix(l);
        norm(p + "input_layernorm.weight", c.d);
        const std::string a = p + "self_attn.";
        if (c.has_q_lora()) {
            linear(a + "q_a_proj.weight", c.d_q, c.d);                  // W^DQ
            norm(a + "q_a_layernorm.weight", c.d_q);
            linear(a + "q_b_proj.weight", c.n_h * c.d_qk(), c.d_q);     // [W^UQ; W^QR] per head
        } else {
            linear(a + "q_proj.weight", c.n_h * c.d_qk(), c.d);         // [W^UQ; W^QR] per head
        }
        linear(a + "kv_a_proj_with_mqa.weight", c.d_c + c.d_R, c.d);    // [W^DKV; W^KR]
        norm(a + "kv_a_layernorm.weight", c.d_c);
        linear(a + "kv_b_proj.weight", c.n_h * (c.d_h + c.d_v), c.d_c); // [W^UK; W^UV] per head
        linear(a + "o_proj.weight", c.d, c.n_h * c.d_v);                // W^O
        norm(p + "post_attention_layernorm.weight", c.d);
        if (c.is_moe_layer(l)) {
            linear(p + "mlp.gate.weight", c.N_r, c.d);  // expert centroids e_i
            for (int64_t e = 0; e < c.N_r; ++e) swiglu(p + "mlp.experts." + std::to_string(e) + ".", c.d_e);
            if (c.N_s > 0) swiglu(p + "mlp.shared_experts.", c.N_s * c.d_e);
        } else {
            swiglu(p + "mlp.", c.d_ff);
        }
    }
    norm("model.norm.weight", c.d);
    linear("lm_head.weight", c.V, c.d);
    return t;
}

ParamCount count_params(const Config& c) {
    ParamCount n;
    const int64_t swiglu_e = 3 * c.d * c.d_e;
    for (const TensorSpec& s : tensor_specs(c)) {
        const int64_t k = s.numel();
        n.total += k;
        const std::string& name = s.name;
        auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
        if (name == "model.embed_tokens.weight") n.embedding += k;
        else if (name == "lm_head.weight") n.lm_head += k;
        else if (s.shape.size() == 1) n.norms += k;
        else if (has(".self_attn.")) n.attention += k;
        else if (has(".mlp.experts.")) n.moe_routed += k;
        else if (has(".mlp.shared_experts.")) n.moe_shared += k;
        else if (has(".mlp.gate.weight")) n.router += k;
        else n.dense_mlp += k;
    }
    int64_t moe_layers = 0;
    for (int64_t l = 0; l < c.L; ++l) moe_layers += c.is_moe_layer(l) ? 1 : 0;
    n.activated = n.total - n.embedding - moe_layers * (c.N_r - c.K_r) * swiglu_e;
    return n;
}

int64_t weight_bytes(const Config& cfg, int64_t bytes_per_element) {
    return count_params(cfg).total * bytes_per_element;
}

template <typename S>
const Mat<S>& Weights<S>::mat(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::out_of_range("weights: no tensor \"" + name + "\"");
    return it->second;
}

template <typename S>
Mat<S>& Weights<S>::mutable_mat(const std::string& name) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::out_of_range("weights: no tensor \"" + name + "\"");
    return it->second;
}

template <typename S>
Eigen::Map<const Vec<S>> Weights<S>::vec(const std::string& name) const {
    const Mat<S>& m = mat(name);
    return Eigen::Map<const Vec<S>>(m.data(), m.size());
}

namespace {

// splitmix64: a tiny, portable generator — the same stream on every platform and compiler
// (std::normal_distribution is not specified bit-for-bit, so it is not used).
struct SplitMix64 {
    uint64_t x;
    uint64_t next() {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // in [0, 1)
    // Mean 0, variance 1: uniform on [−√3, √3). A billion-parameter model initialises in a
    // second or two; the tests need the variance, not the bell shape.
    double unit() { return 1.7320508075688772 * (2.0 * uniform() - 1.0); }
};

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
    return h;
}

}  // namespace

template <typename S>
Weights<S> random_weights(const Config& cfg, uint64_t seed) {
    const std::vector<TensorSpec> specs = tensor_specs(cfg);
    std::vector<Mat<S>> values(specs.size());
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < specs.size(); ++i) {
        const TensorSpec& s = specs[i];
        const bool is_norm = s.shape.size() == 1;
        const int64_t rows = is_norm ? 1 : s.shape[0];
        const int64_t cols = is_norm ? s.shape[0] : s.shape[1];
        double mean = 0.0, std = 1.0;
        if (is_norm) mean = 1.0, std = 0.1;
        else if (s.name != "model.embed_tokens.weight") std = 1.0 / std::sqrt(double(cols));
        SplitMix64 rng{seed * 0x9E3779B97F4A7C15ull ^ fnv1a(s.name)};
        Mat<S> m(rows, cols);
        for (int64_t k = 0; k < m.size(); ++k) m.data()[k] = S(float(mean + std * rng.unit()));
        values[i] = std::move(m);
    }
    Weights<S> w;
    for (size_t i = 0; i < specs.size(); ++i) w.set(specs[i].name, std::move(values[i]));
    return w;
}

template class Weights<float>;
template class Weights<double>;
template Weights<float> random_weights<float>(const Config&, uint64_t);
template Weights<double> random_weights<double>(const Config&, uint64_t);

}  // namespace dsv2
