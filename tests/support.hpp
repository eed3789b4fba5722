// Helpers shared by the tests: relative errors, random matrices, small configs.
#pragma once

#include <catch2/catch.hpp>

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace dsv2::test {

/// ‖a − b‖ / ‖b‖ (Frobenius), b the reference; 0 when both are zero.
template <typename A, typename B>
double rel_err(const A& a, const B& b) {
    const double num = (a.template cast<double>() - b.template cast<double>()).norm();
    const double den = b.template cast<double>().norm();
    return den == 0.0 ? num : num / den;
}

/// A matrix of N(0, 1) values from a fixed seed.
template <typename S>
Mat<S> randn(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> n(0.0, 1.0);
    Mat<S> m(rows, cols);
    for (int64_t k = 0; k < m.size(); ++k) m.data()[k] = S(n(gen));
    return m;
}

/// The tiny preset with query compression switched off and greedy routing: a V2-Lite-like shape.
inline Config tiny_lite() {
    Config c = config_preset("tiny");
    c.d_q = 0;
    c.topk_method = TopkMethod::greedy;
    c.G = 1;
    c.G_k = 1;
    c.routed_scaling_factor = 1.0;
    c.validate();
    return c;
}

namespace detail {
inline int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return std::remove(path); }
}  // namespace detail

/// A scratch directory under /tmp, removed with everything in it at the end of the test.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/dsv2_test_XXXXXX";
        const char* p = mkdtemp(tmpl);
        REQUIRE(p != nullptr);
        path = p;
    }
    ~TempDir() { nftw(path.c_str(), detail::remove_entry, 16, FTW_DEPTH | FTW_PHYS); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
    /// Creates and returns the subdirectory `name`.
    std::string subdir(const std::string& name) const {
        const std::string p = path + "/" + name;
        REQUIRE(mkdir(p.c_str(), 0700) == 0);
        return p;
    }
    /// Names of the entries directly inside.
    std::vector<std::string> files() const {
        std::vector<std::string> out;
        if (DIR* d = opendir(path.c_str())) {
            while (const dirent* e = readdir(d))
                if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
            closedir(d);
        }
        return out;
    }
};

}  // namespace dsv2::test
