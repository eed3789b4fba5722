// The dsv2 command-line tool, run as a subprocess: outputs, agreement between its options, the
// checkpoint loader, and the contract for bad input — a non-zero exit, exactly one
// "dsv2: error:" line on stderr naming the problem, and no output file.
#include "support.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "dsv2/io.hpp"
#include "dsv2/config_json.hpp"
#include "dsv2/model.hpp"
#include "dsv2/weights.hpp"

namespace {

using json = nlohmann::json;

bool exists(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0;
}

using dsv2::test::dsv2_run;
using dsv2::test::list_dir;
using dsv2::test::quote;
using dsv2::test::read_bytes;
using dsv2::test::Run;
using dsv2::test::TempDir;

// A float32 .npy as written by dsv2 (little-endian, C order).
struct Npy {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

Npy read_npy(const std::string& path) {
    const std::string b = read_bytes(path);
    REQUIRE(b.size() >= 10);
    REQUIRE(b.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
    const size_t hlen = size_t(uint8_t(b[8])) | size_t(uint8_t(b[9])) << 8;
    const std::string header = b.substr(10, hlen);
    REQUIRE(header.find("'descr': '<f4'") != std::string::npos);
    REQUIRE(header.find("'fortran_order': False") != std::string::npos);
    const size_t s = header.find("'shape': (");
    REQUIRE(s != std::string::npos);
    const size_t e = header.find(')', s);
    std::string dims = header.substr(s + 10, e - s - 10);
    Npy n;
    std::stringstream ss(dims);
    std::string item;
    while (std::getline(ss, item, ','))
        if (item.find_first_not_of(' ') != std::string::npos) n.shape.push_back(std::stoll(item));
    int64_t count = 1;
    for (int64_t d : n.shape) count *= d;
    REQUIRE(b.size() == 10 + hlen + size_t(count) * 4);
    n.data.resize(size_t(count));
    std::memcpy(n.data.data(), b.data() + 10 + hlen, size_t(count) * 4);
    return n;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

bool all_finite(const std::vector<float>& v) {
    for (float x : v)
        if (!std::isfinite(x)) return false;
    return true;
}

// The logits of `tokens` computed in-process (the library the CLI is built on).
std::vector<float> library_logits(const dsv2::Config& cfg, uint64_t seed, const std::vector<int32_t>& tokens) {
    const dsv2::Model<float> model(cfg, dsv2::random_weights<float>(cfg, seed));
    dsv2::LatentCache<float> cache(cfg, int64_t(tokens.size()));
    const dsv2::Mat<float> logits = model.forward(tokens, cache);
    return std::vector<float>(logits.data(), logits.data() + logits.size());
}

dsv2::RawTensor to_raw_f32(const dsv2::Mat<float>& m, const std::vector<int64_t>& shape) {
    dsv2::RawTensor t;
    t.dtype = dsv2::DType::F32;
    t.shape = shape;
    t.bytes.resize(size_t(m.size()) * 4);
    std::memcpy(t.bytes.data(), m.data(), t.bytes.size());  // row-major = PyTorch (out, in)
    return t;
}

// The tensors of a Hugging Face checkpoint of `cfg` with random_weights<float>(cfg, seed).
std::map<std::string, dsv2::RawTensor> checkpoint_tensors(const dsv2::Config& cfg, uint64_t seed) {
    const dsv2::Weights<float> w = dsv2::random_weights<float>(cfg, seed);
    std::map<std::string, dsv2::RawTensor> t;
    for (const dsv2::TensorSpec& s : dsv2::tensor_specs(cfg)) t[s.name] = to_raw_f32(w.mat(s.name), s.shape);
    return t;
}

void write_config(const std::string& dir, const dsv2::Config& cfg) {
    dsv2::write_file_atomic(dir + "/config.json", dsv2::config_to_json_text(cfg));
}

const char* kTokens = "1,2,3,4,5";
const std::vector<int32_t> kTokenIds = {1, 2, 3, 4, 5};

}  // namespace

TEST_CASE("dsv2 --help exits 0 and lists the subcommands", "[cli]") {
    TempDir tmp;
    const Run r = dsv2_run("--help", tmp.path, tmp.path);
    CHECK(r.rc == 0);
    for (const char* sub : {"demo", "forward", "kv-cache", "params"}) CHECK(r.out.find(sub) != std::string::npos);
    const Run f = dsv2_run("forward --help", tmp.path, tmp.path);
    CHECK(f.rc == 0);
    for (const char* opt : {"--preset", "--model", "--tokens", "--prefill", "--attention", "--precision", "--device", "--dtype",
                            "--out", "--dump"})
        CHECK(f.out.find(opt) != std::string::npos);
}

TEST_CASE("dsv2 forward writes finite [T, V] logits equal to the library's", "[cli][forward]") {
    TempDir tmp;
    const Run r = dsv2_run(std::string("forward --preset tiny --tokens ") + kTokens + " --prefill 2 --out X.npy",
                           tmp.path, tmp.path);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.err_lines() <= 1);  // one progress line at most
    const Npy n = read_npy(tmp / "X.npy");
    CHECK(n.shape == std::vector<int64_t>{5, 256});
    CHECK(all_finite(n.data));
    CHECK(max_abs_diff(n.data, library_logits(dsv2::config_preset("tiny"), 0, kTokenIds)) < 1e-4);
    // Only the output file is left in the directory (no temporaries).
    CHECK(list_dir(tmp.path) == std::vector<std::string>{"X.npy"});
}

TEST_CASE("dsv2 forward logits agree across prefill split, attention form and precision", "[cli][forward]") {
    TempDir tmp;
    const std::string base = std::string("forward --preset tiny --tokens ") + kTokens;
    const std::vector<std::pair<std::string, std::string>> runs = {
        {"ref.npy", base + " --prefill 2 --out ref.npy"},
        {"all.npy", base + " --prefill 5 --out all.npy"},
        {"default.npy", base + " --out default.npy"},
        {"decode.npy", base + " --prefill 0 --out decode.npy"},
        {"naive.npy", base + " --prefill 2 --attention naive --out naive.npy"},
        {"fp64.npy", base + " --prefill 2 --precision fp64 --out fp64.npy"},
        {"naive64.npy", base + " --attention naive --precision fp64 --out naive64.npy"},
    };
    std::map<std::string, Npy> got;
    for (const auto& [file, args] : runs) {
        const Run r = dsv2_run(args, tmp.path, tmp.path);
        INFO(args << "\n" << r.err);
        REQUIRE(r.rc == 0);
        got[file] = read_npy(tmp / file);
        CHECK(got[file].shape == std::vector<int64_t>{5, 256});
        CHECK(all_finite(got[file].data));
    }
    for (const auto& [file, n] : got) {
        INFO(file << " vs ref.npy");
        CHECK(max_abs_diff(n.data, got["ref.npy"].data) < 1e-4);
    }
    // A different seed gives different logits (the comparison above is not vacuous).
    const Run r = dsv2_run(base + " --seed 1 --out seed1.npy", tmp.path, tmp.path);
    REQUIRE(r.rc == 0);
    CHECK(max_abs_diff(read_npy(tmp / "seed1.npy").data, got["ref.npy"].data) > 1e-2);
}

// ‖a − b‖ / ‖b‖ over two logits files.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
        den += double(b[i]) * double(b[i]);
    }
    return std::sqrt(num / den);
}

