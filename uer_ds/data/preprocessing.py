"""Corpus -> OUT.bin + OUT.idx + OUT.json (`uer-ds preprocess`).

The corpus is cut into P byte ranges at line starts; P worker processes each map the file and
tokenize only their own range, in chunks, with the C extension (the GIL released), writing part
files; the parent merges the parts into the final files.  Everything is written under temporary
names and renamed at the end (the .json last), so a failure leaves no OUT.* behind.

Corpus formats (as UER-py), chosen by the data processor:
  lines (mlm, lm, bilm)  one document per line; blank lines are skipped
  bert  (bert, albert)   one sentence per line, blank lines between documents
  cls                    label<TAB>text_a[<TAB>text_b]; the label a non-negative integer
  s2s                    source<TAB>target (sequence to sequence; Python only: no C path)
A UTF-8 byte-order mark at the start and CRLF line ends are accepted.  Lines that hold text but
give no token (only control characters, say) are skipped and counted.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import mmap
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from uer_ds.atomic import atomic_paths
from uer_ds.data import native
from uer_ds.data.mmap_dataset import (BIN_HEADER, BIN_MAGIC, DTYPE_CODES, FLAG_LABELS, FLAG_TOKEN_LABELS,
                                      FLAG_WORD_STARTS, IDX_HEADER, IDX_MAGIC, VERSION, PathLike, dataset_prefix,
                                      dtype_code_for, idx_layout)
from uer_ds.data.registry import DATA_PROCESSORS
from uer_ds.outputs import NoSpaceError, is_full_disk, lock_output
from uer_ds.tokenizers import Tokenizer

CHUNK_BYTES = 4 << 20  # per call into C: large enough that the per-call cost vanishes (< 0.1 %)
BOM = b"\xef\xbb\xbf"
MODE_NAMES = {"bert": "bert", "albert": "bert", "cls": "cls", "cls_mlm": "cls", "mlm": "lines", "lm": "lines",
              "bilm": "lines",
              "s2s": "s2s",
              # ERNIE 2.0 (issue 27; ernie_corpora.py): discourse and ir_relevance are tokenized as cls lines that a
              # first pass over the user's file writes
              "capitalization": "lines", "token_document": "bert", "sentence_reorder": "bert",
              "sentence_distance": "bert", "discourse": "cls", "ir_relevance": "cls"}
MODE_S2S = 100  # a corpus format of the Python encoder only (the C extension's modes are 0-2)
MODES = {"lines": native.MODE_LINES, "bert": native.MODE_BERT, "cls": native.MODE_CLS, "s2s": MODE_S2S}
MASKING_PROCESSORS = ("mlm", "bert", "albert", "cls_mlm")
MIN_SEQ_LENGTH = {"bert": 5, "albert": 5}  # [CLS] a [SEP] b [SEP] with a and b non-empty
META_FORMAT = "uer_ds.mmap_dataset"


@dataclass(frozen=True)
class PreprocessOptions:
    """How instances are built at training time; recorded in OUT.json (UER-py's flag names)."""

    data_processor: str = "bert"
    seq_length: int = 128
    dup_factor: int = 5             # static copies with different masks / pairs (mlm, bert, albert)
    short_seq_prob: float = 0.1     # bert/albert: chance of a shorter target length
    full_sentences: bool = False    # mlm/lm: pack documents into full seq_length windows
    dynamic_masking: bool = False   # new masks every epoch instead of dup_factor fixed ones
    whole_word_masking: bool = False
    span_masking: bool = False
    span_geo_prob: float = 0.2
    span_max_length: int = 10
    masking: str = "none"           # ERNIE's knowledge masking: word, phrase or entity units (knowledge.py)
    segmenter: str = "jieba"        # knowledge masking: the word segmenter
    lexicon_path: Optional[str] = None  # knowledge masking: entities/phrases kept as units, one per line
    knowledge_masking_prob: float = 0.5  # share of instances masked by units; the rest by basic token masking
    seed: int = 7
    # ERNIE 2.0's tasks (issue 27; ernie.py, ernie_corpora.py)
    sentence_reorder_segments: int = 3  # sentence_reorder: at most M segments, sum of k! (k = 1..M) classes
    discourse_markers: str = "zh"       # discourse: the marker list, 'zh', 'en' or a file (one per line)
    stop_tokens_num: int = 100          # token_document: the corpus's most frequent tokens get no label

    def validate(self) -> None:
        p = self.data_processor
        if p not in DATA_PROCESSORS:
            raise ValueError(f"target (data processor) has value '{p}': must be one of {', '.join(DATA_PROCESSORS)}")
        low = MIN_SEQ_LENGTH.get(p, 2)
        if not low <= self.seq_length < 2 ** 31:
            raise ValueError(f"seq_length has value {self.seq_length}: must be at least {low} for target {p}")
        if self.dup_factor < 1:
            raise ValueError(f"dup_factor has value {self.dup_factor}: must be at least 1")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob has value {self.short_seq_prob}: must be in [0, 1]")
        if self.full_sentences and p not in ("mlm", "lm"):
            raise ValueError(f"full_sentences applies to targets mlm and lm, not {p}")
        for flag in ("whole_word_masking", "span_masking", "dynamic_masking"):
            if getattr(self, flag) and p not in MASKING_PROCESSORS:
                raise ValueError(f"{flag} applies to targets {', '.join(MASKING_PROCESSORS)}, not {p}")
        if self.whole_word_masking and self.span_masking:
            raise ValueError("whole_word_masking and span_masking exclude each other: choose one")
        if self.span_masking and not (0.0 < self.span_geo_prob <= 1.0 and self.span_max_length >= 1):
            raise ValueError(f"span masking needs 0 < span_geo_prob <= 1 (has {self.span_geo_prob}) and "
                             f"span_max_length >= 1 (has {self.span_max_length})")
        self._validate_knowledge()
        from uer_ds.data.ernie_corpora import validate_options

        validate_options(self)

    def _validate_knowledge(self) -> None:
        from uer_ds.data.knowledge import KNOWLEDGE_UNITS
        from uer_ds.tokenizers.segment import SEGMENTERS

        legal = ("none",) + tuple(KNOWLEDGE_UNITS)
        if self.masking not in legal:
            raise ValueError(f"masking has value '{self.masking}': must be one of {', '.join(legal)}")
        if self.segmenter not in SEGMENTERS:
            raise ValueError(f"segmenter has value '{self.segmenter}': must be one of {', '.join(SEGMENTERS)}")
        if self.masking == "none":
            if self.lexicon_path is not None:
                raise ValueError("lexicon_path is given but masking is 'none': the lexicon serves knowledge masking "
                                 "(--masking word|phrase|entity)")
            return
        if self.data_processor not in MASKING_PROCESSORS:
            raise ValueError(f"masking applies to targets {', '.join(MASKING_PROCESSORS)}, not {self.data_processor}")
        if self.whole_word_masking or self.span_masking:
            raise ValueError(f"masking '{self.masking}' masks whole units itself: leave out whole_word_masking and "
                             "span_masking")
        if not 0.0 <= self.knowledge_masking_prob <= 1.0:
            raise ValueError(f"knowledge_masking_prob has value {self.knowledge_masking_prob}: must be in [0, 1]")

    @property
    def word_starts(self) -> bool:
        """Whether the dataset records unit starts: whole words, or knowledge units."""
        return self.whole_word_masking or self.masking != "none"

    @property
    def required_specials(self) -> tuple[str, ...]:
        return ("pad", "unk", "cls", "sep") + (("mask",) if self.data_processor in MASKING_PROCESSORS else ())


# ---- encoders: C, or Python for SentencePiece ---------------------------------------------------
class CorpusError(ValueError):
    """args: (rule, byte offset, detail) - the same as the C extension's CorpusError."""


class PythonEncoder:
    """encode_chunk() of the C extension, in Python over any Tokenizer (SentencePiece has no C path).

    Word starts: SentencePiece pieces that begin with '\u2581'."""

    gives_token_labels = False  # a subclass whose _encode appends one int8 label per token to _chunk_labels

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._chunk_labels: list[int] = []

    def _encode(self, text: str, want_ws: bool) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        if not want_ws:
            return tok.encode(text), []
        pieces = tok.tokenize(text)
        return tok.convert_tokens_to_ids(pieces), [int(i == 0 or p.startswith("\u2581")) for i, p in enumerate(pieces)]

    def encode_chunk(self, buffer, mode: int = 0, base_offset: int = 0, new_doc: bool = True,
                     word_starts: bool = False) -> dict:
        data = bytes(buffer)
        ids, ws, lengths, starts, labels = [], [], [], [], []
        self._chunk_labels = []
        stats = {"lines": 0, "blank_lines": 0, "empty_lines": 0}
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            end, nxt = (len(data), len(data)) if end < 0 else (end, end + 1)
            raw = data[pos:end - 1] if end > pos and data[end - 1:end] == b"\r" else data[pos:end]
            stats["lines"] += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start:err.start + 4].hex(" ")
                raise CorpusError("invalid UTF-8", base_offset + pos + err.start, bad) from None
            if not text.strip():
                stats["blank_lines"] += 1
                new_doc = True
            elif mode == MODE_S2S:
                fields = text.split("\t")
                if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                    raise CorpusError("an s2s line must be source<TAB>target, both non-empty", base_offset + pos,
                                      f"{len(fields)} tab-separated field(s)")
                for i, field in enumerate(fields):
                    field_ids, _ = self._encode(field, False)
                    ids += field_ids
                    lengths.append(len(field_ids))
                    starts.append(int(i == 0))
            elif mode == native.MODE_CLS:
                fields = text.split("\t")
                if len(fields) not in (2, 3):
                    raise CorpusError("a cls line must be label<TAB>text_a[<TAB>text_b]", base_offset + pos,
                                      f"{len(fields) if len(fields) < 2 else 'more than 3'} tab-separated fields")
                label = fields[0].strip(" \r\v\f")
                if not (label.isascii() and label.isdigit() and len(label) <= 9):
                    raise CorpusError("the label of a cls line must be a non-negative integer below 10^9",
                                      base_offset + pos, fields[0][:60] + ("..." if len(fields[0]) > 60 else ""))
                labels.append(int(label))
                for i, field in enumerate(fields[1:]):
                    field_ids, field_ws = self._encode(field, word_starts)
                    ids += field_ids
                    ws += field_ws
                    lengths.append(len(field_ids))
                    starts.append(int(i == 0))
            else:
                line_ids, line_ws = self._encode(text, word_starts)
                if not line_ids:
                    stats["empty_lines"] += 1
                else:
                    ids += line_ids
                    ws += line_ws
                    lengths.append(len(line_ids))
                    starts.append(1 if mode == native.MODE_LINES else int(new_doc))
                    new_doc = False
            pos = nxt
        unk = self.tokenizer.unk_id
        dtype = DTYPE_CODES[dtype_code_for(self.tokenizer.vocab_size)]
        return {"ids": np.asarray(ids, dtype=dtype).tobytes(), "seq_lengths": np.asarray(lengths, np.int32).tobytes(),
                "doc_starts": bytes(starts), "labels": np.asarray(labels, np.int64).tobytes(),
                "word_starts": bytes(ws) if word_starts else None, "unk": ids.count(unk) if unk is not None else 0,
                "token_labels": np.asarray(self._chunk_labels, np.int8).tobytes() if self.gives_token_labels else None,
                "new_doc": new_doc, **stats}


