// dsv2 compare, run as a subprocess: the fp64 oracle against intermediates dumped by another
// implementation (--against FILE), and against dsv2's engine run on --device host (the CUDA
// path's CPU twin; --device cuda where a GPU is present). The reference data is independent of
// the code under test — PyTorch's golden files (data/golden/, made by transformers), dumps of dsv2
// forward changed by this file (a planted fault, bf16 rounding done here, an expert index moved
// to a near tie or far from one), the oracle's names and shapes recomputed in-process — never
// numbers copied from compare's own output.
#include "support.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv2/checkpoint.hpp"
#include "dsv2/io.hpp"
#include "dsv2/model.hpp"

namespace {

using json = nlohmann::json;
using dsv2::test::dsv2_run;
using dsv2::test::list_dir;
using dsv2::test::quote;
using dsv2::test::Run;
using dsv2::test::TempDir;
using Tensors = std::map<std::string, dsv2::RawTensor>;

const std::string kGolden = std::string(DSV2_SOURCE_DIR) + "/data/golden/";
std::string golden_dir(const std::string& name) { return kGolden + name; }
std::string golden_file(const std::string& name) { return kGolden + name + "/golden.safetensors"; }

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream ss(text);
    for (std::string line; std::getline(ss, line);) out.push_back(line);
    return out;
}