TEST_CASE("dsv2 forward --device host: the engine's logits within 1e-5 of the oracle's", "[cli][forward][engine]") {
    TempDir tmp;
    const std::string base = "forward --preset tiny --seed 2 --tokens 9,200,31,4,77,150,8 --prefill 3";
    const Run cpu = dsv2_run(base + " --out cpu.npy", tmp.path, tmp.path);
    const Run host = dsv2_run(base + " --device host --out host.npy --dump host.safetensors", tmp.path, tmp.path);
    const Run bf16 = dsv2_run(base + " --device host --dtype bf16 --out bf16.npy", tmp.path, tmp.path);
    INFO(cpu.err << host.err << bf16.err);
    REQUIRE(cpu.rc == 0);
    REQUIRE(host.rc == 0);
    REQUIRE(bf16.rc == 0);
    CHECK(host.err_lines() == 1);
    CHECK(host.err.find("host (CPU twin of the CUDA path), fp32 weights") != std::string::npos);
    const Npy c = read_npy(tmp / "cpu.npy"), h = read_npy(tmp / "host.npy"), b = read_npy(tmp / "bf16.npy");
    CHECK(h.shape == std::vector<int64_t>{7, 256});
    CHECK(b.shape == std::vector<int64_t>{7, 256});
    CHECK(all_finite(h.data));
    const double e = rel_diff(h.data, c.data);
    CHECK(e <= 1e-5);
    CHECK(e > 0);  // computed apart: the engine's own loops, not the oracle's
    // bf16 weights (and bf16 inputs to every product): visibly rounded, still near.
    const double eb = rel_diff(b.data, c.data);
    CHECK(eb > 1e-4);
    CHECK(eb < 5e-2);
    // The dump: every intermediate, the absorbed-form ones for the 4 one-token calls only.
    std::map<std::string, std::string> meta;
    const auto d = dsv2::read_safetensors(tmp / "host.safetensors", &meta);
    CHECK(d.at("logits").shape == std::vector<int64_t>{7, 256});
    CHECK(d.at("layers.2.attn.o_latent").shape == std::vector<int64_t>{4, 128});
    CHECK(d.at("layers.2.attn.o").shape == std::vector<int64_t>{7, 48});
    CHECK(meta["device"] == "host (CPU twin of the CUDA path)");
    CHECK(meta["dtype"] == "fp32");
    CHECK(meta["attention"].rfind("per call", 0) == 0);
    // --device cuda: runs where a GPU is, else one error line naming it.
    const Run g = dsv2_run(base + " --device cuda --out gpu.npy", tmp.path, tmp.path);
    if (g.rc == 0) {
        CHECK(rel_diff(read_npy(tmp / "gpu.npy").data, c.data) <= 1e-5);
    } else {
        INFO(g.err);
        CHECK(g.err_lines() == 1);
        CHECK(g.err.rfind("dsv2: error: --device cuda: ", 0) == 0);
        CHECK(!exists(tmp / "gpu.npy"));
    }
}

