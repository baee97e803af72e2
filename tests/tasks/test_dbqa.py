"""DBQA: MRR and MAP against hand-ranked question groups, grouping by qid or by question text, the
TSV checks, and the prediction file's ranks.  The data is a tiny hand-made set (no shared DBQA data)."""
from __future__ import annotations

import io

import numpy as np
import pytest

from uer_ds.tasks import TASKS, TaskDataError
from uer_ds.tasks.scoring import ranking_metrics
from uer_ds.tokenizers import BertTokenizer, Vocab

# Four questions, worked by hand.  Candidates sorted by score, ties in input order:
#   q1 labels 0 1 0 1, scores .9 .8 .1 .5 -> order 0 1 3 2: right at ranks 2, 3 -> RR 1/2, AP (1/2 + 2/3) / 2 = 7/12
#   q2 labels 1 0 0,   scores .7 .2 .3    -> right at rank 1                   -> RR 1,   AP 1
#   q3 labels 0 0                          -> no right sentence: left out
#   q4 labels 0 0 1,   scores .5 .5 .5    -> a tie: input order, rank 3       -> RR 1/3, AP 1/3
GROUPS = [([0, 1, 0, 1], [0.9, 0.8, 0.1, 0.5]), ([1, 0, 0], [0.7, 0.2, 0.3]), ([0, 0], [0.4, 0.6]),
          ([0, 0, 1], [0.5, 0.5, 0.5])]
MRR = (1 / 2 + 1 + 1 / 3) / 3  # 11/18
MAP = (7 / 12 + 1 + 1 / 3) / 3  # 23/36


def test_mrr_and_map_equal_hand_computed_values():
    metrics = ranking_metrics(GROUPS)
    assert metrics["mrr"] == pytest.approx(11 / 18) == pytest.approx(MRR)
    assert metrics["map"] == pytest.approx(23 / 36) == pytest.approx(MAP)
    assert (metrics["questions"], metrics["ranked_questions"], metrics["questions_without_answer"]) == (4, 3, 1)
    assert metrics["top1_accuracy"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"甲乙丙丁问答一二三四是的"]))


def hand_made(with_qid: bool) -> str:
    """The GROUPS above as TSV: question text_a, candidate sentence text_b."""
    lines = ["label\tqid\ttext_a\ttext_b" if with_qid else "label\ttext_a\ttext_b"]
    for g, (labels, _) in enumerate(GROUPS):
        for k, label in enumerate(labels):
            lines.append("\t".join([str(label)] + ([f"q{g}"] if with_qid else []) + [f"问{'甲乙丙丁'[g]}", f"答{k}"]))
    return "\n".join(lines) + "\n"


def logits_for(scores):
    """Two-class logits whose P(label 1) is the given score."""
    return [np.array([0.0, np.log(s / (1 - s))]) for s in scores]


@pytest.mark.parametrize("with_qid", [False, True])
def test_task_groups_questions_and_scores_them(tmp_path, tokenizer, with_qid):
    path = tmp_path / "dev.tsv"
    path.write_text(hand_made(with_qid), encoding="utf-8")
    task = TASKS["dbqa"]
    examples = task.read(str(path), tokenizer, 16, {}, labelled=True)
    assert len(examples) == 12 and examples[0].source == f"{path}:2"
    outputs = logits_for([s for _, scores in GROUPS for s in scores])
    metrics = task.evaluate(examples, outputs, {}, task.options())
    assert metrics["mrr"] == pytest.approx(MRR) and metrics["map"] == pytest.approx(MAP)
    assert metrics["pairs"] == 12
    # pair accuracy, label 1 when P(1) > 0.5 (a tie is class 0): q1 predicts 1 1 0 0 (2 right), q2 1 0 0 (3),
    # q3 0 1 (1), q4 0 0 0 (2) -> 8 of 12
    assert metrics["accuracy"] == pytest.approx(8 / 12)
    handle = io.StringIO()
    task.write_prediction_file(handle, examples, outputs, {}, task.options())
    rows = [line.split("\t") for line in handle.getvalue().splitlines()]
    assert rows[0] == ["label", "score", "rank"]
    assert [int(r[2]) for r in rows[1:]] == [1, 2, 4, 3, 1, 3, 2, 2, 1, 1, 2, 3]
    header, bad = task.bad_cases(examples, outputs, {})
    assert [row[1] for row in bad] == (["q0", "q3"] if with_qid else ["问甲", "问丁"])  # right sentence not on top


def test_qid_separates_questions_with_the_same_text(tmp_path, tokenizer):
    path = tmp_path / "dev.tsv"
    path.write_text("label\tqid\ttext_a\ttext_b\n1\t1\t问\t甲\n0\t1\t问\t乙\n0\t2\t问\t甲\n1\t2\t问\t乙\n", encoding="utf-8")
    examples = TASKS["dbqa"].read(str(path), tokenizer, 16, {}, labelled=True)
    metrics = TASKS["dbqa"].evaluate(examples, logits_for([0.9, 0.1, 0.9, 0.1]), {}, TASKS["dbqa"].options())
    assert metrics["questions"] == 2 and metrics["mrr"] == pytest.approx((1 + 1 / 2) / 2)


@pytest.mark.parametrize("content, message", [
    ("label\ttext_a\ttext_b\n2\t问\t答\n", r"dev.tsv:2: label 2 is out of range: labels must be in 0..1"),
    ("label\ttext_a\n1\t问\n", r"dev.tsv:1: header \['label', 'text_a'\] lacks column\(s\) \['text_b'\]"),
    ("label\tqid\ttext_a\ttext_b\n1\t \t问\t答\n", r"dev.tsv:2: qid is empty"),
    ("label\ttext_a\ttext_b\n1\t问\t\n", r"dev.tsv:2: text_b is empty"),
])
def test_tsv_errors_name_file_line_value_and_rule(tmp_path, tokenizer, content, message):
    path = tmp_path / "dev.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskDataError, match=message):
        TASKS["dbqa"].read(str(path), tokenizer, 16, {}, labelled=True)
