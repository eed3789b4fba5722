#include "dsv2/io.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace dsv2 {

namespace {

using json = nlohmann::json;

void put_u64le(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}

// a·b for non-negative sizes, or -1 on overflow.
int64_t mul_checked(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return -1;
    return a * b;
}

float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            uint32_t m = man;
            do { ++e; m <<= 1; } while ((m & 0x400) == 0);
            bits = sign | uint32_t(127 - 15 - e) << 23 | (m & 0x3ff) << 13;
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

}  // namespace

const char* to_string(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::F64: return "F64";
        case DType::I32: return "I32";
        case DType::I64: return "I64";
    }
    return "?";
}

int64_t dtype_size(DType t) {
    switch (t) {
        case DType::F16: case DType::BF16: return 2;
        case DType::F32: case DType::I32: return 4;
        case DType::F64: case DType::I64: return 8;
    }
    return 0;
}

int64_t RawTensor::numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

std::vector<double> RawTensor::to_double() const {
    const int64_t n = numel();
    std::vector<double> out(static_cast<size_t>(n));
    const uint8_t* p = bytes.data();
    if (dtype == DType::I32) {
        for (int64_t i = 0; i < n; ++i) { int32_t v; std::memcpy(&v, p + 4 * i, 4); out[size_t(i)] = v; }
    } else if (dtype == DType::I64) {
        for (int64_t i = 0; i < n; ++i) { int64_t v; std::memcpy(&v, p + 8 * i, 8); out[size_t(i)] = double(v); }
    } else {
        convert_floats<double>(dtype, p, n, out.data());
    }
    return out;
}

namespace {
// strerror(errno) as the rest of dsv2's messages write it: "no such file or directory".
std::string errno_text() {
    std::string s = std::strerror(errno);
    if (!s.empty()) s[0] = char(std::tolower(static_cast<unsigned char>(s[0])));
    return s;
}
}  // namespace

std::string read_text_file(const std::string& path_in, const std::string& file_name, std::string* resolved) {
    std::string path = path_in;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) throw std::invalid_argument(path + ": " + errno_text());
    if (S_ISDIR(st.st_mode)) {
        path += "/" + file_name;
        if (stat(path.c_str(), &st) != 0) throw std::invalid_argument(path + ": " + errno_text());
    }
    if (S_ISDIR(st.st_mode)) throw std::invalid_argument(path + ": is a directory, expected a file");
    if (resolved) *resolved = path;
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::invalid_argument(path + ": cannot open for reading (" + errno_text() + ")");
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) throw std::invalid_argument(path + ": read error");
    return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error(path + ": cannot write (" + std::strerror(errno) + ")");
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    const bool closed = std::fclose(f) == 0;
    if (!ok || !closed) {
        std::remove(tmp.c_str());
        throw std::runtime_error(path + ": write failed (disk full?)");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw std::runtime_error(path + ": cannot write (" + why + ")");
    }
}

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
    std::string dims;
    int64_t n = 1;
    for (int64_t s : shape) {
        dims += std::to_string(s) + ", ";
        n *= s;
    }
    if (shape.size() == 1) dims.pop_back();                     // "(n,)", as NumPy writes it
    else if (shape.size() > 1) dims.resize(dims.size() - 2);    // "(T, V)"
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Pad with spaces so that magic (6) + version (2) + length (2) + header ends on 64 bytes, '\n' last.
    const size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header.push_back('\n');
    std::string out = std::string("\x93NUMPY\x01\x00", 8);
    out.push_back(char(header.size() & 0xff));
    out.push_back(char(header.size() >> 8));
    out += header;
    out.append(reinterpret_cast<const char*>(data), size_t(n) * sizeof(float));
    write_file_atomic(path, out);
}

