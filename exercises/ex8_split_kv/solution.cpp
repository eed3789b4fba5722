// ex8 — split-KV log-sum-exp combine: a solution.
#include <cmath>
#include <limits>

#include "ex8.hpp"

namespace ex8 {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
}

Partial attend_chunk(const dsv2::RowVec<double>& s, const dsv2::Mat<double>& V) {
    Partial p;
    p.o = dsv2::RowVec<double>::Zero(V.cols());
    const double m = s.size() ? s.maxCoeff() : kNegInf;
    if (m == kNegInf) {                       // empty or fully masked: contributes nothing
        p.lse = kNegInf;
        return p;
    }
    double sum = 0;
    for (Eigen::Index j = 0; j < s.size(); ++j) {
        const double e = std::exp(s(j) - m);  // exp(−inf) = 0 for masked keys
        sum += e;
        p.o += e * V.row(j);
    }
    p.o /= sum;
    p.lse = m + std::log(sum);
    return p;
}

Partial combine(const std::vector<Partial>& parts) {
    Partial out;
    out.o = dsv2::RowVec<double>::Zero(parts.empty() ? 0 : parts[0].o.size());
    double m = kNegInf;
    for (const Partial& p : parts) m = std::max(m, p.lse);
    if (m == kNegInf) {
        out.lse = kNegInf;
        return out;
    }
    double sum = 0;
    for (const Partial& p : parts) {
        const double w = std::exp(p.lse - m);
        sum += w;
        out.o += w * p.o;
    }
    out.o /= sum;
    out.lse = m + std::log(sum);
    return out;
}

}  // namespace ex8
