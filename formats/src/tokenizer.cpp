// The Hugging Face tokenizer.json tokenizer: loading and validation, added-token splitting,
// pre-tokenization (Oniguruma regexes), byte-level BPE, the post-processor template, decoding.
//
// Each step follows the `tokenizers` library (Rust) closely enough to give the same ids; the
// comments name the Rust function a step mirrors where the behaviour is not obvious.
#include "dsv2/tokenizer.hpp"
#include "dsv2/io.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <string_view>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <oniguruma.h>

namespace dsv2 {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& what) {
    throw std::invalid_argument(where + ": \"" + key + "\" " + what);
}

// ---------------------------------------------------------------------------------------------
// UTF-8

/// The byte length of the UTF-8 sequence starting at s[i] when it is valid (1..4); otherwise
/// minus the length of its maximal invalid subpart (−1..−3), the unit that Unicode's
/// "substitution of maximal subparts" (and Rust's String::from_utf8_lossy) replaces by one U+FFFD.
/// Overlong forms, surrogates and code points above U+10FFFF are invalid.
int utf8_step(const unsigned char* s, size_t n, size_t i) {
    const unsigned char b = s[i];
    if (b < 0x80) return 1;
    auto cont = [&](size_t k) { return i + k < n && (s[i + k] & 0xC0) == 0x80; };
    if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : -1;
    if (b >= 0xE0 && b <= 0xEF) {
        if (i + 1 >= n) return -1;
        const unsigned char c = s[i + 1];
        const bool ok = b == 0xE0 ? (c >= 0xA0 && c <= 0xBF) : b == 0xED ? (c >= 0x80 && c <= 0x9F)
                                                                          : (c >= 0x80 && c <= 0xBF);
        if (!ok) return -1;
        return cont(2) ? 3 : -2;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (i + 1 >= n) return -1;
        const unsigned char c = s[i + 1];
        const bool ok = b == 0xF0 ? (c >= 0x90 && c <= 0xBF) : b == 0xF4 ? (c >= 0x80 && c <= 0x8F)
                                                                          : (c >= 0x80 && c <= 0xBF);
        if (!ok) return -1;
        if (!cont(2)) return -2;
        return cont(3) ? 4 : -3;
    }
    return -1;
}

/// The length of the (valid) UTF-8 character whose first byte is `b`.
size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

/// The code point of the valid UTF-8 character of `len` bytes at s.
char32_t utf8_decode(const unsigned char* s, size_t len) {
    if (len == 1) return s[0];
    char32_t cp = s[0] & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (s[k] & 0x3F);
    return cp;
}

void utf8_append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

/// Throws std::invalid_argument naming the byte offset of the first invalid UTF-8 sequence.
void check_utf8(const std::string& text, const std::string& where) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0; i < text.size();) {
        const int step = utf8_step(s, text.size(), i);
        if (step < 0) {
            char byte[8];
            std::snprintf(byte, sizeof byte, "0x%02x", unsigned(s[i]));
            throw std::invalid_argument(where + ": encode: the text is not valid UTF-8 at byte offset " +
                                        std::to_string(i) + " (byte " + byte + ")");
        }
        i += size_t(step);
    }
}

/// Bytes → text, each invalid sequence replaced by U+FFFD (Rust's String::from_utf8_lossy).
std::string utf8_lossy(const std::string& bytes) {
    const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
    std::string out;
    out.reserve(bytes.size());
    for (size_t i = 0; i < bytes.size();) {
        const int step = utf8_step(s, bytes.size(), i);
        if (step > 0) {
            out.append(bytes, i, size_t(step));
            i += size_t(step);
        } else {
            out += "\xEF\xBF\xBD";
            i += size_t(-step);
        }
    }
    return out;
}

/// Unicode White_Space (what Rust's regex \s matches), for added tokens' lstrip / rstrip.
bool is_white_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

// ---------------------------------------------------------------------------------------------
// The GPT-2 byte ↔ unicode table of the ByteLevel pre-tokenizer and decoder: printable bytes map
// to themselves, the other 68 to U+0100 + n in byte order.

struct ByteTable {
    std::array<std::string, 256> symbol;              // byte → its character, UTF-8 encoded
    std::unordered_map<char32_t, unsigned char> byte;  // character → byte
    ByteTable() {
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const char32_t cp = printable ? char32_t(b) : char32_t(256 + n++);
            utf8_append(symbol[size_t(b)], cp);
            byte[cp] = static_cast<unsigned char>(b);
        }
    }
};

const ByteTable& byte_table() {
    static const ByteTable table;
    return table;
}

/// Every byte of `s` replaced by its ByteLevel character.
std::string byte_level_map(const std::string& s) {
    const ByteTable& t = byte_table();
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char b : s) out += t.symbol[b];
    return out;
}

// ---------------------------------------------------------------------------------------------
// Oniguruma regexes, compiled as the `onig` crate compiles them for `tokenizers` (Regex::new:
// UTF-8, ONIG_OPTION_NONE, the default syntax, which is ONIG_SYNTAX_ONIGURUMA).

struct OnigFree {
    void operator()(OnigRegex r) const { onig_free(r); }
};
struct RegionFree {
    void operator()(OnigRegion* r) const { onig_region_free(r, 1); }
};

