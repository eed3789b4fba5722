// libFuzzer: the tokenizer.json loader must refuse bad files with std::invalid_argument, and a
// loaded tokenizer must encode any text (or refuse invalid UTF-8) and decode its own ids — never
// crash, hang or leak. The first byte picks the mode:
//   even: the rest is a tokenizer.json text, loaded, then used on a fixed sample;
//   odd:  the rest is text for the embedded model's tokenizer (encode, decode, round trip).
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "dsv2/tokenizer.hpp"

#ifndef DSV2_DATA_DIR
#define DSV2_DATA_DIR "data"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] % 2 == 0) {
        try {
            const dsv2::Tokenizer t = dsv2::Tokenizer::from_json_text(rest, "fuzz/tokenizer.json");
            const std::vector<int32_t> ids = t.encode("In the beginning, 1234 naïve 你好 👍\n", true);
            (void)t.decode(ids);
        } catch (const std::invalid_argument&) {
        }
        return 0;
    }
    static const dsv2::Tokenizer kjv = dsv2::Tokenizer::from_file(DSV2_DATA_DIR "/models/kjv-tiny/tokenizer.json");
    try {
        const std::vector<int32_t> ids = kjv.encode(rest, false);
        if (kjv.decode(ids) != rest) std::abort();  // byte-level BPE must round-trip valid UTF-8
    } catch (const std::invalid_argument&) {  // invalid UTF-8 is refused
    }
    return 0;
}
