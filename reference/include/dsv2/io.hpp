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

/// Writes `tensors` (name → tensor) with optional string metadata, data in name order.
void write_safetensors(const std::string& path, const std::map<std::string, RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Reads a whole safetensors file, validating its header: JSON, dtypes, shapes, offsets inside
/// the file, in order and not overlapping, and shape × dtype size = byte length. Errors name the
/// file and tensor.
std::map<std::string, RawTensor> read_safetensors(const std::string& path,
                                                  std::map<std::string, std::string>* metadata = nullptr);

/// Writes `bytes` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace dsv2
