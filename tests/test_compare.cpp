// dsv2 compare --against FILE.safetensors, run as a subprocess: the fp64 oracle against
// intermediates dumped by another implementation. The reference data is independent of the code
// under test — PyTorch's golden files (data/golden/, made by transformers), dumps of dsv2 forward
// changed by this file (a planted fault, bf16 rounding done here) — never numbers copied from
// compare's own output.
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

    expect_refused(tmp, "compare --preset tiny", {"--against", "CUDA"});
    expect_refused(tmp, "compare --model " + quote(lite_dir), {"--against"});
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
