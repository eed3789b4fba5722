// A Hugging Face `tokenizer.json` tokenizer: byte-level BPE as DeepSeek's (and GPT-2's) tokenizers
// use it, reproducing the `tokenizers` library's ids exactly.
//
// Supported (anything else is refused at load with an error naming the key; docs/tokenizer.md):
//   model           BPE: vocab, merges ("a b" or ["a", "b"]), ignore_merges, unk_token/fuse_unk;
//                   byte_fallback false, dropout null, no subword prefix/suffix
//   normalizer      null or an empty Sequence
//   pre_tokenizer   null, Sequence, Split (Regex or String pattern, every behavior, invert),
//                   ByteLevel (add_prefix_space, use_regex), Digits (individual_digits)
//   post_processor  null, TemplateProcessing (the single template), ByteLevel, Sequence of these
//   decoder         null, ByteLevel, Sequence of ByteLevel and Fuse
//   added_tokens    special and not, single_word, lstrip, rstrip: matched before pre-tokenization,
//                   longest match first, never BPE'd
// Regexes run on Oniguruma with the syntax, options and UTF-8 encoding the `tokenizers` library
// uses, so \p{L}, \p{N}, \s and lookaheads match the same text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsv2 {

class Tokenizer {
public:
    /// Loads tokenizer.json (or a directory holding one). Errors (std::invalid_argument) name the
    /// file and the key.
    static Tokenizer from_file(const std::string& path);
    /// Parses a tokenizer.json text; `where` names it in errors (e.g. the file it came from).
    static Tokenizer from_json_text(const std::string& text, const std::string& where);

    /// UTF-8 text → ids. add_special: apply the post_processor template (e.g. prepend BOS).
    /// Throws std::invalid_argument on invalid UTF-8 (naming the byte offset).
    std::vector<int32_t> encode(const std::string& text, bool add_special = true) const;

    /// ids → text through the decoder (ByteLevel: token symbols back to bytes, invalid UTF-8
    /// replaced by U+FFFD as `tokenizers` does); skip_special drops special tokens. Throws
    /// std::invalid_argument naming an id outside the vocabulary.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

    /// Largest id + 1 (model vocabulary and added tokens).
    int64_t vocab_size() const;
    /// The id of a token (added tokens first, then the model vocabulary); -1 when absent.
    int32_t token_to_id(const std::string& token) const;
    /// The token of an id (added tokens first); throws std::invalid_argument when no token has it.
    std::string id_to_token(int32_t id) const;
    /// The added token <｜begin▁of▁sentence｜> (or <s>, <|begin_of_text|>); -1 when none.
    int32_t bos_id() const;
    /// The added token <｜end▁of▁sentence｜> (or </s>, <|endoftext|>, <|end_of_text|>); -1 when none.
    int32_t eos_id() const;

private:
    struct Impl;
    explicit Tokenizer(std::shared_ptr<const Impl> impl);
    std::shared_ptr<const Impl> impl_;  // immutable after loading: copies share it, encode is thread-safe
};

}  // namespace dsv2