TEST_CASE("dsv2 forward --dump writes the named intermediates", "[cli][forward][dump]") {
    TempDir tmp;
    const Run r = dsv2_run(std::string("forward --preset tiny --tokens ") + kTokens +
                               " --prefill 2 --out X.npy --dump D.safetensors",
                           tmp.path, tmp.path);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    std::map<std::string, std::string> meta;
    const auto t = dsv2::read_safetensors(tmp / "D.safetensors", &meta);
    CHECK(meta["format"] == "dsv2-intermediates");
    CHECK(meta["tokens"] == kTokens);
    CHECK(meta["prefill"] == "2");
    const dsv2::Config back = dsv2::config_from_json_text(meta["config"], "metadata");
    CHECK(back.d == 64);
    CHECK(back.V == 256);

    REQUIRE(t.count("logits") == 1);
    CHECK(t.at("logits").dtype == dsv2::DType::F32);
    CHECK(t.at("logits").shape == std::vector<int64_t>{5, 256});
    REQUIRE(t.count("layers.1.attn.c_kv") == 1);
    CHECK(t.at("layers.1.attn.c_kv").dtype == dsv2::DType::F32);
    CHECK(t.at("layers.1.attn.c_kv").shape == std::vector<int64_t>{5, 32});
    REQUIRE(t.count("layers.2.moe.topk_idx") == 1);
    CHECK(t.at("layers.2.moe.topk_idx").dtype == dsv2::DType::I32);
    CHECK(t.at("layers.2.moe.topk_idx").shape == std::vector<int64_t>{5, 2});
    for (double e : t.at("layers.2.moe.topk_idx").to_double()) {
        CHECK(e >= 0);
        CHECK(e < 8);
        CHECK(e == std::floor(e));
    }
    CHECK(t.count("embed") == 1);
    CHECK(t.count("layers.0.mlp.out") == 1);  // layer 0 is dense
    CHECK(t.count("layers.0.moe.out") == 0);
    CHECK(t.count("layers.1.attn.c_q") == 1);  // tiny has query compression

    const std::vector<double> dumped = t.at("logits").to_double();
    const Npy n = read_npy(tmp / "X.npy");
    std::vector<float> dumped_f(dumped.begin(), dumped.end());
    CHECK(max_abs_diff(dumped_f, n.data) == 0.0);
}

