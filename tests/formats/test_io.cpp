// .npy and safetensors: written files checked by an independent parser, round trips, half-float
// decoding against hand-made bit patterns, and every malformed safetensors file rejected with
// an error naming the file (and the tensor where there is one).
#include "support.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsv2/io.hpp"

namespace {

using dsv2::test::TempDir;

using dsv2::test::read_existing;

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    REQUIRE(f.good());
}

bool exists(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0;
}

// ---------------------------------------------------------------------------------------------
// A minimal, independent .npy (format 1.0) reader: only what write_npy_f32 must produce.

struct Npy {
    int major = 0, minor = 0;
    size_t header_len = 0;     // the HEADER_LEN field
    std::string header;        // the dict text, padding and '\n' included
    std::string descr;
    bool fortran_order = true;
    std::string shape_text;    // "(5, 256)" as written
    std::vector<int64_t> shape;
    std::vector<float> data;
};

// The text of `key`'s value in a Python dict literal: from after "'key': " to the next
// top-level comma (a tuple's commas are inside parentheses).
std::string dict_value(const std::string& header, const std::string& key) {
    const std::string k = "'" + key + "':";
    const size_t at = header.find(k);
    REQUIRE(at != std::string::npos);
    size_t i = at + k.size();
    while (i < header.size() && header[i] == ' ') ++i;
    int depth = 0;
    size_t j = i;
    for (; j < header.size(); ++j) {
        const char ch = header[j];
        if (ch == '(') ++depth;
        if (ch == ')') --depth;
        if (depth == 0 && (ch == ',' || ch == '}')) break;
    }
    return header.substr(i, j - i);
}

// Parses "(a, b)", "(n,)" or "()" as Python does; a 1-tuple needs its trailing comma.
std::vector<int64_t> parse_shape(const std::string& text) {
    REQUIRE(text.size() >= 2);
    REQUIRE(text.front() == '(');
    REQUIRE(text.back() == ')');
    const std::string inner = text.substr(1, text.size() - 2);
    std::vector<int64_t> dims;
    size_t i = 0;
    bool trailing_comma = false;
    while (i < inner.size()) {
        while (i < inner.size() && inner[i] == ' ') ++i;
        if (i == inner.size()) break;
        size_t j = i;
        while (j < inner.size() && std::isdigit(static_cast<unsigned char>(inner[j]))) ++j;
        REQUIRE(j > i);  // a non-negative integer
        dims.push_back(std::stoll(inner.substr(i, j - i)));
        while (j < inner.size() && inner[j] == ' ') ++j;
        trailing_comma = false;
        if (j < inner.size()) {
            REQUIRE(inner[j] == ',');
            trailing_comma = true;
            ++j;
        }
        i = j;
    }
    if (dims.size() == 1) REQUIRE(trailing_comma);  // "(5)" is an int, not a tuple
    return dims;
}

Npy read_npy(const std::string& path) {
    const std::string b = read_existing(path);
    Npy n;
    REQUIRE(b.size() >= 10);
    REQUIRE(b.compare(0, 6, "\x93NUMPY", 6) == 0);
    n.major = uint8_t(b[6]);
    n.minor = uint8_t(b[7]);
    n.header_len = size_t(uint8_t(b[8])) | size_t(uint8_t(b[9])) << 8;  // little-endian u16
    REQUIRE(b.size() >= 10 + n.header_len);
    n.header = b.substr(10, n.header_len);
    n.descr = dict_value(n.header, "descr");
    const std::string fo = dict_value(n.header, "fortran_order");
    REQUIRE((fo == "False" || fo == "True"));
    n.fortran_order = fo == "True";
    n.shape_text = dict_value(n.header, "shape");
    n.shape = parse_shape(n.shape_text);
    int64_t count = 1;
    for (int64_t s : n.shape) count *= s;
    const size_t data_at = 10 + n.header_len;
    REQUIRE(b.size() == data_at + size_t(count) * 4);
    n.data.resize(size_t(count));
    if (count > 0) std::memcpy(n.data.data(), b.data() + data_at, size_t(count) * 4);  // little-endian host
    return n;
}

