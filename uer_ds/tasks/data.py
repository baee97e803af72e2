"""What every fine-tuning task reads and batches: TSV files with a header row, encoded examples,
padded batches, and the epoch's order of micro-batches across heads and ranks.

UER-py's TSV format: the first line names the columns (`label`, `text_a`, `text_b`, ...), one
example per following line, tab-separated.  Lines, fields and tokens are split by the rules of
uer_ds.textfile (lines at '\n', fields at '\t', tokens at ASCII spaces; a BOM is removed).  Every
check names the file, the line, the value and the rule (`TaskDataError`, a ValueError, so the
command line prints it in one line and exits 1).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from uer_ds.textfile import TextFileError, is_blank, read_lines, split_fields, split_tokens, strip_blank
from uer_ds.tokenizers import Tokenizer


class TaskDataError(TextFileError):
    """Bad input in a task's data file: the message names file:line, the value and the rule."""


def task_file_error(err: TextFileError) -> TaskDataError:
    """A text-file error (invalid UTF-8, bad JSON) of a task's data file, as a TaskDataError."""
    return err if isinstance(err, TaskDataError) else TaskDataError(str(err))


@dataclass
class Example:
    """One encoded row.

    src, seg: token ids and segment ids (1 = first text, 2 = second, UER-py's convention; padding is
    added per batch); tgt: the task's gold answer (a class id, tag ids, a span, ...) or None when the
    file has none; text: the raw columns, for prediction and bad-case files; extra: anything else a
    head needs (soft targets, choice counts, ...).
    """

    source: str  # "file:line"
    text: dict[str, str]
    src: Any
    seg: Any
    tgt: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TsvRow:
    path: str
    line: int  # 1-based, as editors count
    values: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def error(self, message: str) -> TaskDataError:
        return TaskDataError(f"{self.where}: {message}")


def read_tsv(path: str, required: Sequence[str], optional: Sequence[str] = (),
             columns: Optional[Sequence[str]] = None) -> tuple[list[str], list[TsvRow]]:
    """Header + rows of a UER-py TSV file; every row must have as many columns as the header.

    required: columns that must be in the header; optional: columns the task understands when
    present.  Other columns are kept in each row's values (a prediction file's extra columns).
    columns: the file has no header row (PaddleNLP's files) and these name its columns.
    """
    lines = _task_lines(path)
    if columns is None:
        if not lines:
            raise TaskDataError(f"{path}:1: empty file: expected a header row naming the columns "
                                f"({', '.join(required)})")
        header, first = split_fields(lines[0]), 2
    else:
        header, first = list(columns), 1
    missing = [c for c in required if c not in header]
    if missing:
        raise TaskDataError(f"{path}:1: header {header} lacks column(s) {missing}: the header row must name "
                            f"the columns ({', '.join(required)}{''.join(', [' + c + ']' for c in optional)})")
    if len(set(header)) != len(header):
        raise TaskDataError(f"{path}:1: header {header} names a column twice")
    rows = []
    for number, line in enumerate(lines[first - 1:], start=first):
        if is_blank(line):
            raise TaskDataError(f"{path}:{number}: empty line: every line{' after the header' if first == 2 else ''} "
                                "is one example")
        values = split_fields(line)
        if len(values) != len(header):
            what = "the header has" if columns is None else "expected (--no_header:"
            raise TaskDataError(f"{path}:{number}: {len(values)} column(s), {what} {len(header)} "
                                f"({', '.join(header)}){')' if columns is not None else ''}: columns are separated "
                                "by one tab")
        rows.append(TsvRow(str(path), number, dict(zip(header, values))))
    if not rows:
        raise TaskDataError(f"{path}: no examples{' after the header row' if columns is None else ''}")
    return header, rows


def _task_lines(path: str) -> list[str]:
    """The file's lines by uer_ds.textfile's rules, its errors as TaskDataError."""
    try:
        return read_lines(path, "data file")
    except TextFileError as err:
        raise task_file_error(err) from None