TEST_CASE("dsv2 forward rejects bad input: one error line, non-zero exit, no output file", "[cli][errors]") {
    TempDir tmp;
    struct Case {
        std::string args;             // "{out}" stands for the --out path
        std::vector<std::string> names;  // what the error line must mention
        std::string out = "x.npy";
        bool out_is_dir = false;
    };
    const std::string fwd = "forward --preset tiny ";
    const std::vector<Case> cases = {
        {fwd + "--tokens 1,x,3 --out {out}", {"--tokens", "\"x\""}},
        {fwd + "--tokens 1,,2 --out {out}", {"--tokens", "item 1"}},
        {fwd + "--tokens 1,2, --out {out}", {"--tokens"}},
        {fwd + "--tokens ' 1' --out {out}", {"--tokens"}},
        {fwd + "--tokens 999 --out {out}", {"999", "vocabulary"}},
        {fwd + "--tokens 256 --out {out}", {"256"}},
        {fwd + "--tokens 99999999999 --out {out}", {"99999999999"}},
        {fwd + "--tokens -1 --out {out}", {"-1"}},
        {fwd + "--tokens 1,2,3 --prefill 9 --out {out}", {"--prefill", "9"}},
        {fwd + "--tokens 1,2,3 --prefill -2 --out {out}", {"--prefill"}},
        {"forward --preset nonexistent --tokens 1 --out {out}", {"nonexistent", "tiny"}},
        {"forward --model /nonexistent/dir --tokens 1 --out {out}", {"/nonexistent/dir"}},
        {fwd + "--tokens 1 --out {out}", {"/nonexistent_dir"}, "/nonexistent_dir/x.npy"},
        {fwd + "--tokens 1 --out {out}", {"is a directory"}, "outdir", true},
        {fwd + "--tokens 1", {"--out"}},
        {fwd + "--tokens 1 --attention sparse --out {out}", {"sparse"}},
        {fwd + "--tokens 1 --precision fp16 --out {out}", {"fp16"}},
        {fwd + "--tokens 1 --out {out} --dump {out}", {"--dump"}},
        {fwd + "--tokens 1 --out {out} --dump /nonexistent_dir/d.safetensors", {"/nonexistent_dir"}},
        {"forward --tokens 1 --out {out}", {"--preset", "--model"}},
        {"forward --preset tiny --model /tmp --tokens 1 --out {out}", {"--model"}},
        {fwd + "--out {out}", {"--tokens"}},
        {"forward --preset deepseek-v2 --tokens 1 --out {out}", {"deepseek-v2", "GB"}},
        {"bogus --preset tiny", {}},
        {"", {}},
        {fwd + "--tokens 1 --device gpu --out {out}", {"--device", "gpu"}},
        {fwd + "--tokens 1 --device host --dtype fp16 --out {out}", {"--dtype", "fp16"}},
        {fwd + "--tokens 1 --dtype bf16 --out {out}", {"--dtype bf16", "--device cpu"}},
        {fwd + "--tokens 1 --device host --precision fp64 --out {out}", {"--precision fp64", "--device host", "fp32"}},
        {fwd + "--tokens 1 --device host --attention absorbed --out {out}", {"--attention absorbed", "--device host"}},
        {fwd + "--tokens 1 --device host --attention naive --out {out}", {"--attention naive", "--device host"}},
        {fwd + "--tokens 1,999 --device host --out {out}", {"999", "vocabulary"}},
    };
    int k = 0;
    for (const Case& c : cases) {
        std::string args = c.args;
        for (size_t at; (at = args.find("{out}")) != std::string::npos;) args.replace(at, 5, c.out);
        INFO("dsv2 " << args);
        const std::string cwd = tmp.subdir("case" + std::to_string(k++));
        if (c.out_is_dir) REQUIRE(mkdir((cwd + "/" + c.out).c_str(), 0700) == 0);
        const Run r = dsv2_run(args, cwd, tmp.path);
        INFO("stderr: " << r.err);
        CHECK(r.rc != 0);
        CHECK(r.err_lines() == 1);
        CHECK(r.err.rfind("dsv2: error:", 0) == 0);
        for (const std::string& name : c.names) CHECK(r.err.find(name) != std::string::npos);
        CHECK(r.seconds < 10.0);  // refusals are immediate (deepseek-v2: before allocating 940 GB)
        // No output file, no temporary: the working directory is as it was.
        if (c.out_is_dir) {
            CHECK(list_dir(cwd) == std::vector<std::string>{c.out});
            CHECK(list_dir(cwd + "/" + c.out).empty());
        } else {
            CHECK(list_dir(cwd).empty());
            CHECK_FALSE(exists(c.out[0] == '/' ? c.out : cwd + "/" + c.out));
        }
    }
}

