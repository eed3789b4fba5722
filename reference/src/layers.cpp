#include "dsv2/layers.hpp"

#include <cmath>

namespace dsv2 {

template <typename S>
Mat<S> rms_norm(MatCRef<S> x, const Eigen::Ref<const Vec<S>>& w, double eps) {
    Mat<S> y(x.rows(), x.cols());                                      // [T, n]
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const S mean_sq = x.row(t).squaredNorm() / S(x.cols());
        const S inv_rms = S(1) / std::sqrt(mean_sq + S(eps));
        y.row(t) = (x.row(t) * inv_rms).cwiseProduct(w.transpose());
    }
    return y;
}

template <typename S>
Mat<S> linear(MatCRef<S> x, MatCRef<S> W) {
    return x.rows() <= kSmallBatch ? linear_rows<S>(x, W) : linear_gemm<S>(x, W);
}

template <typename S>
Mat<S> linear_gemm(MatCRef<S> x, MatCRef<S> W) {
    Mat<S> y(x.rows(), W.rows());                                      // [T, out]
    y.noalias() = x * W.transpose();
    return y;
}

template <typename S>
Mat<S> linear_rows(MatCRef<S> x, MatCRef<S> W) {
    const int64_t T = x.rows(), out = W.rows();
    Mat<S> y(T, out);                                                  // [T, out]
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < out; ++j)                                  // W_j: read once, used T times
        for (int64_t t = 0; t < T; ++t) y(t, j) = x.row(t).dot(W.row(j));
    return y;
}

template <typename S>
Mat<S> silu(MatCRef<S> z) {
    return z.unaryExpr([](S v) { return v / (S(1) + std::exp(-v)); });
}

template <typename S>
Mat<S> swiglu(MatCRef<S> x, MatCRef<S> W_gate, MatCRef<S> W_up, MatCRef<S> W_down) {
    const Mat<S> g = linear<S>(x, W_gate);                             // [T, w]
    const Mat<S> u = linear<S>(x, W_up);                               // [T, w]
    const Mat<S> a = silu<S>(g).cwiseProduct(u);                       // [T, w]
    return linear<S>(a, W_down);                                       // [T, d]
}

template <typename S>
void softmax_rows(Mat<S>& z) {
    for (Eigen::Index r = 0; r < z.rows(); ++r) {
        const S m = z.row(r).maxCoeff();
        // Scalar std::exp: exp(−inf) is exactly 0 for masked entries (Eigen's vectorised exp
        // clamps its argument and would give a tiny positive weight instead).
        z.row(r) = (z.row(r).array() - m).unaryExpr([](S v) { return std::exp(v); }).matrix();
        z.row(r) /= z.row(r).sum();
    }
}

#define DSV2_INSTANTIATE(S)                                                             \
    template Mat<S> rms_norm<S>(MatCRef<S>, const Eigen::Ref<const Vec<S>>&, double); \
    template Mat<S> linear<S>(MatCRef<S>, MatCRef<S>);                                \
    template Mat<S> linear_gemm<S>(MatCRef<S>, MatCRef<S>);                           \
    template Mat<S> linear_rows<S>(MatCRef<S>, MatCRef<S>);                           \
    template Mat<S> silu<S>(MatCRef<S>);                                              \
    template Mat<S> swiglu<S>(MatCRef<S>, MatCRef<S>, MatCRef<S>, MatCRef<S>);        \
    template void softmax_rows<S>(Mat<S>&);
DSV2_INSTANTIATE(float)
DSV2_INSTANTIATE(double)

}  // namespace dsv2
