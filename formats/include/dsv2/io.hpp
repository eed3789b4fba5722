// Files dsv2 writes and reads: NumPy .npy (logits) and safetensors (named intermediates,
// checkpoints). Every writer is atomic: it writes a temporary file beside the target and renames
// it, so a failure never leaves half a file under the target name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsv2 {

/// Writes a little-endian float32 array of `shape` as a NumPy .npy (format 1.0) file.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

/// safetensors dtypes dsv2 reads or writes.
enum class DType { F32, F16, BF16, F64, I32, I64 };
const char* to_string(DType t);
int64_t dtype_size(DType t);

/// One tensor of a safetensors file: raw little-endian bytes plus dtype and shape.
struct RawTensor {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    int64_t numel() const;
    /// Converts F32/F16/BF16/F64/I32/I64 values to double.
    std::vector<double> to_double() const;
};

/// A safetensors file opened for reading: memory-mapped, its header validated on open — JSON,
/// dtypes, shapes, offsets inside the data section, in order and not overlapping, and
/// shape × dtype size = byte length. Errors (std::runtime_error) name the file and tensor.
class SafetensorsFile {
public:
    struct Entry {
        DType dtype = DType::F32;
        std::vector<int64_t> shape;
        int64_t offset = 0;  ///< from the start of the data section
        int64_t nbytes = 0;
        int64_t numel() const;
    };

    explicit SafetensorsFile(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(SafetensorsFile&& other) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(SafetensorsFile&&) = delete;

    const std::string& path() const { return path_; }
    int64_t file_size() const { return size_; }
    const std::map<std::string, Entry>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    /// The raw little-endian bytes of a tensor (valid while the file is open).
    const uint8_t* bytes(const Entry& e) const { return data_ + e.offset; }
    /// Converts a floating-point tensor (F32, F16, BF16, F64) to T, `out` holding numel values.
    template <typename T>
    void read_as(const std::string& name, T* out) const;

private:
    std::string path_;
    const uint8_t* map_ = nullptr;
    int64_t size_ = 0;
    const uint8_t* data_ = nullptr;
    std::map<std::string, Entry> tensors_;
    std::map<std::string, std::string> metadata_;
};

/// Converts n little-endian values of a floating dtype (F32, F16, BF16, F64) to T.
template <typename T>
void convert_floats(DType dtype, const uint8_t* src, int64_t n, T* out);

/// Writes `tensors` (name → tensor) with optional string metadata, data in name order.
void write_safetensors(const std::string& path, const std::map<std::string, RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Reads a whole safetensors file into memory (validated as SafetensorsFile).
std::map<std::string, RawTensor> read_safetensors(const std::string& path,
                                                  std::map<std::string, std::string>* metadata = nullptr);

/// Reads a whole text file. `path` may name the file or a directory holding `file_name`;
/// `resolved` receives the file's path. Errors (std::invalid_argument) name the path and say why:
/// no such file, a directory where a file is expected, or the system's reason it cannot be read.
std::string read_text_file(const std::string& path, const std::string& file_name, std::string* resolved);

/// Writes `bytes` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace dsv2