class Regex {
public:
    /// Compiles `pattern`; a bad pattern throws std::invalid_argument naming `where` and `key`.
    Regex(const std::string& pattern, const std::string& where, const std::string& key) : pattern_(pattern) {
        static std::once_flag init;
        std::call_once(init, [] {
            OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
            onig_initialize(encodings, 1);
        });
        static std::mutex compile_mutex;  // onig_new is not thread-safe (the onig crate locks too)
        OnigRegex re = nullptr;
        OnigErrorInfo info{};
        const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
        int rc;
        {
            std::lock_guard<std::mutex> lock(compile_mutex);
            rc = onig_new(&re, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
        }
        if (rc != ONIG_NORMAL) {
            if (re) onig_free(re);
            fail(where, key, "is not a valid regex (" + error_text(rc, &info) + "): " + pattern);
        }
        re_.reset(re);
    }

    /// The non-overlapping matches (begin, end) of the regex in s, left to right, as the onig
    /// crate's find_iter gives them: searches see the whole of s (lookarounds included), and an
    /// empty match is dropped when it is the first empty one after a non-empty match.
    std::vector<std::pair<size_t, size_t>> find_all(const std::string& s) const {
        std::vector<std::pair<size_t, size_t>> out;
        std::unique_ptr<OnigRegion, RegionFree> region(onig_region_new());
        const auto* str = reinterpret_cast<const OnigUChar*>(s.data());
        const OnigUChar* end = str + s.size();
        size_t last_end = 0;
        bool skip_next_empty = false;
        while (last_end <= s.size()) {
            onig_region_clear(region.get());
            const int r = onig_search(re_.get(), str, end, str + last_end, end, region.get(), ONIG_OPTION_NONE);
            if (r == ONIG_MISMATCH) break;
            if (r < 0) throw std::runtime_error("regex search failed (" + error_text(r, nullptr) + "): " + pattern_);
            const auto b = size_t(region->beg[0]), e = size_t(region->end[0]);
            last_end = e;
            if (b == e) {
                last_end += e < s.size() ? utf8_len(static_cast<unsigned char>(s[e])) : 1;
                if (skip_next_empty) {
                    skip_next_empty = false;
                    continue;
                }
            } else {
                skip_next_empty = true;
            }
            out.emplace_back(b, e);
        }
        return out;
    }

    /// Does the regex match exactly the bytes [b, e)?
    bool matches_whole(const char* b, const char* e) const {
        const auto* s = reinterpret_cast<const OnigUChar*>(b);
        const auto* t = reinterpret_cast<const OnigUChar*>(e);
        return onig_match(re_.get(), s, t, s, nullptr, ONIG_OPTION_NONE) == t - s;
    }

private:
    static std::string error_text(int code, OnigErrorInfo* info) {
        OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
        const int n = info ? onig_error_code_to_str(buf, code, info) : onig_error_code_to_str(buf, code);
        return std::string(reinterpret_cast<const char*>(buf), size_t(std::max(n, 0)));
    }

    std::string pattern_;
    std::unique_ptr<OnigRegexType, OnigFree> re_;
};

// GPT-2's pre-tokenization regex, used by ByteLevel with use_regex.
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Rust's regex \w (Unicode): what makes an added token with single_word touch a word.
const char* const kWordCharPattern = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])";

// ---------------------------------------------------------------------------------------------
// Splitting a piece of text on a pattern (tokenizers' Pattern::find_matches and
// NormalizedString::split).

enum class Behavior { isolated, removed, merged_with_previous, merged_with_next, contiguous };

struct Span {
    size_t begin, end;
    bool match;
};

/// The whole of s cut into matched and unmatched spans (a match may be empty); `invert` swaps them.
std::vector<Span> find_matches(const Regex& re, const std::string& s, bool invert) {
    std::vector<Span> spans;
    if (s.empty()) {
        spans.push_back({0, 0, invert});
        return spans;
    }
    size_t prev = 0;
    for (const auto& [b, e] : re.find_all(s)) {
        if (prev != b) spans.push_back({prev, b, invert});
        spans.push_back({b, e, !invert});
        prev = e;
    }
    if (prev != s.size()) spans.push_back({prev, s.size(), invert});
    return spans;
}

/// Appends to `out` the non-empty pieces of s that `behavior` makes of the spans.
void split_spans(const std::string& s, const std::vector<Span>& spans, Behavior behavior,
                 std::vector<std::string>& out) {
    struct Piece {
        size_t begin, end;
        bool remove;
    };
    std::vector<Piece> pieces;
    pieces.reserve(spans.size());
    bool previous_match = false;
    switch (behavior) {
        case Behavior::isolated:
            for (const Span& m : spans) pieces.push_back({m.begin, m.end, false});
            break;
        case Behavior::removed:
            for (const Span& m : spans) pieces.push_back({m.begin, m.end, m.match});
            break;
        case Behavior::contiguous:  // runs of matches, and runs of non-matches, become one piece
            for (const Span& m : spans) {
                if (m.match == previous_match && !pieces.empty()) pieces.back().end = m.end;
                else pieces.push_back({m.begin, m.end, false});
                previous_match = m.match;
            }
            break;
        case Behavior::merged_with_previous:  // a match joins the piece before it
            for (const Span& m : spans) {
                if (m.match && !previous_match && !pieces.empty()) pieces.back().end = m.end;
                else pieces.push_back({m.begin, m.end, false});
                previous_match = m.match;
            }
            break;
        case Behavior::merged_with_next:  // a match joins the piece after it
            for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
                if (it->match && !previous_match && !pieces.empty()) pieces.back().begin = it->begin;
                else pieces.push_back({it->begin, it->end, false});
                previous_match = it->match;
            }
            std::reverse(pieces.begin(), pieces.end());
            break;
    }
    for (const Piece& p : pieces)
        if (!p.remove && p.end > p.begin) out.push_back(s.substr(p.begin, p.end - p.begin));
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