def headerless_columns(path: str, labelled: bool, pair: Optional[bool]) -> list[str]:
    """The columns of a file without a header row, in PaddleNLP's order: `text_a[<TAB>text_b]<TAB>label`
    (labelled), `text_a[<TAB>text_b]` (input to predict; a trailing label column is allowed and ignored).
    pair: whether the model classifies pairs (None: decide from the column count, labelled files)."""
    lines = _task_lines(path)
    if not lines:
        raise TaskDataError(f"{path}:1: empty file")
    count = len(split_fields(lines[0]))
    texts = ["text_a", "text_b"] if pair else ["text_a"]
    if labelled:
        if pair is None:
            texts = ["text_a", "text_b"] if count >= 3 else ["text_a"]
        if count != len(texts) + 1:
            raise TaskDataError(f"{path}:1: {count} column(s); without a header (--no_header) a labelled file has "
                                f"{' '.join(texts)} label, tab-separated")
        return texts + ["label"]
    if count not in (len(texts), len(texts) + 1):
        raise TaskDataError(f"{path}:1: {count} column(s); without a header (--no_header) the model reads "
                            f"{' '.join(texts)} (a label column after them is ignored)")
    return texts + (["label"] if count > len(texts) else [])


def read_label_names(path: str) -> list[str]:
    """Label names, one per line, the line number - 1 is the id (PaddleNLP's label.txt)."""
    lines = _task_lines(path)
    if not lines:
        raise TaskDataError(f"--label_path {path}: empty file: one label name per line")
    for number, name in enumerate(lines, start=1):
        if is_blank(name) or "\t" in name or "," in name:
            raise TaskDataError(f"{path}:{number}: label name {name!r}: must be non-empty, without tabs or commas")
        if name in lines[: number - 1]:
            raise TaskDataError(f"{path}:{number}: label name '{name}' appears twice (first on line "
                                f"{lines.index(name) + 1})")
    return lines


def parse_label(row: TsvRow, labels_num: Optional[int], column: str = "label",
                names: Optional[Sequence[str]] = None) -> int:
    """A class id in [0, labels_num) (any id >= 0 when labels_num is None); with `names` (--label_path)
    the column holds a label name, whose id is its line in that file."""
    text = strip_blank(row.values[column])
    if names is not None:
        if text not in names:
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise row.error(f"{column} '{text}' is not one of the --label_path names ({shown})")
        return list(names).index(text)
    try:
        label = int(text)
    except ValueError:
        raise row.error(f"{column} '{text}' is not an integer: labels are class ids 0..n-1") from None
    if label < 0 or (labels_num is not None and label >= labels_num):
        bound = f"0..{labels_num - 1}" if labels_num is not None else ">= 0"
        raise row.error(f"{column} {label} is out of range: labels must be in {bound}"
                        + (f" (labels_num is {labels_num})" if labels_num is not None else ""))
    return label


def parse_floats(row: TsvRow, column: str, count: int) -> list[float]:
    """`count` space-separated numbers (a `logits` column)."""
    parts = split_tokens(row.values[column])
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise row.error(f"{column} '{row.values[column][:60]}' is not space-separated numbers") from None
    if len(values) != count:
        raise row.error(f"{column} has {len(values)} value(s), expected {count} (one per label)")
    return values


def text_column(row: TsvRow, column: str) -> str:
    text = row.values[column]
    if is_blank(text):
        raise row.error(f"{column} is empty: every example needs text")
    return text


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], seq_length: int) -> tuple[list[int], list[int]]:
    """UER-py's layout: [CLS] a [SEP] (b [SEP]), segments 1 and 2, cut at seq_length (no padding)."""
    special = tokenizer.require_special("cls", "sep")
    src = [special["cls"]] + tokenizer.encode(texts[0]) + [special["sep"]]
    seg = [1] * len(src)
    for text in texts[1:]:
        part = tokenizer.encode(text) + [special["sep"]]
        src += part
        seg += [2] * len(part)
    return src[:seq_length], seg[:seq_length]


# ---- batches -------------------------------------------------------------------------------------
def pad(sequences: Sequence[Sequence[int]], value: int, length: Optional[int] = None) -> torch.Tensor:
    """(B, T) long tensor, right-padded with `value` to `length` (default: the longest sequence)."""
    width = length if length is not None else max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(seq[:width], dtype=torch.long)
    return out


