// Helpers shared by the tests: relative errors, random matrices, small configs, scratch
// directories, and running the dsv2 command-line tool as a subprocess.
#pragma once

#include <catch2/catch.hpp>

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dsv2/config.hpp"
#include "dsv2/tensor.hpp"

namespace dsv2::test {

/// The source tree the test data lives in: $DSV2_SOURCE_DIR when set (tools/gpu/gpu_check.sh sets
/// it for test binaries built here and carried to a lent GPU machine, where the tree has another
/// path), else the tree the test was built from.
inline std::string source_dir() {
    const char* v = std::getenv("DSV2_SOURCE_DIR");
    return v && *v ? std::string(v) : std::string(DSV2_SOURCE_DIR);
}

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

/// Names of the entries directly inside `path` (empty when it is not a readable directory).
inline std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> out;
    if (DIR* d = opendir(path.c_str())) {
        while (const dirent* e = readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
        closedir(d);
    }
    return out;
}

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
    std::vector<std::string> files() const { return list_dir(path); }
};

/// The whole content of a file ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// The whole content of a file that must exist and be readable (a failed REQUIRE otherwise).
inline std::string read_existing(const std::string& path) {
    INFO("reading " << path);
    REQUIRE(std::ifstream(path, std::ios::binary).good());
    return read_bytes(path);
}

/// `s` quoted for /bin/sh.
inline std::string quote(const std::string& s) {
    std::string q = "'";
    for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
}

/// What one run of the dsv2 binary did.
struct Run {
    int rc = -1;           ///< exit status as /bin/sh reports it: 128 + n when killed by signal n
    std::string out, err;  ///< stdout and stderr
    double seconds = 0;
    int err_lines() const {
        int n = 0;
        for (char ch : err) n += ch == '\n';
        return n;
    }
};

/// Runs `dsv2 ARGS` (ARGS already quoted for /bin/sh) in `cwd`, capturing stdout and stderr in
/// files of `capture_dir` (kept apart from `cwd` so that a test can check cwd holds no stray
/// files afterwards).
inline Run dsv2_run(const std::string& args, const std::string& cwd, const std::string& capture_dir) {
    const std::string out = capture_dir + "/stdout.txt", err = capture_dir + "/stderr.txt";
    const std::string cmd = "cd " + quote(cwd) + " && " + quote(DSV2_BINARY) + " " + args + " >" + quote(out) +
                            " 2>" + quote(err) + " </dev/null";
    const auto t0 = std::chrono::steady_clock::now();
    const int status = std::system(cmd.c_str());
    Run r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(status != -1);
    REQUIRE(WIFEXITED(status));
    r.rc = WEXITSTATUS(status);
    r.out = read_bytes(out);
    r.err = read_bytes(err);
    std::remove(out.c_str());
    std::remove(err.c_str());
    return r;
}

}  // namespace dsv2::test
