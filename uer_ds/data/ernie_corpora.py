"""The corpus side of ERNIE 2.0's pre-training tasks (uer_ds/data/ernie.py has the label rules and the
instance builders): what `uer-ds preprocess --target X` does before and after the shared tokenizing pass.

  capitalization   the lines are tokenized in Python (preprocessing.capitalization_encoder) with each
                   token's character span (encode_with_offsets), and capitalization_labels of the original, cased text are
                   stored as the dataset's token labels (FORMAT.md: flag bit 2); the tokenizer
                   lower-cases what the model sees (an uncased vocabulary), else the task is trivial (a
                   warning says so)
  token_document   after the pass, the stop ids (the special tokens, the corpus's punctuation tokens and its
                   `stop_tokens_num` most frequent tokens) and the WordPiece continuation ids ('##...')
                   found in the corpus go to OUT.json (`token_document`)
  discourse        a first pass over the raw corpus (sentences, blank lines between documents) collects the
                   pairs a discourse marker joins (discourse_pairs), marker removed; they are then
                   tokenized as label<TAB>text_a<TAB>text_b lines
  ir_relevance     query<TAB>title<TAB>label lines are checked (file:line errors) and tokenized as
                   label<TAB>query<TAB>title
Every error names the file and line (of the user's file, never of an intermediate one), exits non-zero
and leaves no output, as every preprocess error does.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from uer_ds.data.ernie import IR_CLASSES, reorder_classes
from uer_ds.textfile import TextFileError, read_text, split_lines

MARKER_DIR = Path(__file__).parent / "discourse_markers"
SHIPPED_MARKERS = ("zh", "en")
# what may separate a removed marker from the rest of its sentence, and a clause from the next
_JOINERS = " \t,，、:：;；"
_CLAUSE_BREAKS = ("，", ", ", ",")


# ---- discourse markers ----------------------------------------------------------------------------
def read_markers(spec: str) -> tuple[list[str], str]:
    """The marker list of `spec`: 'zh' or 'en' (the shipped lists in uer_ds/data/discourse_markers/), or a
    file with one marker per line -> (markers in file order, the file read).  A marker's class is its
    line.  Errors name the file and line: an empty list, a duplicate, a tab in a marker."""
    path = MARKER_DIR / f"{spec}.txt" if spec in SHIPPED_MARKERS else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"discourse_markers '{spec}': neither a shipped list ({', '.join(SHIPPED_MARKERS)}) "
                                "nor a file")
    markers: list[str] = []
    for number, line in enumerate(split_lines(read_text(path, "discourse_markers")), start=1):
        marker = line.strip()
        if not marker:
            continue
        if "\t" in marker:
            raise TextFileError(f"{path}:{number}: a discourse marker may not hold a tab: {marker!r}")
        if marker.lower() in (m.lower() for m in markers):
            raise TextFileError(f"{path}:{number}: discourse marker {marker!r} is listed twice")
        markers.append(marker)
    if len(markers) < 2:
        raise TextFileError(f"{path}: {len(markers)} discourse marker(s): the discourse target needs at least 2")
    return markers, str(path)


def _starts_with_marker(text: str, markers: Sequence[str]) -> Optional[tuple[int, str]]:
    """(class, the text after the marker and its joiners) when `text` begins with a marker (the longest
    that matches; letters compared case-blind, and a marker ending in a letter must end a word there)."""
    lowered = text.lower()
    for label, marker in sorted(enumerate(markers), key=lambda m: -len(m[1])):
        if not lowered.startswith(marker.lower()):
            continue
        after = text[len(marker):]
        if marker[-1].isascii() and marker[-1].isalnum() and after[:1].isalnum():
            continue  # 'so' in 'sorry', 'but' in 'butter'
        rest = after.lstrip(_JOINERS)
        return (label, rest) if rest.strip() else None
    return None


def discourse_pairs(sentences: Sequence[str], markers: Sequence[str]) -> list[tuple[str, str, int]]:
    """The pairs a discourse marker joins in one document's sentences (weak supervision in the style of
    Sileo et al., 2019, "Mining Discourse Markers for Unsupervised Sentence Representation Learning"; the
    paper's "Discourse Relation Task") -> [(A, B, marker class)], the marker removed from the input:
      - between sentences: sentence i + 1 starts with a marker: (sentence i, sentence i + 1 without it);
      - inside a sentence: a clause break (，or ,) followed by a marker: (the text before the break, the
        text after the marker), the first such break of the sentence only.
    Tabs become spaces."""
    pairs = []
    clean = [s.replace("\t", " ").strip() for s in sentences]
    for i, sentence in enumerate(clean):
        if i > 0 and clean[i - 1]:
            found = _starts_with_marker(sentence, markers)
            if found is not None:
                pairs.append((clean[i - 1], found[1], found[0]))
        for at in range(1, len(sentence)):
            brk = next((b for b in _CLAUSE_BREAKS if sentence.startswith(b, at)), None)
            if brk is None:
                continue
            found = _starts_with_marker(sentence[at + len(brk):].lstrip(" "), markers)
            if found is not None and sentence[:at].strip():
                pairs.append((sentence[:at].strip(), found[1], found[0]))
                break
    return pairs


def _documents(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line of its first sentence, sentences) of a sentences-and-blank-lines corpus, read as UTF-8 line by
    line (a BOM dropped, CRLF accepted); invalid UTF-8 is an error naming the line."""
    sentences: list[str] = []
    start = 1
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8").rstrip("\n").removesuffix("\r")
            except UnicodeDecodeError as err:
                raise TextFileError(f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line "
                                    f"({raw[err.start:err.start + 4].hex(' ')})") from None
            if line.isspace() or not line:
                if sentences:
                    yield start, sentences
                sentences = []
                continue
            if not sentences:
                start = number
            sentences.append(line)
    if sentences:
        yield start, sentences