// An unknown subcommand is named in the error (CLI11 alone would say "A subcommand is required").
TEST_CASE("dsv2 names an unknown subcommand", "[cli][errors]") {
    TempDir tmp;
    const Run r = dsv2_run("bogus --preset tiny", tmp.path, tmp.path);
    INFO("stderr: " << r.err);
    CHECK(r.rc != 0);
    CHECK(r.err.find("bogus") != std::string::npos);
}

TEST_CASE("dsv2 kv-cache --json gives the paper's cache sizes", "[cli][kv-cache]") {
    TempDir tmp;
    const Run r = dsv2_run("kv-cache --preset deepseek-v2 --json", tmp.path, tmp.path);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const json j = json::parse(r.out);
    CHECK(j["layers"] == 60);
    CHECK(j["caches"]["MLA"]["elements_per_token_per_layer"] == 576);
    CHECK(j["caches"]["MLA"]["elements_per_token"] == 34560);
    CHECK(j["caches"]["MHA"]["elements_per_token"] == int64_t(2) * 128 * 128 * 60);
    CHECK(j["caches"]["MHA"]["elements_per_token_per_layer"] == 2 * 128 * 128);
    CHECK(j["caches"]["MQA"]["elements_per_token"] == 2 * 128 * 60);
    CHECK(j["caches"]["GQA"]["elements_per_token"] == 2 * 8 * 128 * 60);
    CHECK(j["caches"]["HF-cache"]["elements_per_token"] == int64_t(128) * (192 + 128) * 60);
    CHECK(j["caches"]["MLA"]["bytes_per_token"] == 34560 * 2);
    CHECK(j["mla_gqa_equivalent_groups"].get<double>() == Approx(2.25));

    const Run lite = dsv2_run("kv-cache --preset deepseek-v2-lite --json", tmp.path, tmp.path);
    REQUIRE(lite.rc == 0);
    const json jl = json::parse(lite.out);
    CHECK(jl["caches"]["MLA"]["elements_per_token"] == 15552);
    CHECK(jl["caches"]["MLA"]["elements_per_token_per_layer"] == 576);

    // From the released config.json instead of the preset: the same numbers.
    const Run file = dsv2_run(std::string("kv-cache --model ") + quote(DSV2_SOURCE_DIR "/data/configs/deepseek-v2") +
                                  " --json",
                              tmp.path, tmp.path);
    INFO(file.err);
    REQUIRE(file.rc == 0);
    CHECK(json::parse(file.out)["caches"] == j["caches"]);

    // The text form runs too.
    const Run text = dsv2_run("kv-cache --preset deepseek-v2", tmp.path, tmp.path);
    CHECK(text.rc == 0);
    CHECK(text.out.find("MLA") != std::string::npos);
}