def capitalization_encoder(tokenizer):
    """A PythonEncoder whose lines also give capitalization_labels (needs a tokenizer with offsets)."""
    from uer_ds.data.ernie import capitalization_labels
    from uer_ds.tokenizers.base import gives_offsets

    if not gives_offsets(tokenizer):
        raise ValueError(f"target capitalization needs each token's characters: tokenizer '{tokenizer.kind}' cannot "
                         "give them (use --tokenizer bert or a SentencePiece model)")
    if not getattr(tokenizer, "do_lower_case", True):
        from uer_ds.tokenizers import CaseMismatchWarning

        warnings.warn("target capitalization with a tokenizer that keeps case (do_lower_case false): the model sees "
                      "the capitals it is asked to predict; use an uncased vocabulary or --do_lower_case true",
                      CaseMismatchWarning, stacklevel=2)

    class CapitalizationEncoder(PythonEncoder):
        gives_token_labels = True

        def _encode(self, text: str, want_ws: bool) -> tuple[list[int], list[int]]:
            ids, spans = self.tokenizer.encode_with_offsets(text)
            self._chunk_labels += capitalization_labels(text, spans)
            return ids, []

    return CapitalizationEncoder(tokenizer)


class KnowledgeEncoder(PythonEncoder):
    """PythonEncoder whose word starts are the starts of knowledge-masking units (knowledge.py)."""

    def __init__(self, tokenizer: Tokenizer, options: PreprocessOptions) -> None:
        from uer_ds.data.knowledge import Lexicon
        from uer_ds.tokenizers.segment import build_segmenter, read_lexicon

        super().__init__(tokenizer)
        self.level = options.masking
        entries = read_lexicon(options.lexicon_path) if options.lexicon_path is not None else None
        self.segmenter = build_segmenter(options.segmenter)
        self.lexicon = Lexicon(entries) if entries else None

    def _encode(self, text: str, want_ws: bool) -> tuple[list[int], list[int]]:
        from uer_ds.data.knowledge import units

        ids, starts = [], []
        for a, b in units(text, self.level, self.segmenter, self.lexicon):
            piece = self.tokenizer.encode(text[a:b])
            ids += piece
            starts += [1] + [0] * (len(piece) - 1) if piece else []
        return ids, (starts if want_ws else [])


