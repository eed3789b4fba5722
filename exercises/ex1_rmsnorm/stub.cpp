// ex1 — RMSNorm. Write your solution here, then: make exercise N=1
#include <stdexcept>

#include "ex1.hpp"

namespace ex1 {

dsv2::Mat<double> rms_norm(const dsv2::Mat<double>& x, const dsv2::Vec<double>& w, double eps) {
    (void)x, (void)w, (void)eps;
    throw std::runtime_error("TODO(ex1): rms_norm — normalise each row of x by its root mean square, then scale by w");
}

}  // namespace ex1
