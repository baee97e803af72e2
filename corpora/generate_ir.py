"""Write a small IR relevance file (ERNIE 2.0's query<TAB>title<TAB>label, label 0 strong, 1 weak,
2 irrelevant) from a corpus of sentences with blank lines between documents, so that the ir_relevance
task runs without search logs:

    python corpora/generate_ir.py      # corpora/reviews_bert.txt -> corpora/ir_relevance.tsv
    python corpora/generate_ir.py --corpus C --output OUT.tsv --documents 3000

For each document with two sentences or more (the first `--documents`): its first sentence is the query,
and three titles are drawn:
  0 strong      the document's own next sentences (up to --title_chars characters)
  1 weak        the opening of another document that shares the most characters with the query (its
                character bigrams, a book title in 《》 counting as one whole unit), among --candidates
                documents drawn at random
  2 irrelevant  the opening of the document that shares the fewest, among the same candidates
This stands in for clicked, shown-but-not-clicked and random titles of a search log; it teaches the
head what lexical overlap means, not what users want.  Deterministic (--seed).
"""
from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
TITLE = re.compile(r"《[^》]*》")


def documents(path: Path) -> list[list[str]]:
    docs, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line.strip().replace("\t", " "))
        elif current:
            docs.append(current)
            current = []
    if current:
        docs.append(current)
    return docs


def units(text: str) -> set[str]:
    titles = set(TITLE.findall(text))
    rest = TITLE.sub(" ", text)
    return titles | {rest[i:i + 2] for i in range(len(rest) - 1) if not rest[i:i + 2].isspace()}


def opening(sentences: list[str], chars: int) -> str:
    out = ""
    for sentence in sentences:
        if out and len(out) + len(sentence) > chars:
            break
        out += sentence
    return out[:chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(HERE / "reviews_bert.txt"))
    parser.add_argument("--output", default=str(HERE / "ir_relevance.tsv"))
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--title_chars", type=int, default=48)
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    docs = documents(Path(args.corpus))
    keys = [units("".join(d)) for d in docs]
    rows = []
    for d, doc in enumerate(docs):
        if len(rows) >= 3 * args.documents:
            break
        if len(doc) < 2:
            continue
        query = doc[0]
        want = units(query)
        others = [k for k in rng.sample(range(len(docs)), min(args.candidates + 1, len(docs))) if k != d]
        others = others[: args.candidates]
        ranked = sorted(others, key=lambda k: (-len(want & keys[k]), k))
        rows.append((query, opening(doc[1:], args.title_chars), 0))
        rows.append((query, opening(docs[ranked[0]], args.title_chars), 1))
        rows.append((query, opening(docs[ranked[-1]], args.title_chars), 2))
    with open(args.output, "w", encoding="utf-8") as out:
        for query, title, label in rows:
            out.write(f"{query}\t{title}\t{label}\n")
    print(f"{len(rows)} lines ({len(rows) // 3} queries) -> {args.output}")


if __name__ == "__main__":
    main()
