// Options every command shares: validators, the model source, token lists, output paths.
#include "cli.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cmath>
#include <exception>
#include <stdexcept>

namespace dsv2::app {

namespace {

// CLI11 reads "-1" into an unsigned as 2^64 − 1 and NaN passes its Range checks (every comparison
// with NaN is false): these validators refuse what the conversions would silently change.
const CLI::Validator kUnsigned64(
    [](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
            return "must be a non-negative integer, got \"" + s + "\"";
        if (s.size() > 20 || (s.size() == 20 && s > "18446744073709551615")) return "is larger than 2^64 - 1: " + s;
        return {};
    },
    "UINT64");
const CLI::Validator kFinite(
    [](std::string& s) -> std::string {
        try {
            size_t used = 0;
            const double v = std::stod(s, &used);
            if (used != s.size() || !std::isfinite(v)) return "must be a finite number, got \"" + s + "\"";
        } catch (const std::exception&) {
            return "must be a finite number, got \"" + s + "\"";
        }
        return {};
    },
    "FINITE");

}  // namespace

const CLI::Validator& unsigned64() { return kUnsigned64; }
const CLI::Validator& finite() { return kFinite; }

void add_source(CLI::App* cmd, ModelSource& src, bool model_too) {
    auto* p = cmd->add_option("--preset", src.preset, "deepseek-v2, deepseek-v2-lite or tiny");
    cmd->add_option("--seed", src.seed, "seed of a preset's random weights")->check(kUnsigned64)->capture_default_str();
    if (model_too) {
        auto* m = cmd->add_option("--model", src.model_dir, "Hugging Face checkpoint directory (config.json + safetensors)");
        p->excludes(m);
    }
}

std::function<void()> require_source(const ModelSource& src, const char* cmd) {
    return [&src, cmd] {
        if (src.preset.empty() && src.model_dir.empty())
            throw CLI::ValidationError(std::string(cmd) + ": give --preset NAME or --model DIR");
    };
}

std::vector<int32_t> parse_tokens(const std::string& text) {
    std::vector<int32_t> out;
    size_t i = 0;
    while (i <= text.size()) {
        size_t j = text.find(',', i);
        if (j == std::string::npos) j = text.size();
        const std::string item = text.substr(i, j - i);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos)
            throw std::invalid_argument("--tokens: \"" + item + "\" (item " + std::to_string(out.size()) +
                                        ") is not a non-negative integer; expected e.g. 3,14,15");
        if (item.size() > 10 || std::stoll(item) > INT32_MAX)
            throw std::invalid_argument("--tokens: " + item + " (item " + std::to_string(out.size()) + ") is too large");
        const long long v = std::stoll(item);
        out.push_back(int32_t(v));
        i = j + 1;
    }
    return out;
}

// The directory of `path` must exist and be writable; checked before any work is done.
void check_writable(const std::string& path, const char* option) {
    if (path.empty()) throw std::invalid_argument(std::string(option) + ": the path is empty");
    if (path.back() == '/') throw std::invalid_argument(std::string(option) + " " + path + ": names a directory, expected a file");
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0)
        throw std::invalid_argument(std::string(option) + " " + path + ": directory " + dir + " does not exist");
    if (!S_ISDIR(st.st_mode))
        throw std::invalid_argument(std::string(option) + " " + path + ": " + dir + " is not a directory");
    if (access(dir.c_str(), W_OK) != 0)
        throw std::invalid_argument(std::string(option) + " " + path + ": directory " + dir + " is not writable");
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        throw std::invalid_argument(std::string(option) + " " + path + ": is a directory");
}

std::string gb(double bytes) {
    char buf[64];
    if (bytes >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB", bytes / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f KB", bytes / 1e3);
    return buf;
}

std::string billions(int64_t n) {
    char buf[64];
    if (n >= 100000000) std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
    else std::snprintf(buf, sizeof buf, "%.3fM", double(n) / 1e6);
    return buf;
}

}  // namespace dsv2::app
