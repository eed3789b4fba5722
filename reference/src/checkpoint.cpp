#include "dsv2/checkpoint.hpp"

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "dsv2/io.hpp"

namespace dsv2 {

namespace {

bool is_file(const std::string& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The safetensors files of a checkpoint directory, in a stable order.
std::vector<std::string> shard_files(const std::string& dir) {
    const std::string single = dir + "/model.safetensors";
    const std::string index = dir + "/model.safetensors.index.json";
    if (is_file(index)) {
        std::ifstream f(index);
        std::ostringstream ss;
        ss << f.rdbuf();
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(ss.str());
        } catch (const nlohmann::json::parse_error& e) {
            throw std::invalid_argument(index + ": not valid JSON (" + e.what() + ")");
        }
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw std::invalid_argument(index + ": \"weight_map\" is missing or not an object");
        std::set<std::string> files;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it->is_string()) throw std::invalid_argument(index + ": \"weight_map\" entry \"" + it.key() + "\" is not a file name");
            const std::string name = it->get<std::string>();
            if (name.empty() || name.find('/') != std::string::npos || name == "..")
                throw std::invalid_argument(index + ": \"weight_map\" entry \"" + it.key() + "\" names a bad file \"" + name + "\"");
            files.insert(name);
        }
        std::vector<std::string> out;
        for (const std::string& name : files) out.push_back(dir + "/" + name);
        return out;
    }
    if (is_file(single)) return {single};
    throw std::invalid_argument(dir + ": no model.safetensors or model.safetensors.index.json");
}

}  // namespace

template <typename S>
Weights<S> load_weights(const std::string& dir, const Config& cfg) {
    std::map<std::string, TensorSpec> expected;
    for (TensorSpec& s : tensor_specs(cfg)) expected.emplace(s.name, std::move(s));
    Weights<S> w;
    for (const std::string& file : shard_files(dir)) {
        for (auto& [name, raw] : read_safetensors(file)) {
            auto it = expected.find(name);
            if (it == expected.end()) continue;
            const TensorSpec& spec = it->second;
            if (raw.shape != spec.shape) {
                std::string got, want;
                for (int64_t s : raw.shape) got += std::to_string(s) + " ";
                for (int64_t s : spec.shape) want += std::to_string(s) + " ";
                throw std::invalid_argument(file + ": tensor \"" + name + "\" has shape [ " + got + "], expected [ " + want + "]");
            }
            if (raw.dtype != DType::F32 && raw.dtype != DType::F16 && raw.dtype != DType::BF16)
                throw std::invalid_argument(file + ": tensor \"" + name + "\" has dtype " + to_string(raw.dtype) +
                                            "; weights must be F32, F16 or BF16");
            const std::vector<double> v = raw.to_double();
            const int64_t rows = spec.shape.size() == 1 ? 1 : spec.shape[0];
            Mat<S> m(rows, spec.numel() / std::max<int64_t>(rows, 1));
            for (int64_t k = 0; k < m.size(); ++k) m.data()[k] = S(v[size_t(k)]);
            w.set(name, std::move(m));
        }
    }
    for (const auto& [name, spec] : expected)
        if (!w.has(name)) throw std::invalid_argument(dir + ": missing tensor \"" + name + "\"");
    return w;
}

template Weights<float> load_weights<float>(const std::string&, const Config&);
template Weights<double> load_weights<double>(const std::string&, const Config&);

}  // namespace dsv2
