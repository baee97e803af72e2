"""NER: entity extraction and P/R/F1 against seqeval (edge cases and random tag sequences), the
label2id and TSV checks, WordPiece alignment (first piece labelled, continuation pieces ignored),
truncation, and the tagging head's loss and predictions by their formulas."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

from uer_ds.config import ModelConfig
from uer_ds.models.targets.base import IGNORE_INDEX
from uer_ds.tasks import TASKS, TaskDataError, TaskModel
from uer_ds.tasks.data import Example
from uer_ds.tasks.ner import encode_words, read_label2id
from uer_ds.tasks.scoring import entity_metrics, get_entities
from uer_ds.tokenizers import BertTokenizer, Vocab, build_tokenizer

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"]

# (tags, the entities by hand): the cases the BIO reading must get right
EDGE_CASES = [
    (["I-PER", "I-PER", "O"], [("PER", 0, 1)]),  # I- without B- at the start
    (["O", "I-LOC", "O", "B-LOC"], [("LOC", 1, 1), ("LOC", 3, 3)]),  # I- after O; an entity at the very end
    (["B-LOC", "I-PER", "I-PER"], [("LOC", 0, 0), ("PER", 1, 2)]),  # a type change inside starts a new entity
    (["B-ORG", "B-LOC", "I-LOC", "I-ORG"], [("ORG", 0, 0), ("LOC", 1, 2), ("ORG", 3, 3)]),  # nested-looking
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),  # adjacent entities of one type
    (["O", "O", "B-ORG", "I-ORG"], [("ORG", 2, 3)]),  # an entity that ends the sentence
    (["B-LOC", "E-LOC", "I-LOC", "S-PER", "E-PER"], [("LOC", 0, 1), ("LOC", 2, 2), ("PER", 3, 3), ("PER", 4, 4)]),
    ([], []),
]


@pytest.mark.parametrize("tags, expected", EDGE_CASES)
def test_bio_edge_cases_match_hand_and_seqeval(tags, expected):
    assert get_entities(tags) == expected
    assert sorted(get_entities(tags)) == sorted(seqeval_entities(tags))


def test_random_tag_sequences_match_seqeval_entities_and_scores():
    rng = random.Random(0)
    tags = ["O", "O", "B-A", "I-A", "B-B", "I-B", "E-A", "S-B"]
    for _ in range(2000):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 9))]
        assert sorted(get_entities(seq)) == sorted(seqeval_entities(seq)), seq
    bio = ["O", "O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"]
    gold = [[rng.choice(bio) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(bio) for t in g] for g in gold]
    ours = entity_metrics(gold, pred)
    assert ours["precision"] == pytest.approx(precision_score(gold, pred))
    assert ours["recall"] == pytest.approx(recall_score(gold, pred))
    assert ours["f1"] == pytest.approx(f1_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True)
    for row in ours["per_type"]:
        ref = report[row["type"]]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (ref["precision"], ref["recall"], ref["f1-score"], ref["support"]))
    # entities never cross sentences: the same tags as one sentence would join B-LOC | I-LOC
    assert entity_metrics([["B-LOC"], ["I-LOC"]], [["B-LOC"], ["I-LOC"]])["gold_entities"] == 2


def test_scores_with_nothing_predicted_are_zero_like_seqeval():
    gold, pred = [["B-PER", "I-PER", "O"]], [["O", "O", "O"]]
    ours = entity_metrics(gold, pred)
    with pytest.warns(Warning):  # seqeval warns about 0/0 and answers 0
        assert (ours["precision"], ours["recall"], ours["f1"]) == (precision_score(gold, pred), 0.0, 0.0)
    assert ours["tag_accuracy"] == pytest.approx(1 / 3)


# ---- data ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from conftest import shared

    return build_tokenizer("bert", shared("models/google_zh_vocab.txt"))


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("content, message", [
    ("{\"O\": 0, \"B-LOC\": 2}", r"ids \[0, 2\] must be 0..1, each once"),
    ("{\"O\": 0, \"LOC\": 1}", r"tag 'LOC': tags are 'O' or B-/I-/E-/S-"),
    ("{\"O\": 0, \"B-LOC\": \"1\"}", r"tag 'B-LOC' has id '1': ids are integers"),
    ("{\"O\": 0,\n \"B-LOC\" 1}", r":2:10: not valid JSON"),
    ("[\"O\"]", r"label2id must be a non-empty JSON object"),
])
def test_label2id_errors_name_file_value_and_rule(tmp_path, content, message):
    path = write(tmp_path, "label2id.json", content)
    with pytest.raises(TaskDataError, match=message) as err:
        read_label2id(path)
    assert path in str(err.value)


def test_label2id_orders_tags_by_id(tmp_path):
    assert read_label2id(write(tmp_path, "l.json", json.dumps({"B-X": 1, "O": 0, "I-X": 2}))) == ["O", "B-X", "I-X"]


@pytest.mark.parametrize("row, message", [
    ("北 京 欢 迎\tB-LOC I-LOC O", r"t.tsv:3: label has 3 tag\(s\) for 4 token\(s\) of text_a: one tag per"),
    ("北 京\tB-LOC I-CITY", r"t.tsv:3: tag 'I-CITY' \(token 2\) is not in label2id"),
    ("北 京\tB-LOC\tO", r"t.tsv:3: 3 column\(s\), the header has 2"),
])
def test_tsv_errors_name_file_line_value_and_rule(tmp_path, tokenizer, row, message):
    path = write(tmp_path, "t.tsv", f"text_a\tlabel\n我 在\tO O\n{row}\n")
    with pytest.raises(TaskDataError, match=message):
        TASKS["ner"].read(path, tokenizer, 32, {"labels": LABELS, "crf": False}, labelled=True)


def test_issue_case_a_full_width_space_is_a_token(tmp_path, tokenizer):
    """Six ASCII-space-separated tokens, one of them U+3000: six tags fit (UER-py splits at ' ' too);
    str.split() made it five tokens and failed with '6 tag(s) for 5 token(s)'."""
    path = write(tmp_path, "t.tsv", "text_a\tlabel\n张 三 \u3000 去 北 京\tB-PER I-PER O O B-LOC I-LOC\n")
    (example,) = TASKS["ner"].read(path, tokenizer, 32, {"labels": LABELS, "crf": False}, labelled=True)
    assert example.extra["words"] == 6 and example.extra["tags"] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    assert len(example.extra["first"]) == 6  # U+3000 gives no piece of its own: it stands as [UNK]
    assert tokenizer.convert_ids_to_tokens([example.src[example.extra["first"][2]]]) == ["[UNK]"]


def test_a_bom_before_the_header_is_removed(tmp_path, tokenizer):
    path = write(tmp_path, "t.tsv", "\ufefftext_a\tlabel\r\n我 在\tO O\r\n")
    (example,) = TASKS["ner"].read(path, tokenizer, 32, {"labels": LABELS, "crf": False}, labelled=True)
    assert example.extra["tags"] == ["O", "O"] and example.source == f"{path}:2"


def test_wordpiece_alignment_labels_first_pieces_only(tmp_path, tokenizer):
    # 'playing' -> play ##ing, 'tokenization' -> to ##ken ##i ##za ##tion: one label each, on the first piece
    path = write(tmp_path, "t.tsv", "text_a\tlabel\n我 playing 在 tokenization 北\tO B-PER O B-LOC I-LOC\n")
    (example,) = TASKS["ner"].read(path, tokenizer, 64, {"labels": LABELS, "crf": False}, labelled=True)
    pieces = tokenizer.convert_ids_to_tokens(example.src)
    assert pieces == ["[CLS]", "我", "play", "##ing", "在", "to", "##ken", "##i", "##za", "##tion", "北", "[SEP]"]
    assert example.extra["first"] == [1, 2, 4, 5, 10]
    ignore = IGNORE_INDEX
    assert example.tgt == [ignore, 0, 3, ignore, 0, 1, ignore, ignore, ignore, ignore, 2, ignore]
    batch = TASKS["ner"].collate([example], 0, 0)
    assert batch["tgt"]["word_mask"][0].nonzero().flatten().tolist() == [1, 2, 4, 5, 10]
    # predictions read back at the first pieces give one tag per token of text_a
    output = np.zeros(len(example.src))
    output[[1, 2, 4, 5, 10]] = [0, 3, 0, 1, 2]
    output[[3, 6]] = [6, 6]  # whatever continuation pieces say is ignored
    assert TASKS["ner"].predicted_tags(example, output, LABELS) == ["O", "B-PER", "O", "B-LOC", "I-LOC"]


def test_truncated_tokens_are_predicted_o_and_still_scored(tmp_path, tokenizer):
    path = write(tmp_path, "t.tsv", "text_a\tlabel\n我 在 北 京 上 海\tO O B-LOC I-LOC B-LOC I-LOC\n")
    task = TASKS["ner"]
    (example,) = task.read(path, tokenizer, 6, {"labels": LABELS, "crf": False}, labelled=True)
    assert len(example.src) == 6 and example.extra["first"] == [1, 2, 3, 4]  # [CLS] 我 在 北 京 [SEP]
    perfect = np.zeros(6)
    perfect[[3, 4]] = [1, 2]
    metrics = task.evaluate([example], [perfect], {"labels": LABELS}, task.options())
    # gold: 北京, 上海; predicted: 北京 (上海 was cut off -> O O)
    assert (metrics["precision"], metrics["recall"]) == (1.0, 0.5)
    assert metrics["f1"] == pytest.approx(f1_score([["O", "O", "B-LOC", "I-LOC", "B-LOC", "I-LOC"]],
                                                   [["O", "O", "B-LOC", "I-LOC", "O", "O"]]))


def test_encode_words_keeps_every_word_a_position():
    tokenizer = BertTokenizer(Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##b"]))
    src, first = encode_words(tokenizer, ["ab", "\u200b", "a"], 16)  # a control character gives no piece -> [UNK]
    assert tokenizer.convert_ids_to_tokens(src) == ["[CLS]", "a", "##b", "[UNK]", "a", "[SEP]"]
    assert first == [1, 3, 4]
    src, first = encode_words(tokenizer, ["ab", "a"], 3)  # room for one piece: the first word's first piece
    assert tokenizer.convert_ids_to_tokens(src) == ["[CLS]", "a", "[SEP]"] and first == [1]


# ---- the head ------------------------------------------------------------------------------------
def tiny_config() -> ModelConfig:
    return ModelConfig.from_json("bert/tiny", {"hidden_size": 16, "emb_size": 16, "heads_num": 2, "layers_num": 1,
                                               "feedforward_size": 32, "vocab_size": 30, "dropout": 0.0})


@pytest.mark.parametrize("crf", [False, True])
def test_tagger_loss_and_prediction_by_formula(crf):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = TaskModel(cfg, TASKS["ner"].build_heads(cfg, {"ner": {"labels": LABELS, "crf": crf}}))
    model.init_weights()
    head = model.target["ner"]
    if crf:
        with torch.no_grad():
            for p in head.crf.parameters():
                p.normal_()
    src = torch.randint(5, 30, (2, 7))
    seg = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    word_mask = torch.tensor([[0, 1, 1, 0, 1, 1, 0], [0, 1, 0, 1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.full((2, 7), IGNORE_INDEX)
    labels[word_mask] = torch.tensor([1, 2, 0, 3, 5, 6])
    tgt = {"label": labels, "word_mask": word_mask, "task": torch.tensor([0])}
    result = model(src, tgt, seg)
    with torch.no_grad():
        logits = head.output_layer(model.encode(src, seg))  # (B, T, L)
        predicted = model(src, {"word_mask": word_mask}, seg, predict=True)
    if not crf:
        expected = F.cross_entropy(logits[word_mask], labels[word_mask])
        assert predicted.tolist() == logits.argmax(-1).tolist()
    else:  # -sum log p(tags of the words) / words, each sequence's words taken in order
        rows = [logits[b][word_mask[b]] for b in range(2)]
        golds = [labels[b][word_mask[b]] for b in range(2)]
        expected = -sum(head.crf.log_likelihood(r[None], g[None], torch.ones(1, len(r), dtype=torch.bool))
                        for r, g in zip(rows, golds)).sum() / 6
        for b in range(2):
            best = head.crf.decode(rows[b][None], torch.ones(1, len(rows[b]), dtype=torch.bool))[0]
            assert predicted[b][word_mask[b]].tolist() == best.tolist()
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert result.denominator.item() == 6
    # the collate function's host-found word positions (word_index/word_valid: no device read) give the
    # same loss and, scattered back through that index, the same predictions at every word
    examples = [Example(f"x:{b}", {}, src[b][: int(seg[b].sum())].tolist(), [1] * int(seg[b].sum()),
                        labels[b][: int(seg[b].sum())].tolist(), {"first": word_mask[b].nonzero().flatten().tolist()})
                for b in range(2)]
    batch = TASKS["ner"].collate(examples, 0, 0)
    assert torch.equal(batch["src"], src * seg) and batch["tgt"]["word_index"].shape == (2, 4)
    assert model(batch["src"], batch["tgt"], batch["seg"]).loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        again = model(batch["src"], {k: v for k, v in batch["tgt"].items() if k != "label"}, batch["seg"],
                      predict=True)
    assert again[word_mask].tolist() == predicted[word_mask].tolist()
