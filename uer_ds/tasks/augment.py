"""Easy data augmentation (EDA) for text classification data: random swap, random deletion, random
insertion and synonym replacement of words (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for
Boosting Performance on Text Classification Tasks", EMNLP-IJCNLP, https://arxiv.org/abs/1901.11196).

The operations, as the paper defines them, on a text of n words with a rate alpha per operation:
  swap     swap two random words, max(1, int(alpha * n)) times
  delete   remove each word with probability alpha; a text never loses its last word
  insert   insert a random synonym of a random word (one that has synonyms) at a random position,
           max(1, int(alpha * n)) times
  synonym  replace max(1, int(alpha * n)) distinct words that have synonyms, each by one random synonym
           (every occurrence of the word, as the paper's code does)
Each augmented copy of an example takes one operation; the copies of an example go round the operations
from a random one, so `--aug_per_example 4` with the four operations gives one copy of each.

Words: a text is its words with the text between them (`Segmented`), so an operation moves, removes or
adds words and keeps the rest of the text (white space, and in `space` mode the spaces between words)
as it was.  `jieba`: Chinese word segmentation (uer_ds.tokenizers.word.segment_words: white-space fields,
jieba's words inside those with a CJK character); `char`: every character but white space is a word
(the layout of BERT's Chinese vocabulary); `space`: white-space-separated fields (English).  A token
without a letter or digit (punctuation, symbols) is not a word: it stays where it is, as the paper's
code strips punctuation before augmenting.

Synonyms (`SynonymTable`): groups from a file, one group per line (words separated by spaces or tabs,
at least two; a word in several groups has the synonyms of all), or a model's embedding neighbours
(the `topn` nearest vocabulary tokens by cosine, uer_ds.tools.nearest.nearest_independent, as
`uer-ds nearest-words` lists them).

Randomness: copy k of row r draws from random.Random("<seed>:<r>"), so a row's copies depend on the
seed and that row only (the same output for the same input, seed and settings).
"""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

OPS = ("swap", "delete", "insert", "synonym")
SEGMENTS = ("jieba", "char", "space")


# ---- words ---------------------------------------------------------------------------------------
@dataclass
class Segmented:
    """A text as words and the text between them: gaps[0] words[0] gaps[1] ... words[n-1] gaps[n]
    (len(gaps) == len(words) + 1); `sep` is put between an inserted word and its neighbour ("" for
    Chinese, " " for space-separated words)."""

    words: list[str]
    gaps: list[str]
    sep: str = ""

    def text(self) -> str:
        out = [self.gaps[0]]
        for word, gap in zip(self.words, self.gaps[1:]):
            out += [word, gap]
        return "".join(out)

    def copy(self) -> "Segmented":
        return Segmented(list(self.words), list(self.gaps), self.sep)

    def delete(self, i: int) -> None:
        """Remove word i; the text on either side of it becomes one (punctuation kept), without the white
        space the word had on one side (so "a b c" less b is "a c", less a "b c")."""
        left, right = self.gaps[i], self.gaps[i + 1]
        if i == 0:
            merged = left + right.lstrip()
        elif i == len(self.words) - 1 or (left[-1:].isspace() and right[:1].isspace()):
            merged = left.rstrip() + right
        else:
            merged = left + right
        del self.words[i]
        self.gaps[i: i + 2] = [merged]

    def insert(self, i: int, word: str) -> None:
        """Insert `word` before word i (i == len(words): at the end), `sep` between it and its neighbour."""
        at_end = i == len(self.words)
        self.words.insert(i, word)
        self.gaps.insert(i if at_end else i + 1, self.sep)


def is_word(token: str) -> bool:
    """A token with a letter or a digit (Unicode categories L*, N*); punctuation and symbols stay in place."""
    return any(unicodedata.category(c)[0] in "LN" for c in token)


