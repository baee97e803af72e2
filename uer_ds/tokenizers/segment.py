"""Word segmentation for the `word` tokenizer and knowledge masking: jieba (a well-kept PyPI package).

SEGMENTERS is the one list of segmenters (`--segmenter` takes its choices from it).  A segmenter
gives the words of a text with their character spans, optionally with part-of-speech tags, and can
be given a lexicon (one word, entity or phrase per line) whose entries it keeps whole.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, os.PathLike]
Word = tuple[str, int, int]  # (word, start, end): text[start:end] == word


def read_lexicon(path: PathLike) -> list[str]:
    """The entries of a lexicon file: one per line, UTF-8; blank lines skipped; tabs or spaces end an
    entry (a frequency or tag after it, as in jieba's user dictionaries, is ignored)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"lexicon_path '{file}': no such file")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        line = file.read_bytes()[: err.start].count(b"\n") + 1
        raise ValueError(f"{file}: line {line}: invalid UTF-8 at byte {err.start}") from None
    entries = [line.split()[0] for line in lines if line.strip()]
    if not entries:
        raise ValueError(f"{file}: the lexicon has no entries (one word, entity or phrase per line)")
    return entries


class JiebaSegmenter:
    """jieba's accurate mode (with its HMM for unseen words); a lexicon's entries are added to this
    segmenter's own dictionary (jieba.Tokenizer instance), so other segmenters are not affected."""

    name = "jieba"

    def __init__(self, lexicon: Optional[list[str]] = None) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict..." on every start
        self.version = jieba.__version__
        self.lexicon = tuple(lexicon or ())
        self._jieba = jieba.Tokenizer()
        for entry in self.lexicon:
            self._jieba.add_word(entry, freq=None)  # freq None: jieba picks one that keeps the entry whole
        self._pos = None

    def words(self, text: str) -> list[Word]:
        """Every word of `text` (white space included, as jieba returns it) with its span."""
        return [(w, a, b) for w, a, b in self._jieba.tokenize(text)]

    def tagged(self, text: str) -> list[tuple[str, str, int, int]]:
        """(word, part-of-speech tag, start, end) for every word (jieba.posseg's tags: nr person, ns place,
        nt organisation, nz other proper noun, n noun, a adjective, v verb, x punctuation/space, ...)."""
        if self._pos is None:
            import jieba.posseg

            self._pos = jieba.posseg.POSTokenizer(self._jieba)
        out, pos = [], 0
        for pair in self._pos.cut(text):
            out.append((pair.word, pair.flag, pos, pos + len(pair.word)))
            pos += len(pair.word)
        if pos != len(text):  # posseg covers every character; anything else would misplace spans
            raise RuntimeError(f"jieba.posseg covered {pos} of {len(text)} characters of {text[:40]!r}")
        return out

    def identity(self) -> dict:
        import hashlib

        digest = hashlib.sha256("\n".join(self.lexicon).encode("utf-8")).hexdigest() if self.lexicon else None
        return {"segmenter": self.name, "jieba_version": self.version, "lexicon_sha256": digest}


SEGMENTERS = {"jieba": JiebaSegmenter}


def build_segmenter(name: str = "jieba", lexicon_path: Optional[PathLike] = None) -> JiebaSegmenter:
    if name not in SEGMENTERS:
        raise ValueError(f"segmenter has value '{name}': must be one of {', '.join(SEGMENTERS)}")
    return SEGMENTERS[name](read_lexicon(lexicon_path) if lexicon_path is not None else None)