TEST_CASE("dsv2 params --json gives count_params", "[cli][params]") {
    TempDir tmp;
    for (const std::string name : {"deepseek-v2-lite", "deepseek-v2"}) {
        INFO(name);
        const Run r = dsv2_run("params --preset " + name + " --json", tmp.path, tmp.path);
        INFO(r.err);
        REQUIRE(r.rc == 0);
        const json j = json::parse(r.out);
        const dsv2::ParamCount n = dsv2::count_params(dsv2::config_preset(name));
        CHECK(j["total"] == n.total);
        CHECK(j["activated"] == n.activated);
        CHECK(j["attention"] == n.attention);
        CHECK(j["moe_routed"] == n.moe_routed);
    }
    const Run text = dsv2_run("params --preset deepseek-v2", tmp.path, tmp.path);
    CHECK(text.rc == 0);
    CHECK(text.out.find("235.74B") != std::string::npos);
}

TEST_CASE("dsv2 demo runs and prints its check line", "[cli][demo]") {
    TempDir tmp;
    const Run r = dsv2_run("demo --max-new-tokens 4", tmp.path, tmp.path);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    bool found = false;
    std::stringstream ss(r.out);
    for (std::string line; std::getline(ss, line);) found = found || line.rfind("check", 0) == 0;
    CHECK(found);
    CHECK(list_dir(tmp.path).empty());  // the demo writes no files
}

TEST_CASE("dsv2 forward --model loads a checkpoint directory", "[cli][checkpoint]") {
    TempDir tmp;
    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const std::string ckpt = tmp.subdir("ckpt");
    write_config(ckpt, cfg);
    dsv2::write_safetensors(ckpt + "/model.safetensors", checkpoint_tensors(cfg, 7), {{"format", "pt"}});

    const std::string tail = std::string(" --tokens ") + kTokens + " --prefill 2";
    const Run a = dsv2_run("forward --model " + quote(ckpt) + tail + " --out model.npy", tmp.path, tmp.path);
    INFO(a.err);
    REQUIRE(a.rc == 0);
    const Run b = dsv2_run("forward --preset tiny --seed 7" + tail + " --out preset.npy", tmp.path, tmp.path);
    INFO(b.err);
    REQUIRE(b.rc == 0);
    const Npy na = read_npy(tmp / "model.npy"), nb = read_npy(tmp / "preset.npy");
    CHECK(na.shape == std::vector<int64_t>{5, 256});
    CHECK(max_abs_diff(na.data, nb.data) <= 1e-6);
    CHECK(max_abs_diff(na.data, library_logits(cfg, 7, kTokenIds)) < 1e-4);

    // kv-cache and params read the checkpoint's config.json.
    const Run p = dsv2_run("params --model " + quote(ckpt) + " --json", tmp.path, tmp.path);
    REQUIRE(p.rc == 0);
    CHECK(json::parse(p.out)["total"] == dsv2::count_params(cfg).total);
}