def prepare_discourse(corpus: Path, out_path: Path, options) -> dict:
    """Write the discourse pairs of `corpus` as label<TAB>text_a<TAB>text_b lines to out_path; returns
    OUT.json's additions (the markers, the pairs per marker, the head's class count)."""
    markers, source = read_markers(options.discourse_markers)
    counts = [0] * len(markers)
    with open(out_path, "w", encoding="utf-8") as out:
        for _, sentences in _documents(corpus):
            for a, b, label in discourse_pairs(sentences, markers):
                out.write(f"{label}\t{a}\t{b}\n")
                counts[label] += 1
    if not sum(counts):
        raise ValueError(f"{corpus}: no sentence pair joined by a discourse marker of {source} (the corpus needs "
                         "sentences one per line, blank lines between documents)")
    return {"head_config": {"discourse_labels_num": len(markers)},
            "discourse": {"markers": markers, "markers_path": source,
                          "pairs": {m: c for m, c in zip(markers, counts)}}}


# ---- IR relevance ---------------------------------------------------------------------------------
def prepare_ir(corpus: Path, out_path: Path, options) -> dict:
    """Check query<TAB>title<TAB>label lines (label 0 strong, 1 weak, 2 irrelevant; blank lines skipped)
    and write them as label<TAB>query<TAB>title."""
    counts = [0] * IR_CLASSES
    with open(out_path, "w", encoding="utf-8") as out:
        for number, line in enumerate(split_lines(read_text(corpus, "corpus_path")), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise TextFileError(f"{corpus}:{number}: an ir_relevance line is query<TAB>title<TAB>label; this "
                                    f"one has {len(fields)} tab-separated field(s)")
            query, title, label = (f.strip() for f in fields)
            if label not in ("0", "1", "2"):
                raise TextFileError(f"{corpus}:{number}: label {label[:20]!r} (field 3): must be 0 (strong "
                                    "relevance), 1 (weak) or 2 (irrelevant); the file has no header row")
            for name, value in (("query", query), ("title", title)):
                if not value:
                    raise TextFileError(f"{corpus}:{number}: the {name} is empty")
            out.write(f"{label}\t{query}\t{title}\n")
            counts[int(label)] += 1
    if not sum(counts):
        raise ValueError(f"{corpus}: no query<TAB>title<TAB>label line")
    return {"ir_relevance": {"pairs": {str(k): c for k, c in enumerate(counts)}}}


PREPARE = {"discourse": prepare_discourse, "ir_relevance": prepare_ir}


# ---- after the pass: OUT.json additions ----------------------------------------------------------------
def token_document_meta(tokenizer, tokens: np.ndarray, options) -> dict:
    """Stop ids and WordPiece continuation ids of the corpus (token_document_labels' inputs)."""
    from uer_ds.tokenizers.bert import is_punctuation

    counts = np.zeros(tokenizer.vocab_size, np.int64)
    for start in range(0, len(tokens), 1 << 24):  # in slices: a large corpus is not copied whole
        counts += np.bincount(np.asarray(tokens[start:start + (1 << 24)], dtype=np.int64),
                              minlength=tokenizer.vocab_size)
    present = np.flatnonzero(counts)
    vocab = tokenizer.vocab.id_to_token
    frequent = [int(i) for i in np.argsort(-counts, kind="stable")[: options.stop_tokens_num] if counts[i]]
    punctuation = [int(i) for i in present if len(vocab[i]) == 1 and is_punctuation(vocab[i])]
    specials = [i for i in (tokenizer.special_id(r) for r in ("pad", "unk", "cls", "sep", "mask")) if i is not None]
    continuation = [int(i) for i in present if vocab[i].startswith("##")]
    return {"token_document": {"stop_ids": sorted(set(frequent + punctuation + specials)),
                               "continuation_ids": continuation, "stop_tokens_num": options.stop_tokens_num}}


def after_pass(processor: str, tokenizer, tokens, options) -> dict:
    """OUT.json's additions of a processor once its tokens are written (and the head_config the model takes
    from the dataset); tokens() gives the dataset's token ids."""
    if processor == "token_document":
        return token_document_meta(tokenizer, tokens(), options)
    if processor == "sentence_reorder":
        return {"head_config": {"sentence_reorder_segments": options.sentence_reorder_segments},
                "sentence_reorder": {"classes": reorder_classes(options.sentence_reorder_segments)}}
    return {}


def validate_options(options) -> None:
    """The ERNIE 2.0 options of PreprocessOptions: their ranges, and the seq_length each processor needs."""
    p = options.data_processor
    reorder_classes(options.sentence_reorder_segments)  # raises on a bad M
    if p == "sentence_reorder" and options.seq_length < 2 * options.sentence_reorder_segments + 1:
        raise ValueError(f"seq_length has value {options.seq_length}: sentence_reorder with "
                         f"{options.sentence_reorder_segments} segments needs at least "
                         f"{2 * options.sentence_reorder_segments + 1} ([CLS], a token and a [SEP] per segment)")
    if options.stop_tokens_num < 0:
        raise ValueError(f"stop_tokens_num has value {options.stop_tokens_num}: must be >= 0")
    if p == "discourse":
        read_markers(options.discourse_markers)


def keep_path(path: Optional[str]) -> Optional[str]:
    return os.path.abspath(path) if path and path not in SHIPPED_MARKERS else path
