"""How every reader of a user's text file splits it: one function per rule, used by all of them.

The formats uer_ds reads say where their boundaries are, and the boundaries are ASCII characters:
  lines    end at '\\n' (a '\\r' before it is dropped: CRLF files read the same).  U+0085, U+2028,
           U+2029, '\\v', '\\f' and '\\x1c'-'\\x1e' are characters of the line, not line ends, though
           Python's str.splitlines() breaks at all of them (and so would shift every later row).
  fields   of a TSV line are separated by one '\\t'.
  tokens   of a pre-segmented field (NER's text_a and label, a logits column) are separated by ASCII
           spaces; U+3000 (the full-width space) and other Unicode spaces are token characters, though
           Python's str.split() splits at them.
A UTF-8 byte-order mark at the start of a file is removed by every reader (Windows editors write
one; preprocess always accepted it).  Invalid UTF-8 is an error naming the file, the line and the
byte.  What a blank line means is the format's business (an error in a TSV file, an empty output row
for the tools, a document boundary in a pre-training corpus): `is_blank` says which lines are blank.

The pre-training corpus reader (the C extension and uer_ds.data.preprocessing) applies the same line
and BOM rules on bytes; its blank lines are those of UER-py (str.isspace() characters only).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, os.PathLike]
BOM = "\ufeff"
ASCII_BLANK = " \t\r\v\f"


class TextFileError(ValueError):
    """Bad input in a text file: the message names file:line, the value and the rule."""


def read_text(path: PathLike, what: str = "input") -> str:
    """The UTF-8 text of a file without a leading byte-order mark.

    Raises FileNotFoundError ("<what> '<path>': no such file") and TextFileError (invalid UTF-8, with
    the file, line and byte offset)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} '{path}': no such file")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TextFileError(f"{path}:{line}: invalid UTF-8 at byte {err.start} "
                            f"({data[err.start: err.start + 4].hex(' ')}): files are read as UTF-8") from None
    return text[1:] if text.startswith(BOM) else text


def split_lines(text: str) -> list[str]:
    """Lines of a text: split at '\\n' only, one '\\r' before it dropped; a final '\\n' ends the last
    line rather than starting an empty one.  Element k is line k + 1 of the file."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path: PathLike, what: str = "input") -> list[str]:
    """split_lines(read_text(path)): every line of the file, blank ones included, in order."""
    return split_lines(read_text(path, what))


def iter_lines(path: PathLike, what: str = "input") -> Iterator[tuple[int, str]]:
    """(line number, line) of a file of any size, streamed, by the rules of read_lines."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} '{path}': no such file")
    number = 0
    with open(file, "rb") as f:
        for number, raw in enumerate(f, 1):  # binary lines end at b"\n" only
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TextFileError(f"{path}:{number}: invalid UTF-8 at byte {f.tell() - len(raw) + err.start} "
                                    f"({raw[err.start: err.start + 4].hex(' ')}): files are read as UTF-8") from None
            if number == 1 and line.startswith(BOM):
                line = line[1:]
            yield number, line.removesuffix("\n").removesuffix("\r")


def split_fields(line: str) -> list[str]:
    """The tab-separated fields of a TSV line."""
    return line.split("\t")


def split_tokens(text: str) -> list[str]:
    """The tokens of a pre-segmented field: separated by ASCII spaces (runs of them count as one, and
    spaces at either end are ignored); every other character, U+3000 included, belongs to a token."""
    return [token for token in text.split(" ") if token]


def strip_blank(text: str) -> str:
    """text without ASCII white space (space, tab, CR, VT, FF) at either end; other characters stay."""
    return text.strip(ASCII_BLANK)


def is_blank(line: str) -> bool:
    """A line with nothing but ASCII white space."""
    return not strip_blank(line)


def load_json(path: PathLike, what: str = "input") -> Any:
    """A JSON file read by read_text (so a BOM is accepted); errors name file:line:column."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as err:
        raise TextFileError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from None


__all__ = ["BOM", "TextFileError", "is_blank", "iter_lines", "load_json", "read_lines", "read_text", "split_fields",
           "split_lines", "split_tokens", "strip_blank"]
