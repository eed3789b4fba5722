// ex7 — the balance statistics: a solution.
#include "ex7.hpp"

namespace ex7 {

Balance balance(const dsv2::IdxMat& topk_idx, const dsv2::Mat<double>& scores, int64_t K_r, int64_t D, int64_t M) {
    const int64_t T = topk_idx.rows(), N = scores.cols(), per = N / D;
    Balance b;
    b.load.assign(size_t(N), 0);
    std::vector<double> f(size_t(N), 0.0), P(size_t(N), 0.0), f_dev(size_t(D), 0.0), P_dev(size_t(D), 0.0), f_comm(size_t(D), 0.0);
    for (int64_t t = 0; t < T; ++t) {
        std::vector<bool> sent(size_t(D), false);
        for (int64_t k = 0; k < topk_idx.cols(); ++k) {
            b.load[size_t(topk_idx(t, k))] += 1;
            sent[size_t(topk_idx(t, k) / per)] = true;
        }
        for (int64_t i = 0; i < D; ++i) f_comm[size_t(i)] += sent[size_t(i)] ? double(D) / double(M * T) : 0.0;
    }
    for (int64_t i = 0; i < N; ++i) {
        f[size_t(i)] = double(N) / double(K_r * T) * double(b.load[size_t(i)]);
        P[size_t(i)] = scores.col(i).sum() / double(T);
        b.expert += f[size_t(i)] * P[size_t(i)];
        f_dev[size_t(i / per)] += f[size_t(i)] / double(per);
        P_dev[size_t(i / per)] += P[size_t(i)];
    }
    for (int64_t i = 0; i < D; ++i) {
        b.device += f_dev[size_t(i)] * P_dev[size_t(i)];
        b.comm += f_comm[size_t(i)] * P_dev[size_t(i)];
    }
    return b;
}

}  // namespace ex7
