// The Hugging Face config.json of a DeepSeek-V2 checkpoint: read into a dsv2::Config (every
// error names the file and the key) and written back (round-trips through the reader).
#pragma once

#include <string>

#include "dsv2/config.hpp"

namespace dsv2 {

/// Parses a Hugging Face DeepSeek-V2 `config.json` text. Every error names `where` and the key.
Config config_from_json_text(const std::string& text, const std::string& where);

/// Reads and parses a Hugging Face `config.json` file (or a directory holding one).
Config config_from_file(const std::string& path);

/// Serialises to the Hugging Face `config.json` layout (round-trips through the parser).
std::string config_to_json_text(const Config& cfg);

}  // namespace dsv2
