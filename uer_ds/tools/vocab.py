"""Vocabularies: build one from a corpus, compare two (UER-py's build_vocab.py and diff_vocab.py).

wordpiece: the `tokenizers` library's BERT WordPiece trainer (BERT's normalisation: lower case,
Chinese characters split, accents stripped); sentencepiece: the `sentencepiece` trainer (unigram or
bpe); char / space: every character / whitespace field with at least min_count occurrences, most
frequent first (UER-py's build_vocab); word: every word of the `word` tokenizer (jieba's segmentation
of Chinese, white-space fields otherwise), counted the same way; space counts a corpus segmented
beforehand (words joined by spaces).  All put BERT's special tokens first: [PAD] = 0, [UNK] = 1,
[CLS] = 2, [SEP] = 3, [MASK] = 4 (SentencePiece: as its pad / unk / bos / eos pieces and a user
symbol), so uer_ds's tokenizers find them.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from tqdm import tqdm

from uer_ds.atomic import atomic_paths
from uer_ds.convert.rules import new_file
from uer_ds.textfile import iter_lines, split_fields
from uer_ds.tokenizers import Vocab
from uer_ds.tokenizers.simple import char_tokens, space_tokens

PathLike = Union[str, os.PathLike]
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
KINDS = ("wordpiece", "sentencepiece", "char", "space", "word")


def _corpus(paths: Sequence[PathLike]) -> list[str]:
    files = [str(Path(p)) for p in paths]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"corpus_path '{f}': no such file")
    return files


def _write_vocab(tokens: Sequence[str], output: PathLike) -> int:
    with new_file(output, overwrite=True) as tmp:
        Vocab(list(tokens), source=str(output)).save(tmp)
    return len(tokens)


def build_wordpiece(corpus: Sequence[PathLike], output: PathLike, vocab_size: int, min_count: int = 1,
                    lowercase: bool = True) -> int:
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=lowercase)
    # limit_alphabet: the library's default (1000 characters) would drop rare Chinese characters
    trainer.train(_corpus(corpus), vocab_size=vocab_size, min_frequency=min_count, special_tokens=list(SPECIALS),
                  limit_alphabet=vocab_size, show_progress=False)
    by_id = sorted(trainer.get_vocab().items(), key=lambda item: item[1])
    return _write_vocab([token for token, _ in by_id], output)


def build_sentencepiece(corpus: Sequence[PathLike], output_prefix: PathLike, vocab_size: int,
                        model_type: str = "unigram", character_coverage: float = 0.9995) -> int:
    """Writes <prefix>.model and <prefix>.vocab; returns the number of pieces."""
    import sentencepiece

    prefix = Path(output_prefix)
    prefix = prefix.with_suffix("") if prefix.suffix == ".model" else prefix
    targets = [prefix.with_name(prefix.name + suffix) for suffix in (".model", ".vocab")]
    with atomic_paths(*targets) as temps:
        tmp_prefix = temps[0].with_suffix("")  # the temporaries share it: SentencePiece writes <prefix>.model/.vocab
        try:
            sentencepiece.SentencePieceTrainer.train(
                input=",".join(_corpus(corpus)), model_prefix=str(tmp_prefix), vocab_size=vocab_size,
                model_type=model_type, character_coverage=character_coverage, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]", eos_piece="[SEP]",
                user_defined_symbols=["[MASK]"], num_threads=1, minloglevel=2)
        except RuntimeError as err:
            raise ValueError(f"sentencepiece could not train on {', '.join(map(str, corpus))}: {err}") from None
    return vocab_size


def build_counted(corpus: Sequence[PathLike], output: PathLike, kind: str, min_count: int = 1,
                  lowercase: bool = False) -> int:
    """char / space / word vocabularies: the tokens the char / space / word (jieba) tokenizer makes of each
    corpus line."""
    counts: Counter = Counter()
    if kind == "word":
        from uer_ds.tokenizers.word import default_segmenter, segment_words

        segmenter = default_segmenter()

        def split(text: str) -> list[str]:
            return [w for w, _, _ in segment_words(text, segmenter)]
    else:
        split = char_tokens if kind == "char" else space_tokens
    for path in _corpus(corpus):
        for _, line in tqdm(iter_lines(path, "corpus_path"), desc=f"counting {Path(path).name}", disable=None):
            counts.update(split(line.lower() if lowercase else line))
    kept = [token for token, n in counts.most_common() if n >= min_count and token not in SPECIALS]
    return _write_vocab(list(SPECIALS) + kept, output)


@dataclass
class VocabDiff:
    size_1: int
    size_2: int
    only_1: list[str]
    only_2: list[str]
    common: int


def diff_vocab(path_1: PathLike, path_2: PathLike) -> VocabDiff:
    """Token sets of two vocabulary files: each line's text before a tab (a SentencePiece .vocab line
    is 'piece<TAB>score'; a vocab.txt line is the token).  UER-py's script took the first str.split()
    field, which dropped the Chinese vocabulary's U+2028 entry and read '##\u2028' as '##'."""
    sets = []
    for path in (path_1, path_2):
        sets.append({split_fields(line)[0] for line in Vocab.load(path).id_to_token})
    a, b = sets
    return VocabDiff(len(a), len(b), sorted(a - b), sorted(b - a), len(a & b))
