#include "dsv2/model.hpp"

#include <stdexcept>

#include "dsv2/layers.hpp"

namespace dsv2 {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}
}  // namespace

template <typename S>
void check_weights(const Config& cfg, const Weights<S>& w, const std::string& where) {
    for (const TensorSpec& s : tensor_specs(cfg)) {
        if (!w.has(s.name)) throw std::invalid_argument(where + ": missing tensor \"" + s.name + "\"");
        const Mat<S>& m = w.mat(s.name);
        const std::vector<int64_t> got = s.shape.size() == 1 ? std::vector<int64_t>{m.cols()}
                                                             : std::vector<int64_t>{m.rows(), m.cols()};
        if ((s.shape.size() == 1 && m.rows() != 1) || got != s.shape)
            throw std::invalid_argument(where + ": tensor \"" + s.name + "\" has shape " + shape_str(got) +
                                        ", expected " + shape_str(s.shape));
    }
}

template <typename S>
Model<S>::Model(Config cfg, Weights<S> weights) : cfg_(std::move(cfg)), w_(std::move(weights)), rope_(cfg_) {
    cfg_.validate();
    check_weights(cfg_, w_);
}

template <typename S>
Mat<S> Model<S>::decoder_layer(int64_t l, MatCRef<S> h, const std::vector<int64_t>& positions,
                               LatentCache<S>& cache, AttentionForm form, Trace* trace) const {
    const std::string p = layer_prefix(l);
    const Mat<S> x = rms_norm<S>(h, w_.vec(p + "input_layernorm.weight"), cfg_.rms_norm_eps);   // [T, d]
    capture(trace, iname(l, "attn_norm"), x);
    const Mat<S> h_attn = h + mla_forward<S>(cfg_, w_, l, x, positions, rope_, cache, form, trace);
    capture(trace, iname(l, "attn_residual"), h_attn);
    const Mat<S> x2 = rms_norm<S>(h_attn, w_.vec(p + "post_attention_layernorm.weight"), cfg_.rms_norm_eps);
    capture(trace, iname(l, "ffn_norm"), x2);
    const Mat<S> ffn = cfg_.is_moe_layer(l) ? moe_forward<S>(cfg_, w_, l, x2, trace)
                                            : dense_mlp_forward<S>(cfg_, w_, l, x2, trace);
    Mat<S> out = h_attn + ffn;                                                  // [T, d]
    capture(trace, iname(l, "out"), out);
    return out;
}

template <typename S>
Mat<S> Model<S>::forward(const std::vector<int32_t>& tokens, LatentCache<S>& cache, AttentionForm form,
                         Trace* trace, Logits which) const {
    const int64_t T = int64_t(tokens.size());
    if (T == 0) return Mat<S>(0, cfg_.V);
    if (cache.layers() != cfg_.L || cache.width() != cfg_.cache_width())
        throw std::invalid_argument("forward: the cache was made for another config");
    const Mat<S>& E = w_.mat("model.embed_tokens.weight");
    Mat<S> h(T, cfg_.d);                                                        // [T, d]
    std::vector<int64_t> positions(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
        const int32_t tok = tokens[size_t(t)];
        if (tok < 0 || tok >= cfg_.V)
            throw std::invalid_argument("token " + std::to_string(tok) + " at index " + std::to_string(t) +
                                        " is outside the vocabulary [0, " + std::to_string(cfg_.V) + ")");
        h.row(t) = E.row(tok);
        positions[size_t(t)] = cache.length() + t;
    }
    capture(trace, "embed", h);
    for (int64_t l = 0; l < cfg_.L; ++l) h = decoder_layer(l, h, positions, cache, form, trace);
    cache.commit(T);
    if (which == Logits::last) h = h.bottomRows(1).eval();                     // [1, d]
    const Mat<S> hn = rms_norm<S>(h, w_.vec("model.norm.weight"), cfg_.rms_norm_eps);
    capture(trace, "norm", hn);
    Mat<S> logits = linear<S>(hn, w_.mat("lm_head.weight"));                   // [T or 1, V]
    capture(trace, "logits", logits);
    return logits;
}

template void check_weights<float>(const Config&, const Weights<float>&, const std::string&);
template void check_weights<double>(const Config&, const Weights<double>&, const std::string&);
template class Model<float>;
template class Model<double>;

}  // namespace dsv2