dsv2::RawTensor raw_f32(std::vector<int64_t> shape, const std::vector<float>& v) {
    dsv2::RawTensor t;
    t.dtype = dsv2::DType::F32;
    t.shape = std::move(shape);
    t.bytes.resize(v.size() * 4);
    if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), v.size() * 4);
    return t;
}

dsv2::RawTensor raw_u16(dsv2::DType dt, const std::vector<uint16_t>& v) {
    dsv2::RawTensor t;
    t.dtype = dt;
    t.shape = {int64_t(v.size())};
    for (uint16_t x : v) {  // little-endian
        t.bytes.push_back(uint8_t(x & 0xff));
        t.bytes.push_back(uint8_t(x >> 8));
    }
    return t;
}

// A safetensors file from a header text and a data section (for malformed files).
std::string safetensors_bytes(const std::string& header, const std::string& data, uint64_t header_len) {
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(char((header_len >> (8 * i)) & 0xff));
    return out + header + data;
}
std::string safetensors_bytes(const std::string& header, const std::string& data) {
    return safetensors_bytes(header, data, header.size());
}

// read_safetensors(path) must throw std::runtime_error whose message has the path and `parts`.
void require_rejected(const std::string& path, const std::vector<std::string>& parts) {
    try {
        (void)dsv2::read_safetensors(path);
        FAIL("accepted a malformed safetensors file " << path);
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.find(path) != std::string::npos);
        for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("write_npy_f32 writes a NumPy 1.0 file an independent parser reads back", "[io][npy]") {
    TempDir dir;
    const int64_t T = 5, V = 7;
    std::vector<float> v(size_t(T * V));
    for (size_t k = 0; k < v.size(); ++k) v[k] = float(k) * 0.25f - 3.0f;
    v[3] = -0.0f;
    v[4] = std::numeric_limits<float>::denorm_min();
    const std::string path = dir / "logits.npy";
    dsv2::write_npy_f32(path, v.data(), {T, V});

    const Npy n = read_npy(path);
    CHECK(n.major == 1);
    CHECK(n.minor == 0);
    CHECK(n.descr == "'<f4'");
    CHECK_FALSE(n.fortran_order);
    CHECK(n.shape == std::vector<int64_t>{T, V});
    CHECK(n.shape_text == "(5, 7)");
    CHECK((10 + n.header_len) % 64 == 0);  // data starts 64-byte aligned
    REQUIRE(!n.header.empty());
    CHECK(n.header.back() == '\n');
    CHECK(n.header.front() == '{');
    REQUIRE(n.data.size() == v.size());
    CHECK(std::memcmp(n.data.data(), v.data(), v.size() * 4) == 0);
    CHECK(dir.files() == std::vector<std::string>{"logits.npy"});  // no temporary left behind
}

TEST_CASE("write_npy_f32 header is padded to 64 bytes for every shape", "[io][npy]") {
    TempDir dir;
    const std::vector<std::vector<int64_t>> shapes = {
        {1}, {3}, {12345}, {2, 3}, {1, 102400}, {3, 4, 5}, {0, 4}, {1, 1, 1, 1, 1, 1}};
    for (const auto& shape : shapes) {
        int64_t count = 1;
        for (int64_t s : shape) count *= s;
        std::vector<float> v(size_t(count), 1.5f);
        const std::string path = dir / "a.npy";
        dsv2::write_npy_f32(path, v.data(), shape);
        const Npy n = read_npy(path);
        INFO("shape text " << n.shape_text);
        CHECK(n.shape == shape);
        CHECK((10 + n.header_len) % 64 == 0);
        CHECK(n.header.back() == '\n');
        // Only spaces between the dict's closing brace and the final newline.
        const size_t close = n.header.rfind('}');
        REQUIRE(close != std::string::npos);
        CHECK(n.header.find_first_not_of(' ', close + 1) == n.header.size() - 1);
        for (float x : n.data) CHECK(x == 1.5f);
    }
}

TEST_CASE("write_npy_f32 writes a 1-D shape as a Python 1-tuple", "[io][npy]") {
    TempDir dir;
    const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7};
    dsv2::write_npy_f32(dir / "v.npy", v.data(), {7});
    const Npy n = read_npy(dir / "v.npy");  // parse_shape requires the 1-tuple's trailing comma
    CHECK(n.shape == std::vector<int64_t>{7});
    CHECK(n.data == v);
}

