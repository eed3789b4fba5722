// Named intermediates: every tensor the forward pass computes, under a stable name per layer.
//
// The names are shared by the oracle, the CUDA path and the golden data, so a comparison can
// name the first place two implementations diverge. They are listed in docs/intermediates.md:
//
//   embed                         [T, d]          token embeddings
//   layers.{l}.attn_norm          [T, d]          input_layernorm(h)
//   layers.{l}.attn.c_q           [T, d_q]        RMSNorm(W^DQ x)         (only when q_lora_rank)
//   layers.{l}.attn.q_nope        [T, n_h·d_h]    content part of q, heads concatenated
//   layers.{l}.attn.q_pe          [T, n_h·d_R]    RoPE part of q, after RoPE
//   layers.{l}.attn.c_kv          [T, d_c]        RMSNorm(W^DKV x)        (cached)
//   layers.{l}.attn.k_pe          [T, d_R]        RoPE(W^KR x)            (cached)
//   layers.{l}.attn.q_absorbed    [T, n_h·d_c]    W^UKᵀ q_nope per head   (absorbed form only)
//   layers.{l}.attn.o_latent      [T, n_h·d_c]    Σ_j p_ij ĉ_j per head   (absorbed form only)
//   layers.{l}.attn.o             [T, n_h·d_v]    attention output per head, before W^O
//   layers.{l}.attn.out           [T, d]          W^O o
//   layers.{l}.attn_residual      [T, d]          h + attn.out
//   layers.{l}.ffn_norm           [T, d]          post_attention_layernorm
//   layers.{l}.mlp.out            [T, d]          dense SwiGLU              (dense layers)
//   layers.{l}.moe.router_logits  [T, N_r]        u_tᵀ e_i                  (MoE layers)
//   layers.{l}.moe.scores         [T, N_r]        s_{i,t} = softmax
//   layers.{l}.moe.topk_idx       [T, K_r]  int   chosen experts, best first
//   layers.{l}.moe.topk_weight    [T, K_r]        gates g_{i,t} as applied
//   layers.{l}.moe.shared         [T, d]          Σ shared experts
//   layers.{l}.moe.routed         [T, d]          Σ g_{i,t} FFN_i
//   layers.{l}.moe.out            [T, d]          shared + routed
//   layers.{l}.out                [T, d]          layer output
//   norm                          [T, d]          final RMSNorm
//   logits                        [T, V]
//
// Every entry has one row per token, so recording appends rows: a prefill followed by decode
// steps leaves the same trace as one prefill of all the tokens.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dsv2/tensor.hpp"

namespace dsv2 {

/// "layers.{l}.{what}"
std::string iname(int64_t l, const std::string& what);

class Trace {
public:
    struct Entry {
        Mat<double> data;      ///< rows = tokens; held in double whatever the compute type
        bool integer = false;  ///< an index tensor (written as I32 by --dump)
    };

    /// Records everything, or only the names `want` accepts. With store = false nothing is kept:
    /// the trace is only a guard that notes the first intermediate holding a NaN or an Inf.
    explicit Trace(std::function<bool(const std::string&)> want = nullptr, bool store = true)
        : want_(std::move(want)), store_(store) {}

    bool wants(const std::string& name) const { return store_ && (!want_ || want_(name)); }

    /// Appends the rows of `m` to the entry `name` (created on first use). Every intermediate,
    /// kept or not, is checked for NaN and Inf.
    template <typename Derived>
    void record(const std::string& name, const Eigen::MatrixBase<Derived>& m, bool integer = false) {
        int64_t& seen = rows_seen_[name];
        if (first_nonfinite_.empty() && !m.allFinite()) note_nonfinite(name, seen, m.template cast<double>());
        seen += m.rows();
        if (!wants(name)) return;
        append(name, m.template cast<double>(), integer);
    }

    /// "layers.2.attn.o (token 3)": where the first NaN or Inf appeared; empty when none did.
    const std::string& first_nonfinite() const { return first_nonfinite_; }

    const std::map<std::string, Entry>& entries() const { return entries_; }
    /// Names in the order the forward pass first produced them.
    const std::vector<std::string>& order() const { return order_; }
    const Entry& at(const std::string& name) const;
    bool has(const std::string& name) const { return entries_.count(name) != 0; }

private:
    void append(const std::string& name, const Mat<double>& rows, bool integer);
    void note_nonfinite(const std::string& name, int64_t first_row, const Mat<double>& rows);

    std::function<bool(const std::string&)> want_;
    bool store_ = true;
    std::string first_nonfinite_;
    std::map<std::string, int64_t> rows_seen_;  ///< per name, kept or not: token index of the next row
    std::map<std::string, Entry> entries_;
    std::vector<std::string> order_;
};

/// Records when a trace is attached; a no-op for nullptr.
template <typename Derived>
inline void capture(Trace* trace, const std::string& name, const Eigen::MatrixBase<Derived>& m,
                    bool integer = false) {
    if (trace) trace->record(name, m, integer);
}

}  // namespace dsv2
