#!/usr/bin/env python3
"""Golden encodings for dsv2::Tokenizer, made by the Hugging Face `tokenizers` library.

Two tokenizers are covered:

  kjv-tiny   data/models/kjv-tiny/tokenizer.json — the embedded model's tokenizer (DeepSeek-style
             Sequence of regex Splits + ByteLevel without regex, BOS template)
  gpt2style  data/golden/tokenizer/gpt2style/tokenizer.json — written by this script: GPT-2's
             ByteLevel(add_prefix_space, use_regex) + Digits(individual_digits), a special
             <|endoftext|> appended by a Sequence[ByteLevel, TemplateProcessing] post-processor and
             two non-special added tokens ("Selah" single_word, "<verse>" lstrip + rstrip), BPE
             trained on the first 200 kB of the KJV text.

and "variants": gpt2style with one part replaced (a JSON merge patch; null sets a key to null), to cover every
Split behaviour, invert, String patterns, Digits without individual_digits, ByteLevel without its
regex, no pre-tokenizer at all, and ignore_merges.

For every text: ids with and without the post-processor template, the tokens, and HF's decode
of the ids with skip_special_tokens false and true (variants: the ids only); and decodings of
byte tokens that do not form valid UTF-8 ("decode_cases"). Output: data/golden/tokenizer/cases.json.

    python3 tools/golden/tokenizer_cases.py            # needs Debian's bible-kjv (kjv_text.sh)

Deterministic: rerunning it rewrites the same bytes (tokenizers==0.23.3).
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KJV_TOKENIZER = "data/models/kjv-tiny/tokenizer.json"
GPT2_TOKENIZER = "data/golden/tokenizer/gpt2style/tokenizer.json"
CASES = "data/golden/tokenizer/cases.json"
EOT = "<|endoftext|>"
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


def kjv_text(n_bytes: int) -> str:
    """The first n_bytes of tools/train/kjv_text.sh (cut back to whole UTF-8 characters)."""
    out = subprocess.run([os.path.join(ROOT, "tools/train/kjv_text.sh")], check=True, capture_output=True).stdout
    return out[:n_bytes].decode("utf-8", errors="ignore")


def texts(kjv: str) -> list[tuple[str, str]]:
    """(name, text) pairs: whitespace, digits, apostrophes, scripts, emoji, special tokens."""
    lines = kjv.split("\n")
    paragraph = "\n".join(lines[3:30])  # Genesis 1:1-10 as bible prints it (indented verse numbers)
    return [
        ("empty", ""),
        ("single space", " "),
        ("spaces around", "  leading and trailing  "),
        ("multiple spaces", "a    b     c"),
        ("tabs", "\tone\t\ttwo \t three\t"),
        ("newlines", "\n\n\r\n"),
        ("lines", "first line\nsecond line\r\nthird\n\n  indented\n"),
        ("digits", "1234567 3.14 2024-11-28"),
        ("long number", "x=123456789012345678901234567890;"),
        ("apostrophes", "don't it's we'll they're I'm you've he'd"),
        ("apostrophes upper", "DON'T IT'S"),
        ("punctuation", "Hello, world! (Really?) -- yes; no: 50% & $3.00 #tag @user {a} [b] <c> ~/*"),
        ("latin accents", "naïve café résumé"),
        ("greek", "Ελληνικά"),
        ("cyrillic", "Привет мир"),
        ("cjk", "你好，世界。日本語のテキスト"),
        ("katakana hiragana", "カタカナ と ひらがな"),
        ("emoji", "👍🏽 family 👨‍👩‍👧"),
        ("mixed", "In the beginning God created the heaven and the earth."),
        ("kjv verse", "And God said, Let there be light: and there was light."),
        ("bos inside", f"text before {BOS} text after"),
        ("eos at end", f"The end.{EOS}"),
        ("bos eos only", f"{BOS}{EOS}"),
        ("special-like but not", "<｜begin▁of▁sentence| <s> </s>"),
        ("endoftext inside", f"one{EOT}two {EOT} three"),
        ("selah", "Selah. Selahs xSelah Selah_ (Selah) Selah"),
        ("verse tags", "a <verse> b  <verse>c\n<verse>\t d<verse>"),
        ("combining", "e\u0301 and \u00e9"),
        ("unicode whitespace", "a\u00a0b\u2003c\u3000d\u2028e\u0085f"),
        ("zwj zwnj", "a\u200db\u200cc\ufeffd"),
        ("control", "bell\x07nul\x00esc\x1b del\x7f"),
        ("arabic hebrew", "مرحبا שלום"),
        ("devanagari", "नमस्ते दुनिया"),
        ("math symbols", "∀x ∈ ℝ: x² ≥ 0 ⇒ √x ∃"),
        ("supplementary", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \U0010ffff"),
        ("fullwidth", "ＡＢＣ１２３"),
        ("kjv paragraph", paragraph),
    ]


def short(cases: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The cases used for the variants (everything but the long paragraph)."""
    return [c for c in cases if c[0] != "kjv paragraph"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → character table of the ByteLevel pre-tokenizer and decoder."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# Byte sequences (one byte-level token per byte) that are not valid UTF-8 by themselves, for the
# decoder's U+FFFD replacement; None stands for the tokenizer's special token (BOS or EOT).
DECODE_BYTES = [
    [0xE4],                          # the first byte of 你
    [0xE4, 0xBD],                    # two of its three bytes
    [0xE4, 0xBD, 0xA0],              # all of 你
    [0xF0, 0x9F, ord("a")],          # a cut emoji, then a letter
    [0xED, 0xA0, 0x80],              # a UTF-16 surrogate
    [0xC0, 0xAF],                    # an overlong '/'
    [0xFF, 0x80, ord("b")],          # never-valid byte, stray continuation byte
    [0xF4, 0x90, 0x80, 0x80],        # above U+10FFFF
    [None, 0xE4, None, ord("c"), 0xBD],  # special tokens between the bytes
]


def decode_records(tok: Tokenizer, special: str) -> list[dict]:
    table = bytes_to_unicode()
    out = []
    for seq in DECODE_BYTES:
        ids = [tok.token_to_id(special) if b is None else tok.token_to_id(table[b]) for b in seq]
        out.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return out


def build_gpt2style(kjv: str) -> Tokenizer:
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write(kjv)
        path = f.name
    try:
        tok.train([path], trainer)
    finally:
        os.unlink(path)
    tok.add_tokens([
        AddedToken("Selah", single_word=True, special=False),
        AddedToken("<verse>", lstrip=True, rstrip=True, special=False),
    ])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=True),
        processors.TemplateProcessing(single=f"$A {EOT}", pair=f"$A {EOT} $B {EOT}",
                                      special_tokens=[(EOT, tok.token_to_id(EOT))]),
    ])
    return tok