// NumPy itself writes a 1-D shape as "(7,)".
TEST_CASE("write_npy_f32 writes a 1-D shape exactly as NumPy does", "[io][npy]") {
    TempDir dir;
    const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7};
    dsv2::write_npy_f32(dir / "v.npy", v.data(), {7});
    CHECK(read_npy(dir / "v.npy").shape_text == "(7,)");
}

TEST_CASE("safetensors round trip: F32, I32, F64, I64, BF16, F16 and metadata", "[io][safetensors]") {
    TempDir dir;
    std::map<std::string, dsv2::RawTensor> t;
    t["logits"] = raw_f32({2, 3}, {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f});
    dsv2::RawTensor idx;
    idx.dtype = dsv2::DType::I32;
    idx.shape = {2, 2};
    const int32_t iv[] = {0, 7, -1, 2147483647};
    idx.bytes.resize(sizeof iv);
    std::memcpy(idx.bytes.data(), iv, sizeof iv);
    t["layers.2.moe.topk_idx"] = idx;
    dsv2::RawTensor f64;
    f64.dtype = dsv2::DType::F64;
    f64.shape = {3};
    const double dv[] = {0.1, -1e300, 3.0};
    f64.bytes.resize(sizeof dv);
    std::memcpy(f64.bytes.data(), dv, sizeof dv);
    t["f64"] = f64;
    dsv2::RawTensor i64;
    i64.dtype = dsv2::DType::I64;
    i64.shape = {1};
    const int64_t lv = -(int64_t(1) << 40);
    i64.bytes.resize(8);
    std::memcpy(i64.bytes.data(), &lv, 8);
    t["i64"] = i64;
    t["bf16"] = raw_u16(dsv2::DType::BF16, {0x3F80, 0xC000, 0x0000});
    t["f16"] = raw_u16(dsv2::DType::F16, {0x3C00, 0x0001, 0x7C00});
    t["empty"] = raw_f32({0, 5}, {});
    t["scalar"] = raw_f32({}, {42.0f});
    const std::map<std::string, std::string> meta = {
        {"format", "dsv2-intermediates"}, {"config", "{\"a\": 1}\nline 2"}, {"empty", ""}};

    const std::string path = dir / "x.safetensors";
    dsv2::write_safetensors(path, t, meta);
    CHECK(dir.files() == std::vector<std::string>{"x.safetensors"});

    // The header is a little-endian u64 then JSON; data begins 8-byte aligned.
    const std::string bytes = read_existing(path);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(uint8_t(bytes[size_t(i)])) << (8 * i);
    CHECK(hlen % 8 == 0);
    CHECK(bytes[8] == '{');

    std::map<std::string, std::string> meta_back;
    const auto back = dsv2::read_safetensors(path, &meta_back);
    CHECK(meta_back == meta);
    REQUIRE(back.size() == t.size());
    for (const auto& [name, want] : t) {
        INFO(name);
        REQUIRE(back.count(name) == 1);
        const dsv2::RawTensor& got = back.at(name);
        CHECK(got.dtype == want.dtype);
        CHECK(got.shape == want.shape);
        CHECK(got.bytes == want.bytes);
        CHECK(got.numel() == want.numel());
    }
    const std::vector<double> idx_d = back.at("layers.2.moe.topk_idx").to_double();
    CHECK(idx_d == std::vector<double>{0, 7, -1, 2147483647});
    CHECK(back.at("f64").to_double() == std::vector<double>{0.1, -1e300, 3.0});
    CHECK(back.at("i64").to_double() == std::vector<double>{-1099511627776.0});
    CHECK(back.at("logits").to_double()[2] == 3.25);
    CHECK(back.at("scalar").numel() == 1);
    CHECK(back.at("scalar").to_double() == std::vector<double>{42.0});
    CHECK(back.at("empty").numel() == 0);

    // Reading without a metadata sink works as well.
    CHECK(dsv2::read_safetensors(path).size() == t.size());
}

