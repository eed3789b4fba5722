// Helpers shared by the notebooks: claims that are checked, cell markers, small printers.
//
// Each notebook is a jupytext percent-format .cpp that is also a program. In the compiled build
// (CTest label `notebook`) the cells run in order inside main(); every `check` that fails is
// counted and `nb::finish()` makes the program exit 1. Under xeus-cling / xeus-cpp the cells run
// as top-level statements and `cell(n)` prints nothing.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Dense>

#if defined(__CLING__)
// xeus-cling: the kernel's working directory is notebooks-cpp/ (see notebooks-cpp/README.md).
#pragma cling add_include_path("../reference/include")
#pragma cling add_include_path("../cuda/include")
#pragma cling add_include_path("/usr/include/eigen3")
#pragma cling load("../build/notebooks/libdsv2_notebook.so")
#endif

namespace nb {

inline int& passed() {
    static int n = 0;
    return n;
}
inline int& failed() {
    static int n = 0;
    return n;
}

/// A claim of the notebook. Prints "[ok] what" or "[FAILED] what"; a failure makes the compiled
/// notebook exit non-zero (through finish()).
inline bool check(bool cond, const std::string& what) {
    if (cond) {
        ++passed();
        std::printf("  [ok] %s\n", what.c_str());
    } else {
        ++failed();
        std::printf("  [FAILED] %s\n", what.c_str());
    }
    std::fflush(stdout);
    return cond;
}

/// The end of a notebook: a summary line and the exit status (0 when every claim held).
inline int finish() {
    std::printf("\n%d checks passed, %d failed\n", passed(), failed());
    std::fflush(stdout);
    return failed() == 0 ? 0 : 1;
}

/// The marker line that starts the output of code cell n in the compiled run; the .ipynb writer
/// (tools/notebooks/to_ipynb.py) splits the program's stdout on it.
inline void cell_marker(int n) {
#if !defined(__CLING__) && !defined(__CLANG_REPL__)
    std::fflush(stdout);
    std::printf("<<<nb-cell %d>>>\n", n);
    std::fflush(stdout);
#else
    (void)n;
#endif
}

/// ‖a − b‖ / ‖b‖ (Frobenius), b the reference.
template <typename A, typename B>
double rel_err(const A& a, const B& b) {
    const double num = (a.template cast<double>() - b.template cast<double>()).norm();
    const double den = b.template cast<double>().norm();
    return den == 0.0 ? num : num / den;
}

/// A rows × cols matrix of N(0, 1) values from a fixed seed (row-major, like dsv2::Mat<double>).
inline Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> randn(long rows, long cols,
                                                                                  unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> n(0.0, 1.0);
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(rows, cols);
    for (long k = 0; k < m.size(); ++k) m.data()[k] = n(gen);
    return m;
}

/// Prints "name [rows x cols]" and the top-left corner of a matrix.
template <typename M>
void show(const char* name, const M& m, int max_rows = 4, int max_cols = 8) {
    std::printf("%s [%lld x %lld]\n", name, (long long)m.rows(), (long long)m.cols());
    for (int r = 0; r < std::min<int>(max_rows, int(m.rows())); ++r) {
        std::printf("  ");
        for (int c = 0; c < std::min<int>(max_cols, int(m.cols())); ++c) std::printf("%9.4f ", double(m(r, c)));
        std::printf("%s\n", m.cols() > max_cols ? "..." : "");
    }
    if (m.rows() > max_rows) std::printf("  ...\n");
}

/// A horizontal bar of `width` characters for value / max (a text figure).
inline std::string bar(double value, double max, int width = 40) {
    const int n = max > 0 ? int(std::lround(width * value / max)) : 0;
    return std::string(size_t(std::max(0, std::min(n, width))), '#');
}

/// "1.23 GB" style byte counts (powers of 1000, as the paper and dsv2 kv-cache).
inline std::string bytes(double b) {
    const char* unit[] = {"B", "KB", "MB", "GB", "TB"};
    int k = 0;
    while (b >= 1000.0 && k < 4) b /= 1000.0, ++k;
    char s[32];
    std::snprintf(s, sizeof s, "%.2f %s", b, unit[k]);
    return s;
}

}  // namespace nb

using nb::check;

/// Starts the output of code cell n (see nb::cell_marker).
#define cell(n) nb::cell_marker(n)