# gpt2style with one part replaced: name → JSON merge patch on its tokenizer.json.
def _byte_level(prefix=False, regex=False):
    return {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": regex}


def _split(pattern, behavior, invert=False):
    return {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert}


VARIANTS = {
    "split isolated string": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"String": ". "}, "Isolated"), _byte_level()]}},
    "split removed": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"Regex": r"\s+"}, "Removed"), _byte_level()]}},
    "split merged with previous": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"Regex": r"[,.;:!?]"}, "MergedWithPrevious"), _byte_level()]}},
    "split merged with next": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"String": " "}, "MergedWithNext"), _byte_level()]}},
    "split contiguous": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"Regex": r"\p{L}"}, "Contiguous"), _byte_level()]}},
    "split inverted": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"Regex": r"\p{L}+|\p{N}"}, "Isolated", invert=True), _byte_level()]}},
    "split removed inverted": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"Regex": r"\s+"}, "Removed", invert=True), _byte_level()]}},
    "split empty matches": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _split({"Regex": r"\d*"}, "Isolated"), _byte_level()]}},
    "digits contiguous": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False}, _byte_level(regex=True)]}},
    "byte level alone": {"pre_tokenizer": _byte_level()},
    "byte level prefix regex": {"pre_tokenizer": _byte_level(prefix=True, regex=True)},
    "split after byte level": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        _byte_level(regex=True), _split({"String": "Ġ"}, "MergedWithNext")]}},
    "no pre-tokenizer": {"pre_tokenizer": None},
    "ignore merges": {"model": {"ignore_merges": True}},
    "no post-processor": {"post_processor": None},
    "merges as strings": {},  # the same tokenizer, its ["a", "b"] merges rewritten as legacy "a b" below
}