TEST_CASE("safetensors with no tensors round-trips", "[io][safetensors]") {
    TempDir dir;
    dsv2::write_safetensors(dir / "e.safetensors", {});
    CHECK(dsv2::read_safetensors(dir / "e.safetensors").empty());
}

TEST_CASE("write_safetensors refuses a tensor whose bytes do not match its shape", "[io][safetensors]") {
    TempDir dir;
    std::map<std::string, dsv2::RawTensor> t;
    t["w"] = raw_f32({2, 2}, {1, 2, 3});
    CHECK_THROWS_WITH(dsv2::write_safetensors(dir / "w.safetensors", t), Catch::Contains("\"w\""));
    CHECK(dir.files().empty());
}

TEST_CASE("BF16 decoding matches hand-computed bit patterns", "[io][dtype]") {
    struct Case {
        uint16_t bits;
        double value;
    };
    const std::vector<Case> cases = {
        {0x3F80, 1.0},           {0xC000, -2.0},      {0x0000, 0.0},          {0x3E80, 0.25},
        {0x4049, 3.140625},      {0x4780, 65536.0},   {0x0080, std::ldexp(1.0, -126)},  // smallest normal
        {0x0001, std::ldexp(1.0, -133)},  // smallest subnormal
        {0x7F7F, 0x1.FEp127},    {0x3F81, 1.0078125},
    };
    std::vector<uint16_t> bits;
    for (const Case& c : cases) bits.push_back(c.bits);
    const std::vector<double> got = raw_u16(dsv2::DType::BF16, bits).to_double();
    REQUIRE(got.size() == cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
        INFO("bf16 0x" << std::hex << cases[i].bits);
        CHECK(got[i] == cases[i].value);
    }
    const std::vector<double> special = raw_u16(dsv2::DType::BF16, {0x7F80, 0xFF80, 0x7FC0, 0x8000}).to_double();
    CHECK(std::isinf(special[0]));
    CHECK(special[0] > 0);
    CHECK(std::isinf(special[1]));
    CHECK(special[1] < 0);
    CHECK(std::isnan(special[2]));
    CHECK(special[3] == 0.0);
    CHECK(std::signbit(special[3]));
}

TEST_CASE("F16 decoding matches hand-computed bit patterns", "[io][dtype]") {
    struct Case {
        uint16_t bits;
        double value;
    };
    const std::vector<Case> cases = {
        {0x3C00, 1.0},
        {0xC000, -2.0},
        {0x3800, 0.5},
        {0x3555, 0.333251953125},
        {0x7BFF, 65504.0},                      // largest finite
        {0x0400, std::ldexp(1.0, -14)},         // smallest normal
        {0x0001, std::ldexp(1.0, -24)},         // smallest subnormal
        {0x8001, -std::ldexp(1.0, -24)},
        {0x0002, std::ldexp(1.0, -23)},
        {0x0200, std::ldexp(1.0, -15)},         // subnormal, top mantissa bit
        {0x03FF, 1023.0 * std::ldexp(1.0, -24)},  // largest subnormal
        {0x0000, 0.0},
        {0x4248, 3.140625},
    };
    std::vector<uint16_t> bits;
    for (const Case& c : cases) bits.push_back(c.bits);
    const std::vector<double> got = raw_u16(dsv2::DType::F16, bits).to_double();
    REQUIRE(got.size() == cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
        INFO("f16 0x" << std::hex << cases[i].bits);
        CHECK(got[i] == cases[i].value);
    }
    const std::vector<double> special = raw_u16(dsv2::DType::F16, {0x7C00, 0xFC00, 0x7E00, 0x8000}).to_double();
    CHECK(std::isinf(special[0]));
    CHECK(special[0] > 0);
    CHECK(std::isinf(special[1]));
    CHECK(special[1] < 0);
    CHECK(std::isnan(special[2]));
    CHECK(special[3] == 0.0);
    CHECK(std::signbit(special[3]));

    // Every finite f16 against the formula (-1)^s · 2^(e-15) · (1 + m/1024), or 2^-14 · m/1024.
    std::vector<uint16_t> all;
    for (uint32_t b = 0; b < 0x10000; ++b)
        if (((b >> 10) & 0x1f) != 0x1f) all.push_back(uint16_t(b));
    const std::vector<double> dec = raw_u16(dsv2::DType::F16, all).to_double();
    int bad = 0;
    for (size_t i = 0; i < all.size(); ++i) {
        const uint16_t b = all[i];
        const int e = (b >> 10) & 0x1f, m = b & 0x3ff;
        const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
        const double want = (b & 0x8000) ? -mag : mag;
        if (dec[i] != want) ++bad;
    }
    CHECK(bad == 0);
}