std::string last_line(const std::string& text) {
    const std::vector<std::string> l = lines_of(text);
    return l.empty() ? "" : l.back();
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The table line of intermediate `name` ("" when there is none).
std::string line_of(const std::string& out, const std::string& name) {
    for (const std::string& l : lines_of(out))
        if (starts_with(l, name + " ")) return l;
    return "";
}

// The intermediates of a file: every tensor but `tokens`.
std::set<std::string> intermediates(const Tensors& t) {
    std::set<std::string> names;
    for (const auto& [n, x] : t)
        if (n != "tokens") names.insert(n);
    return names;
}

// A copy of `src` with `change` applied to its tensors, metadata kept.
void write_changed(const std::string& src, const std::string& dst, const std::function<void(Tensors&)>& change) {
    std::map<std::string, std::string> meta;
    Tensors t = dsv2::read_safetensors(src, &meta);
    change(t);
    dsv2::write_safetensors(dst, t, meta);
}

std::vector<float> floats_of(const dsv2::RawTensor& t) {
    REQUIRE(t.dtype == dsv2::DType::F32);
    std::vector<float> v(size_t(t.numel()));
    std::memcpy(v.data(), t.bytes.data(), v.size() * 4);
    return v;
}
void set_floats(dsv2::RawTensor& t, const std::vector<float>& v) {
    REQUIRE(t.dtype == dsv2::DType::F32);
    REQUIRE(v.size() == size_t(t.numel()));
    std::memcpy(t.bytes.data(), v.data(), v.size() * 4);
}

// A tensor of 4-byte elements (I32 or F32) for the safetensors writer.
template <typename T>
dsv2::RawTensor raw_tensor(dsv2::DType dtype, const std::vector<T>& v, std::vector<int64_t> shape) {
    static_assert(sizeof(T) == 4);
    dsv2::RawTensor t;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.bytes.resize(v.size() * 4);
    std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    return t;
}
dsv2::RawTensor i32_tensor(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
    return raw_tensor(dsv2::DType::I32, v, std::move(shape));
}
dsv2::RawTensor f32_tensor(const std::vector<float>& v, std::vector<int64_t> shape) {
    return raw_tensor(dsv2::DType::F32, v, std::move(shape));
}

// fp32 → bf16 bits, round to nearest, ties to even (finite inputs): keep the top 16 bits of the
// fp32 pattern after adding half an ulp of bf16 (0x7fff) plus the parity of the kept last bit.
uint16_t to_bf16(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return uint16_t(bits >> 16);
}

// Every F32 tensor of `t` stored as BF16 (rounded by to_bf16); indices and tokens unchanged.
void round_to_bf16(Tensors& t) {
    for (auto& [name, x] : t) {
        if (x.dtype != dsv2::DType::F32) continue;
        const std::vector<float> v = floats_of(x);
        x.dtype = dsv2::DType::BF16;
        x.bytes.resize(v.size() * 2);
        for (size_t i = 0; i < v.size(); ++i) {
            const uint16_t b = to_bf16(v[i]);
            std::memcpy(x.bytes.data() + 2 * i, &b, 2);
        }
    }
}

// Runs `dsv2 ARGS` in a fresh subdirectory of `tmp` (so that the directory can be checked after).
Run run_in(const TempDir& tmp, const std::string& args, std::string* cwd_out = nullptr) {
    static int k = 0;
    const std::string cwd = tmp.subdir("run" + std::to_string(k++));
    if (cwd_out) *cwd_out = cwd;
    return dsv2_run(args, cwd, tmp.path);
}

// The contract for bad input (docs/robustness.md): exit non-zero (not a signal), exactly one
// "dsv2: error:" line naming the problem, nothing written.
void expect_refused(const TempDir& tmp, const std::string& args, const std::vector<std::string>& names) {
    INFO("dsv2 " << args);
    std::string cwd;
    const Run r = run_in(tmp, args, &cwd);
    if (const char* log = std::getenv("DSV2_ERROR_LOG"); log && *log) {
        std::string err = r.err;
        if (!err.empty() && err.back() == '\n') err.pop_back();
        std::ofstream(log, std::ios::app) << Catch::getResultCapture().getCurrentTestName() << '\t' << args << '\t' << r.rc
                                          << '\t' << err << '\n';
    }
    INFO("exit " << r.rc << ", stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.rc != 0);
    CHECK(r.rc < 128);
    CHECK(r.err_lines() == 1);
    CHECK(starts_with(r.err, "dsv2: error:"));
    CHECK(r.err.find("Sanitizer") == std::string::npos);
    CHECK(r.err.find("runtime error") == std::string::npos);
    CHECK(r.out.empty());
    for (const std::string& n : names) CHECK(r.err.find(n) != std::string::npos);
    CHECK(list_dir(cwd).empty());
}

}  // namespace

TEST_CASE("compare --against PyTorch's golden data: every intermediate listed and within 1e-5", "[compare][golden]") {
    TempDir tmp;
    for (const std::string name : {"lite", "v2"}) {
        const Tensors g = dsv2::read_safetensors(golden_file(name));
        const std::set<std::string> want = intermediates(g);
        for (const std::string extra : {"", " --attention naive", " --prefill 5", " --attention naive --prefill 0"}) {
            const std::string args =
                "compare --model " + quote(golden_dir(name)) + " --against " + quote(golden_file(name)) + extra;
            INFO("dsv2 " << args);
            const Run r = run_in(tmp, args);
            INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
            REQUIRE(r.rc == 0);
            CHECK(r.err.empty());
            for (const std::string& n : want) {
                INFO(n);
                const std::string l = line_of(r.out, n);
                CHECK(l.find("PASS") != std::string::npos);
            }
            CHECK(r.out.find("FAIL") == std::string::npos);
            CHECK(starts_with(last_line(r.out), "all " + std::to_string(want.size()) + " intermediates within 1e-05"));
            // The absorbed form's own entries are not in PyTorch's file: said, but not a failure.
            const bool absorbed = extra.find("naive") == std::string::npos;
            CHECK((r.out.find("oracle intermediates not in") != std::string::npos) == absorbed);
            if (absorbed) CHECK(r.out.find("(first: layers.0.attn.q_absorbed)") != std::string::npos);
            CHECK(r.out.find("not an oracle intermediate") == std::string::npos);
        }
    }
}

TEST_CASE("compare --json: the errors it reports are ‖Δ‖/‖ref‖ of the oracle against the file", "[compare][golden][json]") {
    TempDir tmp;
    const std::string name = "v2";
    const Run r = run_in(tmp, "compare --model " + quote(golden_dir(name)) + " --against " + quote(golden_file(name)) +
                                  " --attention naive --json");
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    REQUIRE(r.rc == 0);
    const json j = json::parse(r.out);
    CHECK(j["ok"] == true);
    CHECK(j["first_divergence"].is_null());
    CHECK(j["dtype"] == "fp32");

    // Recomputed here: the fp64 oracle in-process on the file's tokens, against the file's tensors.
    const Tensors g = dsv2::read_safetensors(golden_file(name));
    std::vector<int32_t> tokens;
    for (double v : g.at("tokens").to_double()) tokens.push_back(int32_t(v));
    const dsv2::Config cfg = dsv2::config_from_file(golden_dir(name));
    const dsv2::Model<double> m(cfg, dsv2::load_weights<double>(golden_dir(name), cfg));
    dsv2::LatentCache<double> cache(cfg);
    dsv2::Trace trace;
    m.forward(tokens, cache, dsv2::AttentionForm::naive, &trace);

    std::set<std::string> seen;
    for (const json& e : j["entries"]) {
        const std::string n = e["name"];
        INFO(n);
        seen.insert(n);
        CHECK(e["pass"] == true);
        const dsv2::RawTensor& t = g.at(n);
        CHECK(e["shape"].get<std::vector<int64_t>>() == t.shape);
        const std::vector<double> v = t.to_double();
        const dsv2::Mat<double> file = Eigen::Map<const dsv2::Mat<double>>(v.data(), t.shape[0], t.shape[1]);
        const dsv2::Mat<double>& ref = trace.at(n).data;
        const double rel = dsv2::test::rel_err(file, ref);
        const double max_abs = (file - ref).cwiseAbs().maxCoeff();
        if (t.dtype == dsv2::DType::I32) {
            CHECK(e["integer"] == true);
            CHECK(e["differing"] == 0);
        } else {
            CHECK(e["integer"] == false);
            CHECK(e["bound"].get<double>() == 1e-5);
            CHECK(e["rel"].get<double>() == Approx(rel).epsilon(1e-6).margin(1e-15));
            CHECK(e["max_abs"].get<double>() == Approx(max_abs).epsilon(1e-6).margin(1e-15));
            CHECK(rel <= 1e-5);
        }
    }
    CHECK(seen == intermediates(g));
}

TEST_CASE("compare --against a dsv2 forward --dump: self-describing, within the fp32 bound", "[compare][dump]") {
    TempDir tmp;
    const std::string dump = tmp / "D.safetensors";
    const Run f = dsv2_run("forward --preset tiny --tokens 72,105,33,7,250,0 --prefill 2 --out " + quote(tmp / "x.npy") +
                               " --dump " + quote(dump),
                           tmp.path, tmp.path);
    INFO(f.err);
    REQUIRE(f.rc == 0);
    const Tensors d = dsv2::read_safetensors(dump);
    // The dump holds the tokens it ran, I32 [T].
    REQUIRE(d.count("tokens") == 1);
    CHECK(d.at("tokens").dtype == dsv2::DType::I32);
    CHECK(d.at("tokens").shape == std::vector<int64_t>{6});
    CHECK(d.at("tokens").to_double() == std::vector<double>{72, 105, 33, 7, 250, 0});
    const size_t n = intermediates(d).size();

    SECTION("the fp32 dump against the fp64 oracle, with and without --tokens, either schedule") {
        for (const std::string extra : {"", " --tokens 72,105,33,7,250,0", " --prefill 6", " --prefill 0 --json"}) {
            const Run r = run_in(tmp, "compare --preset tiny --against " + quote(dump) + extra);
            INFO("extra: " << extra << "\nstdout:\n" << r.out << "\nstderr: " << r.err);
            REQUIRE(r.rc == 0);
            if (extra.find("--json") != std::string::npos) {
                const json j = json::parse(r.out);
                CHECK(j["ok"] == true);
                CHECK(j["entries"].size() == n);
                CHECK(j["oracle_intermediates_not_in_file"].empty());
            } else {
                CHECK(starts_with(last_line(r.out), "all " + std::to_string(n) + " intermediates within 1e-05"));
                CHECK(r.out.find("not in") == std::string::npos);
            }
        }
    }
    SECTION("with --attention naive the dump's absorbed-form entries are not oracle intermediates: said, not failed") {
        const Run r = run_in(tmp, "compare --preset tiny --against " + quote(dump) + " --attention naive");
        INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
        REQUIRE(r.rc == 0);
        CHECK(r.out.find("layers.0.attn.q_absorbed: not an oracle intermediate") != std::string::npos);
        CHECK(r.out.find("layers.2.attn.o_latent: not an oracle intermediate") != std::string::npos);
        CHECK(r.out.find("tokens: not an oracle") == std::string::npos);  // tokens is skipped
    }
    SECTION("another model (seed 1) fails at the first intermediate, the embedding") {
        const Run r = run_in(tmp, "compare --preset tiny --seed 1 --against " + quote(dump));
        INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
        CHECK(r.rc == 1);
        CHECK(starts_with(last_line(r.out), "first divergence: embed ("));
        CHECK(line_of(r.out, "logits").find("FAIL") != std::string::npos);
    }
}

TEST_CASE("compare names a planted fault as the first divergence", "[compare][fault]") {
    TempDir tmp;
    const std::string name = "lite";
    const std::string base = "compare --model " + quote(golden_dir(name)) + " --against ";

    SECTION("layers.1.attn.q_pe scaled by 1 + 1e-3") {
        const std::string bad = tmp / "q_pe.safetensors";
        write_changed(golden_file(name), bad, [](Tensors& t) {
            std::vector<float> v = floats_of(t.at("layers.1.attn.q_pe"));
            for (float& x : v) x *= 1.001f;
            set_floats(t.at("layers.1.attn.q_pe"), v);
        });
        const Run r = run_in(tmp, base + quote(bad));
        INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
        CHECK(r.rc == 1);
        CHECK(starts_with(last_line(r.out), "first divergence: layers.1.attn.q_pe (‖Δ‖/‖ref‖ 1.0e-03 > 1e-05)"));
        CHECK(line_of(r.out, "layers.1.attn.q_pe").find("FAIL") != std::string::npos);
        CHECK(line_of(r.out, "layers.1.attn.q_nope").find("PASS") != std::string::npos);  // just before it
        // The fault is in the file only, so nothing after it diverges: exactly one FAIL.
        int fails = 0;
        for (const std::string& l : lines_of(r.out)) fails += l.find("FAIL") != std::string::npos;
        CHECK(fails == 1);
        const Run j = run_in(tmp, base + quote(bad) + " --json");
        REQUIRE(j.rc == 1);
        const json doc = json::parse(j.out);
        CHECK(doc["ok"] == false);
        CHECK(doc["first_divergence"] == "layers.1.attn.q_pe");
    }
    SECTION("one expert index of layers.2.moe.topk_idx changed") {
        const std::string bad = tmp / "topk.safetensors";
        write_changed(golden_file(name), bad, [](Tensors& t) {
            dsv2::RawTensor& idx = t.at("layers.2.moe.topk_idx");
            REQUIRE(idx.dtype == dsv2::DType::I32);
            REQUIRE(idx.shape[1] == 2);
            int32_t row[2];
            std::memcpy(row, idx.bytes.data() + 5 * 8, 8);  // token 5
            int32_t other = (row[0] + 1) % 8;
            if (other == row[1]) other = (other + 1) % 8;
            std::memcpy(idx.bytes.data() + 5 * 8 + 4, &other, 4);
        });
        const Run r = run_in(tmp, base + quote(bad));
        INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
        CHECK(r.rc == 1);
        CHECK(last_line(r.out) == "first divergence: layers.2.moe.topk_idx (1 of 24 indices differ)");
        CHECK(line_of(r.out, "layers.1.moe.topk_idx").find("PASS") != std::string::npos);
    }
    SECTION("a NaN in the logits, a column missing from k_pe, and a tensor that is not an intermediate") {
        const std::string bad = tmp / "mixed.safetensors";
        write_changed(golden_file(name), bad, [](Tensors& t) {
            std::vector<float> v = floats_of(t.at("logits"));
            v[17] = std::nanf("");
            set_floats(t.at("logits"), v);
            const std::vector<float> k = floats_of(t.at("layers.2.attn.k_pe"));  // [12, 8] → [12, 7]
            std::vector<float> k7;
            for (size_t i = 0; i < k.size(); ++i)
                if (i % 8 != 7) k7.push_back(k[i]);
            t["layers.2.attn.k_pe"] = f32_tensor(k7, {12, 7});
            t["my.own.probe"] = f32_tensor({1, 2, 3}, {3});
        });
        const Run r = run_in(tmp, base + quote(bad));
        INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
        CHECK(r.rc == 1);
        CHECK(last_line(r.out) == "first divergence: layers.2.attn.k_pe (shape [12, 7] in the file, oracle [12, 8])");
        CHECK(line_of(r.out, "logits").find("FAIL") != std::string::npos);
        CHECK(r.out.find("my.own.probe: not an oracle intermediate") != std::string::npos);
    }
}

TEST_CASE("compare --dtype bf16 accepts a dump rounded to bf16, --dtype fp32 does not", "[compare][bf16]") {
    TempDir tmp;
    const std::string dump = tmp / "D.safetensors", bf16 = tmp / "D_bf16.safetensors";
    const Run f = dsv2_run("forward --preset tiny --tokens 1,2,3,4,5,6,7,8 --prefill 3 --out " + quote(tmp / "x.npy") +
                               " --dump " + quote(dump),
                           tmp.path, tmp.path);
    INFO(f.err);
    REQUIRE(f.rc == 0);
    write_changed(dump, bf16, round_to_bf16);
    const Tensors b = dsv2::read_safetensors(bf16);
    REQUIRE(b.at("logits").dtype == dsv2::DType::BF16);
    REQUIRE(b.at("layers.1.moe.topk_idx").dtype == dsv2::DType::I32);

    const Run ok = run_in(tmp, "compare --preset tiny --against " + quote(bf16) + " --dtype bf16 --json");
    INFO("stdout:\n" << ok.out << "\nstderr: " << ok.err);
    REQUIRE(ok.rc == 0);
    const json j = json::parse(ok.out);
    CHECK(j["ok"] == true);
    CHECK(j["bound"].get<double>() == 2e-2);
    // Rounding to bf16 moves each value by at most 2^-8 of itself (plus the fp32 run's ~1e-6), and
    // visibly: the errors reported must lie in that window.
    for (const json& e : j["entries"]) {
        if (e["integer"] == true) continue;
        INFO(e.dump());
        CHECK(e["rel"].get<double>() <= std::ldexp(1.0, -8) + 1e-5);
        if (e["name"] != "embed") CHECK(e["rel"].get<double>() >= 1e-4);
    }

    const Run bad = run_in(tmp, "compare --preset tiny --against " + quote(bf16));
    INFO("stdout:\n" << bad.out << "\nstderr: " << bad.err);
    CHECK(bad.rc == 1);
    CHECK(starts_with(last_line(bad.out), "first divergence: "));
    CHECK(last_line(bad.out).find("> 1e-05") != std::string::npos);
    // bf16's bound still fails a different model.
    const Run other = run_in(tmp, "compare --preset tiny --seed 1 --against " + quote(bf16) + " --dtype bf16");
    CHECK(other.rc == 1);
    CHECK(starts_with(last_line(other.out), "first divergence: embed ("));
}

TEST_CASE("compare refuses bad input: one error line naming the problem, non-zero exit", "[compare][errors]") {
    TempDir tmp;
    const std::string lite = golden_file("lite"), lite_dir = golden_dir("lite");
    const std::string against = " --against " + quote(lite);

    // Files made for the cases.
    const std::string truncated = tmp / "truncated.safetensors";
    {
        const std::string bytes = dsv2::test::read_bytes(lite);
        std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    const std::string f32_tokens = tmp / "f32_tokens.safetensors";
    write_changed(lite, f32_tokens, [](Tensors& t) {
        t["tokens"] = f32_tensor(std::vector<float>(12, 1.0f), {12});
    });
    const std::string tokens_2d = tmp / "tokens_2d.safetensors";
    write_changed(lite, tokens_2d, [](Tensors& t) { t["tokens"] = i32_tensor(std::vector<int32_t>(12, 1), {3, 4}); });
    const std::string no_tokens = tmp / "no_tokens.safetensors";
    write_changed(lite, no_tokens, [](Tensors& t) { t.erase("tokens"); });
    const std::string big_token = tmp / "big_token.safetensors";
    dsv2::write_safetensors(big_token, {{"tokens", i32_tensor({5, 999}, {2})},
                                        {"embed", f32_tensor(std::vector<float>(2 * 64, 0.0f), {2, 64})}});
    const std::string negative_token = tmp / "negative_token.safetensors";
    dsv2::write_safetensors(negative_token, {{"tokens", i32_tensor({5, -3}, {2})},
                                             {"embed", f32_tensor(std::vector<float>(2 * 64, 0.0f), {2, 64})}});
    const std::string no_names = tmp / "no_names.safetensors";
    dsv2::write_safetensors(no_names, {{"tokens", i32_tensor({5, 6}, {2})}, {"hidden_states", f32_tensor({1, 2}, {2, 1})}});
    const std::string u8 = tmp / "u8.safetensors";  // a dtype dsv2 does not read, written by hand
    {
        const std::string header = R"({"tokens":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("embed":{"dtype":"U8","shape":[2,64],"data_offsets":[8,136]}})";
        std::string bytes(8, '\0');
        for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
        bytes += header + std::string(136, '\1');
        std::ofstream(u8, std::ios::binary) << bytes;
    }
    const std::string q = " --against ";

    expect_refused(tmp, "compare --preset tiny --against " + quote(lite) + " --device host", {"--device host", "--against", lite});
    expect_refused(tmp, "compare --preset tiny --device host --attention naive", {"--attention naive", "--against"});
    expect_refused(tmp, "compare --preset tiny --device host --prefill 13", {"--prefill 13", "12 default tokens"});
    expect_refused(tmp, "compare --preset tiny --device host --tokens 1,256", {"--tokens", "256", "vocabulary [0, 256)"});
    expect_refused(tmp, "compare --preset tiny --device host --tokens 1,x", {"--tokens", "\"x\""});
    expect_refused(tmp, "compare --preset tiny --device cpu", {"--device", "cpu"});
    expect_refused(tmp, "compare" + against, {"--preset", "--model"});
    expect_refused(tmp, "compare --preset tiny --against nope.safetensors", {"--against", "nope.safetensors"});
    expect_refused(tmp, "compare --preset tiny --against " + quote(tmp.path), {tmp.path, "not a regular file"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + q + quote(truncated), {truncated});
    expect_refused(tmp, "compare --preset tiny" + q + quote(u8), {u8, "embed", "unsupported dtype"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + q + quote(f32_tokens), {f32_tokens, "\"tokens\"", "I32", "F32"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + q + quote(tokens_2d), {"\"tokens\"", "I32 [T]", "[3, 4]"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + q + quote(no_tokens), {no_tokens, "\"tokens\"", "--tokens"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + against + " --tokens 1,2,3", {"--tokens 1,2,3", "\"tokens\"", lite});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + against + " --tokens 1,x", {"--tokens", "\"x\""});
    expect_refused(tmp, "compare --preset tiny" + q + quote(big_token), {"999", "vocabulary", "\"tokens\""});
    expect_refused(tmp, "compare --preset tiny" + q + quote(negative_token), {"-3", "vocabulary"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + q + quote(no_tokens) + " --tokens 17,150,300",
                   {"--tokens", "300", "vocabulary [0, 200)"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + against + " --prefill 13", {"--prefill 13", "12 tokens"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + against + " --dtype fp16", {"--dtype", "fp16"});
    expect_refused(tmp, "compare --model " + quote(lite_dir) + against + " --attention sparse", {"--attention", "sparse"});
    expect_refused(tmp, "compare --preset tiny" + q + quote(no_names), {no_names, "nothing compared"});
    expect_refused(tmp, "compare --preset nonexistent" + against, {"nonexistent"});
    expect_refused(tmp, "compare --model /nonexistent/dir" + against, {"/nonexistent/dir"});
}

// ------------------------------------------------------------------------------------------------
// Without --against: dsv2's engine against the oracle (docs/compare.md, "The engine").

namespace {

// compare's default tokens, recomputed: token i = (1 + 7919 i) mod V, i < 12.
std::vector<int32_t> default_tokens(int64_t V) {
    std::vector<int32_t> t;
    for (int64_t i = 0; i < 12; ++i) t.push_back(int32_t((1 + 7919 * i) % V));
    return t;
}

// The names and shapes of the oracle's intermediates for `tokens` with compare's schedule, each
// call in the engine's form (several tokens: naive; one: absorbed), computed here in-process.
std::map<std::string, std::vector<int64_t>> oracle_shapes(const dsv2::Config& cfg, const std::vector<int32_t>& tokens,
                                                          size_t prefill) {
    const dsv2::Model<double> m(cfg, dsv2::random_weights<double>(cfg, 0));
    dsv2::LatentCache<double> cache(cfg, int64_t(tokens.size()));
    dsv2::Trace trace;
    for (size_t done = 0; done < tokens.size();) {
        const size_t n = done == 0 && prefill > 0 ? prefill : 1;
        const std::vector<int32_t> part(tokens.begin() + long(done), tokens.begin() + long(done + n));
        m.forward(part, cache, n == 1 ? dsv2::AttentionForm::absorbed : dsv2::AttentionForm::naive, &trace);
        done += n;
    }
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& [name, e] : trace.entries()) shapes[name] = {e.data.rows(), e.data.cols()};
    return shapes;
}

}  // namespace

TEST_CASE("compare --device host: the engine within 1e-5 of the fp64 oracle at every intermediate", "[compare][engine]") {
    TempDir tmp;
    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const std::vector<int32_t> tokens = default_tokens(cfg.V);
    std::string toks;
    for (int32_t t : tokens) toks += (toks.empty() ? "" : ",") + std::to_string(t);

    // A prefill of 7 of the 12 default tokens, then 5 one-token calls: both attention forms.
    const Run r = run_in(tmp, "compare --preset tiny --device host --prefill 7");
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.err.empty());
    const std::vector<std::string> lines = lines_of(r.out);
    REQUIRE(lines.size() > 4);
    CHECK(starts_with(lines[0], "oracle   fp64, preset tiny (seed 0), 12 tokens (7 prefill + 5 decode)"));
    CHECK(lines[1] == "engine   host (CPU twin of the CUDA path), fp32 weights: ‖Δ‖/‖ref‖ ≤ 1e-05, expert indices exact");
    CHECK(starts_with(lines[2], "tokens   " + toks + " (the default"));
    const auto shapes = oracle_shapes(cfg, tokens, 7);
    for (const auto& [name, shape] : shapes) {
        INFO(name);
        const std::string l = line_of(r.out, name);
        CHECK(l.find("PASS") != std::string::npos);
        CHECK(l.find("[" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]") != std::string::npos);
    }
    CHECK(shapes.at("layers.0.attn.q_absorbed")[0] == 5);  // the decode calls only
    CHECK(r.out.find("FAIL") == std::string::npos);
    CHECK(r.out.find("not in") == std::string::npos);
    CHECK(starts_with(last_line(r.out), "all " + std::to_string(shapes.size()) + " intermediates within 1e-05 (worst"));

    // The default schedule: all but the last 4 tokens in one call, then 4 decode calls.
    const Run def = run_in(tmp, "compare --preset tiny --device host");
    INFO("stdout:\n" << def.out << "\nstderr: " << def.err);
    REQUIRE(def.rc == 0);
    CHECK(lines_of(def.out)[0].find("12 tokens (8 prefill + 4 decode)") != std::string::npos);
    CHECK(line_of(def.out, "layers.0.attn.q_absorbed").find("[4, ") != std::string::npos);

    // All 12 tokens in one call: the naive form only.
    const Run all = run_in(tmp, "compare --preset tiny --device host --prefill 12");
    INFO("stdout:\n" << all.out << "\nstderr: " << all.err);
    REQUIRE(all.rc == 0);
    CHECK(lines_of(all.out)[0].find("12 tokens (12 prefill + 0 decode)") != std::string::npos);
    CHECK(all.out.find("q_absorbed") == std::string::npos);
    CHECK(starts_with(last_line(all.out), "all " + std::to_string(oracle_shapes(cfg, tokens, 12).size()) + " intermediates within 1e-05"));
}

TEST_CASE("compare --device host --json: the engine's fields, and errors that are really computed", "[compare][engine][json]") {
    TempDir tmp;
    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const Run r = run_in(tmp, "compare --preset tiny --seed 3 --device host --tokens 5,17,250,3,99 --prefill 2 --json");
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    REQUIRE(r.rc == 0);
    const json j = json::parse(r.out);
    CHECK(j["ok"] == true);
    CHECK(j["against"].is_null());
    CHECK(j["engine"]["device"] == "host");
    CHECK(j["engine"]["name"] == "host (CPU twin of the CUDA path)");
    CHECK(j["engine"]["weights"] == "fp32");
    CHECK(j["oracle"]["precision"] == "fp64");
    CHECK(j["oracle"]["tokens"].get<std::vector<int32_t>>() == std::vector<int32_t>{5, 17, 250, 3, 99});
    CHECK(j["oracle"]["default_tokens"] == false);
    CHECK(j["oracle"]["prefill"] == 2);
    CHECK(j["source"] == "preset tiny (seed 3)");
    CHECK(j["dtype"] == "fp32");
    CHECK(j["bound"].get<double>() == 1e-5);
    CHECK(j["tie_tol"].get<double>() == 0);
    CHECK(j["first_divergence"].is_null());
    const auto shapes = oracle_shapes(cfg, {5, 17, 250, 3, 99}, 2);
    REQUIRE(j["entries"].size() == shapes.size());
    double worst = 0;
    for (const json& e : j["entries"]) {
        const std::string n = e["name"];
        INFO(e.dump());
        CHECK(e["pass"] == true);
        CHECK(e["shape"].get<std::vector<int64_t>>() == shapes.at(n));
        CHECK(e["oracle_shape"].get<std::vector<int64_t>>() == shapes.at(n));
        if (e["integer"] == true) {
            CHECK(e["differing"] == 0);
            continue;
        }
        CHECK(e["rel"].get<double>() <= 1e-5);
        worst = std::max(worst, e["rel"].get<double>());
    }
    CHECK(worst > 1e-8);  // the engine and the oracle really computed apart (fp32 against fp64)
}

TEST_CASE("compare --device host --dtype bf16: within 2e-2 of the oracle on the bf16-rounded weights", "[compare][engine][bf16]") {
    TempDir tmp;
    const Run r = run_in(tmp, "compare --preset tiny --device host --dtype bf16 --prefill 5 --json");
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    REQUIRE(r.rc == 0);
    const json j = json::parse(r.out);
    CHECK(j["ok"] == true);
    CHECK(j["engine"]["weights"] == "bf16");
    CHECK(j["oracle"]["weights"] == "rounded to bf16");
    CHECK(j["bound"].get<double>() == 2e-2);
    CHECK(j["tie_tol"].get<double>() == 2e-2);
    double worst = 0;
    for (const json& e : j["entries"]) {
        INFO(e.dump());
        CHECK(e["pass"] == true);
        if (e["integer"] == false) worst = std::max(worst, e["rel"].get<double>());
    }
    CHECK(worst <= 2e-2);
    CHECK(worst >= 1e-3);  // bf16 products really rounded (fp32 weights stay near 1e-7)

    // The embedded model (stored in BF16) with the table: said in the header, and passing.
    const Run t = run_in(tmp, "compare --model " + quote(std::string(DSV2_SOURCE_DIR) + "/data/models/kjv-tiny") +
                                  " --device host --dtype bf16 --prefill 4");
    INFO("stdout:\n" << t.out << "\nstderr: " << t.err);
    REQUIRE(t.rc == 0);
    CHECK(lines_of(t.out)[0].find("weights rounded to bf16") != std::string::npos);
    CHECK(starts_with(lines_of(t.out)[1], "engine   host (CPU twin of the CUDA path), bf16 weights: ‖Δ‖/‖ref‖ ≤ 2e-02, "
                                          "expert indices exact or near ties (score gap ≤ 2e-02 of the top score)"));
    CHECK(starts_with(last_line(t.out), "all "));
    CHECK(last_line(t.out).find("within 2e-02") != std::string::npos);
}

TEST_CASE("compare without --against defaults to --device cuda: runs on a GPU, else one error line saying so",
          "[compare][engine][errors]") {
    TempDir tmp;
    const Run r = run_in(tmp, "compare --preset tiny --json");
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    if (r.rc == 0) {  // a machine with a GPU and a build with the CUDA path
        const json j = json::parse(r.out);
        CHECK(j["ok"] == true);
        CHECK(j["engine"]["device"] == "cuda");
        CHECK(starts_with(j["engine"]["name"].get<std::string>(), "cuda: "));
        return;
    }
    expect_refused(tmp, "compare --preset tiny", {"--device cuda", "--device host", "--against"});
    expect_refused(tmp, "compare --model " + quote(golden_dir("lite")) + " --device cuda", {"--device cuda", "--device host"});
    const bool no_build = r.err.find("built without the CUDA path") != std::string::npos;
    CHECK((no_build || r.err.find("no CUDA device") != std::string::npos));
}

TEST_CASE("compare --against --dtype bf16: an expert index may differ at a near tie, not elsewhere", "[compare][bf16][ties]") {
    TempDir tmp;
    const std::string dump = tmp / "D.safetensors";
    std::string toks;
    for (int i = 0; i < 32; ++i) toks += (i ? "," : "") + std::to_string(7 * i + 3);
    const Run f = dsv2_run("forward --preset tiny --tokens " + toks + " --out " + quote(tmp / "x.npy") + " --dump " + quote(dump),
                           tmp.path, tmp.path);
    INFO(f.err);
    REQUIRE(f.rc == 0);
    const Tensors d = dsv2::read_safetensors(dump);

    // In the dump's scores (fp32, within 1e-6 of the oracle's), an unchosen expert whose score is
    // within 1e-2 of a chosen one's (relative to the token's top score), and one beyond 5e-2.
    struct Move { std::string layer; int64_t t = -1; int32_t to = -1; };
    Move near, far;
    for (const std::string layer : {"layers.1.moe.", "layers.2.moe."}) {
        const std::vector<double> s = d.at(layer + "scores").to_double(), idx = d.at(layer + "topk_idx").to_double();
        const int64_t N = d.at(layer + "scores").shape[1], K = d.at(layer + "topk_idx").shape[1];
        for (int64_t t = 0; t < 32; ++t) {
            const double top = s[size_t(t * N + int64_t(idx[size_t(t * K)]))];
            const int32_t chosen = int32_t(idx[size_t(t * K + K - 1)]);
            for (int32_t e = 0; e < N; ++e) {
                bool taken = false;
                for (int64_t k = 0; k < K; ++k) taken = taken || int32_t(idx[size_t(t * K + k)]) == e;
                if (taken) continue;
                const double gap = std::abs(s[size_t(t * N + e)] - s[size_t(t * N + chosen)]);
                if (near.t < 0 && gap <= 1e-2 * top) near = {layer, t, e};
                if (far.t < 0 && gap >= 5e-2 * top) far = {layer, t, e};
            }
        }
    }
    REQUIRE(near.t >= 0);
    REQUIRE(far.t >= 0);
    auto moved = [&](const Move& m, const std::string& path) {
        write_changed(dump, path, [&](Tensors& t) {
            dsv2::RawTensor& idx = t.at(m.layer + "topk_idx");
            const int64_t K = idx.shape[1];
            std::memcpy(idx.bytes.data() + 4 * (m.t * K + K - 1), &m.to, 4);  // the last chosen expert
        });
        return path;
    };
    const std::string near_file = moved(near, tmp / "near.safetensors"), far_file = moved(far, tmp / "far.safetensors");

    const Run ok = run_in(tmp, "compare --preset tiny --against " + quote(near_file) + " --dtype bf16");
    INFO("stdout:\n" << ok.out << "\nstderr: " << ok.err);
    CHECK(ok.rc == 0);
    CHECK(line_of(ok.out, near.layer + "topk_idx").find("1 of 64 differ  PASS  near ties") != std::string::npos);
    // The moved token's experts changed: from there on (layer 2's router too, when the move is in
    // layer 1) only the tokens before it are compared, so fewer indices are counted.
    const int64_t indices = 64 + (near.layer == "layers.1.moe." ? 2 * near.t : 64);
    CHECK(last_line(ok.out).find("; 1 of " + std::to_string(indices) +
                                 " expert indices differ, near ties (score gap ≤ 2e-02 of the top score); a near tie changed token " +
                                 std::to_string(near.t) + "'s experts at " + near.layer + "topk_idx") != std::string::npos);
    const Run j = run_in(tmp, "compare --preset tiny --against " + quote(near_file) + " --dtype bf16 --json");
    REQUIRE(j.rc == 0);
    const json doc = json::parse(j.out);  // kept: a range-for over json::parse(…)["entries"] would dangle
    for (const json& e : doc["entries"])
        if (e["name"] == near.layer + "topk_idx") CHECK(e["near_ties"] == 1);

    const Run exact = run_in(tmp, "compare --preset tiny --against " + quote(near_file));  // fp32: exact
    CHECK(exact.rc == 1);
    CHECK(last_line(exact.out) == "first divergence: " + near.layer + "topk_idx (1 of 64 indices differ)");

    const Run bad = run_in(tmp, "compare --preset tiny --against " + quote(far_file) + " --dtype bf16");
    INFO("stdout:\n" << bad.out);
    CHECK(bad.rc == 1);
    CHECK(last_line(bad.out) == "first divergence: " + far.layer +
                                    "topk_idx (1 of 64 indices differ, 1 not at near ties (score gap ≤ 2e-02 of the top score))");
}

TEST_CASE("compare --against a dump of the engine follows its attention form per call and its schedule", "[compare][engine][dump]") {
    TempDir tmp;
    const std::string dump = tmp / "E.safetensors";
    const Run f = dsv2_run("forward --preset tiny --tokens 72,105,33,7,250,0 --prefill 2 --device host --out " +
                               quote(tmp / "x.npy") + " --dump " + quote(dump),
                           tmp.path, tmp.path);
    INFO(f.err);
    REQUIRE(f.rc == 0);
    const Tensors d = dsv2::read_safetensors(dump);
    CHECK(d.at("layers.0.attn.q_absorbed").shape == std::vector<int64_t>{4, 128});  // the 4 decode calls
    const size_t n = intermediates(d).size();

    const Run r = run_in(tmp, "compare --preset tiny --against " + quote(dump));
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    REQUIRE(r.rc == 0);
    CHECK(lines_of(r.out)[0].find("each call in the engine's attention form") != std::string::npos);
    CHECK(lines_of(r.out)[0].find("6 tokens (2 prefill + 4 decode)") != std::string::npos);
    CHECK(starts_with(last_line(r.out), "all " + std::to_string(n) + " intermediates within 1e-05"));
    // One form for every call, as asked: the oracle's absorbed prefill has rows the dump lacks.
    const Run a = run_in(tmp, "compare --preset tiny --against " + quote(dump) + " --attention absorbed");
    CHECK(a.rc == 1);
    CHECK(starts_with(last_line(a.out), "first divergence: layers.0.attn.q_absorbed (shape [4, 128] in the file, oracle [6, 128])"));
}

TEST_CASE("compare --device host --dtype bf16: after a near tie changes a token's experts, what it reaches is compared on the earlier tokens", "[compare][engine][bf16]") {
    // 252 bytes of Genesis on the tiny preset (seed 7), 128 prefill + 124 decode: bf16 arithmetic
    // moves token 74 across a near tie in layer 2's router (tests/engine/test_engine_host.cpp proves such
    // a change moves that token's moe.routed row by O(1), past the 2e-2 bound of the whole tensor).
    TempDir tmp;
    const std::string text = "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
                             "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
                             "And God said, Let there be light: and there was light.";
    std::string toks;
    for (unsigned char ch : text) toks += (toks.empty() ? "" : ",") + std::to_string(int(ch));
    const std::string args = "compare --preset tiny --seed 7 --device host --dtype bf16 --prefill 128 --tokens " + toks;
    const Run r = run_in(tmp, args);
    INFO("stdout:\n" << r.out << "\nstderr: " << r.err);
    REQUIRE(r.rc == 0);
    CHECK(last_line(r.out).find("; a near tie changed token 74's experts at layers.2.moe.topk_idx, so what that reaches "
                                "(the rest of the layer, the later layers) was compared on tokens 0 … 73") != std::string::npos);
    CHECK(line_of(r.out, "layers.2.moe.routed").find("(first 74 rows)") != std::string::npos);
    CHECK(line_of(r.out, "logits").find("(first 74 rows)") != std::string::npos);
    CHECK(line_of(r.out, "layers.1.out").find("rows)") == std::string::npos);           // an earlier layer: every token
    CHECK(line_of(r.out, "layers.2.attn.o_latent").find("rows)") == std::string::npos); // layer 2's attention too
    const Run j = run_in(tmp, args + " --json");
    REQUIRE(j.rc == 0);
    const json doc = json::parse(j.out);
    CHECK(doc["near_tie_cut"]["token"] == 74);
    CHECK(doc["near_tie_cut"]["after"] == "layers.2.moe.topk_idx");
}