def merge_patch(target, patch):
    """A JSON merge patch (RFC 7396), except that null sets the key to null instead of removing it
    (tokenizer.json writes absent parts as explicit nulls)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        out[k] = merge_patch(out.get(k), v)
    return out


def case_record(tok: Tokenizer, name: str, text: str, full: bool = True) -> dict:
    """One golden case; without `full` (variants) only ids_plain is kept (and ids where the
    variant changes the post-processor): the text is the base tokenizer's case of the same name,
    its template appends <|endoftext|>, and decoding does not depend on the replaced parts."""
    with_special = tok.encode(text, add_special_tokens=True)
    plain = tok.encode(text, add_special_tokens=False)
    record = {"name": name}
    if full:
        record["text"] = text
    if full or with_special.ids != plain.ids + [tok.token_to_id(EOT)]:
        record["ids"] = with_special.ids
    record["ids_plain"] = plain.ids
    if full:
        record["tokens_plain"] = plain.tokens
    if full:
        record["decoded"] = tok.decode(with_special.ids, skip_special_tokens=False)
        record["decoded_skip_special"] = tok.decode(with_special.ids, skip_special_tokens=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=ROOT, help="repository root (default: this script's)")
    args = ap.parse_args()
    if tokenizers.__version__ != "0.23.3":
        print(f"warning: tokenizers {tokenizers.__version__}, the golden data was made with 0.23.3", file=sys.stderr)

    kjv = kjv_text(200000)
    cases = texts(kjv)

    gpt2 = build_gpt2style(kjv)
    gpt2_path = os.path.join(args.root, GPT2_TOKENIZER)
    os.makedirs(os.path.dirname(gpt2_path), exist_ok=True)
    gpt2.save(gpt2_path)
    gpt2_json = json.loads(open(gpt2_path, encoding="utf-8").read())

    kjv_tok = Tokenizer.from_file(os.path.join(args.root, KJV_TOKENIZER))
    out = {
        "generator": "tools/golden/tokenizer_cases.py",
        "tokenizers_version": tokenizers.__version__,
        "tokenizers": [],
        "variants": [],
    }
    for name, path, tok, special in (("kjv-tiny", KJV_TOKENIZER, kjv_tok, BOS), ("gpt2style", GPT2_TOKENIZER, gpt2, EOT)):
        out["tokenizers"].append({
            "name": name,
            "path": path,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "cases": [case_record(tok, n, t) for n, t in cases],
            "decode_cases": decode_records(tok, special),
        })

    for vname, patch in VARIANTS.items():
        j = merge_patch(gpt2_json, patch)
        if vname == "merges as strings":
            j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
        tok = Tokenizer.from_str(json.dumps(j))
        out["variants"].append({
            "name": vname,
            "base": "gpt2style",
            "patch": patch,
            "merges_as_strings": vname == "merges as strings",
            "cases": [case_record(tok, n, t, full=False) for n, t in short(cases)],
        })

    cases_path = os.path.join(args.root, CASES)
    with open(cases_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{GPT2_TOKENIZER}: {gpt2.get_vocab_size()} tokens; {CASES}: {os.path.getsize(cases_path)} bytes")


if __name__ == "__main__":
    main()