TEST_CASE("dsv2 forward --model loads a sharded checkpoint the same", "[cli][checkpoint]") {
    TempDir tmp;
    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const std::string ckpt = tmp.subdir("sharded");
    write_config(ckpt, cfg);
    std::map<std::string, dsv2::RawTensor> shard[2];
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    const char* names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    int i = 0;
    int64_t bytes = 0;
    for (auto& [name, t] : checkpoint_tensors(cfg, 7)) {
        const int s = (i++ % 3 == 0) ? 1 : 0;  // uneven split across the two files
        bytes += int64_t(t.bytes.size());
        index["weight_map"][name] = names[s];
        shard[s][name] = std::move(t);
    }
    // A tensor the config does not use (as real checkpoints carry) is ignored.
    dsv2::RawTensor extra;
    extra.dtype = dsv2::DType::F32;
    extra.shape = {4};
    extra.bytes.assign(16, 0);
    shard[1]["model.layers.0.self_attn.rotary_emb.inv_freq"] = extra;
    index["weight_map"]["model.layers.0.self_attn.rotary_emb.inv_freq"] = names[1];
    index["metadata"]["total_size"] = bytes;
    for (int s = 0; s < 2; ++s) dsv2::write_safetensors(ckpt + "/" + names[s], shard[s]);
    dsv2::write_file_atomic(ckpt + "/model.safetensors.index.json", index.dump(2));

    const Run a = dsv2_run("forward --model " + quote(ckpt) + " --tokens " + kTokens + " --out sharded.npy",
                           tmp.path, tmp.path);
    INFO(a.err);
    REQUIRE(a.rc == 0);
    const Run b = dsv2_run(std::string("forward --preset tiny --seed 7 --tokens ") + kTokens + " --out preset.npy",
                           tmp.path, tmp.path);
    REQUIRE(b.rc == 0);
    CHECK(max_abs_diff(read_npy(tmp / "sharded.npy").data, read_npy(tmp / "preset.npy").data) <= 1e-6);
}

TEST_CASE("dsv2 forward --model names a missing or mis-shaped tensor", "[cli][checkpoint][errors]") {
    TempDir tmp;
    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const std::string removed = "model.layers.2.mlp.experts.5.up_proj.weight";
    {
        const std::string ckpt = tmp.subdir("missing");
        write_config(ckpt, cfg);
        auto t = checkpoint_tensors(cfg, 7);
        REQUIRE(t.erase(removed) == 1);
        dsv2::write_safetensors(ckpt + "/model.safetensors", t);
        const std::string cwd = tmp.subdir("run_missing");
        const Run r = dsv2_run("forward --model " + quote(ckpt) + " --tokens 1,2 --out x.npy", cwd, tmp.path);
        INFO(r.err);
        CHECK(r.rc != 0);
        CHECK(r.err_lines() == 1);
        CHECK(r.err.rfind("dsv2: error:", 0) == 0);
        CHECK(r.err.find(removed) != std::string::npos);
        CHECK(list_dir(cwd).empty());
    }
    {
        const std::string ckpt = tmp.subdir("misshaped");
        write_config(ckpt, cfg);
        auto t = checkpoint_tensors(cfg, 7);
        const std::string name = "model.layers.1.self_attn.kv_b_proj.weight";
        std::swap(t[name].shape[0], t[name].shape[1]);  // transposed
        dsv2::write_safetensors(ckpt + "/model.safetensors", t);
        const std::string cwd = tmp.subdir("run_misshaped");
        const Run r = dsv2_run("forward --model " + quote(ckpt) + " --tokens 1,2 --out x.npy", cwd, tmp.path);
        INFO(r.err);
        CHECK(r.rc != 0);
        CHECK(r.err_lines() == 1);
        CHECK(r.err.find(name) != std::string::npos);
        CHECK(list_dir(cwd).empty());
    }
    {
        const std::string ckpt = tmp.subdir("no_weights");
        write_config(ckpt, cfg);
        const Run r = dsv2_run("forward --model " + quote(ckpt) + " --tokens 1,2 --out x.npy", tmp.path, tmp.path);
        CHECK(r.rc != 0);
        CHECK(r.err.find("model.safetensors") != std::string::npos);
    }
}