def make_encoder(tokenizer: Tokenizer, whole_word_masking: bool = False,
                 options: Optional[PreprocessOptions] = None):
    if options is not None and options.masking != "none":
        return KnowledgeEncoder(tokenizer, options)
    if options is not None and options.data_processor == "capitalization":
        return capitalization_encoder(tokenizer)
    if options is not None and MODE_NAMES[options.data_processor] == "s2s":
        return PythonEncoder(tokenizer)
    if native.supports(tokenizer):
        return native.native_encoder(tokenizer)
    if whole_word_masking and tokenizer.kind != "spm":
        raise ValueError(f"whole_word_masking with tokenizer '{tokenizer.kind}' needs the C extension "
                         f"({native.IMPORT_ERROR})")
    return PythonEncoder(tokenizer)


# ---- byte ranges and workers --------------------------------------------------------------------
def line_number(mm, offset: int) -> int:
    """1-based line of a byte offset (counts newlines in slices of 64 MB)."""
    count, pos, step = 0, 0, 64 << 20
    while pos < offset:
        stop = min(offset, pos + step)
        count += mm[pos:stop].count(b"\n")
        pos = stop
    return count + 1


def split_ranges(mm, size: int, parts: int) -> list[tuple[int, int]]:
    """Up to `parts` ranges [start, end) of whole lines covering the file."""
    bounds = [0]
    for k in range(1, parts):
        nl = mm.find(b"\n", max(bounds[-1], k * size // parts))
        cut = size if nl < 0 else nl + 1
        if cut > bounds[-1] and cut < size:
            bounds.append(cut)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def _starts_document(mm, start: int) -> bool:
    """bert corpora: whether a range starting at `start` begins a document (the line before is blank)."""
    if start == 0:
        return True
    prev = mm.rfind(b"\n", 0, start - 1) + 1
    line = mm[prev:start - 1]
    if prev == 0 and line.startswith(BOM):
        line = line[len(BOM):]
    return not line.decode("utf-8", "replace").strip()


PART_FILES = ("ids", "seq_lengths", "doc_starts", "labels", "word_starts", "token_labels")
_WORKER: dict = {}  # what the forked workers inherit: encoder, paths, progress counter


def _encode_range(k: int, start: int, end: int, report: Optional[Callable[[int], None]] = None) -> dict:
    w = _WORKER
    path, mode, encoder, want_ws, part_dir = w["path"], w["mode"], w["encoder"], w["word_starts"], w["part_dir"]
    report = report or w["report"]
    totals = {"lines": 0, "blank_lines": 0, "empty_lines": 0, "unk": 0}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        new_doc = _starts_document(mm, start)
        files = {name: open(os.path.join(part_dir, f"{k}.{name}"), "wb") for name in PART_FILES}
        try:
            if k == 0:  # the first part becomes OUT.bin
                files["ids"].write(w["bin_header"])
            pos = start + (len(BOM) if start == 0 and mm[:len(BOM)] == BOM else 0)
            while pos < end:
                stop = end if end - pos <= CHUNK_BYTES else mm.find(b"\n", pos + CHUNK_BYTES - 1, end) + 1 or end
                view = memoryview(mm)[pos:stop]
                try:
                    out = encoder.encode_chunk(view, mode, pos, new_doc, want_ws)
                except (native.CorpusError, CorpusError) as err:
                    rule, offset, detail = err.args
                    raise ValueError(f"{path}: line {line_number(mm, offset)} (byte {offset}): {rule}"
                                     + (f": {detail}" if detail else "")) from None
                finally:
                    view.release()
                new_doc = out["new_doc"]
                for name in PART_FILES:
                    if out.get(name):
                        files[name].write(out[name])
                for name in totals:
                    totals[name] += out[name]
                report(stop - pos)
                pos = stop
        finally:
            for f in files.values():
                f.close()
    return totals


def _shared_counter_report(nbytes: int) -> None:
    with _WORKER["counter"].get_lock():
        _WORKER["counter"].value += nbytes


def _run_workers(ranges: list[tuple[int, int]], bar) -> list[dict]:
    if len(ranges) == 1:
        return [_encode_range(0, *ranges[0], report=bar.update)]
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    _WORKER.update(counter=counter, report=_shared_counter_report)
    with ctx.Pool(len(ranges)) as pool:
        result = pool.starmap_async(_encode_range, [(k, a, b) for k, (a, b) in enumerate(ranges)])
        shown = 0
        while not result.ready():
            result.wait(0.02)
            bar.update(counter.value - shown)
            shown = counter.value
        totals = result.get()
        bar.update(counter.value - shown)
    return totals


# ---- merging the parts into OUT.bin / OUT.idx ---------------------------------------------------
def _part(part_dir: str, k: int, name: str, dtype) -> np.ndarray:
    path = os.path.join(part_dir, f"{k}.{name}")
    return np.fromfile(path, dtype=dtype) if os.path.getsize(path) else np.zeros(0, dtype)


def _append(src, dst) -> None:
    """Copy a whole file onto the end of another, in the kernel where it can."""
    size = os.fstat(src.fileno()).st_size
    try:
        done = 0
        while done < size:
            sent = os.copy_file_range(src.fileno(), dst.fileno(), size - done)
            if sent == 0:
                break
            done += sent
        if done == size:
            return
        src.seek(done)
    except (AttributeError, OSError):
        src.seek(0)
    shutil.copyfileobj(src, dst, 16 << 20)


def _merge(part_dir: str, parts: int, code: int, flags: int, run_id: int, bin_tmp: str, idx_tmp: str) -> dict:
    """Concatenate the workers' parts; returns the counts."""
    dtype = DTYPE_CODES[code]
    lengths = [_part(part_dir, k, "seq_lengths", np.int32) for k in range(parts)]
    starts = [_part(part_dir, k, "doc_starts", np.uint8) for k in range(parts)]
    first = next((s for s in starts if len(s)), None)
    if first is not None:
        first[0] = 1  # the corpus's first sequence begins a document, whatever precedes it
    n = sum(len(x) for x in lengths)
    d = sum(int(np.count_nonzero(s)) for s in starts)
    os.replace(os.path.join(part_dir, "0.ids"), bin_tmp)  # worker 0 wrote the header: no copy of its part
    with open(bin_tmp, "ab") as out:
        for k in range(1, parts):
            with open(os.path.join(part_dir, f"{k}.ids"), "rb") as f:
                _append(f, out)
    t = (os.path.getsize(bin_tmp) - BIN_HEADER.size) // dtype.itemsize
    layout = idx_layout(n, d, t, flags)
    with open(idx_tmp, "wb") as out:
        out.write(IDX_HEADER.pack(IDX_MAGIC, VERSION, code, flags, run_id, n, d, t))

        def section(name: str) -> None:
            out.write(b"\0" * (layout[name][0] - out.tell()))

        section("lengths")
        for x in lengths:
            out.write(x.tobytes())
        section("offsets")
        pos = 0
        for x in lengths:
            ends = np.cumsum(x, dtype=np.int64) + pos
            out.write((BIN_HEADER.size + (ends - x) * dtype.itemsize).tobytes())
            pos = int(ends[-1]) if len(x) else pos
        section("doc_idx")
        seq = 0
        for x, s in zip(lengths, starts):
            out.write((np.flatnonzero(s).astype(np.int64) + seq).tobytes())
            seq += len(x)
        out.write(np.int64(n).tobytes())
        if flags & FLAG_LABELS:
            section("labels")
            for k in range(parts):
                out.write(_part(part_dir, k, "labels", np.int64).tobytes())
        if flags & FLAG_WORD_STARTS:
            section("word_starts")
            carry = np.zeros(0, np.uint8)
            for k in range(parts):
                bits = np.concatenate([carry, _part(part_dir, k, "word_starts", np.uint8)])
                whole = len(bits) // 8 * 8
                out.write(np.packbits(bits[:whole]).tobytes())
                carry = bits[whole:]
            out.write(np.packbits(carry).tobytes())
        if flags & FLAG_TOKEN_LABELS:
            section("token_labels")
            for k in range(parts):
                out.write(_part(part_dir, k, "token_labels", np.int8).tobytes())
        if out.tell() != layout["end"][0]:
            raise RuntimeError(f"{idx_tmp}: wrote {out.tell()} bytes, the layout needs {layout['end'][0]}")
    return {"sequences": n, "documents": d, "tokens": t}


# ---- the command's work -------------------------------------------------------------------------
def preprocess(corpus_path: PathLike, dataset_path: PathLike, tokenizer: Tokenizer, options: PreprocessOptions,
               processes_num: int = 1, progress: bool = True) -> dict:
    """Tokenize the corpus into dataset_path.{bin,idx,json}; returns the metadata written to .json.

    One writer per dataset: the prefix is locked while it is written (uer_ds.outputs), so a second
    preprocess into it is refused at once.  Nothing partial stays behind on an error; a full disk is a
    uer_ds.outputs.NoSpaceError naming the files and the free space."""
    options.validate()
    specials = tokenizer.require_special(*options.required_specials)
    if processes_num < 1:
        raise ValueError(f"processes_num has value {processes_num}: must be at least 1")
    corpus = Path(corpus_path)
    if not corpus.is_file():
        raise FileNotFoundError(f"corpus_path '{corpus}': no such file")
    size = corpus.stat().st_size
    if size == 0:
        raise ValueError(f"{corpus}: the corpus is empty (0 bytes)")
    encoder = make_encoder(tokenizer, options.whole_word_masking, options)
    corpus_format = MODE_NAMES[options.data_processor]
    prefix = dataset_prefix(dataset_path)
    with lock_output(prefix, "--dataset_path", prefix=True) as lock:
        note = lock.note("--dataset_path", prefix)
        if note:
            print(note, file=sys.stderr, flush=True)
        return _write_dataset(corpus, size, prefix, tokenizer, options, encoder, corpus_format, specials,
                              processes_num, progress)


def _write_dataset(corpus: Path, size: int, prefix: str, tokenizer: Tokenizer, options: PreprocessOptions, encoder,
                   corpus_format: str, specials: dict, processes_num: int, progress: bool) -> dict:
    """preprocess's work, under the prefix's lock: parts by the workers, merged into temporary files,
    renamed into place (.json last); every temporary removed on any error."""
    out_dir = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(out_dir, exist_ok=True)
    finals = [prefix + ".bin", prefix + ".idx", prefix + ".json"]  # the .json last: it says the rest is complete
    part_dir = tempfile.mkdtemp(prefix=os.path.basename(prefix) + ".parts-", dir=out_dir)
    began = time.perf_counter()
    try:
        with atomic_paths(*finals) as temps:
            _WORKER.clear()
            from uer_ds.data import ernie_corpora

            source, extra = corpus, {}
            if options.data_processor in ernie_corpora.PREPARE:  # ERNIE 2.0: a first pass writes what to tokenize
                source = Path(part_dir) / "prepared.tsv"
                extra = ernie_corpora.PREPARE[options.data_processor](corpus, source, options)
            code = dtype_code_for(tokenizer.vocab_size)
            flags = (FLAG_LABELS if corpus_format == "cls" else 0) | (FLAG_WORD_STARTS if options.word_starts else 0) \
                | (FLAG_TOKEN_LABELS if getattr(encoder, "gives_token_labels", False) else 0)
            run_id = secrets.randbits(63)
            _WORKER.update(path=str(source), mode=MODES[corpus_format], encoder=encoder, part_dir=part_dir,
                           word_starts=options.word_starts,
                           bin_header=BIN_HEADER.pack(BIN_MAGIC, VERSION, code, run_id))
            from tqdm import tqdm

            with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                ranges = split_ranges(mm, os.path.getsize(source), processes_num)
            with tqdm(total=size, unit="B", unit_scale=True, desc=f"preprocess {corpus.name}", disable=not progress,
                      file=sys.stderr) as bar:
                totals = _run_workers(ranges, bar)
            counts = _merge(part_dir, len(ranges), code, flags, run_id, str(temps[0]), str(temps[1]))
            stats = {name: sum(t[name] for t in totals) for name in totals[0]}
            if counts["sequences"] == 0:
                raise ValueError(f"{corpus}: no text to train on ({stats['lines']} lines: {stats['blank_lines']} "
                                 f"blank, {stats['empty_lines']} without any token)")
            meta = _metadata(corpus, size, corpus_format, tokenizer, specials, options, code, run_id,
                             {**counts, "lines": stats["lines"], "blank_lines": stats["blank_lines"],
                              "empty_lines": stats["empty_lines"], "unk_tokens": stats["unk"]},
                             processes_num, time.perf_counter() - began)
            if corpus_format == "cls":
                meta.update(_label_summary(part_dir, len(ranges)))
            extra.update(ernie_corpora.after_pass(options.data_processor, tokenizer, lambda: np.memmap(
                temps[0], dtype=DTYPE_CODES[code], mode="r", offset=BIN_HEADER.size), options))
            meta.update(extra)
            with open(temps[2], "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2)
                f.write("\n")
        return meta
    except BaseException as err:
        if not is_full_disk(err, out_dir):
            raise
        full, free = err, shutil.disk_usage(out_dir).free
    finally:
        _WORKER.clear()
        shutil.rmtree(part_dir, ignore_errors=True)
    raise NoSpaceError(errno.ENOSPC, f"no space left on device: writing the dataset {prefix}.bin/.idx/.json failed "
                                     f"({free:,} bytes free in {out_dir}); the partial files were removed. Free some "
                                     "space, or give another --dataset_path", prefix) from full


def _label_summary(part_dir: str, parts: int) -> dict:
    labels = np.concatenate([_part(part_dir, k, "labels", np.int64) for k in range(parts)])
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    return {"labels_num": int(len(counts)), "label_counts": {str(i): int(c) for i, c in enumerate(counts) if c}}


def _metadata(corpus: Path, size: int, corpus_format: str, tokenizer: Tokenizer, specials: dict, options,
              code: int, run_id: int, counts: dict, processes_num: int, seconds: float) -> dict:
    from uer_ds import __version__

    return {
        "format": META_FORMAT,
        "format_version": VERSION,
        "run_id": f"{run_id:016x}",
        "data_processor": options.data_processor,
        "seq_length": options.seq_length,
        "options": dataclasses.asdict(options),
        "tokenizer": tokenizer.identity(),
        "vocab_size": tokenizer.vocab_size,
        "special_ids": specials,
        "dtype": DTYPE_CODES[code].name,
        "corpus": {"path": str(corpus.resolve()), "bytes": size, "format": corpus_format},
        "counts": counts,
        "created_by": f"uer_ds {__version__} preprocess",
        "processes_num": processes_num,
        "seconds": round(seconds, 3),
    }


def load_metadata(prefix: PathLike) -> dict:
    """OUT.json, checked: names the file and what is wrong."""
    path = dataset_prefix(prefix) + ".json"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (written last by `uer-ds preprocess`; without it the "
                                "dataset is incomplete)")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ValueError(f"{path}: not uer_ds dataset metadata (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != VERSION:
        raise ValueError(f"{path}: format_version {meta.get('format_version')}; this uer_ds reads {VERSION}")
    return meta
