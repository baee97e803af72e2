"""The binary dataset: OUT.bin (token ids) + OUT.idx (index), read with numpy memmap (zero copy).

The layout is documented in FORMAT.md beside this file; the constants below are its only home.
Every read checks magic, version, dtype and sizes and names the file on failure.
"""
from __future__ import annotations

import os
import struct
from typing import Optional, Sequence, Union

import numpy as np

BIN_MAGIC = b"UERDSBIN"
IDX_MAGIC = b"UERDSIDX"
VERSION = 1
BIN_HEADER = struct.Struct("<8sIB3xQ")       # magic, version, dtype code, run id          (24 bytes)
IDX_HEADER = struct.Struct("<8sIBB2xQqqq")   # magic, version, dtype code, flags, run id,
#                                              sequences, documents, tokens               (48 bytes)
DTYPE_CODES = {1: np.dtype("<u2"), 2: np.dtype("<i4")}
FLAG_LABELS = 1       # int64 label per document (the cls processor)
FLAG_WORD_STARTS = 2  # one bit per token: it begins a word (whole-word masking)
FLAG_TOKEN_LABELS = 4  # one int8 label per token, -1 = none (ERNIE 2.0's capitalization prediction)
SUFFIXES = (".bin", ".idx", ".json")

PathLike = Union[str, os.PathLike]


def dataset_prefix(path: PathLike) -> str:
    """OUT for 'OUT', 'OUT.bin', 'OUT.idx' or 'OUT.json' (UER-py's 'dataset.pt' becomes 'dataset')."""
    text = os.fspath(path)
    for suffix in SUFFIXES + (".pt",):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def dtype_code_for(vocab_size: int) -> int:
    """uint16 when every id fits, else int32."""
    return 1 if vocab_size <= 65536 else 2


