// libFuzzer: config.json parsing and validation must reject bad input with std::invalid_argument
// — never crash or hit undefined behaviour (e.g. float-to-int overflow).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "dsv2/config.hpp"
#include "dsv2/config_json.hpp"
#include "dsv2/weights.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const dsv2::Config c = dsv2::config_from_json_text(text, "fuzz/config.json");
        (void)dsv2::count_params(c);  // a validated config's sizes must not overflow
        (void)dsv2::config_from_json_text(dsv2::config_to_json_text(c), "roundtrip");
    } catch (const std::invalid_argument&) {
    }
    return 0;
}