def from_spans(text: str, spans: Iterable[tuple[int, int]], sep: str) -> Segmented:
    """Segmented from the tokens' [start, end) character spans (in order, not overlapping); a token that
    is not a word (is_word) stays in the text between words."""
    words, gaps, last = [], [], 0
    for start, end in spans:
        if not is_word(text[start:end]):
            continue
        gaps.append(text[last:start])
        words.append(text[start:end])
        last = end
    gaps.append(text[last:])
    return Segmented(words, gaps, sep)


def segmenter(kind: str) -> Callable[[str], Segmented]:
    """text -> Segmented for `kind` in SEGMENTS (see the module's docstring); ValueError for another."""
    if kind == "char":
        return lambda text: from_spans(text, [(i, i + 1) for i, c in enumerate(text) if not c.isspace()], "")
    if kind == "space":
        import re

        return lambda text: from_spans(text, [m.span() for m in re.finditer(r"\S+", text)], " ")
    if kind == "jieba":
        from uer_ds.tokenizers.word import default_segmenter, segment_words

        jieba = default_segmenter()
        return lambda text: from_spans(text, [(a, b) for _, a, b in segment_words(text, jieba)], "")
    raise ValueError(f"--segment has value '{kind}': must be one of {', '.join(SEGMENTS)}")


# ---- synonyms ------------------------------------------------------------------------------------
@dataclass
class SynonymTable:
    """word -> its synonyms (never the word itself), in a fixed order; `source` names where they came from."""

    table: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def of(self, word: str) -> list[str]:
        return self.table.get(word, [])

    @classmethod
    def from_file(cls, path: str) -> "SynonymTable":
        """Groups from `path`, one group per line: words separated by spaces or tabs, at least two words;
        blank lines and lines starting with '#' are skipped.  ValueError naming file:line otherwise."""
        from uer_ds.textfile import TextFileError, read_lines

        try:
            lines = read_lines(path, "--synonyms_path")
        except TextFileError as err:
            raise ValueError(str(err)) from None
        table: dict[str, dict[str, None]] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            group = list(dict.fromkeys(line.split()))
            if len(group) < 2:
                raise ValueError(f"{path}:{number}: a group of {len(group)} word(s) ({line.strip()!r}): each line is a "
                                 "group of at least two synonyms separated by spaces or tabs")
            for word in group:
                table.setdefault(word, {}).update((w, None) for w in group if w != word)
        if not table:
            raise ValueError(f"{path}: no synonym groups (one group of at least two words per line)")
        return cls({w: list(s) for w, s in table.items()}, str(path))

    @classmethod
    def from_embeddings(cls, model, tokenizer, words: Iterable[str], topn: int,
                        min_similarity: Optional[float] = None) -> "SynonymTable":
        """The `topn` nearest vocabulary tokens of each of `words` by the cosine of the model's word
        embeddings (uer_ds.tools.nearest.nearest_independent, what `uer-ds nearest-words` lists), at least
        `min_similarity` when given.  Words outside the vocabulary get none; special tokens and WordPiece
        continuations ('##...') are never synonyms."""
        from uer_ds.tools.nearest import nearest_independent

        if topn <= 0:
            raise ValueError(f"--synonym_topn has value {topn}: must be positive")
        specials = {t for t in tokenizer.special_tokens.values() if t is not None}
        candidates = [t for t in tokenizer.vocab.id_to_token
                      if t not in specials and not t.startswith("##") and t.strip() and not t.startswith("[unused")]
        known = [w for w in dict.fromkeys(words) if w in tokenizer.vocab.token_to_id and w in set(candidates)]
        table = {}
        for found in nearest_independent(model, tokenizer, [("--load_model_path", w) for w in known], topn, candidates):
            near = [w for w, sim in found.found if min_similarity is None or sim >= min_similarity]
            if near:
                table[found.word] = near
        return cls(table, "embedding neighbours")


