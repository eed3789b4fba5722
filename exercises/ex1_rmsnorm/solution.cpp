// ex1 — RMSNorm: a solution.
#include <cmath>

#include "ex1.hpp"

namespace ex1 {

dsv2::Mat<double> rms_norm(const dsv2::Mat<double>& x, const dsv2::Vec<double>& w, double eps) {
    dsv2::Mat<double> y(x.rows(), x.cols());                                     // [T, n]
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        double ss = 0;
        for (Eigen::Index k = 0; k < x.cols(); ++k) ss += x(t, k) * x(t, k);
        const double inv_rms = 1.0 / std::sqrt(ss / double(x.cols()) + eps);
        for (Eigen::Index k = 0; k < x.cols(); ++k) y(t, k) = w(k) * x(t, k) * inv_rms;
    }
    return y;
}

}  // namespace ex1
