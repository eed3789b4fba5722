// Plain C++ helpers shared by the GPU benchmarks, dsv2_gpu_bench (bench/mla_decode_bench.cu) and
// dsv2_gpu_moe_bench (bench/moe_bench.cpp): the counter hash behind their random fills (a host
// function, and a device one too where nvcc compiles it: bench_device.cu's fill kernel), the
// median and the mean of timings, comma lists ("1,8,64" → {1, 8, 64}) and the hand-written
// option loop. Header-only; no CUDA header, no Eigen.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__CUDACC__)
#define DSV2_BENCH_HD __host__ __device__ __forceinline__
#else
#define DSV2_BENCH_HD inline
#endif

namespace dsv2::bench {

// ---------------------------------------------------------------------------------------------
// Random values

/// A counter hash of (i, seed) (splitmix64's finaliser), the source of every random fill.
DSV2_BENCH_HD uint32_t hash32(uint64_t i, uint32_t seed) {
    uint64_t z = i * 0x9E3779B97F4A7C15ull + (uint64_t(seed) << 32 | seed);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return uint32_t((z ^ (z >> 31)) >> 32);
}

/// u_i uniform in [−1, 1) from hash32(i, seed); the same value on the host and on the device.
DSV2_BENCH_HD float uniform_pm1(uint64_t i, uint32_t seed) {
    return float(hash32(i, seed)) * (1.f / 2147483648.f) - 1.f;
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// The median (the mean of the middle two for an even count); 0 for none.
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

/// The arithmetic mean; 0 for none.
inline double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / double(v.size());
}

// ---------------------------------------------------------------------------------------------
// Command lines

/// The comma-separated items of s, each converted by item(std::string); empty items are skipped,
/// so "" gives an empty list (which a benchmark reads as "leave that part out" or rejects).
template <typename F>
auto parse_list(const std::string& s, F&& item) -> std::vector<std::decay_t<decltype(item(s))>> {
    std::vector<std::decay_t<decltype(item(s))>> v;
    size_t p = 0;
    while (p < s.size()) {
        const size_t q = s.find(',', p);
        const std::string one = s.substr(p, q == std::string::npos ? std::string::npos : q - p);
        if (!one.empty()) v.push_back(item(one));
        if (q == std::string::npos) break;
        p = q + 1;
    }
    return v;
}

/// "1,8,64" → {1, 8, 64} (std::stoi on each item; it throws std::invalid_argument on a non-number).
inline std::vector<int> parse_ints(const std::string& s) {
    return parse_list(s, [](const std::string& x) { return std::stoi(x); });
}

/// One option of a hand-written command line: "--name VALUE" (set takes the value) or a flag
/// "--name" (on runs). Made by option(…) and flag(…) below.
struct Option {
    std::string name;
    std::function<void(const std::string&)> set;  // empty for a flag
    std::function<void()> on;                      // a flag's action
};

/// "--name VALUE" into x, converted by convert(std::string) (say weight_type_from_string).
template <typename T, typename F>
Option option(std::string name, T& x, F convert) {
    return {std::move(name), [&x, convert](const std::string& v) { x = convert(v); }, {}};
}
inline Option option(std::string name, std::string& x) {
    return option(std::move(name), x, [](const std::string& v) { return v; });
}
inline Option option(std::string name, int& x) {
    return option(std::move(name), x, [](const std::string& v) { return std::stoi(v); });
}
inline Option option(std::string name, uint64_t& x) {
    return option(std::move(name), x, [](const std::string& v) { return uint64_t(std::stoull(v)); });
}
inline Option option(std::string name, double& x) {
    return option(std::move(name), x, [](const std::string& v) { return std::stod(v); });
}
/// "--name 1,8,64" (parse_ints).
inline Option option(std::string name, std::vector<int>& x) {
    return option(std::move(name), x, parse_ints);
}
/// A flag: "--name" runs on().
inline Option flag(std::string name, std::function<void()> on) { return {std::move(name), {}, std::move(on)}; }

/// Applies argv[1 … argc − 1] in their order, each through its Option; "-h" / "--help" prints
/// usage() and exits 0. Throws std::invalid_argument ("unknown option --x", "--x needs a value"),
/// and lets a conversion's own exception through (std::stoi's "stoi" for "--iters x").
inline void parse_options(int argc, char** argv, const std::vector<Option>& options, void (*usage)()) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            usage();
            std::exit(0);
        }
        const auto it = std::find_if(options.begin(), options.end(), [&](const Option& o) { return o.name == a; });
        if (it == options.end()) throw std::invalid_argument("unknown option " + a);
        if (!it->set) {
            it->on();
            continue;
        }
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        it->set(argv[++i]);
    }
}

/// The benchmarks' first step: o = parse(argc, argv); on a bad command line (parse throws) prints
/// "TOOL: why" on stderr and usage() on stdout, and returns false (main then returns 2).
template <typename O>
bool parse_or_usage(O& o, O (*parse)(int, char**), int argc, char** argv, const char* tool, void (*usage)()) {
    try {
        o = parse(argc, argv);
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", tool, e.what());
        usage();
        return false;
    }
}

}  // namespace dsv2::bench
