"""Span MRC (CMRC2018): the scorer against hand-computed EM/F1, tokens with character offsets against
the tokenizer and the raw text, doc-stride windows (every gold answer recoverable from some window,
or reported), n-best decoding against brute force, and malformed JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import shared
from uer_ds.config import ModelConfig
from uer_ds.tasks import TASKS, TaskDataError, TaskModel
from uer_ds.tasks.data import Example
from uer_ds.tasks.mrc import best_span, read_squad, tokenize_with_offsets, window_starts
from uer_ds.tasks.scoring import cmrc_em, cmrc_f1, cmrc_metrics
from uer_ds.tokenizers import TOKENIZERS, build_tokenizer
from uer_ds.tokenizers.base import gives_offsets

# (gold answers, prediction, EM, F1), F1 worked out by hand from the CMRC2018 rules: characters without
# punctuation, overlap = the longest common substring, P = overlap / len(pred), R = overlap / len(gold)
SCORER_CASES = [
    (["北京大学"], "北京大学", 1, 1.0),
    (["“北京大学”。"], "北京大学", 1, 1.0),  # punctuation does not count
    (["Port Royal"], " port royal ", 1, 1.0),  # case and outer spaces do not count
    (["北京大学"], "在北京大学", 0, 2 * (4 / 5) * 1 / (4 / 5 + 1)),  # 8/9
    (["甲乙丙丁"], "甲乙戊丙丁", 0, 2 * (2 / 5) * (2 / 4) / (2 / 5 + 2 / 4)),  # substring 甲乙: 4/9, not 4 chars
    (["村雨城", "任天堂游戏谜之村雨城"], "谜之村雨城", 0, 0.75),  # max(2*.6*1/1.6, 2*1*.5/1.5)
    (["ω-force"], "force", 0, 2 * 1 * (5 / 6) / (1 + 5 / 6)),  # 10/11: '-' removed, 6 characters
    (["1963年"], "", 0, 0.0),
    (["1963年"], "。", 0, 0.0),
]


@pytest.mark.parametrize("golds, prediction, em, f1", SCORER_CASES)
def test_scorer_equals_hand_computed_cases(golds, prediction, em, f1):
    assert cmrc_em(golds, prediction) == em
    assert cmrc_f1(golds, prediction) == pytest.approx(f1)


def test_scorer_averages_over_questions():
    metrics = cmrc_metrics([["北京大学"], ["甲乙丙丁"]], ["在北京大学", "甲乙丙丁"])
    assert metrics["em"] == 0.5
    assert metrics["f1"] == pytest.approx((8 / 9 + 1) / 2)
    assert metrics["average"] == pytest.approx((0.5 + (8 / 9 + 1) / 2) / 2)


# ---- tokens, offsets, windows --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("bert", shared("models/google_zh_vocab.txt"))


@pytest.fixture(scope="module")
def cmrc():
    return shared("datasets/test_data/cmrc")


def test_offsets_give_back_each_token(tokenizer, cmrc):
    texts = [q["context"] for q in read_squad(str(cmrc / "train.json"), True)]
    texts += ["《战国无双3》是由光荣和ω-force开发的 Hello World，USS Port Royal CG-73\u200b好 tokenization"]
    for text in set(texts):
        ids, offsets = tokenize_with_offsets(tokenizer, text)
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert tokens == tokenizer.tokenize(text)
        assert all(a < b for a, b in offsets) and all(b1 <= a2 for (_, b1), (a2, _) in zip(offsets, offsets[1:]))
        for token, (a, b) in zip(tokens, offsets):
            if token != "[UNK]":
                assert text[a:b].lower() == token.removeprefix("##"), (token, text[a:b])


ISSUE_CONTEXTS = ["The infor\u00admation desk of Micro\u200bsoft opened in 1998.",
                  "The infor\x10mation desk of Micro\u200bsoft opened in 1998."]


def test_issue_case_windows_hold_the_tokenizers_words(tmp_path):
    """A soft hyphen, a zero-width space or a control inside a word: the windows hold the words the
    tokenizer (and so pre-training) makes, not 'info ##r mat ##ion ... micro soft'."""
    english = build_tokenizer("bert", shared("models/google_uncased_en_vocab.txt"))
    path = tmp_path / "issue.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [
        {"context": c, "qas": [{"id": str(i), "question": "When?", "answers": [{"text": "1998", "answer_start": 46}]}]}
        for i, c in enumerate(ISSUE_CONTEXTS)]}]}))
    spec = {"doc_stride": 16, "max_query_length": 8, "max_answer_length": 8, "n_best_size": 4}
    for example in TASKS["cmrc"].read(str(path), english, 32, spec, labelled=True):
        first = example.extra["first"]
        window = english.convert_ids_to_tokens(example.src[first:-1])
        assert window == ["the", "information", "desk", "of", "microsoft", "opened", "in", "1998", "."]
        assert example.tgt == (first + 7, first + 7)


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_window_ids_equal_the_tokenizers_ids_for_every_tokenizer(kind, cmrc):
    """Every registered tokenizer that gives offsets: each window's context ids are the slice of
    tokenizer.encode(context) it covers, and the windows together cover all of it.  Others are refused."""
    if kind == "spm":
        tokenizer = build_tokenizer("spm", spm_model_path=shared("models/cluecorpussmall_spm.model"))
    else:
        tokenizer = build_tokenizer(kind, shared("models/google_zh_vocab.txt"))
    spec = {"doc_stride": 24, "max_query_length": 16, "max_answer_length": 30, "n_best_size": 20}
    path = str(cmrc / "train.json")
    if not gives_offsets(tokenizer):
        with pytest.raises(ValueError, match="reading comprehension needs each token's character offsets"):
            TASKS["cmrc"].read(path, tokenizer, 64, spec, labelled=True)
        return
    covered: dict[str, set] = {}
    encoded: dict[str, list[int]] = {}
    for example in TASKS["cmrc"].read(path, tokenizer, 64, spec, labelled=True):
        context = example.text["context"]
        ids = encoded.setdefault(context, tokenizer.encode(context))
        first, begin = example.extra["first"], example.extra["begin"]
        window = example.src[first:-1]
        assert window == ids[begin: begin + len(window)]
        covered.setdefault(context, set()).update(range(begin, begin + len(window)))
    assert all(covered[c] == set(range(len(encoded[c]))) for c in encoded)


@pytest.mark.parametrize("length, room, stride", [(10, 4, 2), (10, 4, 4), (3, 8, 2), (17, 5, 9), (8, 8, 3)])
def test_windows_cover_every_token(length, room, stride):
    starts = window_starts(length, room, stride)
    assert starts[0] == 0 and starts[-1] + room >= length
    assert all(b - a == min(stride, room) for a, b in zip(starts, starts[1:]))
    assert starts[-1] < length or length == 0


def gold_in_window(example: Example, text: str, start: int) -> bool:
    """Some token span of this window maps back to exactly the gold characters (surrounding spaces,
    which no token holds, aside)."""
    start, text = start + len(text) - len(text.lstrip()), text.strip()
    offsets = example.extra["offsets"]
    starts = [i for i, (a, _) in enumerate(offsets) if a == start]
    ends = [i for i, (_, b) in enumerate(offsets) if b == start + len(text)]
    return any(e >= s for s in starts for e in ends) and example.text["context"][start: start + len(text)] == text


@pytest.mark.parametrize("seq_length, stride", [(64, 16), (48, 40), (256, 128)])
def test_every_gold_answer_is_recoverable_from_a_window_or_reported(tokenizer, cmrc, capsys, seq_length, stride):
    path = str(cmrc / "train.json")
    spec = {"doc_stride": stride, "max_query_length": 16, "max_answer_length": 64, "n_best_size": 20}
    examples = TASKS["cmrc"].read(path, tokenizer, seq_length, spec, labelled=True)
    notes = capsys.readouterr().out
    windows: dict[str, list[Example]] = {}
    for e in examples:
        windows.setdefault(e.text["id"], []).append(e)
        assert len(e.src) <= seq_length and e.seg[0] == 1 and e.seg[-1] == 2
    missed = []
    for question in read_squad(path, True):
        for text, start in question["answers"]:
            if not any(gold_in_window(w, text, start) for w in windows[question["id"]]):
                missed.append(question["id"])
        # training labels: the first answer's tokens in a window holding it whole, else [CLS] (0, 0)
        text, start = question["answers"][0]
        for w in windows[question["id"]]:
            s, e = w.tgt
            if (s, e) == (0, 0):
                assert not gold_in_window(w, text, start) or question["id"] in missed
            else:
                first = w.extra["first"]
                a, b = w.extra["offsets"][s - first][0], w.extra["offsets"][e - first][1]
                assert question["context"][a:b] == text
    if missed:
        assert f"{len(set(missed))} question(s) with a gold answer that no window's tokens give back exactly" in notes
        assert all(q in notes for q in sorted(set(missed), key=missed.index)[:3])
    else:
        assert "no window's tokens give back" not in notes
    if seq_length == 256:  # windows overlapping by more than the longest answer: all recovered
        assert not missed


# ---- decoding ------------------------------------------------------------------------------------
def brute_force(start, end, first, count, n_best, max_length):
    top_s = set(np.argsort(-start[first: first + count], kind="stable")[:n_best] + first)
    top_e = set(np.argsort(-end[first: first + count], kind="stable")[:n_best] + first)
    best = None
    for s in range(first, first + count):
        for e in range(s, min(first + count, s + max_length)):
            if s in top_s and e in top_e:
                score = start[s] + end[e]
                if best is None or score > best[0]:
                    best = (score, s, e)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_span_equals_brute_force_and_keeps_constraints(seed):
    rng = np.random.default_rng(seed)
    start, end = rng.normal(size=30), rng.normal(size=30)
    first, count = 5, 20
    start[:first] += 10.0  # the question's positions score high but are never chosen
    for n_best, max_length in [(20, 20), (3, 4), (5, 1), (1, 30)]:
        found = best_span(start, end, first, count, n_best, max_length)
        expected = brute_force(start, end, first, count, n_best, max_length)
        assert (found is None) == (expected is None)
        if found is not None:
            score, s, e = found
            assert (s, e) == expected[1:] and score == pytest.approx(expected[0])
            assert first <= s <= e < first + count and e - s + 1 <= max_length


def test_best_span_none_when_every_end_precedes_every_start():
    start = np.array([0.0, 0.0, 0.0, 5.0])
    end = np.array([0.0, 5.0, 0.0, -9.0])
    assert best_span(start, end, 0, 4, 1, 10) is None  # top start 3, top end 1


def test_question_answer_is_the_best_span_over_its_windows():
    context = "甲乙丙丁戊己庚"
    offsets = [(i, i + 1) for i in range(len(context))]
    text = {"id": "q1", "question": "?", "context": context}
    windows = [Example("w0", text, [0] * 7, [1] * 7, None, {"first": 2, "begin": 0, "offsets": offsets[0:4],
                                                             "answers": ["丙丁"]}),
               Example("w1", text, [0] * 7, [1] * 7, None, {"first": 2, "begin": 3, "offsets": offsets[3:7],
                                                             "answers": ["丙丁"]})]
    low = (np.array([0, 0, 1.0, 0, 2.0, 0, 0]), np.array([0, 0, 0, 0, 0, 2.0, 0]))  # 丙丁: score 4
    high = (np.array([9.0, 9.0, 0, 3.0, 0, 0, 0]), np.array([9.0, 0, 0, 0, 0, 2.5, 0]))  # 戊己庚: 5.5 (not [CLS])
    answers = TASKS["cmrc"].answers(windows, [low, high], {"n_best_size": 20, "max_answer_length": 10}, None)
    assert answers == {"q1": ("戊己庚", 5.5)}  # window 1 starts at character 3: positions 3..5 = 戊己庚
    answers = TASKS["cmrc"].answers(windows, [low, high], {"n_best_size": 20, "max_answer_length": 2}, None)
    assert answers["q1"][0] == "丙丁"  # the 3-token span is too long now
    metrics = TASKS["cmrc"].evaluate(windows, [low, high], {"n_best_size": 20, "max_answer_length": 2},
                                     TASKS["cmrc"].options())
    assert (metrics["questions"], metrics["em"], metrics["f1"]) == (1, 1.0, 1.0)


def test_span_head_loss_by_formula():
    cfg = ModelConfig.from_json("bert/tiny", {"hidden_size": 16, "emb_size": 16, "heads_num": 2, "layers_num": 1,
                                              "feedforward_size": 32, "vocab_size": 30, "dropout": 0.0})
    torch.manual_seed(0)
    model = TaskModel(cfg, TASKS["cmrc"].build_heads(cfg, {"cmrc": {}}))
    model.init_weights()
    src, seg = torch.randint(5, 30, (3, 6)), torch.tensor([[1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 0, 0], [1, 2, 2, 2, 2, 0]])
    tgt = {"start": torch.tensor([2, 0, 3]), "end": torch.tensor([4, 0, 3]), "task": torch.tensor([0])}
    result = model(src, tgt, seg)
    with torch.no_grad():
        start, end = model.target["cmrc"].output_layer(model.encode(src, seg)).unbind(-1)
        start, end = start.masked_fill(seg == 0, -1e4), end.masked_fill(seg == 0, -1e4)
        expected = (F.cross_entropy(start, tgt["start"]) + F.cross_entropy(end, tgt["end"])) / 2
        predicted = model(src, None, seg, predict=True)
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(predicted[0], start)


# ---- malformed input -----------------------------------------------------------------------------
def squad(context="甲乙丙丁", qas=None):
    qas = qas if qas is not None else [{"id": "Q1", "question": "问", "answers": [{"text": "乙丙", "answer_start": 1}]}]
    return {"version": "v1", "data": [{"paragraphs": [{"id": "P", "context": context, "qas": qas}]}]}


@pytest.mark.parametrize("content, message", [
    ('{"data": [\n{"paragraphs": ]}', r":2:16: not valid JSON"),
    (json.dumps({"version": 1}), r"top level must be an object with a 'data' list"),
    (json.dumps(squad(qas=[{"id": "Q1", "question": "问", "answers": [{"text": "乙丙", "answer_start": -2}]}])),
     r"question id Q1 answer 0: answer_start is -2: it is the answer's character offset in the context \(>= 0\)"),
    (json.dumps(squad(qas=[{"id": "Q1", "question": "问", "answers": [{"text": " ", "answer_start": 0}]}])),
     r"question id Q1 answer 0: 'text' is empty: an answer needs text"),
    (json.dumps(squad(qas=[{"id": "Q1", "question": "问", "answers": []}])),
     r"question id Q1: 'answers' is empty: a labelled question needs at least one answer"),
    (json.dumps(squad(qas=[{"id": "Q1", "question": "问", "answers": [{"text": "乙", "answer_start": "1"}]}])),
     r"question id Q1 answer 0: 'answer_start' is '1': an answer has an integer 'answer_start'"),
    (json.dumps(squad(qas=[{"id": "Q1", "question": "问", "answers": [{"text": "乙", "answer_start": 1}]}] * 2)),
     r"question id Q1: the id occurs twice"),
    (json.dumps(squad(context="  ")), r"data\[0\].paragraphs\[0\]: 'context' is empty"),
    (json.dumps(squad(qas=[{"question": "问", "answers": []}])), r"qas\[0\]: 'id' is None: every question needs an id"),
])
def test_malformed_json_errors_name_file_question_value_and_rule(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskDataError, match=message) as err:
        read_squad(str(path), labelled=True)
    assert str(path) in str(err.value)


def test_answer_start_off_its_text_gives_way_to_the_nearest_occurrence(tmp_path):
    qas = [{"id": "Q1", "question": "问", "answers": [{"text": "乙丙", "answer_start": 6},  # 乙丙 at 1 and 5
                                                     {"text": "乙丙", "answer_start": -1},  # -1, yet it occurs
                                                     {"text": "戊", "answer_start": 2},  # nowhere
                                                     {"text": "丙丁", "answer_start": 2}]}]  # right
    path = tmp_path / "t.json"
    path.write_text(json.dumps(squad(context="甲乙丙丁甲乙丙", qas=qas)), encoding="utf-8")
    (question,) = read_squad(str(path), True)
    assert question["answers"] == [("乙丙", 5), ("乙丙", 1), ("戊", -1), ("丙丁", 2)] and question["moved"] == 3


def test_unlocated_answers_skip_training_questions_but_count_in_evaluation(tmp_path, tokenizer, capsys):
    qas = [{"id": "Q1", "question": "问", "answers": [{"text": "乙丙", "answer_start": 1}]},
           {"id": "Q2", "question": "问", "answers": [{"text": "不在文中", "answer_start": -1}]}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(squad(qas=qas)), encoding="utf-8")
    spec = {"doc_stride": 8, "max_query_length": 8, "max_answer_length": 8, "n_best_size": 5}
    train = TASKS["cmrc"].read(str(path), tokenizer, 32, spec, True, TASKS["cmrc"].options())
    assert [e.text["id"] for e in train] == ["Q1"] and train[0].tgt == (4, 5)  # [CLS] 问 [SEP] 甲 乙 丙
    notes = capsys.readouterr().out
    assert "1 question(s) skipped for training: no answer occurs in the context (e.g. Q2)" in notes
    assert "1 answer(s) not at their answer_start" not in notes  # -1 and absent: nothing moved
    dev = TASKS["cmrc"].read(str(path), tokenizer, 32, spec, True)
    assert [e.text["id"] for e in dev] == ["Q1", "Q2"] and dev[1].tgt is None
    with pytest.raises(ValueError, match=r"--seq_length 4 leaves no room for the context"):
        TASKS["cmrc"].read(str(path), tokenizer, 4, spec, True)
