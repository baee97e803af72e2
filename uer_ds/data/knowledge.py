"""ERNIE 1.0's knowledge masking (Sun et al., 2019, "ERNIE: Enhanced Representation through Knowledge
Integration", section 3.2): besides BERT's basic-level masking of single tokens, phrase-level masking
hides whole phrases and entity-level masking whole named entities, so the model must predict a
concept from its context rather than from its other half.

At preprocessing time each line is cut into *units*, stored as the dataset's word starts (the bit
array whole-word masking uses); at training time an instance is masked unit by unit (every token of a
chosen unit, 15 % of the tokens counted in tokens, 80/10/10 per token: uer_ds/data/masking.py) with
probability `knowledge_masking_prob`, else by basic token masking.  The paper trains the levels in
stages (basic, then phrase, then entity); its released pre-training reader draws, per data file,
word-level masking with a configured probability and character-level masking otherwise.  Here the
draw is per instance; preprocess once per level to train in stages.

Units, from a word segmenter (jieba by default) and an optional lexicon (one entity or phrase per line):
  word    the segmenter's words
  phrase  runs of two or more consecutive words whose part-of-speech tags are nominal or adjectival (a
          simple noun-phrase chunker over jieba's tags); other words are units of their own
  entity  runs of consecutive words tagged as named entities (nr person, ns place, nt organisation,
          nz other proper noun); other words are units of their own
Every lexicon entry found in the line (longest match first, left to right) is one unit, whatever the
segmenter said.  A unit never ends inside what BERT's basic tokenizer keeps as one word (a run of
letters, digits or symbols that are neither CJK nor punctuation: 'tolerance', '9th'), so the tokens,
the tokenizer's tokens of each unit's text in turn, are the line's own tokens with the bert and char
tokenizers (tests/data/test_knowledge_masking.py compares them on real lines).
"""
from __future__ import annotations

from typing import Callable, Optional

from uer_ds.tokenizers.bert import OTHER, char_class, is_punctuation
from uer_ds.tokenizers.segment import JiebaSegmenter

ENTITY_TAGS = frozenset({"nr", "nrfg", "nrt", "ns", "nt", "nz"})
PHRASE_TAGS = frozenset({"a", "an", "b", "eng", "f", "i", "j", "l", "m", "mq", "n", "ng", "nr", "nrfg", "nrt", "ns",
                         "nt", "nz", "q", "s", "t", "vn"})


def _runs(tagged: list, joins: Callable[[str], bool], min_words: int) -> set[int]:
    """Boundaries (character positions) of the tagged words, without those inside runs of at least
    `min_words` consecutive words whose tag `joins`."""
    bounds, run = {0}, []
    for word, tag, start, end in tagged + [("", "", -1, -1)]:
        if end >= 0 and joins(tag) and not word.isspace():
            run.append((start, end))
            continue
        if len(run) >= min_words:
            bounds.update((run[0][0], run[-1][1]))
        else:
            bounds.update(b for span in run for b in span)
        run = []
        if end >= 0:
            bounds.update((start, end))
    return bounds


def word_bounds(text: str, segmenter: JiebaSegmenter) -> set[int]:
    return {b for _, start, end in segmenter.words(text) for b in (start, end)}


def phrase_bounds(text: str, segmenter: JiebaSegmenter) -> set[int]:
    return _runs(segmenter.tagged(text), lambda tag: tag in PHRASE_TAGS, 2)


def entity_bounds(text: str, segmenter: JiebaSegmenter) -> set[int]:
    return _runs(segmenter.tagged(text), lambda tag: tag in ENTITY_TAGS, 1)


KNOWLEDGE_UNITS = {"word": word_bounds, "phrase": phrase_bounds, "entity": entity_bounds}


class Lexicon:
    """Entries found in a text, longest first, left to right, without overlaps."""

    def __init__(self, entries: list[str]) -> None:
        self.entries = set(entries)
        self.longest = max((len(e) for e in entries), default=0)

    def spans(self, text: str) -> list[tuple[int, int]]:
        out, i = [], 0
        while i < len(text):
            for length in range(min(self.longest, len(text) - i), 0, -1):
                if text[i:i + length] in self.entries:
                    out.append((i, i + length))
                    i += length
                    break
            else:
                i += 1
        return out


def _inside_word(ch: str) -> bool:
    """A character BERT's basic tokenizer joins with its neighbours of the same kind into one word."""
    return char_class(ch) == OTHER and not is_punctuation(ch)


def units(text: str, level: str, segmenter: JiebaSegmenter, lexicon: Optional[Lexicon] = None) -> list[tuple[int, int]]:
    """The units of `text` at `level` as character spans [start, end), in order, covering every
    character that is not white space; lexicon entries are single units."""
    bounds = KNOWLEDGE_UNITS[level](text, segmenter) | {0, len(text)}
    for start, end in (lexicon.spans(text) if lexicon is not None else ()):
        bounds = {b for b in bounds if not start < b < end} | {start, end}
    cuts = sorted(b for b in bounds if b in (0, len(text)) or not (_inside_word(text[b - 1]) and _inside_word(text[b])))
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if text[a:b].strip()]
