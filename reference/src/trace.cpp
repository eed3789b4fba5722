#include "dsv2/trace.hpp"

#include <stdexcept>

namespace dsv2 {

std::string iname(int64_t l, const std::string& what) { return "layers." + std::to_string(l) + "." + what; }

const Trace::Entry& Trace::at(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw std::out_of_range("trace: no intermediate \"" + name + "\"");
    return it->second;
}

void Trace::note_nonfinite(const std::string& name, int64_t first_row, const Mat<double>& rows) {
    for (Eigen::Index r = 0; r < rows.rows(); ++r)
        if (!rows.row(r).allFinite()) {
            first_nonfinite_ = name + " (token " + std::to_string(first_row + r) + ")";
            return;
        }
}

void Trace::append(const std::string& name, const Mat<double>& rows, bool integer) {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
        entries_.emplace(name, Entry{rows, integer});
        order_.push_back(name);
        return;
    }
    Mat<double>& d = it->second.data;
    if (d.cols() != rows.cols())
        throw std::logic_error("trace: \"" + name + "\" recorded with " + std::to_string(rows.cols()) +
                               " columns after " + std::to_string(d.cols()));
    const Eigen::Index old = d.rows();
    d.conservativeResize(old + rows.rows(), Eigen::NoChange);
    d.bottomRows(rows.rows()) = rows;
}

}  // namespace dsv2
