// The checkpoint loader: dtype conversion, shards and their index, what inspect reports, and the
// refusals — each naming the file and tensor.
#include <cstring>
#include <fstream>

#include "dsv2/checkpoint.hpp"
#include "dsv2/io.hpp"
#include "dsv2/model.hpp"
#include "support.hpp"

using namespace dsv2;
using dsv2::test::TempDir;

namespace {

uint16_t to_bf16(float f) {  // round to nearest even, as torch does
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return uint16_t((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

float from_bf16(uint16_t h) {
    const uint32_t b = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

RawTensor raw_of(const Mat<float>& m, bool one_d, DType dtype) {
    RawTensor t;
    t.dtype = dtype;
    t.shape = one_d ? std::vector<int64_t>{m.cols()} : std::vector<int64_t>{m.rows(), m.cols()};
    if (dtype == DType::F32) {
        t.bytes.resize(size_t(m.size()) * 4);
        std::memcpy(t.bytes.data(), m.data(), t.bytes.size());
    } else {  // BF16
        t.bytes.resize(size_t(m.size()) * 2);
        for (Eigen::Index k = 0; k < m.size(); ++k) {
            const uint16_t h = to_bf16(m.data()[k]);
            std::memcpy(t.bytes.data() + 2 * k, &h, 2);
        }
    }
    return t;
}

std::map<std::string, RawTensor> checkpoint_tensors(const Config& c, const Weights<float>& w, DType dtype) {
    std::map<std::string, RawTensor> out;
    for (const TensorSpec& s : tensor_specs(c)) out[s.name] = raw_of(w.mat(s.name), s.shape.size() == 1, dtype);
    return out;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("a BF16 checkpoint loads as the bf16-rounded weights, in fp32 and fp64") {
    const Config c = config_preset("tiny");
    const Weights<float> w = random_weights<float>(c, 1);
    TempDir dir;
    write_text(dir / "config.json", config_to_json_text(c));
    write_safetensors(dir / "model.safetensors", checkpoint_tensors(c, w, DType::BF16));
    const Weights<float> f = load_weights<float>(dir.path, c);
    const Weights<double> d = load_weights<double>(dir.path, c);
    int64_t wrong = 0, rounded = 0;
    for (const TensorSpec& s : tensor_specs(c)) {
        const Mat<float>& a = w.mat(s.name);
        for (Eigen::Index k = 0; k < a.size(); ++k) {
            const float want = from_bf16(to_bf16(a.data()[k]));
            wrong += (f.mat(s.name).data()[k] != want || d.mat(s.name).data()[k] != double(want)) ? 1 : 0;
            rounded += want != a.data()[k] ? 1 : 0;
        }
    }
    CHECK(wrong == 0);
    CHECK(rounded > 1000);  // the bf16 file really is rounded
    CHECK_NOTHROW(Model<float>(c, f));
}

TEST_CASE("sharded checkpoints: the index is followed and checked") {
    const Config c = config_preset("tiny");
    const Weights<float> w = random_weights<float>(c, 2);
    const auto all = checkpoint_tensors(c, w, DType::F32);
    TempDir dir;
    write_text(dir / "config.json", config_to_json_text(c));
    std::map<std::string, RawTensor> a, b;
    std::string index = "{\"metadata\": {}, \"weight_map\": {";
    int i = 0;
    for (const auto& [name, t] : all) {
        (i % 2 ? a : b)[name] = t;
        index += std::string(i ? ", " : "") + "\"" + name + "\": \"" + (i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") + "\"";
        ++i;
    }
    index += "}}";
    write_safetensors(dir / "model-00001-of-00002.safetensors", a);
    write_safetensors(dir / "model-00002-of-00002.safetensors", b);
    write_text(dir / "model.safetensors.index.json", index);
    const Weights<float> loaded = load_weights<float>(dir.path, c);
    CHECK(loaded.mat("model.layers.2.mlp.experts.7.down_proj.weight") == w.mat("model.layers.2.mlp.experts.7.down_proj.weight"));
    const CheckpointReport r = inspect_checkpoint(dir.path, c);
    CHECK(r.ok());
    CHECK(r.files.size() == 2);
    CHECK(r.unexpected.empty());

    SECTION("an index naming a file that does not exist") {
        write_text(dir / "model.safetensors.index.json", "{\"weight_map\": {\"lm_head.weight\": \"nope.safetensors\"}}");
        const std::string e = error_of([&] { load_weights<float>(dir.path, c); });
        CHECK(e.find("model.safetensors.index.json") != std::string::npos);
        CHECK(e.find("nope.safetensors") != std::string::npos);
    }
    SECTION("a tensor stored in a shard the index does not say") {
        std::string moved = index;
        const std::string key = "\"lm_head.weight\": \"";
        const size_t at = moved.find(key) + key.size();
        const bool in_first = moved.compare(at, 11, "model-00001") == 0;
        moved.replace(at, 11, in_first ? "model-00002" : "model-00001");
        write_text(dir / "model.safetensors.index.json", moved);
        const std::string e = error_of([&] { load_weights<float>(dir.path, c); });
        CHECK(e.find("lm_head.weight") != std::string::npos);
    }
    SECTION("a tensor stored twice") {
        auto b2 = b;
        b2["model.norm.weight"] = all.at("model.norm.weight");
        b2.erase(b2.begin());  // keep the index consistent for the others is not needed: duplicates are found first
        write_safetensors(dir / "model-00002-of-00002.safetensors", b2);
        const std::string e = error_of([&] { load_weights<float>(dir.path, c); });
        CHECK(!e.empty());
    }
    SECTION("an index that is not JSON") {
        write_text(dir / "model.safetensors.index.json", "{weight_map");
        CHECK(error_of([&] { load_weights<float>(dir.path, c); }).find("not valid JSON") != std::string::npos);
    }
}

TEST_CASE("inspect reports missing, mis-shaped, wrongly typed and unexpected tensors; load names the first") {
    const Config c = config_preset("tiny");
    const Weights<float> w = random_weights<float>(c, 3);
    auto t = checkpoint_tensors(c, w, DType::F32);
    t.erase("model.layers.1.mlp.experts.3.up_proj.weight");
    t["model.layers.0.self_attn.o_proj.weight"].shape = {48, 64};  // same bytes, wrong shape
    RawTensor ints;
    ints.dtype = DType::I32;
    ints.shape = {64};
    ints.bytes.assign(256, 0);
    t["model.norm.weight"] = ints;
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = raw_of(Mat<float>::Ones(1, 4), true, DType::F32);
    TempDir dir;
    write_text(dir / "config.json", config_to_json_text(c));
    write_safetensors(dir / "model.safetensors", t);
    const CheckpointReport r = inspect_checkpoint(dir.path, c);
    CHECK_FALSE(r.ok());
    CHECK(r.missing == std::vector<std::string>{"model.layers.1.mlp.experts.3.up_proj.weight"});
    REQUIRE(r.misshaped.size() == 1);
    CHECK(r.misshaped[0].find("o_proj") != std::string::npos);
    CHECK(r.misshaped[0].find("[48, 64]") != std::string::npos);
    REQUIRE(r.bad_dtype.size() == 1);
    CHECK(r.bad_dtype[0].find("model.norm.weight") != std::string::npos);
    CHECK(r.unexpected == std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq"});
    // The loader names the first problem in tensor order: layer 0's o_proj.
    const std::string e = error_of([&] { load_weights<float>(dir.path, c); });
    CHECK(e.find("model.layers.0.self_attn.o_proj.weight") != std::string::npos);
    CHECK(e.find("[48, 64]") != std::string::npos);
}

TEST_CASE("the loader reports unexpected tensors without refusing them") {
    const Config c = config_preset("tiny");
    const Weights<float> w = random_weights<float>(c, 4);
    auto t = checkpoint_tensors(c, w, DType::F32);
    t["model.layers.2.self_attn.rotary_emb.inv_freq"] = raw_of(Mat<float>::Ones(1, 4), true, DType::F32);
    TempDir dir;
    write_safetensors(dir / "model.safetensors", t);
    std::vector<std::string> unexpected;
    const Weights<float> loaded = load_weights<float>(dir.path, c, false, &unexpected);
    CHECK(unexpected == std::vector<std::string>{"model.layers.2.self_attn.rotary_emb.inv_freq"});
    CHECK_FALSE(loaded.has("model.layers.2.self_attn.rotary_emb.inv_freq"));
}

TEST_CASE("not a checkpoint directory: each case named") {
    const Config c = config_preset("tiny");
    TempDir dir;
    CHECK(error_of([&] { load_weights<float>(dir.path, c); }).find("no model.safetensors") != std::string::npos);
    CHECK(error_of([&] { load_weights<float>(dir / "absent", c); }).find("no such file or directory") != std::string::npos);
    write_text(dir / "file", "x");
    CHECK(error_of([&] { load_weights<float>(dir / "file", c); }).find("not a directory") != std::string::npos);
    write_text(dir / "model.safetensors", "short");
    const std::string e = error_of([&] { load_weights<float>(dir.path, c); });
    CHECK(e.find("model.safetensors") != std::string::npos);
    CHECK(e.find("too short") != std::string::npos);
}