TEST_CASE("dtype names and sizes", "[io][dtype]") {
    using dsv2::DType;
    CHECK(std::string(dsv2::to_string(DType::F32)) == "F32");
    CHECK(std::string(dsv2::to_string(DType::F16)) == "F16");
    CHECK(std::string(dsv2::to_string(DType::BF16)) == "BF16");
    CHECK(std::string(dsv2::to_string(DType::F64)) == "F64");
    CHECK(std::string(dsv2::to_string(DType::I32)) == "I32");
    CHECK(std::string(dsv2::to_string(DType::I64)) == "I64");
    CHECK(dsv2::dtype_size(DType::F16) == 2);
    CHECK(dsv2::dtype_size(DType::BF16) == 2);
    CHECK(dsv2::dtype_size(DType::F32) == 4);
    CHECK(dsv2::dtype_size(DType::I32) == 4);
    CHECK(dsv2::dtype_size(DType::F64) == 8);
    CHECK(dsv2::dtype_size(DType::I64) == 8);
}

TEST_CASE("malformed safetensors files are rejected naming the file and tensor", "[io][safetensors]") {
    TempDir dir;
    const std::string data8(8, '\0');
    auto tensor = [](const std::string& name, const std::string& dtype, const std::string& shape,
                     const std::string& offsets) {
        return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
               ", \"data_offsets\": " + offsets + "}";
    };
    struct Case {
        const char* file;
        std::string bytes;
        std::vector<std::string> parts;
    };
    const std::vector<Case> cases = {
        {"empty.safetensors", "", {"short"}},
        {"truncated.safetensors", std::string("\x10\x00\x00", 3), {"short"}},
        {"past_end.safetensors", safetensors_bytes("{}", "", 1000), {"1000", "past the end"}},
        {"huge_len.safetensors", safetensors_bytes("{}", "", ~uint64_t(0)), {"past the end"}},
        {"bad_json.safetensors", safetensors_bytes("{\"w\": [1, 2", ""), {"JSON"}},
        {"array.safetensors", safetensors_bytes("[1, 2, 3]", ""), {"object"}},
        {"unknown_dtype.safetensors",
         safetensors_bytes("{" + tensor("model.norm.weight", "Q4", "[2]", "[0, 8]") + "}", data8),
         {"model.norm.weight", "Q4"}},
        {"length_mismatch.safetensors",
         safetensors_bytes("{" + tensor("w1", "F32", "[3]", "[0, 8]") + "}", data8), {"w1", "12", "8"}},
        {"bf16_length.safetensors",
         safetensors_bytes("{" + tensor("w2", "BF16", "[2, 3]", "[0, 8]") + "}", data8), {"w2"}},
        {"out_of_range.safetensors",
         safetensors_bytes("{" + tensor("w3", "F32", "[4]", "[0, 16]") + "}", data8), {"w3", "16"}},
        {"reversed.safetensors",
         safetensors_bytes("{" + tensor("w4", "F32", "[1]", "[8, 4]") + "}", data8), {"w4"}},
        {"overlap.safetensors",
         safetensors_bytes("{" + tensor("first", "F32", "[2]", "[0, 8]") + ", " +
                               tensor("second", "F32", "[2]", "[4, 12]") + "}",
                           std::string(12, '\0')),
         {"first", "second", "overlap"}},
        {"negative_shape.safetensors",
         safetensors_bytes("{" + tensor("w5", "F32", "[-2]", "[0, 8]") + "}", data8), {"w5", "-2"}},
        {"float_shape.safetensors",
         safetensors_bytes("{" + tensor("w6", "F32", "[2.5]", "[0, 8]") + "}", data8), {"w6"}},
        {"overflow_shape.safetensors",
         safetensors_bytes("{" + tensor("w7", "F32", "[4294967296, 4294967296]", "[0, 8]") + "}", data8),
         {"w7"}},
        {"negative_offset.safetensors",
         safetensors_bytes("{" + tensor("w8", "F32", "[2]", "[-8, 0]") + "}", data8), {"w8"}},
        {"no_offsets.safetensors",
         safetensors_bytes("{\"w9\": {\"dtype\": \"F32\", \"shape\": [2]}}", data8), {"w9", "data_offsets"}},
        {"entry_not_object.safetensors", safetensors_bytes("{\"w10\": 3}", data8), {"w10"}},
        {"shape_not_array.safetensors",
         safetensors_bytes("{" + tensor("w11", "F32", "2", "[0, 8]") + "}", data8), {"w11", "shape"}},
        {"bad_metadata.safetensors", safetensors_bytes("{\"__metadata__\": {\"a\": 1}}", ""), {"__metadata__"}},
    };
    for (const Case& c : cases) {
        INFO("file " << c.file);
        const std::string path = dir / c.file;
        write_bytes(path, c.bytes);
        require_rejected(path, c.parts);
    }
    // A file that does not exist.
    require_rejected(dir / "absent.safetensors", {"open"});
}

