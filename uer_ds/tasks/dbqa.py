"""Document-based question answering (NLPCC-DBQA; UER-py's run_dbqa): score each (question,
sentence) pair, rank each question's sentences, report MRR and MAP over questions.

Data: TSV with a header, `label<TAB>text_a<TAB>text_b` (label 1: the sentence answers the question
text_a), optionally a `qid` column (UER-py's NLPCC-DBQA files have one).  Rows are grouped into
questions by qid, or by the question text when there is no qid column.  The model is the sentence-
pair classifier (its head and batches); a pair's score is its probability of label 1.
`uer-ds infer dbqa` writes TSV: label, score, rank (1 = best within its question).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from uer_ds.config import ModelConfig
from uer_ds.tasks.base import TaskData, TaskOptions
from uer_ds.tasks.classifier import ClassifierOptions, ClassifierTask, softmax
from uer_ds.tasks.data import Example, encode_texts, parse_label, read_tsv, text_column
from uer_ds.tasks.scoring import ranking_metrics
from uer_ds.tokenizers import Tokenizer


def groups_of(examples: Sequence[Example]) -> dict[str, list[int]]:
    """question key -> indices of its rows, in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        out.setdefault(e.extra["group"], []).append(i)
    return out


@dataclass(frozen=True)
class DbqaOptions(ClassifierOptions):
    """dbqa: the three files; no inference flags."""

    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path")
    INFER: ClassVar[tuple[str, ...]] = ()


class DbqaTask(ClassifierTask):
    name = "dbqa"
    uer_2020_output_path = "models/dbqa_model.bin"
    help = "document-based QA: score question-sentence pairs, MRR / MAP over questions (NLPCC-DBQA; UER-py run_dbqa)"
    metrics = ("mrr", "map", "accuracy")
    reads_models_of = ()

    options = DbqaOptions

    def read(self, path: str, tokenizer: Tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[TaskOptions] = None) -> list[Example]:
        header, rows = read_tsv(path, ["label", "text_a", "text_b"] if labelled else ["text_a", "text_b"],
                                optional=["qid"])
        examples = []
        for row in rows:
            question, sentence = text_column(row, "text_a"), text_column(row, "text_b")
            group = text_column(row, "qid").strip() if "qid" in header else question
            src, seg = encode_texts(tokenizer, [question, sentence], seq_length)
            label = parse_label(row, 2) if labelled else None
            examples.append(Example(row.where, {"text_a": question, "text_b": sentence}, src, seg, label,
                                    {"group": group}))
        return examples

    def load(self, options: TaskOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        spec = {"labels_num": 2, "pooling": cfg.pooling, "soft": False, "pair": True}
        read = lambda path: self.read(path, tokenizer, seq_length, spec, True)  # noqa: E731
        return TaskData({"dbqa": spec}, [read(options.train_path)], [read(options.dev_path)],
                        [read(options.test_path) if options.test_path else None])

    # ---- evaluation and output ------------------------------------------------------------------
    @staticmethod
    def scores(outputs: Sequence[Any]) -> np.ndarray:
        """P(label 1) per pair."""
        return softmax(np.stack(outputs).astype(np.float64))[:, 1]

    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        scores = self.scores(outputs)
        groups = [([examples[i].tgt for i in rows], [scores[i] for i in rows]) for rows in groups_of(examples).values()]
        metrics = ranking_metrics(groups)
        gold = np.array([e.tgt for e in examples], dtype=np.int64)
        pair = super().evaluate(examples, outputs, spec, DbqaOptions())
        metrics.update(pairs=int(len(gold)), accuracy=pair["accuracy"], macro_f1=pair["macro_f1"])
        return metrics

    def format_report(self, metrics: dict, title: str) -> str:
        left_out = (f", {metrics['questions_without_answer']} without a right sentence left out"
                    if metrics["questions_without_answer"] else "")
        return (f"{title}: {metrics['questions']} questions ({metrics['pairs']} pairs{left_out})  "
                f"MRR {metrics['mrr']:.4f}  MAP {metrics['map']:.4f}  top-1 {metrics['top1_accuracy']:.4f}  "
                f"pair accuracy {metrics['accuracy']:.4f}")

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        """Questions whose best-scored sentence is not a right one."""
        scores = self.scores(outputs)
        rows = []
        for group, indices in groups_of(examples).items():
            top = max(indices, key=lambda i: scores[i])  # the first of equal scores, as the ranking takes it
            right = [i for i in indices if examples[i].tgt == 1]
            if right and examples[top].tgt != 1:
                best_right = max(right, key=lambda i: scores[i])
                rows.append([examples[indices[0]].source, group, examples[top].text["text_a"],
                             examples[top].text["text_b"], f"{scores[top]:.4f}", examples[best_right].text["text_b"],
                             f"{scores[best_right]:.4f}"])
        return ["source", "question", "text_a", "top_sentence", "top_score", "right_sentence", "right_score"], rows

    def write_prediction_file(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                              options: TaskOptions, chunk: int = 4096) -> None:
        scores = self.scores(outputs)
        rank = np.zeros(len(examples), dtype=np.int64)
        for indices in groups_of(examples).values():
            for position, i in enumerate(sorted(indices, key=lambda i: -scores[i]), start=1):
                rank[i] = position
        handle.write("label\tscore\trank\n")
        for score, r in zip(scores, rank):
            handle.write(f"{int(score > 0.5)}\t{score:.6f}\t{r}\n")


__all__ = ["DbqaOptions", "DbqaTask", "groups_of"]
