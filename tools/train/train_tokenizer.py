#!/usr/bin/env python3
"""Trains the byte-level BPE tokenizer of the embedded default model on the King James Bible.

Built like DeepSeek's tokenizer.json: a Sequence of regex Splits (numbers, CJK, words,
punctuation, whitespace) followed by a ByteLevel pre-tokenizer without its own regex, a BPE model
over the 256 byte symbols, a ByteLevel decoder, DeepSeek's two special tokens, and a template
that puts <｜begin▁of▁sentence｜> before every text.

    tools/train/kjv_text.sh > /tmp/kjv.txt
    python3 tools/train/train_tokenizer.py /tmp/kjv.txt data/models/kjv-tiny/tokenizer.json
"""
import argparse

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


def build(vocab_size: int, files: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"[一-龥\u3040-ゟ゠-ヿ]+"), behavior="isolated"),
        pre_tokenizers.Split(
            Regex(r"[\r\n]|\s?\p{L}+|\s?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(files, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", help="training text (e.g. the output of kjv_text.sh)")
    ap.add_argument("out", help="tokenizer.json to write")
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()
    tok = build(args.vocab_size, [args.text])
    tok.save(args.out)
    enc = tok.encode("In the beginning God created the heaven and the earth.")
    print(f"{args.out}: {tok.get_vocab_size()} tokens; sample: {enc.tokens}")


if __name__ == "__main__":
    main()