TEST_CASE("a well-formed hand-written safetensors file is read", "[io][safetensors]") {
    // Offsets in any order, header padded with spaces, a tensor spanning the whole data section.
    TempDir dir;
    std::string data(12, '\0');
    const float a[] = {1.0f, 2.0f}, b = -4.0f;
    std::memcpy(&data[4], a, 8);
    std::memcpy(&data[0], &b, 4);
    const std::string header =
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]},"
        " \"b\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}   ";
    write_bytes(dir / "ok.safetensors", safetensors_bytes(header, data));
    const auto t = dsv2::read_safetensors(dir / "ok.safetensors");
    REQUIRE(t.size() == 2);
    CHECK(t.at("a").to_double() == std::vector<double>{1.0, 2.0});
    CHECK(t.at("b").to_double() == std::vector<double>{-4.0});
}

TEST_CASE("write_file_atomic leaves no file when it cannot write", "[io][atomic]") {
    TempDir dir;
    const std::string missing_dir = dir / "no_such_dir";
    const std::string target = missing_dir + "/out.npy";
    CHECK_THROWS_AS(dsv2::write_file_atomic(target, "hello"), std::runtime_error);
    CHECK_THROWS_WITH(dsv2::write_file_atomic(target, "hello"), Catch::Contains(target));
    CHECK_FALSE(exists(target));
    CHECK_FALSE(exists(missing_dir));
    CHECK(dir.files().empty());

    const float v[] = {1.0f};
    CHECK_THROWS_AS(dsv2::write_npy_f32(target, v, {1}), std::runtime_error);
    CHECK_THROWS_AS(dsv2::write_safetensors(target, {}), std::runtime_error);
    CHECK(dir.files().empty());

    // A target that is a directory: the rename fails and the temporary is removed.
    REQUIRE(mkdir(missing_dir.c_str(), 0700) == 0);
    CHECK_THROWS_AS(dsv2::write_file_atomic(missing_dir, "hello"), std::runtime_error);
    CHECK(dir.files() == std::vector<std::string>{"no_such_dir"});
    rmdir(missing_dir.c_str());
}

TEST_CASE("write_file_atomic replaces an existing file whole", "[io][atomic]") {
    TempDir dir;
    const std::string path = dir / "f.bin";
    dsv2::write_file_atomic(path, std::string(1000, 'a'));
    dsv2::write_file_atomic(path, std::string("bc\0d", 4));
    CHECK(read_existing(path) == std::string("bc\0d", 4));
    CHECK(dir.files() == std::vector<std::string>{"f.bin"});
}
