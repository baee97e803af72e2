"""ERNIE's knowledge masking: units from jieba and a lexicon, tokens unchanged by the units, whole lexicon
entities masked as units, the 15 % / 80-10-10 budget counted in tokens, the mix with basic masking."""
from __future__ import annotations

import re

import jieba
import jieba.posseg
import numpy as np
import pytest

from conftest import CORPORA
from uer_ds.data import MMapDataset, PreprocessOptions, PretrainDataset, preprocess
from uer_ds.data.knowledge import ENTITY_TAGS, Lexicon, units
from uer_ds.data.preprocessing import KnowledgeEncoder
from uer_ds.tokenizers import build_tokenizer
from uer_ds.tokenizers.segment import build_segmenter

T = 64
LINES = (CORPORA / "reviews.txt").read_text(encoding="utf-8").splitlines()
TITLES = sorted(set(re.findall(r"《([^》]+)》", "\n".join(LINES))))  # the book titles: our entity lexicon


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")


@pytest.fixture(scope="module")
def lexicon_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lex") / "titles.txt"
    path.write_text("\n".join(TITLES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def make(tmp_path_factory, tok, lexicon_file):
    cache = {}

    def build(masking="entity", prob=1.0, lexicon=True, dup_factor=4):
        key = (masking, prob, lexicon, dup_factor)
        if key not in cache:
            prefix = tmp_path_factory.mktemp("km") / masking
            options = PreprocessOptions("mlm", T, dup_factor=dup_factor, masking=masking, knowledge_masking_prob=prob,
                                        lexicon_path=str(lexicon_file) if lexicon else None)
            preprocess(CORPORA / "reviews.txt", prefix, tok, options, progress=False)
            cache[key] = prefix
        return PretrainDataset(cache[key])

    return build


@pytest.mark.parametrize("level", ["word", "phrase", "entity"])
def test_units_leave_the_tokens_of_the_line_unchanged(tok, lexicon_file, level):
    encoder = KnowledgeEncoder(tok, PreprocessOptions("mlm", T, masking=level, lexicon_path=str(lexicon_file)))
    for line in LINES[:300]:
        ids, starts = encoder._encode(line, True)
        assert ids == tok.encode(line) and len(starts) == len(ids) and (not starts or starts[0] == 1)


def test_word_units_are_jiebas_words_and_entity_units_its_entities():
    segmenter = build_segmenter()
    for line in LINES[:200]:
        cuts = {b for _, _, b in segmenter.words(line)} | {0}
        assert all(a in cuts and b in cuts for a, b in units(line, "word", segmenter))
        tagged = list(jieba.posseg.cut(line))
        spans, pos = {}, 0
        for pair in tagged:
            spans[(pos, pos + len(pair.word))] = pair.flag
            pos += len(pair.word)
        for a, b in units(line, "entity", segmenter):
            if (a, b) not in spans:  # a unit of several words: every one of them a named entity
                inside = [flag for (x, y), flag in spans.items() if a <= x and y <= b]
                assert inside and all(flag in ENTITY_TAGS for flag in inside), (line[a:b], inside)


def test_lexicon_entries_are_single_units_wherever_they_occur():
    segmenter = build_segmenter()
    lexicon = Lexicon(TITLES)
    for line in LINES[:300]:
        found = units(line, "word", segmenter, lexicon)
        for title in TITLES:
            for m in re.finditer(re.escape(title), line):
                assert (m.start(), m.end()) in found, (line, title)


def _title_occurrences(tok, src):
    """(start, length) of every title's tokens in a (restored) instance."""
    out = []
    for title in TITLES:
        ids = np.asarray(tok.encode(title))
        if len(ids) > len(src):
            continue
        windows = np.lib.stride_tricks.sliding_window_view(np.asarray(src), len(ids))  # (T - n + 1, n)
        out += [(int(i), len(ids)) for i in np.flatnonzero((windows == ids).all(axis=1))]
    return out


def _restored(x):
    src = x["src"].copy()
    picked = x["tgt"]["mlm"] != -100
    src[picked] = x["tgt"]["mlm"][picked]
    return src, picked


def test_lexicon_entities_are_masked_as_units(make, tok):
    whole = partial = 0
    for prob in (1.0, 0.0):
        ds = make(prob=prob)
        for i in range(len(ds)):
            src, picked = _restored(ds[i])
            for start, length in _title_occurrences(tok, src):
                flags = set(picked[start:start + length].tolist())
                if prob == 1.0:
                    assert len(flags) == 1, (tok.convert_ids_to_tokens(src[start:start + length]), picked)
                    whole += flags == {True}
                else:
                    partial += len(flags) == 2
    assert whole > 100  # titles were masked, always whole
    assert partial > 100  # while basic token masking cuts through them


@pytest.mark.parametrize("masking", ["entity", "phrase"])
def test_budget_and_80_10_10_counted_in_tokens(make, tok, masking):
    ds = make(masking=masking, prob=0.5)
    chosen = candidates = 0
    counts = np.zeros(3)
    for i in range(len(ds)):
        x = ds[i]
        src, picked = _restored(x)
        cand = (x["seg"] > 0) & ~np.isin(src, [tok.cls_id, tok.sep_id, tok.pad_id])
        assert not (picked & ~cand).any()
        chosen += picked.sum()
        candidates += cand.sum()
        out = x["src"][picked]
        counts += [(out == tok.mask_id).sum(), ((out != tok.mask_id) & (out != src[picked])).sum(),
                   (out == src[picked]).sum()]
    # whole units that would overshoot the budget are skipped, so the count can fall short of 15 %
    assert abs(chosen / candidates - 0.15) < 0.01, chosen / candidates
    n = counts.sum()
    for share, p in zip(counts / n, (0.8, 0.1, 0.1)):
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.01, (share, p)


def test_the_mix_with_basic_masking_follows_knowledge_masking_prob(make):
    """The share of instances where some unit is only partly masked: f at prob 0, none at prob 1, and
    (1 - prob) f at prob 0.5 (each instance is masked by units with probability prob)."""

    def partly(ds):
        data = MMapDataset(ds.prefix)
        assert data.has_word_starts
        count = seen = 0
        for i in range(len(ds)):
            starts = _unit_starts(ds, i)
            if starts is None:
                continue
            x = ds[i]
            picked = (x["tgt"]["mlm"] != -100)[1:1 + len(starts)]
            ids = np.cumsum(starts) - 1  # the unit of each body token
            count += any(len(set(picked[ids == u].tolist())) == 2 for u in np.unique(ids))
            seen += 1
        assert seen > 1000
        return count / seen, seen

    (f0, _), (f_half, seen), (f1, _) = partly(make(prob=0.0)), partly(make(prob=0.5)), partly(make(prob=1.0))
    assert f1 == 0.0 and f0 > 0.3
    sd = np.sqrt(f0 * 0.5 * (1 - f0 * 0.5) / seen)
    assert abs(f_half - 0.5 * f0) < 4 * sd + 0.02, (f0, f_half)


def _unit_starts(ds, index):
    """The unit starts of instance `index`'s body tokens, for a review that fits one window (else None)."""
    b = ds.builder
    d = int(np.searchsorted(b.cum, index % b.base, side="right"))
    if b.vlen[d] > T:
        return None
    start = int(b.doc_start[d])
    return ds.data.word_starts(start, start + int(b.doc_len[d])).astype(int)


@pytest.mark.parametrize("options, message", [
    (dict(data_processor="lm", masking="entity"), r"masking applies to targets mlm, bert, albert, cls_mlm, not lm"),
    (dict(masking="entity", whole_word_masking=True), r"masking 'entity' masks whole units itself"),
    (dict(masking="entity", knowledge_masking_prob=1.5), r"knowledge_masking_prob has value 1.5: must be in \[0, 1\]"),
    (dict(masking="ner"), r"masking has value 'ner': must be one of none, word, phrase, entity"),
    (dict(lexicon_path="x.txt"), r"lexicon_path is given but masking is 'none'"),
    (dict(masking="word", segmenter="pkuseg"), r"segmenter has value 'pkuseg': must be one of jieba"),
])
def test_bad_options_are_named(options, message):
    values = dict(data_processor="mlm", seq_length=T)
    values.update(options)
    with pytest.raises(ValueError, match=message):
        PreprocessOptions(**values).validate()


def test_a_missing_lexicon_is_named_and_leaves_nothing(tmp_path, tok):
    options = PreprocessOptions("mlm", T, masking="entity", lexicon_path=str(tmp_path / "none.txt"))
    with pytest.raises(FileNotFoundError, match=r"lexicon_path '.*none.txt': no such file"):
        preprocess(CORPORA / "reviews.txt", tmp_path / "out", tok, options, progress=False)
    assert not list(tmp_path.glob("out*"))
