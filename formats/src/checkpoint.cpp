#include "dsv2/checkpoint.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace dsv2 {

namespace {

bool is_file(const std::string& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

// The safetensors files of a checkpoint directory, and for a sharded one the file each tensor is
// declared in (so a tensor found elsewhere, or declared and absent, is reported).
struct Layout {
    std::vector<std::string> files;
    std::map<std::string, std::string> declared;  // tensor → file (sharded checkpoints only)
};

Layout layout_of(const std::string& dir) {
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0) throw std::invalid_argument(dir + ": no such file or directory");
    if (!S_ISDIR(st.st_mode)) throw std::invalid_argument(dir + ": not a directory (give the checkpoint directory)");
    const std::string single = dir + "/model.safetensors";
    const std::string index = dir + "/model.safetensors.index.json";
    Layout out;
    if (is_file(index)) {
        std::ifstream f(index);
        std::ostringstream ss;
        ss << f.rdbuf();
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(ss.str());
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument(index + ": not valid JSON (" + e.what() + ")");
        }
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw std::invalid_argument(index + ": \"weight_map\" is missing or not an object");
        std::set<std::string> files;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it->is_string())
                throw std::invalid_argument(index + ": \"weight_map\" entry \"" + it.key() + "\" is not a file name");
            const std::string name = it->get<std::string>();
            if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
                throw std::invalid_argument(index + ": \"weight_map\" entry \"" + it.key() + "\" names a bad file \"" + name + "\"");
            if (!is_file(dir + "/" + name))
                throw std::invalid_argument(index + ": \"weight_map\" entry \"" + it.key() + "\" names " + name + ", which does not exist");
            files.insert(name);
            out.declared[it.key()] = dir + "/" + name;
        }
        for (const std::string& name : files) out.files.push_back(dir + "/" + name);
        return out;
    }
    if (is_file(single)) {
        out.files.push_back(single);
        return out;
    }
    if (stat(single.c_str(), &st) == 0)
        throw std::invalid_argument(single + (S_ISDIR(st.st_mode) ? ": is a directory, expected a file" : ": is not a regular file"));
    throw std::invalid_argument(dir + ": no model.safetensors or model.safetensors.index.json");
}

// Opens every file of the layout; checks that each tensor is stored once and where the index says.
std::vector<SafetensorsFile> open_all(const Layout& layout, std::map<std::string, size_t>* where) {
    std::vector<SafetensorsFile> files;
    for (const std::string& path : layout.files) {
        files.emplace_back(path);
        for (const auto& [name, e] : files.back().tensors()) {
            auto [it, fresh] = where->emplace(name, files.size() - 1);
            if (!fresh)
                throw std::invalid_argument(path + ": tensor \"" + name + "\" is also stored in " + files[it->second].path());
            auto d = layout.declared.find(name);
            if (!layout.declared.empty() && (d == layout.declared.end() || d->second != path))
                throw std::invalid_argument(path + ": tensor \"" + name + "\" is not where model.safetensors.index.json says");
        }
    }
    for (const auto& [name, path] : layout.declared)
        if (!where->count(name))
            throw std::invalid_argument(path + ": tensor \"" + name + "\" is listed in the index but not in the file");
    return files;
}

bool is_weight_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

CheckpointReport inspect_checkpoint(const std::string& dir, const Config& cfg) {
    const Layout layout = layout_of(dir);
    std::map<std::string, size_t> where;
    const std::vector<SafetensorsFile> files = open_all(layout, &where);
    std::map<std::string, std::vector<int64_t>> expected;
    for (const TensorSpec& s : tensor_specs(cfg)) expected.emplace(s.name, s.shape);

    CheckpointReport r;
    r.files = layout.files;
    for (const SafetensorsFile& f : files) r.bytes += f.file_size();
    for (const auto& [name, idx] : where) {
        const SafetensorsFile::Entry& e = files[idx].tensors().at(name);
        CheckpointReport::Tensor t{name, files[idx].path(), e.dtype, e.shape, {}};
        auto ex = expected.find(name);
        if (ex == expected.end()) {
            r.unexpected.push_back(name);
        } else {
            t.expected_shape = ex->second;
            if (e.shape != ex->second)
                r.misshaped.push_back(name + ": has " + shape_str(e.shape) + ", expected " + shape_str(ex->second));
            if (!is_weight_dtype(e.dtype)) r.bad_dtype.push_back(name + ": " + to_string(e.dtype));
        }
        r.tensors.push_back(std::move(t));
    }
    for (const auto& [name, shape] : expected)
        if (!where.count(name)) r.missing.push_back(name);
    return r;
}

template <typename S>
Weights<S> load_weights(const std::string& dir, const Config& cfg, bool progress, std::vector<std::string>* unexpected) {
    const Layout layout = layout_of(dir);
    std::map<std::string, size_t> where;
    const std::vector<SafetensorsFile> files = open_all(layout, &where);
    const std::vector<TensorSpec> specs = tensor_specs(cfg);
    // Check everything before converting anything.
    int64_t total = 0;
    for (const TensorSpec& s : specs) {
        auto it = where.find(s.name);
        if (it == where.end()) throw std::invalid_argument(dir + ": missing tensor \"" + s.name + "\"");
        const SafetensorsFile& f = files[it->second];
        const SafetensorsFile::Entry& e = f.tensors().at(s.name);
        if (e.shape != s.shape)
            throw std::invalid_argument(f.path() + ": tensor \"" + s.name + "\" has shape " + shape_str(e.shape) +
                                        ", expected " + shape_str(s.shape));
        if (!is_weight_dtype(e.dtype))
            throw std::invalid_argument(f.path() + ": tensor \"" + s.name + "\" has dtype " + to_string(e.dtype) +
                                        "; weights must be F32, F16 or BF16");
        total += e.nbytes;
    }
    if (unexpected) {
        std::set<std::string> known;
        for (const TensorSpec& s : specs) known.insert(s.name);
        for (const auto& [name, idx] : where)
            if (!known.count(name)) unexpected->push_back(name);
    }

    const bool draw = progress && isatty(2);
    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    int64_t done = 0;
    Weights<S> w;
    for (const TensorSpec& s : specs) {
        const SafetensorsFile& f = files[where.at(s.name)];
        const int64_t rows = s.shape.size() == 1 ? 1 : s.shape[0];
        Mat<S> m(rows, s.numel() / std::max<int64_t>(rows, 1));
        f.read_as<S>(s.name, m.data());
        w.set(s.name, std::move(m));
        done += f.tensors().at(s.name).nbytes;
        const auto now = std::chrono::steady_clock::now();
        if (draw && now - t0 > std::chrono::milliseconds(500) && now - last > std::chrono::milliseconds(100)) {
            last = now;
            std::fprintf(stderr, "\rloading %s: %3d%% (%.2f of %.2f GB)", dir.c_str(), int(100 * done / std::max<int64_t>(total, 1)),
                         double(done) / 1e9, double(total) / 1e9);
        }
    }
    if (draw && last != t0) std::fprintf(stderr, "\rloading %s: 100%% (%.2f GB)            \n", dir.c_str(), double(total) / 1e9);
    return w;
}

template Weights<float> load_weights<float>(const std::string&, const Config&, bool, std::vector<std::string>*);
template Weights<double> load_weights<double>(const std::string&, const Config&, bool, std::vector<std::string>*);

}  // namespace dsv2