def epoch_plan(sizes: Sequence[int], batch_size: int, world: int, seed: int, epoch: int,
               shuffle: bool = True) -> list[tuple[int, list[list[int]]]]:
    """The epoch's micro-batches over several datasets (one per head), identical on every rank.

    Each dataset is shuffled (seed, epoch, dataset), cut into global batches of batch_size x world
    rows, and each global batch is split into one part per rank; the (dataset, batch) pairs are then
    interleaved in a shuffled order (UER-py's multi-task order).  With one rank the last, smaller
    batch is kept (as UER-py does); with several, a last global batch that cannot give every rank a
    row is dropped, since every rank must run every step.  Returns [(dataset index, parts per rank)].
    """
    plan = []
    for d, size in enumerate(sizes):
        order = list(range(size))
        if shuffle:
            random.Random(seed * 1_000_003 + epoch * 1009 + d).shuffle(order)
        step = batch_size * world
        for start in range(0, size, step):
            chunk = order[start: start + step]
            if len(chunk) < world:
                continue
            per = -(-len(chunk) // world)  # ceil
            parts = [chunk[r * per: (r + 1) * per] for r in range(world)]
            if any(not p for p in parts):
                parts = [chunk[r::world] for r in range(world)]
            plan.append((d, parts))
    if shuffle and len(sizes) > 1:
        random.Random(seed * 7919 + epoch).shuffle(plan)
    return plan


def train_batches(datasets: Sequence[Sequence[Example]], collate: Callable[[list[Example], int], dict],
                  batch_size: int, accumulation_steps: int, rank: int, world: int, seed: int,
                  skip: int = 0) -> Iterator[dict]:
    """Endless micro-batches for this rank, epoch after epoch (see epoch_plan).  An epoch keeps a
    multiple of accumulation_steps micro-batches, so every epoch ends on an optimizer step.  `skip`
    micro-batches are passed over without being built (a resumed run's already trained ones)."""
    epoch = 0
    while True:
        plan = epoch_plan([len(d) for d in datasets], batch_size, world, seed, epoch)
        plan = plan[: len(plan) // accumulation_steps * accumulation_steps]
        if skip >= len(plan):
            skip -= len(plan)
            epoch += 1
            continue
        for d, parts in plan[skip:]:
            yield collate([datasets[d][i] for i in parts[rank]], d)
        skip = 0
        epoch += 1


def steps_per_epoch(sizes: Sequence[int], batch_size: int, accumulation_steps: int, world: int) -> int:
    micro = len(epoch_plan(sizes, batch_size, world, seed=0, epoch=0, shuffle=False))
    steps = micro // accumulation_steps
    if steps == 0:
        raise ValueError(f"the training data ({sum(sizes)} examples) gives {micro} micro-batch(es) per epoch for "
                         f"batch_size {batch_size} x {world} process(es): fewer than --accumulation_steps "
                         f"({accumulation_steps}); lower --batch_size or --accumulation_steps")
    return steps


def eval_batches(examples: Sequence[Example], batch_size: int, rank: int, world: int,
                 length: Callable[[Example], int] = lambda e: len(e.src)) -> list[list[int]]:
    """This rank's batches of example indices for prediction: sorted by length (less padding), dealt
    round-robin to ranks, every rank with the same number of batches (a rank short of examples
    repeats its last index; callers keep the first occurrence)."""
    order = sorted(range(len(examples)), key=lambda i: length(examples[i]))
    mine = order[rank::world]
    count = -(-len(order) // (batch_size * world)) if order else 0
    per = batch_size
    batches = [mine[b * per: (b + 1) * per] for b in range(count)]
    fill = mine[-1] if mine else (order[0] if order else None)
    return [b if b else [fill] for b in batches]


__all__ = ["Example", "TaskDataError", "TsvRow", "encode_texts", "epoch_plan", "eval_batches", "headerless_columns",
           "pad", "parse_floats", "parse_label", "read_label_names", "read_tsv", "steps_per_epoch", "text_column",
           "train_batches"]
