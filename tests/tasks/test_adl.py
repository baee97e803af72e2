"""`uer-ds infer cmrc --select_model_path`: paragraph selection (a c3 model over candidate paragraphs) chained
into span extraction (a cmrc model) in one command, CMRC2018's {id: answer} out.

Crafted data: each question "K是什么？" (K one of ten keys) comes with 2-4 candidate paragraphs of filler
characters; exactly one holds "K是<answer>。".  Tiny BERTs from random weights are fine-tuned in the test
(a c3 selector on the candidates, a cmrc extractor on the right paragraphs).  The one-command flow is
checked against the two commands it chains (`infer c3` on the candidates, then `infer cmrc` on the chosen
paragraphs written as SQuAD JSON here) and against the gold paragraphs and answers.
"""
from __future__ import annotations

import json
import random
import sys

import pytest

from conftest import CORPORA, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_utils import run_job  # noqa: E402

UER_DS = [sys.executable, "-m", "uer_ds"]
TINY = ["--config_path", "bert/tiny", "--learning_rate", "1e-3", "--report_steps", "50", "--no_progress",
        "--seq_length", "40", "--batch_size", "16"]
KEYS = "山河海星月雪风城港灯"
FILL = ("一七三上下不与个中主书买了事二五些人今以价会位作候值做儿全公共其再写出分别到刻前动北十半单去友发受口台合名后周味回图"
        "在地大天头女好完实对小就尾师常平年座开强当彩很得情想我故文方无时晚最有朋望末本板极格比气没流浪深温游物特生百的相石票"
        "空章笔第简精纸线细结给老者色节草表装言让记译话语说读象费趣轻较边过这远送里钟钱长间集青非面页馆鸟")


def _paragraph(rng: random.Random, key: str = "") -> tuple[str, str, int]:
    """(paragraph, answer, answer_start): filler around "K是<answer>。", or filler only (no key)."""
    left, right = ("".join(rng.choice(FILL) for _ in range(rng.randint(3, 8))) for _ in range(2))
    answer = rng.choice(FILL) + rng.choice(FILL)
    middle = f"{key}是{answer}。" if key else "".join(rng.choice(FILL) for _ in range(4))
    return left + middle + right, answer, len(left) + 2


def make_split(n: int, seed: int, prefix: str) -> tuple[list, dict, dict]:
    """(C3-format selection file, SQuAD file of the right paragraphs, {id: (right index, answer)})."""
    rng = random.Random(seed)
    select, paragraphs, gold = [], [], {}
    for i in range(n):
        key = rng.choice(KEYS)
        right, answer, start = _paragraph(rng, key)
        candidates = [_paragraph(rng)[0] for _ in range(rng.randint(1, 3))]
        k = rng.randint(0, len(candidates))
        candidates.insert(k, right)
        qid, question = f"{prefix}{i}", f"{key}是什么？"
        select.append([[], [{"id": qid, "question": question, "choice": candidates, "answer": right}], qid])
        paragraphs.append({"context": right, "qas": [{"id": qid, "question": question,
                                                      "answers": [{"text": answer, "answer_start": start}]}]})
        gold[qid] = (k, answer)
    return select, {"data": [{"paragraphs": paragraphs}]}, gold


def write(path, data) -> str:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def run(args: list[str]):
    result = run_job([*UER_DS, *args], timeout=400)
    assert result.returncode == 0, result.stdout[-3000:]
    return result


def test_select_then_extract_equals_the_two_commands_it_chains(tmp_path):
    vocab = str(CORPORA / "vocab.txt")
    files = {}
    for name, n, seed in (("train", 300, 1), ("dev", 40, 2), ("test", 40, 3)):
        select, squad, gold = make_split(n, seed, name[0])
        files[name] = (write(tmp_path / f"{name}_select.json", select), write(tmp_path / f"{name}_squad.json", squad),
                       gold)
    selector, extractor = tmp_path / "selector", tmp_path / "extractor"
    run(["finetune", "c3", "--vocab_path", vocab, *TINY, "--epochs_num", "3", "--train_path", files["train"][0],
         "--dev_path", files["dev"][0], "--output_model_path", str(selector)])
    run(["finetune", "cmrc", "--vocab_path", vocab, *TINY, "--epochs_num", "3", "--train_path", files["train"][1],
         "--dev_path", files["dev"][1], "--output_model_path", str(extractor)])
    test_select, _, gold = files["test"]
    # one command: select, then extract
    answers_path, selection_path = tmp_path / "answers.json", tmp_path / "selection.jsonl"
    result = run(["infer", "cmrc", "--load_model_path", str(extractor), "--select_model_path", str(selector),
                  "--test_path", test_select, "--prediction_path", str(answers_path), "--selection_path",
                  str(selection_path), "--no_progress"])
    assert "selected 1 of" in result.stdout and "for 40 question(s)" in result.stdout
    answers = json.loads(answers_path.read_text(encoding="utf-8"))
    selection = [json.loads(line) for line in selection_path.read_text().splitlines()]
    assert list(answers) == list(gold) == [s["id"] for s in selection]  # CMRC2018's format: {id: answer}, in order
    # the two commands it chains: infer c3 on the candidates, infer cmrc on the chosen paragraphs
    run(["infer", "c3", "--load_model_path", str(selector), "--test_path", test_select, "--prediction_path",
         str(tmp_path / "c3.jsonl"), "--no_progress"])
    chosen = {p["id"]: p["label"] for p in map(json.loads, (tmp_path / "c3.jsonl").read_text().splitlines())}
    assert chosen == {s["id"]: s["paragraph"] for s in selection}
    documents = json.loads((tmp_path / "test_select.json").read_text(encoding="utf-8"))
    squad = {"data": [{"paragraphs": [{"context": d[1][0]["choice"][chosen[d[2]]],
                                       "qas": [{"id": d[2], "question": d[1][0]["question"]}]} for d in documents]}]}
    run(["infer", "cmrc", "--load_model_path", str(extractor), "--test_path", write(tmp_path / "chosen.json", squad),
         "--prediction_path", str(tmp_path / "two_steps.json"), "--no_progress"])
    assert answers == json.loads((tmp_path / "two_steps.json").read_text(encoding="utf-8"))
    # against the gold: the selector learned the crafted rule; every answer is text of the chosen paragraph
    right = sum(chosen[q] == k for q, (k, _) in gold.items())
    assert right >= 36, f"{right} of 40 paragraphs chosen right"  # guessing: about 15 of 40
    for document in documents:
        qid = document[2]
        assert answers[qid] in document[1][0]["choice"][chosen[qid]]


def test_select_model_path_must_be_a_selector(tmp_path, capsys):
    from uer_ds.cli import main

    select, _, _ = make_split(2, 0, "x")
    test_path = write(tmp_path / "select.json", select)
    assert main(["infer", "cmrc", "--load_model_path", str(tmp_path / "nothing"), "--select_model_path",
                 str(tmp_path / "missing"), "--test_path", test_path,
                 "--prediction_path", str(tmp_path / "a.json")]) == 1
    assert "--select_model_path" in capsys.readouterr().err
    assert main(["infer", "cmrc", "--load_model_path", "m", "--test_path", test_path, "--prediction_path", "p",
                 "--selection_path", str(tmp_path / "s.jsonl")]) == 1
    assert "give --select_model_path too" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
