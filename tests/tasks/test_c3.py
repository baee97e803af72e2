"""Multiple choice (C3): the JSON checks, the input layout, batches with different option counts
(stand-in options masked: a question scores the same alone or beside a longer one), and the loss as
a softmax over each question's real options, written out here."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uer_ds.config import ModelConfig
from uer_ds.tasks import TASKS, TaskDataError, TaskModel
from uer_ds.tasks.multiple_choice import encode_choice, read_c3
from uer_ds.tokenizers import BertTokenizer, Vocab

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"男女听说你们公司要派去南方工作他在谈论什么旅行环境家庭是呀"]


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(Vocab(TOKENS))


def document(questions, doc_id="7-1"):
    return [["男：听说你们公司要派你去南方工作?", "女：是呀。"], questions, doc_id]


QUESTION = {"question": "他们在谈论什么?", "choice": ["旅行", "环境", "工作", "家庭"], "answer": "工作"}


def write(tmp_path, data):
    path = tmp_path / "c3.json"
    path.write_text(json.dumps(data, ensure_ascii=False) if not isinstance(data, str) else data, encoding="utf-8")
    return str(path)


def test_ids_answers_and_option_counts(tmp_path):
    two = {"question": "说什么?", "choice": ["工作", "家庭"], "answer": "家庭"}
    data = [document([QUESTION, two]), [["女：是呀。"], [{"id": 42, **two}]]]
    questions = read_c3(write(tmp_path, data), labelled=True)
    assert [q["id"] for q in questions] == ["7-1-0", "7-1-1", "42"]
    # a document id that repeats (as in C3's dev set) gets the document's index added
    again = read_c3(write(tmp_path, [document([QUESTION]), document([QUESTION])]), labelled=True)
    assert [q["id"] for q in again] == ["7-1-0", "7-1-0@1"]
    assert [q["answer"] for q in questions] == [2, 1, 1]
    assert questions[0]["context"] == "男：听说你们公司要派你去南方工作?\n女：是呀。"


@pytest.mark.parametrize("data, message", [
    ('[[["男"], [{"question": "?"', r"c3.json:1:\d+: not valid JSON"),
    ({"data": []}, r"top level must be a non-empty list of documents"),
    ([document([dict(QUESTION, answer="开会")])], r"document 0 question id 7-1-0: 'answer' '开会' is not one of the "
                                                  r"options \['旅行', '环境', '工作', '家庭'\]: the answer is the text"),
    ([document([dict(QUESTION, choice=["工作"], answer="工作")])], r"'choice' is \['工作'\]: a list of at least 2"),
    ([document([QUESTION, QUESTION], doc_id="x")] + [[["是"], [dict(QUESTION, id="x-1")]]],
     r"document 1 question id x-1: the id occurs twice"),
    ([[["男"]]], r"document 0: must be a list \[context sentences, questions\(, id\)\]"),
    ([document([dict(QUESTION, question="")])], r"'question' is '': a non-empty string is needed"),
])
def test_malformed_c3_errors_name_file_question_value_and_rule(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(TaskDataError, match=message) as err:
        read_c3(path, labelled=True)
    assert path in str(err.value)


def test_unlabelled_input_needs_no_answer(tmp_path):
    question = {k: v for k, v in QUESTION.items() if k != "answer"}
    assert read_c3(write(tmp_path, [document([question])]), labelled=False)[0]["answer"] is None


def test_layout_cuts_the_context_first(tokenizer):
    option, question, context = tokenizer.encode("工作"), tokenizer.encode("谈论什么"), tokenizer.encode("男女听说你们公司")
    src, seg = encode_choice(tokenizer, option, question, context, 14)
    assert tokenizer.convert_ids_to_tokens(src) == ["[CLS]", "工", "作", "[SEP]", "谈", "论", "什", "么", "[SEP]",
                                                    "男", "女", "听", "说", "[SEP]"]
    assert seg == [1] * 9 + [2] * 5
    src, seg = encode_choice(tokenizer, option, question, context, 7)  # no room for context: the question is cut
    assert tokenizer.convert_ids_to_tokens(src) == ["[CLS]", "工", "作", "[SEP]", "谈", "论", "[SEP]"]
    assert seg == [1] * 6 + [2]


def tiny_model():
    cfg = ModelConfig.from_json("bert/tiny", {"hidden_size": 16, "emb_size": 16, "heads_num": 2, "layers_num": 1,
                                              "feedforward_size": 32, "vocab_size": len(TOKENS), "dropout": 0.0,
                                              "pooling": "first"})
    torch.manual_seed(0)
    model = TaskModel(cfg, TASKS["c3"].build_heads(cfg, {"c3": {"pooling": "first"}}))
    model.init_weights()
    return model.eval()


def test_masked_options_change_nothing_and_loss_is_softmax_over_real_options(tmp_path, tokenizer):
    two = {"question": "说什么?", "choice": ["工作", "家庭"], "answer": "家庭"}
    path = write(tmp_path, [document([QUESTION, two])])
    task = TASKS["c3"]
    four, pair = task.read(path, tokenizer, 24, {"pooling": "first"}, labelled=True)
    batch = task.collate([four, pair], 0, 0)
    assert batch["src"].shape[0] == 8
    assert batch["tgt"]["choice_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch["src"][6, :2].tolist() == [TOKENS.index("[CLS]"), TOKENS.index("[SEP]")]  # stand-in option
    assert batch["seg"][6, :3].tolist() == [1, 1, 0]
    model = tiny_model()
    with torch.no_grad():
        together = model(batch["src"], batch["tgt"], batch["seg"], predict=True)  # (2, 4)
        alone = task.collate([pair], 0, 0)
        pair_scores = model(alone["src"], alone["tgt"], alone["seg"], predict=True)  # (1, 2)
        result = model(batch["src"], batch["tgt"], batch["seg"])
    torch.testing.assert_close(together[1, :2], pair_scores[0], atol=1e-5, rtol=1e-5)
    assert (together[1, 2:] < -1e3).all()
    # mean over questions of -log softmax(real options)[answer]
    expected = np.mean([-torch.log_softmax(together[0], 0)[2].item(), -torch.log_softmax(pair_scores[0], 0)[1].item()])
    assert result.loss.item() == pytest.approx(expected, rel=1e-5)
    metrics = task.evaluate([four, pair], [together[0].numpy(), pair_scores[0].numpy()], {}, task.options())
    right = int(together[0].argmax() == 2) + int(pair_scores[0].argmax() == 1)
    assert metrics["accuracy"] == right / 2 and metrics["options"] == {"2": 1, "4": 1}