def idx_layout(num_sequences: int, num_documents: int, num_tokens: int, flags: int) -> dict[str, tuple[int, int]]:
    """{section: (byte offset, byte size)} of an .idx file, and 'end': its size."""
    out, pos = {}, IDX_HEADER.size
    for name, size, present in (("lengths", 4 * num_sequences, True),
                                ("offsets", 8 * num_sequences, True),
                                ("doc_idx", 8 * (num_documents + 1), True),
                                ("labels", 8 * num_documents, flags & FLAG_LABELS),
                                ("word_starts", (num_tokens + 7) // 8, flags & FLAG_WORD_STARTS),
                                ("token_labels", num_tokens, flags & FLAG_TOKEN_LABELS)):
        if present:
            pos = (pos + 7) // 8 * 8  # 8-byte aligned sections
            out[name] = (pos, size)
            pos += size
    out["end"] = (pos, 0)
    return out


class MMapDataset:
    """Sequences of token ids grouped into documents, memory-mapped.

    len(ds) and ds[i]: the sequences (a sentence of a bert corpus, a line otherwise), as zero-copy
    numpy views in the stored dtype.  ds.document(d): the tokens of document d (its sequences are
    contiguous).  ds.lengths (int32), ds.offsets (int64 byte offsets into .bin), ds.doc_idx
    (int64, D + 1: document d holds sequences doc_idx[d]:doc_idx[d + 1]), ds.tokens (all ids),
    ds.labels (cls: one per document, else None), ds.word_starts(start, stop) (whole-word masking).
    Pickles only its path: DataLoader workers re-open the files.
    """

    def __init__(self, prefix: PathLike) -> None:
        self.prefix = dataset_prefix(prefix)
        self._open()

    # ---- opening and checks ------------------------------------------------------------------
    def _open(self) -> None:
        self.bin_path, self.idx_path = self.prefix + ".bin", self.prefix + ".idx"
        idx = self._read_idx_header()
        code, flags, run_id, n, d, t = idx
        self.dtype = DTYPE_CODES[code]
        self.flags, self.run_id = flags, run_id
        self.num_tokens, self.num_documents = t, d
        layout = idx_layout(n, d, t, flags)
        size = os.path.getsize(self.idx_path)
        if size != layout["end"][0]:
            raise ValueError(f"{self.idx_path}: truncated or corrupt: its header announces {n} sequences, {d} "
                             f"documents, {t} tokens, which take {layout['end'][0]} bytes, but the file has {size}")
        self._idx = np.memmap(self.idx_path, dtype=np.uint8, mode="r") if size else None
        self.lengths = self._section(layout, "lengths", np.int32, n)
        self.offsets = self._section(layout, "offsets", np.int64, n)
        self.doc_idx = self._section(layout, "doc_idx", np.int64, d + 1)
        self.labels = self._section(layout, "labels", np.int64, d) if flags & FLAG_LABELS else None
        self._word_starts = (self._section(layout, "word_starts", np.uint8, (t + 7) // 8)
                             if flags & FLAG_WORD_STARTS else None)
        self._token_labels = self._section(layout, "token_labels", np.int8, t) if flags & FLAG_TOKEN_LABELS else None
        self._check_bin(code, run_id, t)
        self._check_index(n, d)

    def _read_idx_header(self) -> tuple[int, int, int, int, int, int]:
        path = self.idx_path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file (a dataset is OUT.bin + OUT.idx, written by "
                                    "`uer-ds preprocess --dataset_path OUT`)")
        with open(path, "rb") as f:
            head = f.read(IDX_HEADER.size)
        if len(head) < IDX_HEADER.size or head[:8] != IDX_MAGIC:
            raise ValueError(f"{path}: not a uer_ds index (magic {head[:8]!r}, expected {IDX_MAGIC!r}; "
                             "a Megatron or UER-py dataset must be preprocessed again)")
        magic, version, code, flags, run_id, n, d, t = IDX_HEADER.unpack(head)
        if version != VERSION:
            raise ValueError(f"{path}: format version {version}; this uer_ds reads version {VERSION}")
        if code not in DTYPE_CODES:
            raise ValueError(f"{path}: dtype code {code} is not one of {sorted(DTYPE_CODES)}")
        if min(n, d, t) < 0 or flags & ~(FLAG_LABELS | FLAG_WORD_STARTS | FLAG_TOKEN_LABELS):
            raise ValueError(f"{path}: corrupt header (sequences {n}, documents {d}, tokens {t}, flags {flags})")
        return code, flags, run_id, n, d, t

    def _section(self, layout: dict, name: str, dtype, count: int) -> np.ndarray:
        offset, size = layout[name]
        if count == 0:
            return np.zeros(0, dtype=dtype)
        return self._idx[offset:offset + size].view(dtype)

    def _check_bin(self, code: int, run_id: int, num_tokens: int) -> None:
        path = self.bin_path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file (the token file beside {self.idx_path})")
        with open(path, "rb") as f:
            head = f.read(BIN_HEADER.size)
        if len(head) < BIN_HEADER.size or head[:8] != BIN_MAGIC:
            raise ValueError(f"{path}: not a uer_ds token file (magic {head[:8]!r}, expected {BIN_MAGIC!r})")
        _, version, bin_code, bin_run = BIN_HEADER.unpack(head)
        if version != VERSION or bin_code != code:
            raise ValueError(f"{path}: version {version}, dtype code {bin_code}; {self.idx_path} says version "
                             f"{VERSION}, dtype code {code}")
        if bin_run != run_id:
            raise ValueError(f"{path} and {self.idx_path} come from different preprocess runs "
                             f"(run ids {bin_run:016x} and {run_id:016x})")
        want = BIN_HEADER.size + num_tokens * self.dtype.itemsize
        size = os.path.getsize(path)
        if size != want:
            raise ValueError(f"{path}: truncated or corrupt: {num_tokens} tokens of {self.dtype.itemsize} bytes "
                             f"need {want} bytes, the file has {size}")
        self.tokens = (np.memmap(path, dtype=self.dtype, mode="r", offset=BIN_HEADER.size, shape=(num_tokens,))
                       if num_tokens else np.zeros(0, dtype=self.dtype))

    def _check_index(self, n: int, d: int) -> None:
        """Cheap consistency checks (O(1)); validate() does the full O(N) check."""
        item = self.dtype.itemsize
        if n and (self.offsets[0] != BIN_HEADER.size
                  or self.offsets[-1] + int(self.lengths[-1]) * item != BIN_HEADER.size + self.num_tokens * item):
            raise ValueError(f"{self.idx_path}: the sequence offsets do not span {self.bin_path}")
        if self.doc_idx[0] != 0 or self.doc_idx[-1] != n:
            raise ValueError(f"{self.idx_path}: document boundaries must run from 0 to {n} sequences, "
                             f"found {self.doc_idx[0]} to {self.doc_idx[-1]}")

    def validate(self) -> None:
        """Every offset, length and boundary (reads the whole index)."""
        ends = np.cumsum(self.lengths, dtype=np.int64)
        starts = BIN_HEADER.size + (ends - self.lengths) * self.dtype.itemsize
        if (self.lengths < 0).any() or not np.array_equal(starts, self.offsets):
            raise ValueError(f"{self.idx_path}: sequence lengths and offsets disagree")
        if (np.diff(self.doc_idx) < 0).any():
            raise ValueError(f"{self.idx_path}: document boundaries are not in order")

    # ---- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.lengths)

    def _token_range(self, first: int, stop: int) -> tuple[int, int]:
        """Token positions [a, b) of sequences first..stop-1."""
        if first >= stop:
            return 0, 0
        a = (int(self.offsets[first]) - BIN_HEADER.size) // self.dtype.itemsize
        b = (int(self.offsets[stop - 1]) - BIN_HEADER.size) // self.dtype.itemsize + int(self.lengths[stop - 1])
        return a, b

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sequence {i} out of range for {self.prefix} ({n} sequences)")
        a, b = self._token_range(i % n, i % n + 1)
        return self.tokens[a:b]

    def sequences_tokens(self, first: int, stop: int) -> np.ndarray:
        """The tokens of sequences first..stop-1, concatenated (a view: they are contiguous)."""
        a, b = self._token_range(first, stop)
        return self.tokens[a:b]

    def token_span(self, first: int, stop: int) -> tuple[int, int]:
        return self._token_range(first, stop)

    def document(self, d: int) -> np.ndarray:
        """All tokens of document d (a view)."""
        return self.sequences_tokens(int(self.doc_idx[d]), int(self.doc_idx[d + 1]))

    def document_sequences(self, d: int) -> list[np.ndarray]:
        return [self[i] for i in range(int(self.doc_idx[d]), int(self.doc_idx[d + 1]))]

    @property
    def has_word_starts(self) -> bool:
        return self._word_starts is not None

    def word_starts(self, start: int, stop: int) -> np.ndarray:
        """bool flags of tokens start..stop-1: the token begins a word."""
        if self._word_starts is None:
            raise ValueError(f"{self.idx_path}: no word boundaries; preprocess with --whole_word_masking")
        if start >= stop:
            return np.zeros(0, dtype=bool)
        bits = np.unpackbits(self._word_starts[start // 8:(stop + 7) // 8])
        return bits[start % 8:start % 8 + stop - start].astype(bool)

    @property
    def has_token_labels(self) -> bool:
        return self._token_labels is not None

    def token_labels(self, start: int, stop: int) -> np.ndarray:
        """int8 labels of tokens start..stop-1 (-1: none), a view; the capitalization processor's."""
        if self._token_labels is None:
            raise ValueError(f"{self.idx_path}: no token labels; preprocess with --target capitalization")
        return self._token_labels[start:stop]

    # ---- pickling: the path only --------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"prefix": self.prefix}

    def __setstate__(self, state: dict) -> None:
        self.prefix = state["prefix"]
        self._open()

    def __repr__(self) -> str:
        return (f"MMapDataset('{self.prefix}': {len(self)} sequences, {self.num_documents} documents, "
                f"{self.num_tokens} tokens, {self.dtype.name})")


def write_dataset(prefix: PathLike, documents: Sequence[Sequence[Sequence[int]]], vocab_size: int,
                  labels: Optional[Sequence[int]] = None, word_starts: Optional[Sequence[Sequence[Sequence[bool]]]] = None,
                  run_id: int = 1, token_labels: Optional[Sequence[Sequence[Sequence[int]]]] = None) -> None:
    """Write a small dataset from lists (documents -> sequences -> ids); for tests and tools.
    `uer-ds preprocess` writes the same layout from its worker parts."""
    code = dtype_code_for(vocab_size)
    dtype = DTYPE_CODES[code]
    seqs = [np.asarray(s, dtype=np.int64) for doc in documents for s in doc]
    lengths = np.array([len(s) for s in seqs], dtype=np.int32)
    tokens = np.concatenate(seqs).astype(dtype) if seqs else np.zeros(0, dtype)
    doc_idx = np.concatenate([[0], np.cumsum([len(doc) for doc in documents])]).astype(np.int64)
    flags = (FLAG_LABELS if labels is not None else 0) | (FLAG_WORD_STARTS if word_starts is not None else 0) \
        | (FLAG_TOKEN_LABELS if token_labels is not None else 0)
    offsets = BIN_HEADER.size + np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]]) * dtype.itemsize
    sections = {"lengths": lengths, "offsets": offsets[:len(lengths)].astype(np.int64), "doc_idx": doc_idx}
    if labels is not None:
        sections["labels"] = np.asarray(labels, dtype=np.int64)
    if word_starts is not None:
        flat = np.array([b for doc in word_starts for s in doc for b in s], dtype=bool)
        sections["word_starts"] = np.packbits(flat)
    if token_labels is not None:
        sections["token_labels"] = np.array([x for doc in token_labels for s in doc for x in s], dtype=np.int8)
    layout = idx_layout(len(lengths), len(documents), len(tokens), flags)
    with open(os.fspath(prefix) + ".bin", "wb") as f:
        f.write(BIN_HEADER.pack(BIN_MAGIC, VERSION, code, run_id))
        f.write(tokens.tobytes())
    with open(os.fspath(prefix) + ".idx", "wb") as f:
        f.write(IDX_HEADER.pack(IDX_MAGIC, VERSION, code, flags, run_id, len(lengths), len(documents), len(tokens)))
        for name, array in sections.items():
            f.write(b"\0" * (layout[name][0] - f.tell()))
            f.write(array.tobytes())


__all__ = ["MMapDataset", "dataset_prefix", "write_dataset"]