# ---- the operations ------------------------------------------------------------------------------
def changes(rate: float, words: int) -> int:
    """EDA's number of changes of an operation at `rate` on a text of `words` words: max(1, int(rate * words))."""
    return max(1, int(rate * words))


def random_swap(seg: Segmented, rate: float, rng: random.Random) -> Segmented:
    """Swap two random words (at distinct positions) changes(rate, n) times; fewer than 2 words: unchanged."""
    out = seg.copy()
    if len(out.words) < 2:
        return out
    for _ in range(changes(rate, len(out.words))):
        i, j = rng.sample(range(len(out.words)), 2)
        out.words[i], out.words[j] = out.words[j], out.words[i]
    return out


def random_deletion(seg: Segmented, rate: float, rng: random.Random) -> Segmented:
    """Remove each word with probability `rate`; when that would remove all, one random word stays."""
    out = seg.copy()
    if len(out.words) < 2:
        return out
    drop = [i for i in range(len(out.words)) if rng.random() < rate]
    if len(drop) == len(out.words):
        drop.remove(rng.choice(drop))
    for i in reversed(drop):
        out.delete(i)
    return out


def random_insertion(seg: Segmented, rate: float, rng: random.Random, synonyms: SynonymTable) -> Segmented:
    """changes(rate, n) times: a random synonym of a random word that has synonyms, inserted at a random
    position (0..len); unchanged when no word has synonyms."""
    out = seg.copy()
    having = [w for w in out.words if synonyms.of(w)]
    if not having:
        return out
    for _ in range(changes(rate, len(seg.words))):
        word = rng.choice(having)
        out.insert(rng.randint(0, len(out.words)), rng.choice(synonyms.of(word)))
    return out


def synonym_replacement(seg: Segmented, rate: float, rng: random.Random, synonyms: SynonymTable) -> Segmented:
    """Replace changes(rate, n) distinct words that have synonyms (each at every occurrence) by one random
    synonym each; words are taken in random order; unchanged when no word has synonyms."""
    out = seg.copy()
    having = list(dict.fromkeys(w for w in out.words if synonyms.of(w)))
    rng.shuffle(having)
    chosen = {word: rng.choice(synonyms.of(word)) for word in having[: changes(rate, len(seg.words))]}
    out.words = [chosen.get(w, w) for w in out.words]
    return out


# ---- examples ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentSettings:
    """ops: the operations used, in order; rates: one per operation (EDA's alpha); aug_per_example: the
    augmented copies of each example; seed: the random seed."""

    ops: tuple[str, ...] = OPS
    rates: dict = field(default_factory=lambda: {op: 0.1 for op in OPS})
    aug_per_example: int = 4
    seed: int = 7

    def check(self, has_synonyms: bool) -> None:
        """ValueError naming the flag, its value and the rule (has_synonyms: a synonym source is given)."""
        if not self.ops:
            raise ValueError("--ops is empty: give at least one of " + ", ".join(OPS))
        for op in self.ops:
            if op not in OPS:
                raise ValueError(f"--ops has '{op}': the operations are {', '.join(OPS)}")
            if not 0 < self.rates[op] <= 1:
                raise ValueError(f"--{op}_rate has value {self.rates[op]}: must be in (0, 1] (or leave '{op}' out of "
                                 "--ops)")
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"--ops {','.join(self.ops)} names an operation twice")
        if self.aug_per_example <= 0:
            raise ValueError(f"--aug_per_example has value {self.aug_per_example}: must be positive")
        need = [op for op in self.ops if op in ("insert", "synonym")]
        if need and not has_synonyms:
            raise ValueError(f"--ops has {', '.join(need)}: they need synonyms: give --synonyms_path (one group per "
                             "line) or --load_model_path (its embedding neighbours), or leave them out of --ops")