struct PreTokenizer {
    enum class Kind { split, byte_level, digits } kind = Kind::split;
    std::unique_ptr<Regex> regex;  // split: the pattern; digits: \p{N}; byte_level: GPT-2's or none
    Behavior behavior = Behavior::isolated;
    bool invert = false;
    bool add_prefix_space = false;

    /// Replaces `pieces` by the pieces this step makes of them.
    void apply(std::vector<std::string>& pieces) const {
        std::vector<std::string> out;
        out.reserve(pieces.size());
        for (std::string& piece : pieces) {
            if (kind == Kind::byte_level) {
                if (add_prefix_space && piece[0] != ' ') piece.insert(piece.begin(), ' ');
                const size_t first = out.size();
                if (regex) split_spans(piece, find_matches(*regex, piece, false), Behavior::isolated, out);
                else out.push_back(std::move(piece));
                for (size_t k = first; k < out.size(); ++k) out[k] = byte_level_map(out[k]);
            } else {
                split_spans(piece, find_matches(*regex, piece, invert), behavior, out);
            }
        }
        pieces = std::move(out);
    }
};

// ---------------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};

/// Leftmost-longest matching over a set of added tokens (what the aho-corasick automaton of
/// tokenizers' AddedVocabulary finds): a byte trie walked from each position of the text.
class AddedMatcher {
public:
    void build(const std::vector<AddedToken>& tokens, bool normalized) {
        terminal_.assign(1, -1);
        for (size_t k = 0; k < tokens.size(); ++k) {
            if (tokens[k].normalized != normalized) continue;
            int32_t node = 0;
            for (unsigned char c : tokens[k].content) {
                const auto [it, fresh] = edges_.emplace(edge(node, c), int32_t(terminal_.size()));
                if (fresh) terminal_.push_back(-1);
                node = it->second;
            }
            terminal_[size_t(node)] = int32_t(k);
            first_[static_cast<unsigned char>(tokens[k].content[0])] = true;
        }
    }
    bool empty() const { return edges_.empty(); }

    /// The first match at or after `pos` (the longest of those starting there):
    /// (start, token index); start = npos when there is none.
    std::pair<size_t, size_t> next(const std::string& s, size_t pos) const {
        for (size_t i = pos; i < s.size(); ++i) {
            if (!first_[static_cast<unsigned char>(s[i])]) continue;
            int32_t node = 0, best = -1;
            for (size_t j = i; j < s.size(); ++j) {
                const auto it = edges_.find(edge(node, static_cast<unsigned char>(s[j])));
                if (it == edges_.end()) break;
                node = it->second;
                if (terminal_[size_t(node)] >= 0) best = terminal_[size_t(node)];
            }
            if (best >= 0) return {i, size_t(best)};
        }
        return {std::string::npos, 0};
    }

private:
    static uint64_t edge(int32_t node, unsigned char c) { return (uint64_t(uint32_t(node)) << 8) | c; }
    std::unordered_map<uint64_t, int32_t> edges_;  // (node, byte) → child node
    std::vector<int32_t> terminal_{-1};            // node → index of the token ending there, or -1
    std::array<bool, 256> first_{};                // bytes a token starts with
};

/// A piece of the input: plain text (id < 0) or an added token already matched.
struct Segment {
    std::string text;
    int32_t id = -1;
};

// ---------------------------------------------------------------------------------------------
// BPE (tokenizers' models::bpe::Word::merge_all)

