// dsv2::Tokenizer against golden encodings made by the Hugging Face `tokenizers` library
// (tools/golden/tokenizer_cases.py → data/golden/tokenizer/cases.json; no Python needed here):
// the embedded model's tokenizer (data/models/kjv-tiny) and a GPT-2-style one with digits split,
// added tokens and an appended <|endoftext|> (data/golden/tokenizer/gpt2style), plus variants of
// the latter covering every pre-tokenizer option. Also round trips, vocabulary look-ups, and
// errors: invalid UTF-8, unknown ids, and malformed tokenizer.json texts naming the key.
#include "support.hpp"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv2/tokenizer.hpp"

namespace {

using json = nlohmann::json;
using dsv2::Tokenizer;
using Ids = std::vector<int32_t>;

const std::string kRoot = std::string(DSV2_SOURCE_DIR) + "/";
const std::string kKjv = kRoot + "data/models/kjv-tiny/tokenizer.json";
const std::string kGpt2 = kRoot + "data/golden/tokenizer/gpt2style/tokenizer.json";

using dsv2::test::read_existing;

const json& golden() {
    static const json j = json::parse(read_existing(kRoot + "data/golden/tokenizer/cases.json"));
    return j;
}

// The golden entry of one tokenizer ("kjv-tiny" or "gpt2style").
const json& entry(const std::string& name) {
    for (const json& t : golden().at("tokenizers"))
        if (t.at("name") == name) return t;
    FAIL("no golden tokenizer " << name);
    throw std::logic_error("unreachable");
}

const Tokenizer& tokenizer(const std::string& name) {
    static const Tokenizer kjv = Tokenizer::from_file(kKjv);
    static const Tokenizer gpt2 = Tokenizer::from_file(kGpt2);
    return name == "kjv-tiny" ? kjv : gpt2;
}

Ids ids(const json& j) { return j.get<Ids>(); }

// "61 62 e4" for "ab\xe4": bytes in hex, for messages about invalid UTF-8.
std::string hex(const std::string& s) {
    std::string out;
    char buf[4];
    for (unsigned char c : s) {
        std::snprintf(buf, sizeof buf, "%02x", unsigned(c));
        out += (out.empty() ? "" : " ") + std::string(buf);
    }
    return out;
}

// The message of the std::invalid_argument that f throws; fails the test when f throws nothing.
template <typename F>
std::string invalid_argument_message(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("no std::invalid_argument thrown");
    return "";
}

// Every golden case of one tokenizer: ids with and without the template, the tokens, HF's decode.
void check_cases(const std::string& name) {
    const Tokenizer& tok = tokenizer(name);
    const json& cases = entry(name).at("cases");
    REQUIRE(cases.size() >= 30);
    for (const json& c : cases) {
        const std::string text = c.at("text");
        INFO(name << " case \"" << c.at("name").get<std::string>() << "\": " << c.at("text").dump());
        CHECK(tok.encode(text) == ids(c.at("ids")));
        CHECK(tok.encode(text, true) == ids(c.at("ids")));
        CHECK(tok.encode(text, false) == ids(c.at("ids_plain")));
        CHECK(tok.decode(ids(c.at("ids"))) == c.at("decoded").get<std::string>());
        CHECK(tok.decode(ids(c.at("ids")), false) == c.at("decoded").get<std::string>());
        CHECK(tok.decode(ids(c.at("ids")), true) == c.at("decoded_skip_special").get<std::string>());
    }
    for (const json& d : entry(name).at("decode_cases")) {
        INFO(name << " decode of " << d.at("ids").dump());
        CHECK(tok.decode(ids(d.at("ids"))) == d.at("decoded").get<std::string>());
        CHECK(tok.decode(ids(d.at("ids")), true) == d.at("decoded_skip_special").get<std::string>());
    }
}

// Texts that contain one of gpt2style's added tokens (these are cut out before pre-tokenization).
bool has_added_token_text(const std::string& text) {
    for (const char* t : {"<|endoftext|>", "Selah", "<verse>"})
        if (text.find(t) != std::string::npos) return true;
    return false;
}

// gpt2style's tokenizer.json with a golden variant's patch applied: each key of the patch replaces
// (objects: merges into) the same key; null sets it to null.
json apply_patch(json target, const json& patch) {
    if (!patch.is_object()) return patch;
    if (!target.is_object()) target = json::object();
    for (const auto& [k, v] : patch.items()) target[k] = v.is_null() ? json(nullptr) : apply_patch(target[k], v);
    return target;
}

// A small valid tokenizer.json for the error tests: bytes a, b, c, their merges, one special token.
json small_tokenizer() {
    return json::parse(R"({
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [{"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true}],
      "normalizer": null,
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
      "post_processor": {"type": "TemplateProcessing",
          "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
          "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": {"<s>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5},
                "merges": [["a", "b"], ["ab", "c"]]}
    })");
}

// from_json_text(j) must throw std::invalid_argument naming `where` and every one of `parts`.
void require_rejected(const json& j, const std::vector<std::string>& parts) {
    const std::string where = "bad/tokenizer.json";
    INFO("expecting an error naming " << parts.front());
    const std::string msg = invalid_argument_message([&] { (void)Tokenizer::from_json_text(j.dump(), where); });
    INFO("message: " << msg);
    CHECK(msg.find(where) != std::string::npos);
    for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
}

}  // namespace

TEST_CASE("the kjv-tiny tokenizer encodes and decodes every golden case as Hugging Face does", "[tokenizer]") {
    check_cases("kjv-tiny");
}

TEST_CASE("the gpt2style tokenizer encodes and decodes every golden case as Hugging Face does", "[tokenizer]") {
    check_cases("gpt2style");
}

TEST_CASE("every pre-tokenizer, model and post-processor variant gives Hugging Face's ids", "[tokenizer]") {
    const json base = json::parse(read_existing(kGpt2));
    const json& texts = entry("gpt2style").at("cases");
    const int32_t eot = tokenizer("gpt2style").token_to_id("<|endoftext|>");
    REQUIRE(eot >= 0);
    const json& variants = golden().at("variants");
    REQUIRE(variants.size() >= 10);
    for (const json& v : variants) {
        const std::string vname = v.at("name");
        json j = apply_patch(base, v.at("patch"));
        if (v.at("merges_as_strings").get<bool>())
            for (json& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
        const Tokenizer tok = Tokenizer::from_json_text(j.dump(), "variant " + vname);
        for (const json& c : v.at("cases")) {
            std::string text;
            for (const json& t : texts)
                if (t.at("name") == c.at("name")) text = t.at("text");
            INFO("variant \"" << vname << "\", case \"" << c.at("name").get<std::string>() << "\": " << json(text).dump());
            const Ids plain = ids(c.at("ids_plain"));
            CHECK(tok.encode(text, false) == plain);
            Ids with = plain;
            with.push_back(eot);  // the template appends <|endoftext|> unless the case says otherwise
            CHECK(tok.encode(text, true) == (c.contains("ids") ? ids(c.at("ids")) : with));
        }
    }
}

TEST_CASE("decode(encode(text)) gives the text back", "[tokenizer]") {
    // kjv-tiny adds nothing: every text comes back exactly, special-token text included.
    for (const json& c : entry("kjv-tiny").at("cases")) {
        const std::string text = c.at("text");
        INFO("kjv-tiny case " << c.at("name").dump());
        CHECK(tokenizer("kjv-tiny").decode(tokenizer("kjv-tiny").encode(text, false)) == text);
    }
    // gpt2style puts a space before a text that does not start with one (add_prefix_space), and
    // its lstrip/rstrip added token keeps no white space, so texts with added tokens are left out.
    for (const json& c : entry("gpt2style").at("cases")) {
        const std::string text = c.at("text");
        if (has_added_token_text(text)) continue;
        INFO("gpt2style case " << c.at("name").dump());
        const std::string expected = text.empty() || text[0] == ' ' ? text : " " + text;
        CHECK(tokenizer("gpt2style").decode(tokenizer("gpt2style").encode(text, false)) == expected);
        CHECK(tokenizer("gpt2style").decode(tokenizer("gpt2style").encode(text, true), true) == expected);
    }
}

TEST_CASE("token_to_id and id_to_token agree with the golden tokens", "[tokenizer]") {
    for (const std::string name : {"kjv-tiny", "gpt2style"}) {
        const Tokenizer& tok = tokenizer(name);
        for (const json& c : entry(name).at("cases")) {
            const auto tokens = c.at("tokens_plain").get<std::vector<std::string>>();
            const Ids plain = ids(c.at("ids_plain"));
            REQUIRE(tokens.size() == plain.size());
            for (size_t k = 0; k < tokens.size(); ++k) {
                INFO(name << " token " << json(tokens[k]).dump() << " id " << plain[k]);
                const std::string back = tok.id_to_token(plain[k]);
                if (back == tokens[k]) {
                    CHECK(tok.token_to_id(tokens[k]) == plain[k]);
                } else {  // an lstrip/rstrip added token: HF's token text includes the white space taken
                    CHECK(back == "<verse>");
                    CHECK(tokens[k].find("<verse>") != std::string::npos);
                    CHECK(tok.token_to_id(back) == plain[k]);
                }
            }
        }
        CHECK(tok.token_to_id("no such token") == -1);
        CHECK(tok.token_to_id("") == -1);
        CHECK_THROWS_AS(tok.id_to_token(-1), std::invalid_argument);
        CHECK_THROWS_AS(tok.id_to_token(int32_t(tok.vocab_size())), std::invalid_argument);
    }
    const Tokenizer& kjv = tokenizer("kjv-tiny");
    CHECK(kjv.id_to_token(0) == "<｜begin▁of▁sentence｜>");
    CHECK(kjv.token_to_id("<｜end▁of▁sentence｜>") == 1);
    CHECK(kjv.token_to_id("Ġ") >= 0);  // the byte-level space
}

TEST_CASE("vocab_size, bos_id and eos_id", "[tokenizer]") {
    const Tokenizer& kjv = tokenizer("kjv-tiny");
    CHECK(kjv.vocab_size() == entry("kjv-tiny").at("vocab_size").get<int64_t>());
    CHECK(kjv.vocab_size() == 4096);
    CHECK(kjv.bos_id() == 0);
    CHECK(kjv.eos_id() == 1);
    CHECK(kjv.encode("", true) == Ids{kjv.bos_id()});

    const Tokenizer& gpt2 = tokenizer("gpt2style");
    CHECK(gpt2.vocab_size() == entry("gpt2style").at("vocab_size").get<int64_t>());
    CHECK(gpt2.bos_id() == -1);
    CHECK(gpt2.eos_id() == gpt2.token_to_id("<|endoftext|>"));
    CHECK(gpt2.eos_id() >= 0);
    CHECK(gpt2.encode("", true) == Ids{gpt2.eos_id()});
}

TEST_CASE("from_file accepts the model directory and names a missing path", "[tokenizer]") {
    const Tokenizer dir = Tokenizer::from_file(kRoot + "data/models/kjv-tiny");
    const std::string text = "In the beginning God created the heaven and the earth.";
    CHECK(dir.encode(text) == tokenizer("kjv-tiny").encode(text));
    const std::string missing = kRoot + "data/models/no-such-model";
    CHECK_THAT(invalid_argument_message([&] { (void)Tokenizer::from_file(missing); }), Catch::Contains(missing));
    const std::string empty_dir = kRoot + "data/configs/tiny";  // a directory without tokenizer.json
    CHECK_THAT(invalid_argument_message([&] { (void)Tokenizer::from_file(empty_dir); }),
               Catch::Contains(empty_dir + "/tokenizer.json"));
}

TEST_CASE("encode rejects invalid UTF-8, naming the byte offset", "[tokenizer]") {
    const Tokenizer& tok = tokenizer("kjv-tiny");
    struct Bad {
        std::string text;
        const char* offset;
    };
    const Bad bad[] = {
        {"\xff", "byte offset 0"},
        {"ab\xe4\xbd", "byte offset 2"},          // 你 cut after two of its three bytes
        {"ok \x80", "byte offset 3"},             // a stray continuation byte
        {"x\xed\xa0\x80y", "byte offset 1"},      // a UTF-16 surrogate
        {"\xc0\xaf", "byte offset 0"},            // an overlong '/'
        {"ab\xf4\x90\x80\x80", "byte offset 2"},  // above U+10FFFF
    };
    for (const Bad& b : bad) {
        INFO("text " << hex(b.text));
        const std::string msg = invalid_argument_message([&] { (void)tok.encode(b.text); });
        CHECK_THAT(msg, Catch::Contains(b.offset) && Catch::Contains("UTF-8"));
    }
    CHECK_NOTHROW(tok.encode(std::string("nul\0inside", 10)));
}

TEST_CASE("decode rejects an id outside the vocabulary, naming it", "[tokenizer]") {
    const Tokenizer& tok = tokenizer("kjv-tiny");
    CHECK_THAT(invalid_argument_message([&] { (void)tok.decode({5, 4096}); }), Catch::Contains("4096"));
    CHECK_THAT(invalid_argument_message([&] { (void)tok.decode({-1}); }), Catch::Contains("-1"));
    CHECK_THAT(invalid_argument_message([&] { (void)tok.decode({100000000}, true); }), Catch::Contains("100000000"));
    CHECK(tok.decode({}) == "");
}

TEST_CASE("the small error-test tokenizer is valid", "[tokenizer]") {
    const Tokenizer tok = Tokenizer::from_json_text(small_tokenizer().dump(), "small");
    CHECK(tok.encode("abcab") == Ids{0, 5, 4});
    CHECK(tok.encode("abc", false) == Ids{5});
    CHECK(tok.decode({0, 5, 4}) == "<s>abcab");
    CHECK(tok.decode({0, 5, 4}, true) == "abcab");
    CHECK(tok.bos_id() == 0);
    CHECK(tok.eos_id() == -1);
    CHECK(tok.vocab_size() == 6);
    CHECK(tok.encode("a b", false) == Ids{1, 2});  // the byte-level space is not in this vocabulary: dropped, as HF does
}

TEST_CASE("malformed tokenizer.json texts are rejected, naming the key", "[tokenizer]") {
    const std::string where = "bad/tokenizer.json";
    CHECK_THAT(invalid_argument_message([&] { (void)Tokenizer::from_json_text("{\"model\": ", where); }),
               Catch::Contains(where) && Catch::Contains("not valid JSON"));
    CHECK_THAT(invalid_argument_message([&] { (void)Tokenizer::from_json_text("[1, 2]", where); }),
               Catch::Contains(where) && Catch::Contains("object"));

    json j = small_tokenizer();
    j.erase("model");
    require_rejected(j, {"\"model\"", "missing"});

    j = small_tokenizer();
    j["model"]["type"] = "WordPiece";
    require_rejected(j, {"model.type", "WordPiece"});

    j = small_tokenizer();
    j["model"]["merges"].push_back(json::array({"a", "zz"}));
    require_rejected(j, {"model.merges[2]", "zz"});

    j = small_tokenizer();
    j["model"]["merges"].push_back("b c");  // both in the vocabulary, "bc" is not
    require_rejected(j, {"model.merges[2]", "\"bc\""});

    j = small_tokenizer();
    j["model"]["merges"].push_back("abc");
    require_rejected(j, {"model.merges[2]"});

    j = small_tokenizer();
    j["model"]["vocab"]["d"] = -3;
    require_rejected(j, {"model.vocab.d"});

    j = small_tokenizer();
    j["model"]["vocab"]["d"] = 2;  // the id of "b"
    require_rejected(j, {"model.vocab.", "\"b\""});

    j = small_tokenizer();
    j["model"]["byte_fallback"] = true;
    require_rejected(j, {"model.byte_fallback"});

    j = small_tokenizer();
    j["model"]["dropout"] = 0.1;
    require_rejected(j, {"model.dropout"});

    j = small_tokenizer();
    j["model"]["unk_token"] = "<unk>";
    require_rejected(j, {"model.unk_token", "<unk>"});

    j = small_tokenizer();
    j["normalizer"] = {{"type", "NFC"}};
    require_rejected(j, {"normalizer.type", "unsupported normalizer type NFC"});

    j = small_tokenizer();
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}}}};
    require_rejected(j, {"normalizer.normalizers[0].type", "unsupported normalizer type NFKC"});

    j = small_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
    require_rejected(j, {"pre_tokenizer.pretokenizers[0].pattern.Regex", "(unclosed"});

    j = small_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{NoSuchProperty}";
    require_rejected(j, {"pre_tokenizer.pretokenizers[0].pattern.Regex"});

    j = small_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
    require_rejected(j, {"pre_tokenizer.pretokenizers[0].behavior", "Sideways"});

    j = small_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Glob", "*"}};
    require_rejected(j, {"pre_tokenizer.pretokenizers[0].pattern"});

    j = small_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Metaspace"}};
    require_rejected(j, {"pre_tokenizer.pretokenizers[1].type", "Metaspace"});

    j = small_tokenizer();
    j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<bos>";
    require_rejected(j, {"post_processor.special_tokens.<bos>"});

    j = small_tokenizer();
    j["post_processor"]["special_tokens"]["<s>"]["ids"] = {77};
    require_rejected(j, {"post_processor.special_tokens.<s>.ids[0]", "77"});

    j = small_tokenizer();
    j["post_processor"] = {{"type", "RobertaProcessing"}};
    require_rejected(j, {"post_processor.type", "RobertaProcessing"});

    j = small_tokenizer();
    j["decoder"] = {{"type", "WordPiece"}};
    require_rejected(j, {"decoder.type", "WordPiece"});

    j = small_tokenizer();
    j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteLevel"}}, {{"type", "Strip"}}}}};
    require_rejected(j, {"decoder.decoders[1].type", "Strip"});

    j = small_tokenizer();
    j["added_tokens"][0]["id"] = "zero";
    require_rejected(j, {"added_tokens[0].id"});

    j = small_tokenizer();
    j["added_tokens"][0]["content"] = "";
    require_rejected(j, {"added_tokens[0].content"});

    j = small_tokenizer();
    j["truncation"] = {{"max_length", 8}};
    require_rejected(j, {"truncation"});
}

TEST_CASE("accepted forms: no type on the model, an empty normalizer Sequence, decoder Sequence with Fuse", "[tokenizer]") {
    json j = small_tokenizer();
    j["model"].erase("type");
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array()}};
    j["decoder"] = {{"type", "Sequence"}, {"decoders", {small_tokenizer()["decoder"], {{"type", "Fuse"}}}}};
    j["model"]["dropout"] = 0.0;
    const Tokenizer tok = Tokenizer::from_json_text(j.dump(), "forms");
    CHECK(tok.encode("abcab") == Ids{0, 5, 4});
    CHECK(tok.decode({0, 5, 4}) == "<s>abcab");

    j = small_tokenizer();
    j["decoder"] = nullptr;  // no decoder: tokens joined by spaces, as HF does
    j["post_processor"] = nullptr;
    const Tokenizer plain = Tokenizer::from_json_text(j.dump(), "no decoder");
    CHECK(plain.encode("abcab") == Ids{5, 4});
    CHECK(plain.decode({0, 5, 4}) == "<s> abc ab");
}