void write_safetensors(const std::string& path, const std::map<std::string, RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    json h = json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    int64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        const int64_t len = t.numel() * dtype_size(t.dtype);
        if (int64_t(t.bytes.size()) != len) throw std::logic_error("write_safetensors: \"" + name + "\" byte length");
        h[name] = {{"dtype", to_string(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + len}}};
        offset += len;
    }
    std::string header = h.dump();
    header.append((8 - header.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
    std::string out;
    put_u64le(out, header.size());
    out += header;
    for (const auto& [name, t] : tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    write_file_atomic(path, out);
}

int64_t SafetensorsFile::Entry::numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    auto bad = [&](const std::string& what) { return std::runtime_error(path + ": " + what); };
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw bad(std::string("cannot open for reading (") + std::strerror(errno) + ")");
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw bad("not a regular file");
    }
    size_ = int64_t(st.st_size);
    if (size_ < 8) {
        ::close(fd);
        throw bad("too short for a safetensors header (" + std::to_string(size_) + " bytes)");
    }
    void* m = ::mmap(nullptr, size_t(size_), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) throw bad(std::string("cannot map (") + std::strerror(errno) + ")");
    map_ = static_cast<const uint8_t*>(m);
    try {
        uint64_t n = 0;
        for (int i = 0; i < 8; ++i) n |= uint64_t(map_[i]) << (8 * i);
        if (n > uint64_t(size_) - 8) throw bad("header length " + std::to_string(n) + " runs past the end of the file");
        json h;
        try {
            h = json::parse(map_ + 8, map_ + 8 + n);
        } catch (const json::exception& e) {
            throw bad(std::string("header is not valid JSON (") + e.what() + ")");
        }
        if (!h.is_object()) throw bad("header is not a JSON object");
        data_ = map_ + 8 + n;
        const int64_t data_size = size_ - 8 - int64_t(n);

        std::vector<std::pair<std::pair<int64_t, int64_t>, std::string>> spans;
        for (auto it = h.begin(); it != h.end(); ++it) {
            const std::string& name = it.key();
            if (name == "__metadata__") {
                if (!it->is_object()) throw bad("__metadata__ is not an object");
                for (auto m2 = it->begin(); m2 != it->end(); ++m2) {
                    if (!m2->is_string()) throw bad("__metadata__ value \"" + m2.key() + "\" is not a string");
                    metadata_[m2.key()] = m2->get<std::string>();
                }
                continue;
            }
            auto tbad = [&](const std::string& what) { return bad("tensor \"" + name + "\": " + what); };
            const json& e = *it;
            if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
                throw tbad("needs dtype, shape and data_offsets");
            Entry t;
            const std::string dt = e["dtype"].is_string() ? e["dtype"].get<std::string>() : "";
            if (dt == "F32") t.dtype = DType::F32;
            else if (dt == "F16") t.dtype = DType::F16;
            else if (dt == "BF16") t.dtype = DType::BF16;
            else if (dt == "F64") t.dtype = DType::F64;
            else if (dt == "I32") t.dtype = DType::I32;
            else if (dt == "I64") t.dtype = DType::I64;
            else throw tbad("unsupported dtype " + e["dtype"].dump());
            if (!e["shape"].is_array()) throw tbad("shape is not an array");
            int64_t numel = 1;
            for (const json& s : e["shape"]) {
                if (!s.is_number_integer() || s.get<int64_t>() < 0) throw tbad("shape has a bad dimension " + s.dump());
                t.shape.push_back(s.get<int64_t>());
                numel = mul_checked(numel, t.shape.back());
                if (numel < 0) throw tbad("shape overflows");
            }
            const json& o = e["data_offsets"];
            if (!o.is_array() || o.size() != 2 || !o[0].is_number_unsigned() || !o[1].is_number_unsigned())
                throw tbad("data_offsets must be two non-negative integers");
            const uint64_t b = o[0].get<uint64_t>(), en = o[1].get<uint64_t>();
            if (b > en || en > uint64_t(data_size))
                throw tbad("data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] outside the " +
                           std::to_string(data_size) + "-byte data section");
            const int64_t want = mul_checked(numel, dtype_size(t.dtype));
            if (want < 0 || uint64_t(want) != en - b)
                throw tbad("shape × dtype = " + std::to_string(want) + " bytes but data_offsets span " + std::to_string(en - b));
            t.offset = int64_t(b);
            t.nbytes = int64_t(en - b);
            spans.push_back({{int64_t(b), int64_t(en)}, name});
            tensors_.emplace(name, std::move(t));
        }
        std::sort(spans.begin(), spans.end());
        for (size_t i = 1; i < spans.size(); ++i)
            if (spans[i].first.first < spans[i - 1].first.second)
                throw bad("tensors \"" + spans[i - 1].second + "\" and \"" + spans[i].second + "\" overlap");
    } catch (...) {
        ::munmap(const_cast<uint8_t*>(map_), size_t(size_));
        throw;
    }
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), size_(o.size_), data_(o.data_), tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {
    o.map_ = nullptr;
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_t(size_));
}

template <typename T>
void convert_floats(DType dtype, const uint8_t* src, int64_t n, T* out) {
    switch (dtype) {
        case DType::F32:
            for (int64_t i = 0; i < n; ++i) { float v; std::memcpy(&v, src + 4 * i, 4); out[i] = T(v); }
            return;
        case DType::F64:
            for (int64_t i = 0; i < n; ++i) { double v; std::memcpy(&v, src + 8 * i, 8); out[i] = T(v); }
            return;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) { uint16_t v; std::memcpy(&v, src + 2 * i, 2); out[i] = T(half_to_float(v)); }
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) {
                uint16_t v;
                std::memcpy(&v, src + 2 * i, 2);
                const uint32_t bits = uint32_t(v) << 16;
                float f;
                std::memcpy(&f, &bits, 4);
                out[i] = T(f);
            }
            return;
        case DType::I32: case DType::I64:
            break;
    }
    throw std::invalid_argument(std::string("convert_floats: ") + to_string(dtype) + " is not a floating-point dtype");
}

template <typename T>
void SafetensorsFile::read_as(const std::string& name, T* out) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::runtime_error(path_ + ": no tensor \"" + name + "\"");
    convert_floats<T>(it->second.dtype, bytes(it->second), it->second.numel(), out);
}

template void convert_floats<float>(DType, const uint8_t*, int64_t, float*);
template void convert_floats<double>(DType, const uint8_t*, int64_t, double*);
template void SafetensorsFile::read_as<float>(const std::string&, float*) const;
template void SafetensorsFile::read_as<double>(const std::string&, double*) const;

std::map<std::string, RawTensor> read_safetensors(const std::string& path,
                                                  std::map<std::string, std::string>* metadata) {
    const SafetensorsFile f(path);
    std::map<std::string, RawTensor> out;
    for (const auto& [name, e] : f.tensors()) {
        RawTensor t;
        t.dtype = e.dtype;
        t.shape = e.shape;
        t.bytes.assign(f.bytes(e), f.bytes(e) + e.nbytes);
        out.emplace(name, std::move(t));
    }
    if (metadata) *metadata = f.metadata();
    return out;
}

}  // namespace dsv2
