"""Unicode tables for the C tokenizer, computed from the running Python's `unicodedata`.

Computing them here (rather than shipping generated C) means the C extension and the Python
reference tokenizers (uer_ds/tokenizers/bert.py, simple.py) always use the same Unicode version.
They take about 0.8 s to compute (2-core CI machine), so they are cached under ~/.cache/uer_ds, keyed
by the Python version, the Unicode version and the source of this file and of bert.py; workers
forked after the parent loaded them inherit them.

Per code point, one flag byte (bit layout shared with _native.c):
  bits 0-1  class of BERT's basic tokenizer: 0 dropped (controls, NUL, U+FFFD), 1 white space,
            2 CJK ideograph, 3 other
  bit 2     BERT punctuation          bit 3  str.isspace()
  bit 4     strip_accents(ch.lower()) != ch (the bert lower-casing map has an entry)
  bit 5     bert with lower-casing must hand the word to Python: Greek capital sigma (str.lower()
            has a final-sigma rule) or a non-Mn combining mark, which NFD could reorder
  bit 6     ch.lower() != ch (the plain lower-casing map has an entry)
  bit 7     char/space with lower-casing must hand the line to Python (capital sigma)
and two maps code point -> code points: strip_accents(ch.lower()) and ch.lower().
"""
from __future__ import annotations

import hashlib
import os
import sys
import unicodedata
from array import array
from functools import lru_cache
from pathlib import Path

from uer_ds.atomic import atomic_path
from uer_ds.tokenizers import bert
from uer_ds.tokenizers.bert import _CJK_RANGES, CJK, DROP, OTHER, SPACE, char_class, is_punctuation

_char_class = char_class.__wrapped__  # the uncached rule: 1.1M calls would only churn the cache
PUNCT, ISSPACE, LMAP, RARE, CMAP, SIGMA = 4, 8, 16, 32, 64, 128
NCP = 0x110000
_CAPITAL_SIGMA = 0x3A3


def _pack(mapping: dict[int, str]) -> tuple[bytes, bytes, bytes]:
    keys, starts, data = array("I"), array("I", [0]), array("I")
    for cp in sorted(mapping):
        keys.append(cp)
        data.extend(ord(c) for c in mapping[cp])
        starts.append(len(data))
    return keys.tobytes(), starts.tobytes(), data.tobytes()


@lru_cache(maxsize=1)
def build() -> tuple[bytes, ...]:
    """(flags, lstrip keys, starts, data, lower keys, starts, data) for _native.set_tables();
    read from the cache when this Python and this file made them before."""
    path = _cache_path()
    try:
        blob = path.read_bytes()
        sizes = array("Q", blob[: 8 * 7])
        parts, pos = [], 8 * 7
        for size in sizes:
            parts.append(blob[pos:pos + size])
            pos += size
        if pos == len(blob) and len(parts[0]) == NCP:
            return tuple(parts)
    except (OSError, ValueError):
        pass
    parts = _compute()
    try:  # best effort: a read-only home only costs the recomputation next time
        with atomic_path(path) as tmp:
            tmp.write_bytes(array("Q", [len(p) for p in parts]).tobytes() + b"".join(parts))
    except OSError:
        pass
    return parts


def _cache_path() -> Path:
    key = hashlib.sha256(f"{sys.version}|{unicodedata.unidata_version}|".encode() + Path(__file__).read_bytes()
                         + Path(bert.__file__).read_bytes()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "uer_ds" / f"unicode-tables-{key}.bin"


def _compute() -> tuple[bytes, ...]:
    chars = [chr(cp) for cp in range(NCP)]
    categories = list(map(unicodedata.category, chars))
    category, is_normalized = unicodedata.category, unicodedata.is_normalized
    flags = bytearray(NCP)
    for lo, hi in _CJK_RANGES:  # ideographs: CJK class, no case; compatibility ones decompose (below)
        flags[lo:hi + 1] = bytes([CJK]) * (hi + 1 - lo)
    # combining marks that are not Mn survive strip_accents, and NFD's canonical reordering could
    # move one past another: words holding one go to the Python fallback
    reorderable = {ch for ch, cat in zip(chars, categories) if cat[0] == "M" and cat != "Mn" and unicodedata.combining(ch)}
    lstrip: dict[int, str] = {}
    lower: dict[int, str] = {}
    for cp, (ch, cat) in enumerate(zip(chars, categories)):
        space = ch.isspace()
        if cat[0] == "C":  # controls, format, unassigned, private use: dropped, no case, no decomposition
            flags[cp] = (ISSPACE | SPACE) if ch in "\t\n\r" else (ISSPACE if space else DROP)
            continue
        f = flags[cp] or (SPACE if space else OTHER)
        if space:
            f |= ISSPACE
        if cat[0] == "P" or (cp < 0x80 and is_punctuation(ch)):
            f |= PUNCT
        if cp >= 0x80:
            low = ch.lower()
            if low != ch:
                lower[cp] = low
                f |= CMAP
            if cat == "Mn":
                lstrip[cp] = ""
                f |= LMAP
            elif low != ch or not is_normalized("NFD", ch):
                decomposed = unicodedata.normalize("NFD", low)
                stripped = "".join(c for c in decomposed if category(c) != "Mn")
                if stripped != ch:
                    lstrip[cp] = stripped
                    f |= LMAP
                if any(c in reorderable for c in decomposed):
                    f |= RARE
            elif ch in reorderable:
                f |= RARE
        if cp == _CAPITAL_SIGMA:
            f |= RARE | SIGMA
        flags[cp] = f
    flags[0xFFFD] = DROP  # BERT drops the replacement character
    return (bytes(flags), *_pack(lstrip), *_pack(lower))


def check(flags: bytes) -> None:
    """Raise if the flags disagree with the reference rules anywhere (slow; for tests)."""
    for cp in range(NCP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        want = _char_class(ch) | (PUNCT if is_punctuation(ch) else 0) | (ISSPACE if ch.isspace() else 0)
        if flags[cp] & 15 != want:
            raise AssertionError(f"U+{cp:04X}: flags {flags[cp] & 15} != {want}")