def augment_text(seg: Segmented, op: str, rate: float, rng: random.Random,
                 synonyms: Optional[SynonymTable]) -> Segmented:
    """`seg` changed by one operation `op` (in OPS)."""
    if op == "swap":
        return random_swap(seg, rate, rng)
    if op == "delete":
        return random_deletion(seg, rate, rng)
    if op == "insert":
        return random_insertion(seg, rate, rng, synonyms)
    if op == "synonym":
        return synonym_replacement(seg, rate, rng, synonyms)
    raise ValueError(f"operation '{op}': must be one of {', '.join(OPS)}")


def augment_row(texts: Sequence[Segmented], index: int, settings: AugmentSettings,
                synonyms: Optional[SynonymTable]) -> list[tuple[str, list[str]]]:
    """The aug_per_example copies of row `index` whose text columns are `texts` (text_a[, text_b]):
    (operation, texts) each; one operation per copy, applied to every text of the row."""
    rng = random.Random(f"{settings.seed}:{index}")
    first = rng.randrange(len(settings.ops))
    out = []
    for k in range(settings.aug_per_example):
        op = settings.ops[(first + k) % len(settings.ops)]
        out.append((op, [augment_text(t, op, settings.rates[op], rng, synonyms).text() for t in texts]))
    return out


@dataclass
class AugmentResult:
    """header, rows (values in header order), and counts: input rows, copies written, copies equal to their row."""

    header: list[str]
    rows: list[list[str]]
    examples: int
    copies: int
    unchanged: int
    by_op: dict = field(default_factory=dict)


TEXT_COLUMNS = ("text_a", "text_b")


def read_rows(path: str) -> tuple[list[str], list]:
    """(header, rows) of a UER-py classification TSV: header `label<TAB>text_a[<TAB>text_b]` (other
    columns are kept); TaskDataError naming file:line and the rule for a malformed line."""
    from uer_ds.tasks.data import read_tsv

    return read_tsv(path, ["label", "text_a"], ["text_b"])


def augment_rows(header: Sequence[str], rows: Sequence, settings: AugmentSettings,
                 segment: Callable[[str], Segmented], synonyms: Optional[SynonymTable], keep_original: bool = False,
                 progress: bool = True) -> AugmentResult:
    """Each row's copies (the row itself first with keep_original), labels and other columns kept; rows
    from read_rows.  Raises TaskDataError naming file:line for an empty text or label."""
    from tqdm import tqdm

    from uer_ds.tasks.data import text_column

    columns = [c for c in TEXT_COLUMNS if c in header]
    result = AugmentResult(list(header), [], len(rows), 0, 0, {op: 0 for op in settings.ops})
    for index, row in enumerate(tqdm(rows, desc="augment", unit="row", disable=not progress)):
        texts = [text_column(row, c) for c in columns]
        if not row.values["label"].strip():
            raise row.error("label is empty: every example needs its label")
        if keep_original:
            result.rows.append([row.values[c] for c in header])
        for op, new in augment_row([segment(t) for t in texts], index, settings, synonyms):
            values = dict(row.values, **dict(zip(columns, new)))
            result.rows.append([values[c] for c in header])
            result.copies += 1
            result.unchanged += new == texts
            result.by_op[op] += 1
    return result


def write_tsv(path: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The TSV at `path`, written whole under a temporary name and renamed (uer_ds.atomic), under the
    output's lock (uer_ds.outputs: one writer per output)."""
    from uer_ds.atomic import atomic_path
    from uer_ds.outputs import lock_output

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"--output_path {path}: is a directory; give a file path")
    with lock_output(target, "--output_path", prefix=True), atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\t".join(header) + "\n")
            for row in rows:
                handle.write("\t".join(row) + "\n")


__all__ = ["AugmentResult", "AugmentSettings", "OPS", "SEGMENTS", "Segmented", "SynonymTable", "augment_rows",
           "augment_row", "augment_text", "changes", "from_spans", "random_deletion", "random_insertion",
           "random_swap", "read_rows", "segmenter", "synonym_replacement", "write_tsv"]