TEST_CASE("dsv2 bench --json: every measurement it promises, with figures that can be checked", "[cli][bench]") {
    TempDir tmp;
    const Run r = dsv2_run("bench --preset tiny --prefill 12 --contexts 5,20 --steps 2 --no-floors --threads 1 --json b.json",
                           tmp.path, tmp.path);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const json j = json::parse(dsv2::test::read_bytes(tmp.path + "/b.json"));
    const dsv2::Config c = dsv2::config_preset("tiny");
    CHECK(j["tool"] == "dsv2");
    CHECK(j["threads"] == 1);
    CHECK(j["layers"] == c.L);
    REQUIRE(j["prefill"].size() == 2);  // absorbed and naive
    for (const json& p : j["prefill"]) {
        CHECK(p["tokens"] == 12);
        CHECK(p["tokens_per_s"].get<double>() == Approx(12.0 / p["seconds"].get<double>()));
    }
    REQUIRE(j["decode"].size() == 4);  // 2 contexts × 2 forms
    CHECK(j["decode"][0]["context"] == 5);
    CHECK(j["decode"][3]["context"] == 20);
    // Bytes one decode step reads, counted here from the checkpoint's tensor list: every tensor
    // but the embedding table, less the routed experts a token does not visit (N_r − K_r of each
    // MoE layer's experts, three matrices of d·d_e each), plus one embedding row and the cache.
    double touched = 0;
    for (const dsv2::TensorSpec& t : dsv2::tensor_specs(c))
        if (t.name != "model.embed_tokens.weight") touched += double(t.numel());
    for (int64_t l = 0; l < c.L; ++l)
        if (c.is_moe_layer(l)) touched -= double(c.N_r - c.K_r) * 3.0 * double(c.d * c.d_e);
    for (const json& d : j["decode"]) {
        const double ctx = d["context"].get<double>() + 1.5;  // rows attended over, mean of the 2 steps
        CHECK(d["bytes_per_token"].get<double>() ==
              Approx(4.0 * (touched + double(c.d) + double(c.L) * ctx * double(c.d_c + c.d_R))));
        CHECK(d["seconds_per_token"].get<double>() > 0);
    }
    CHECK(j["cache_bytes_per_token"].get<double>() == double(4 * c.L * (c.d_c + c.d_R)));
    CHECK(j["parts"].size() >= 4);
    CHECK(j["peak_rss_bytes"].get<double>() > 1e6);
    CHECK_FALSE(j.contains("gemm_gflops"));  // --no-floors
    CHECK(r.out.find("decode  ctx     20") != std::string::npos);
}

TEST_CASE("dsv2 bench rejects bad arguments before any work, and writes no JSON", "[cli][bench][errors]") {
    TempDir tmp;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"bench --preset tiny --contexts 4,x --json b.json", "--contexts"},
        {"bench --preset tiny --contexts , --json b.json", "--contexts"},
        {"bench --preset tiny --contexts 0 --json b.json", "--contexts"},
        {"bench --preset tiny --layers 99 --json b.json", "--layers"},
        {"bench --preset tiny --contexts 99999999 --json b.json", "max_position_embeddings"},
        {"bench --preset tiny --attention sparse --json b.json", "sparse"},
        {"bench --preset tiny --json /nonexistent_dir/b.json", "/nonexistent_dir"},
        {"bench --json b.json", "--preset"},
        {"bench --preset deepseek-v2 --json b.json", "GB"},
    };
    int k = 0;
    for (const auto& [args, name] : cases) {
        INFO("dsv2 " << args);
        const std::string cwd = tmp.subdir("case" + std::to_string(k++));
        const Run r = dsv2_run(args, cwd, tmp.path);
        INFO("stderr: " << r.err);
        CHECK(r.rc != 0);
        CHECK(r.err_lines() == 1);
        CHECK(r.err.find(name) != std::string::npos);
        CHECK(list_dir(cwd).empty());
    }
}