struct Bpe {
    std::unordered_map<std::string, int32_t> vocab;
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left, right) → (rank, merged id)
    bool ignore_merges = false;
    int32_t unk_id = -1;
    bool fuse_unk = false;

    static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

    /// Appends the ids of one pre-token.
    void tokenize(const std::string& word, std::vector<int32_t>& out) const {
        if (word.empty()) return;
        if (ignore_merges) {
            const auto it = vocab.find(word);
            if (it != vocab.end()) {
                out.push_back(it->second);
                return;
            }
        }
        struct Symbol {
            int32_t id;
            long prev, next;
            size_t len;
        };
        std::vector<Symbol> sym;
        sym.reserve(word.size());
        // One symbol per character; a character outside the vocabulary becomes unk_token (runs
        // fused with fuse_unk) or, without one, is dropped — as tokenizers does.
        int32_t pending_unk = -1;
        size_t pending_len = 0;
        auto flush_unk = [&] {
            if (pending_unk >= 0) sym.push_back({pending_unk, 0, 0, pending_len});
            pending_unk = -1;
        };
        std::string ch;
        for (size_t i = 0; i < word.size();) {
            const size_t n = std::min(utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
            ch.assign(word, i, n);
            i += n;
            const auto it = vocab.find(ch);
            if (it != vocab.end()) {
                flush_unk();
                sym.push_back({it->second, 0, 0, n});
            } else if (unk_id >= 0) {
                if (fuse_unk && pending_unk >= 0) {
                    pending_len += n;
                } else {
                    flush_unk();
                    pending_unk = unk_id;
                    pending_len = n;
                }
            }
        }
        flush_unk();
        const long count = long(sym.size());
        for (long k = 0; k < count; ++k) {
            sym[size_t(k)].prev = k - 1;
            sym[size_t(k)].next = k + 1 < count ? k + 1 : -1;
        }

        // Merge the lowest-ranked pair first (the leftmost among equal ranks) until none is left.
        struct Merge {
            size_t pos;
            int32_t rank, new_id;
        };
        auto later = [](const Merge& a, const Merge& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
        std::priority_queue<Merge, std::vector<Merge>, decltype(later)> queue(later);
        for (size_t k = 0; k + 1 < sym.size(); ++k) {
            const auto it = merges.find(key(sym[k].id, sym[k + 1].id));
            if (it != merges.end()) queue.push({k, it->second.first, it->second.second});
        }
        while (!queue.empty()) {
            const Merge top = queue.top();
            queue.pop();
            Symbol& cur = sym[top.pos];
            if (cur.len == 0 || cur.next == -1) continue;
            const Symbol right = sym[size_t(cur.next)];
            const auto it = merges.find(key(cur.id, right.id));
            if (it == merges.end() || it->second.second != top.new_id) continue;  // a stale entry
            sym[size_t(cur.next)].len = 0;
            cur.id = top.new_id;
            cur.len += right.len;
            cur.next = right.next;
            if (right.next >= 0) sym[size_t(right.next)].prev = long(top.pos);
            if (cur.prev >= 0) {
                const auto p = merges.find(key(sym[size_t(cur.prev)].id, cur.id));
                if (p != merges.end()) queue.push({size_t(cur.prev), p->second.first, p->second.second});
            }
            if (cur.next >= 0) {
                const auto q = merges.find(key(cur.id, sym[size_t(cur.next)].id));
                if (q != merges.end()) queue.push({top.pos, q->second.first, q->second.second});
            }
        }
        for (const Symbol& s : sym)
            if (s.len != 0) out.push_back(s.id);
    }
};

// ---------------------------------------------------------------------------------------------
// JSON access with key paths for errors

struct Reader {
    const std::string& where;

    static const json* member(const json& obj, const char* name) {
        const auto it = obj.find(name);
        return it == obj.end() ? nullptr : &*it;
    }
    const json& object(const json& obj, const char* name, const std::string& key) const {
        const json* v = member(obj, name);
        if (!v) fail(where, key, "is missing");
        if (!v->is_object()) fail(where, key, "must be an object, got " + v->dump());
        return *v;
    }
    std::string string(const json& obj, const char* name, const std::string& key) const {
        const json* v = member(obj, name);
        if (!v) fail(where, key, "is missing");
        if (!v->is_string()) fail(where, key, "must be a string, got " + v->dump());
        return v->get<std::string>();
    }
    bool boolean(const json& obj, const char* name, const std::string& key, bool fallback) const {
        const json* v = member(obj, name);
        if (!v || v->is_null()) return fallback;
        if (!v->is_boolean()) fail(where, key, "must be true or false, got " + v->dump());
        return v->get<bool>();
    }
    int32_t id(const json& v, const std::string& key) const {
        // Ids stay below INT32_MAX so that vocab_size (largest id + 1) fits an int32_t too.
        const bool ok = v.is_number_unsigned() ? v.get<uint64_t>() < uint64_t(INT32_MAX)
                                               : v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < INT32_MAX;
        if (!ok) fail(where, key, "must be a token id, an integer in [0, 2^31 - 1), got " + v.dump());
        return int32_t(v.get<int64_t>());
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
    std::string where;
    Bpe bpe;
    std::unordered_map<int32_t, std::string> model_tokens;  // id → token of the model vocabulary
    std::vector<AddedToken> added;                          // in file order
    std::unordered_map<std::string, size_t> added_by_content;
    std::unordered_map<int32_t, size_t> added_by_id;
    AddedMatcher match_raw, match_normalized;  // tokens with normalized false, and true
    std::unique_ptr<Regex> word_char;          // for single_word
    std::vector<PreTokenizer> pre;
    // The TemplateProcessing steps of the post-processor: per item, the ids of a special token,
    // or empty for the sequence ($A).
    std::vector<std::vector<std::vector<int32_t>>> templates;
    enum class Decoder { join_spaces, byte_level } decoder = Decoder::join_spaces;
    int64_t vocab_size = 0;
    int32_t bos = -1, eos = -1;

    void parse(const json& j);
    void parse_model(const json& model);
    void parse_added(const json& list);
    void parse_normalizer(const json& n, const std::string& key);
    void parse_pre_tokenizer(const json& p, const std::string& key);
    void parse_post_processor(const json& p, const std::string& key);
    void parse_decoder(const json& d, const std::string& key, bool in_sequence);

    std::vector<Segment> split_added(const std::string& text) const;
    const std::string* token_of(int32_t id) const;
};

void Tokenizer::Impl::parse(const json& j) {
    const Reader r{where};
    if (!j.is_object()) throw std::invalid_argument(where + ": the top level must be a JSON object");
    for (const char* k : {"truncation", "padding"}) {
        const json* v = Reader::member(j, k);
        if (v && !v->is_null())
            fail(where, k, "is set; dsv2 encodes without truncation or padding (it must be null)");
    }
    parse_model(r.object(j, "model", "model"));
    if (const json* a = Reader::member(j, "added_tokens"); a && !a->is_null()) parse_added(*a);

    // Vocabulary size, special ids and the names of BOS / EOS.
    for (const auto& [id, token] : model_tokens) vocab_size = std::max<int64_t>(vocab_size, int64_t(id) + 1);
    for (const AddedToken& t : added) vocab_size = std::max<int64_t>(vocab_size, int64_t(t.id) + 1);
    auto find_added = [&](std::initializer_list<const char*> names) {
        for (const char* n : names)
            if (const auto it = added_by_content.find(n); it != added_by_content.end()) return added[it->second].id;
        return int32_t(-1);
    };
    bos = find_added({"<｜begin▁of▁sentence｜>", "<s>", "<|begin_of_text|>"});
    eos = find_added({"<｜end▁of▁sentence｜>", "</s>", "<|endoftext|>", "<|end_of_text|>"});

    if (const json* n = Reader::member(j, "normalizer"); n && !n->is_null()) parse_normalizer(*n, "normalizer");
    if (const json* p = Reader::member(j, "pre_tokenizer"); p && !p->is_null()) parse_pre_tokenizer(*p, "pre_tokenizer");
    if (const json* p = Reader::member(j, "post_processor"); p && !p->is_null()) parse_post_processor(*p, "post_processor");
    if (const json* d = Reader::member(j, "decoder"); d && !d->is_null()) parse_decoder(*d, "decoder", false);
}

void Tokenizer::Impl::parse_model(const json& model) {
    const Reader r{where};
    // Files written by old versions of tokenizers leave out the type of a BPE model.
    const json* type = Reader::member(model, "type");
    const std::string t = type ? r.string(model, "type", "model.type") : std::string("BPE");
    if (t != "BPE") fail(where, "model.type", "is \"" + t + "\"; dsv2 supports \"BPE\" models");
    if (r.boolean(model, "byte_fallback", "model.byte_fallback", false))
        fail(where, "model.byte_fallback", "is true; dsv2 supports byte-level BPE without byte fallback");
    if (const json* d = Reader::member(model, "dropout"); d && !d->is_null()) {
        if (!d->is_number() || d->get<double>() != 0.0)
            fail(where, "model.dropout", "is " + d->dump() + "; dsv2 encodes deterministically (null or 0)");
    }
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const json* v = Reader::member(model, k);
        if (v && !v->is_null() && !(v->is_string() && v->get<std::string>().empty()))
            fail(where, std::string("model.") + k, "is " + v->dump() + "; dsv2 supports BPE without it (null)");
    }
    bpe.ignore_merges = r.boolean(model, "ignore_merges", "model.ignore_merges", false);
    bpe.fuse_unk = r.boolean(model, "fuse_unk", "model.fuse_unk", false);

    const json& vocab = r.object(model, "vocab", "model.vocab");
    bpe.vocab.reserve(vocab.size());
    model_tokens.reserve(vocab.size());
    for (const auto& [token, v] : vocab.items()) {
        const int32_t id = r.id(v, "model.vocab." + token);
        if (const auto [it, fresh] = model_tokens.emplace(id, token); !fresh)
            fail(where, "model.vocab." + token, "has id " + std::to_string(id) + ", the id of \"" + it->second + "\" too");
        bpe.vocab.emplace(token, id);
    }

    if (const json* u = Reader::member(model, "unk_token"); u && !u->is_null()) {
        const std::string unk = r.string(model, "unk_token", "model.unk_token");
        const auto it = bpe.vocab.find(unk);
        if (it == bpe.vocab.end()) fail(where, "model.unk_token", "is \"" + unk + "\", which is not in model.vocab");
        bpe.unk_id = it->second;
    }

    const json* merges = Reader::member(model, "merges");
    if (!merges || merges->is_null()) return;
    if (!merges->is_array()) fail(where, "model.merges", "must be an array, got " + merges->dump().substr(0, 80));
    bpe.merges.reserve(merges->size());
    for (size_t k = 0; k < merges->size(); ++k) {
        const json& m = (*merges)[k];
        const std::string key = "model.merges[" + std::to_string(k) + "]";
        std::string a, b;
        if (m.is_string()) {  // "a b"
            const std::string s = m.get<std::string>();
            const size_t space = s.find(' ');
            if (space == std::string::npos) fail(where, key, "must be \"left right\" (two tokens and a space), got " + m.dump());
            a = s.substr(0, space);
            b = s.substr(space + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
            a = m[0].get<std::string>();
            b = m[1].get<std::string>();
        } else {
            fail(where, key, "must be \"left right\" or [\"left\", \"right\"], got " + m.dump());
        }
        auto id_of = [&](const std::string& token) {
            const auto it = bpe.vocab.find(token);
            if (it == bpe.vocab.end()) fail(where, key, "names \"" + token + "\", which is not in model.vocab");
            return it->second;
        };
        const int32_t ia = id_of(a), ib = id_of(b), merged = id_of(a + b);
        bpe.merges[Bpe::key(ia, ib)] = {int32_t(k), merged};  // a repeated pair keeps its last rank, as in tokenizers
    }
}

void Tokenizer::Impl::parse_added(const json& list) {
    const Reader r{where};
    if (!list.is_array()) fail(where, "added_tokens", "must be an array, got " + list.dump().substr(0, 80));
    for (size_t k = 0; k < list.size(); ++k) {
        const std::string key = "added_tokens[" + std::to_string(k) + "]";
        const json& a = list[k];
        if (!a.is_object()) fail(where, key, "must be an object, got " + a.dump());
        AddedToken t;
        const json* id = Reader::member(a, "id");
        if (!id) fail(where, key + ".id", "is missing");
        t.id = r.id(*id, key + ".id");
        t.content = r.string(a, "content", key + ".content");
        if (t.content.empty()) fail(where, key + ".content", "is empty");
        t.special = r.boolean(a, "special", key + ".special", false);
        t.single_word = r.boolean(a, "single_word", key + ".single_word", false);
        t.lstrip = r.boolean(a, "lstrip", key + ".lstrip", false);
        t.rstrip = r.boolean(a, "rstrip", key + ".rstrip", false);
        t.normalized = r.boolean(a, "normalized", key + ".normalized", !t.special);
        if (added_by_content.count(t.content)) fail(where, key + ".content", "repeats the added token \"" + t.content + "\"");
        if (added_by_id.count(t.id)) fail(where, key + ".id", "repeats the id " + std::to_string(t.id) + " of another added token");
        added_by_content[t.content] = added.size();
        added_by_id[t.id] = added.size();
        added.push_back(std::move(t));
    }
    match_raw.build(added, false);
    match_normalized.build(added, true);
    if (std::any_of(added.begin(), added.end(), [](const AddedToken& t) { return t.single_word; }))
        word_char = std::make_unique<Regex>(kWordCharPattern, where, "added_tokens");
}

void Tokenizer::Impl::parse_normalizer(const json& n, const std::string& key) {
    const Reader r{where};
    if (!n.is_object()) fail(where, key, "must be null or an object, got " + n.dump());
    const std::string type = r.string(n, "type", key + ".type");
    if (type == "Sequence") {
        const json* list = Reader::member(n, "normalizers");
        if (!list || !list->is_array()) fail(where, key + ".normalizers", "must be an array");
        for (size_t k = 0; k < list->size(); ++k)
            parse_normalizer((*list)[k], key + ".normalizers[" + std::to_string(k) + "]");
        return;
    }
    fail(where, key + ".type", "is \"" + type + "\": unsupported normalizer type " + type +
                                   " (dsv2 supports no normalizer: null or an empty Sequence)");
}

void Tokenizer::Impl::parse_pre_tokenizer(const json& p, const std::string& key) {
    const Reader r{where};
    if (!p.is_object()) fail(where, key, "must be null or an object, got " + p.dump());
    const std::string type = r.string(p, "type", key + ".type");
    PreTokenizer step;
    if (type == "Sequence") {
        const json* list = Reader::member(p, "pretokenizers");
        if (!list || !list->is_array()) fail(where, key + ".pretokenizers", "must be an array");
        for (size_t k = 0; k < list->size(); ++k)
            parse_pre_tokenizer((*list)[k], key + ".pretokenizers[" + std::to_string(k) + "]");
        return;
    } else if (type == "Split") {
        step.kind = PreTokenizer::Kind::split;
        const json& pattern = r.object(p, "pattern", key + ".pattern");
        if (const json* re = Reader::member(pattern, "Regex")) {
            if (!re->is_string()) fail(where, key + ".pattern.Regex", "must be a string, got " + re->dump());
            step.regex = std::make_unique<Regex>(re->get<std::string>(), where, key + ".pattern.Regex");
        } else if (const json* s = Reader::member(pattern, "String")) {
            if (!s->is_string()) fail(where, key + ".pattern.String", "must be a string, got " + s->dump());
            std::string escaped;  // a literal, escaped as tokenizers does it (Rust's regex::escape)
            for (char c : s->get<std::string>()) {
                if (std::string_view("\\.+*?()|[]{}^$#&-~").find(c) != std::string_view::npos) escaped += '\\';
                escaped += c;
            }
            step.regex = std::make_unique<Regex>(escaped, where, key + ".pattern.String");
        } else {
            fail(where, key + ".pattern", "must be {\"Regex\": …} or {\"String\": …}, got " + pattern.dump());
        }
        const std::string behavior = r.string(p, "behavior", key + ".behavior");
        if (behavior == "Isolated") step.behavior = Behavior::isolated;
        else if (behavior == "Removed") step.behavior = Behavior::removed;
        else if (behavior == "MergedWithPrevious") step.behavior = Behavior::merged_with_previous;
        else if (behavior == "MergedWithNext") step.behavior = Behavior::merged_with_next;
        else if (behavior == "Contiguous") step.behavior = Behavior::contiguous;
        else fail(where, key + ".behavior", "is \"" + behavior + "\"; expected Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous");
        step.invert = r.boolean(p, "invert", key + ".invert", false);
    } else if (type == "ByteLevel") {
        step.kind = PreTokenizer::Kind::byte_level;
        step.add_prefix_space = r.boolean(p, "add_prefix_space", key + ".add_prefix_space", true);
        if (r.boolean(p, "use_regex", key + ".use_regex", true))
            step.regex = std::make_unique<Regex>(kGpt2Pattern, where, key);
    } else if (type == "Digits") {  // each (or each run of) \p{N} character(s) is a piece
        step.kind = PreTokenizer::Kind::digits;
        step.behavior = r.boolean(p, "individual_digits", key + ".individual_digits", false) ? Behavior::isolated
                                                                                             : Behavior::contiguous;
        step.regex = std::make_unique<Regex>(R"(\p{N})", where, key);
    } else {
        fail(where, key + ".type", "is \"" + type + "\": unsupported pre_tokenizer type " + type +
                                       " (dsv2 supports Sequence, Split, ByteLevel and Digits)");
    }
    pre.push_back(std::move(step));
}

void Tokenizer::Impl::parse_post_processor(const json& p, const std::string& key) {
    const Reader r{where};
    if (!p.is_object()) fail(where, key, "must be null or an object, got " + p.dump());
    const std::string type = r.string(p, "type", key + ".type");
    if (type == "Sequence") {
        const json* list = Reader::member(p, "processors");
        if (!list || !list->is_array()) fail(where, key + ".processors", "must be an array");
        for (size_t k = 0; k < list->size(); ++k)
            parse_post_processor((*list)[k], key + ".processors[" + std::to_string(k) + "]");
        return;
    }
    if (type == "ByteLevel") return;  // it only trims offsets; the ids are unchanged
    if (type != "TemplateProcessing")
        fail(where, key + ".type", "is \"" + type + "\": unsupported post_processor type " + type +
                                       " (dsv2 supports TemplateProcessing, ByteLevel and Sequence)");
    const json* single = Reader::member(p, "single");
    if (!single || !single->is_array()) fail(where, key + ".single", "must be an array");
    const json* specials = Reader::member(p, "special_tokens");
    std::vector<std::vector<int32_t>> items;
    bool has_sequence = false;
    for (size_t k = 0; k < single->size(); ++k) {
        const std::string ikey = key + ".single[" + std::to_string(k) + "]";
        const json& item = (*single)[k];
        if (!item.is_object()) fail(where, ikey, "must be an object, got " + item.dump());
        if (const json* seq = Reader::member(item, "Sequence")) {
            const std::string id = seq->is_object() ? r.string(*seq, "id", ikey + ".Sequence.id") : std::string();
            if (id != "A") fail(where, ikey + ".Sequence.id", "must be \"A\" in the single template, got " + seq->dump());
            has_sequence = true;
            items.emplace_back();
        } else if (const json* sp = Reader::member(item, "SpecialToken")) {
            if (!sp->is_object()) fail(where, ikey + ".SpecialToken", "must be an object, got " + sp->dump());
            const std::string name = r.string(*sp, "id", ikey + ".SpecialToken.id");
            const json* entry = specials && specials->is_object() ? Reader::member(*specials, name.c_str()) : nullptr;
            const std::string skey = key + ".special_tokens." + name;
            if (!entry || !entry->is_object()) fail(where, skey, "is missing (the template uses it)");
            const json* ids = Reader::member(*entry, "ids");
            if (!ids || !ids->is_array() || ids->empty()) fail(where, skey + ".ids", "must be a non-empty array of ids");
            std::vector<int32_t> v;
            for (size_t i = 0; i < ids->size(); ++i) {
                const int32_t id = r.id((*ids)[i], skey + ".ids[" + std::to_string(i) + "]");
                if (!token_of(id))
                    fail(where, skey + ".ids[" + std::to_string(i) + "]", "is " + std::to_string(id) + ", an id no token has");
                v.push_back(id);
            }
            items.push_back(std::move(v));
        } else {
            fail(where, ikey, "must be {\"Sequence\": …} or {\"SpecialToken\": …}, got " + item.dump());
        }
    }
    if (!has_sequence) fail(where, key + ".single", "has no {\"Sequence\": {\"id\": \"A\"}} item");
    templates.push_back(std::move(items));
}

void Tokenizer::Impl::parse_decoder(const json& d, const std::string& key, bool in_sequence) {
    const Reader r{where};
    if (!d.is_object()) fail(where, key, "must be null or an object, got " + d.dump());
    const std::string type = r.string(d, "type", key + ".type");
    if (type == "ByteLevel") {
        decoder = Decoder::byte_level;
    } else if (type == "Sequence" && !in_sequence) {
        const json* list = Reader::member(d, "decoders");
        if (!list || !list->is_array()) fail(where, key + ".decoders", "must be an array");
        for (size_t k = 0; k < list->size(); ++k) {
            const std::string ikey = key + ".decoders[" + std::to_string(k) + "]";
            parse_decoder((*list)[k], ikey, true);
            // Fuse joins the tokens into one string, which ByteLevel has already done: it may follow
            // ByteLevel and changes nothing there. Anything else would change the text.
            const std::string t = r.string((*list)[k], "type", ikey + ".type");
            if (t == "Fuse" && decoder != Decoder::byte_level)
                fail(where, ikey + ".type", "is \"Fuse\" before ByteLevel; dsv2 supports Fuse only after ByteLevel");
        }
        if (decoder != Decoder::byte_level) fail(where, key + ".decoders", "has no ByteLevel decoder");
    } else if (type == "Fuse" && in_sequence) {
        // checked by the caller
    } else {
        fail(where, key + ".type", "is \"" + type + "\": unsupported decoder type " + type +
                                       " (dsv2 supports ByteLevel, or a Sequence of ByteLevel and Fuse)");
    }
}

const std::string* Tokenizer::Impl::token_of(int32_t id) const {
    if (const auto a = added_by_id.find(id); a != added_by_id.end()) return &added[a->second].content;
    if (const auto m = model_tokens.find(id); m != model_tokens.end()) return &m->second;
    return nullptr;
}

// The text cut around added tokens: first those matched on the raw text (normalized false),
// then, in what is left, the others (tokenizers' AddedVocabulary::extract_and_normalize; with no
// normalizer both passes see the same text). Empty plain segments are dropped.
std::vector<Segment> Tokenizer::Impl::split_added(const std::string& text) const {
    std::vector<Segment> segs;
    if (!text.empty()) segs.push_back({text, -1});
    for (const AddedMatcher* matcher : {&match_raw, &match_normalized}) {
        if (matcher->empty()) continue;
        std::vector<Segment> out;
        for (Segment& seg : segs) {
            if (seg.id >= 0) {
                out.push_back(std::move(seg));
                continue;
            }
            // tokenizers' AddedVocabulary::find_matches
            const std::string& s = seg.text;
            auto* u = reinterpret_cast<const unsigned char*>(s.data());
            size_t start_offset = 0;
            size_t pos = 0;
            while (true) {
                const auto [found, k] = matcher->next(s, pos);
                if (found == std::string::npos) break;
                const AddedToken& t = added[k];
                size_t start = found, stop = found + t.content.size();
                pos = stop;
                if (t.single_word) {  // no word character may touch it
                    bool word_before = false, word_after = false;
                    if (start > 0) {
                        size_t b = start - 1;
                        while (b > 0 && (u[b] & 0xC0) == 0x80) --b;
                        word_before = word_char->matches_whole(s.data() + b, s.data() + start);
                    }
                    if (stop < s.size())
                        word_after = word_char->matches_whole(s.data() + stop, s.data() + stop + utf8_len(u[stop]));
                    if (word_before || word_after) continue;
                }
                if (t.lstrip) {  // take the white space before it
                    size_t b = start;
                    while (b > 0) {
                        size_t c = b - 1;
                        while (c > 0 && (u[c] & 0xC0) == 0x80) --c;
                        if (!is_white_space(utf8_decode(u + c, b - c))) break;
                        b = c;
                    }
                    start = std::max(b, start_offset);
                }
                if (t.rstrip) {  // and after it
                    while (stop < s.size()) {
                        const size_t n = utf8_len(u[stop]);
                        if (!is_white_space(utf8_decode(u + stop, n))) break;
                        stop += n;
                    }
                }
                if (start_offset < start) out.push_back({s.substr(start_offset, start - start_offset), -1});
                out.push_back({s.substr(start, stop - start), t.id});
                start_offset = stop;
            }
            if (start_offset < s.size()) out.push_back({s.substr(start_offset), -1});
        }
        segs = std::move(out);
    }
    return segs;
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_json_text(const std::string& text, const std::string& where) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw std::invalid_argument(where + ": not valid JSON (" + e.what() + ")");
    }
    auto impl = std::make_shared<Impl>();
    impl->where = where;
    try {
        impl->parse(j);
    } catch (const json::exception& e) {  // a value of an unexpected JSON type the checks missed
        throw std::invalid_argument(where + ": unexpected value (" + e.what() + ")");
    }
    return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_file(const std::string& path_in) {
    std::string path;
    const std::string text = read_text_file(path_in, "tokenizer.json", &path);
    return from_json_text(text, path);
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special) const {
    const Impl& m = *impl_;
    check_utf8(text, m.where);
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::unordered_map<std::string, std::vector<int32_t>> cache;  // pre-token → ids, for this call
    std::vector<std::string> pieces;
    for (Segment& seg : m.split_added(text)) {
        if (seg.id >= 0) {
            ids.push_back(seg.id);
            continue;
        }
        pieces.clear();
        pieces.push_back(std::move(seg.text));
        for (const PreTokenizer& step : m.pre) step.apply(pieces);
        for (const std::string& piece : pieces) {
            auto it = cache.find(piece);
            if (it == cache.end()) {
                std::vector<int32_t> word;
                m.bpe.tokenize(piece, word);
                it = cache.emplace(piece, std::move(word)).first;
            }
            ids.insert(ids.end(), it->second.begin(), it->second.end());
        }
    }
    if (add_special) {
        for (const auto& items : m.templates) {
            std::vector<int32_t> out;
            out.reserve(ids.size() + 8);
            for (const auto& item : items) {
                if (item.empty()) out.insert(out.end(), ids.begin(), ids.end());
                else out.insert(out.end(), item.begin(), item.end());
            }
            ids = std::move(out);
        }
    }
    return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    const Impl& m = *impl_;
    std::vector<const std::string*> tokens;
    tokens.reserve(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) {
        const std::string* t = m.token_of(ids[k]);
        if (!t)
            throw std::invalid_argument(m.where + ": decode: id " + std::to_string(ids[k]) + " (at position " +
                                        std::to_string(k) + ") is not in the vocabulary (size " +
                                        std::to_string(m.vocab_size) + ")");
        if (skip_special) {
            const auto a = m.added_by_content.find(*t);
            if (a != m.added_by_content.end() && m.added[a->second].special) continue;
        }
        tokens.push_back(t);
    }
    if (m.decoder == Impl::Decoder::join_spaces) {
        std::string out;
        for (size_t k = 0; k < tokens.size(); ++k) out += (k ? " " : "") + *tokens[k];
        return out;
    }
    // ByteLevel: a token made only of table characters becomes their bytes; any other token
    // (an added token such as <｜end▁of▁sentence｜>) keeps its own UTF-8 bytes.
    const ByteTable& table = byte_table();
    std::string bytes, token_bytes;
    for (const std::string* t : tokens) {
        const auto* u = reinterpret_cast<const unsigned char*>(t->data());
        token_bytes.clear();
        bool all_in_table = true;
        for (size_t i = 0; i < t->size();) {
            const size_t n = utf8_len(u[i]);
            const auto it = table.byte.find(utf8_decode(u + i, std::min(n, t->size() - i)));
            if (it == table.byte.end()) {
                all_in_table = false;
                break;
            }
            token_bytes += char(it->second);
            i += n;
        }
        bytes += all_in_table ? token_bytes : *t;
    }
    return utf8_lossy(bytes);
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

int32_t Tokenizer::token_to_id(const std::string& token) const {
    if (const auto a = impl_->added_by_content.find(token); a != impl_->added_by_content.end())
        return impl_->added[a->second].id;
    if (const auto v = impl_->bpe.vocab.find(token); v != impl_->bpe.vocab.end()) return v->second;
    return -1;
}

std::string Tokenizer::id_to_token(int32_t id) const {
    const std::string* t = impl_->token_of(id);
    if (!t)
        throw std::invalid_argument(impl_->where + ": id_to_token: id " + std::to_string(id) +
                                    " is not in the vocabulary (size " + std::to_string(impl_->vocab_size) + ")");
    return *t;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }

}  // namespace dsv2
