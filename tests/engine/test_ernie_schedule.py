"""`uer-ds pretrain --schedule` end to end on the shipped corpus: each step trains one task (the plan's),
per-task statistics and TensorBoard tags, an exact resume in the middle of a stage against the
uninterrupted run, two processes under ZeRO-3 against one, fine-tuning and the tools reading the result,
and the errors users meet."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CORPORA
from engine_utils import BIN, free_port, run_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
UER_DS = [sys.executable, "-m", "uer_ds"]
VOCAB = str(CORPORA / "vocab.txt")
TARGETS = ["mlm", "sentence_reorder", "sentence_distance", "discourse", "ir_relevance"]


def run(args, timeout=300):
    return run_job([*UER_DS, *args], timeout=timeout)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def schedule(tmp_path_factory):
    """Five tasks over the shipped corpus (the discourse corpus: its reviews with markers put in), two
    stages of 6 steps: knowledge-free MLM, reordering and distance first, then discourse and IR join."""
    tmp = tmp_path_factory.mktemp("schedule")
    docs = (CORPORA / "reviews_bert.txt").read_text(encoding="utf-8").split("\n\n")[:400]
    (tmp / "discourse.txt").write_text("\n\n".join(
        "\n".join(("不过" if k % 2 else "其实") + s if i == 1 else s for i, s in enumerate(d.split("\n")))
        for k, d in enumerate(docs)), encoding="utf-8")
    corpora = {"mlm": CORPORA / "reviews.txt", "sentence_reorder": CORPORA / "reviews_bert.txt",
               "sentence_distance": CORPORA / "reviews_bert.txt", "discourse": tmp / "discourse.txt",
               "ir_relevance": CORPORA / "ir_relevance.tsv"}
    for processor, corpus in corpora.items():
        masking = ["--dynamic_masking"] if processor == "mlm" else []
        done = run(["preprocess", "--corpus_path", str(corpus), "--vocab_path", VOCAB, "--dataset_path",
                    str(tmp / processor), "--target", processor, "--seq_length", "32", "--no_progress", *masking])
        assert done.returncode == 0, done.stdout
    tasks = {"masking": {"dataset": "mlm"}, "reorder": {"dataset": "sentence_reorder"},
             "distance": {"dataset": "sentence_distance"}, "discourse": {"dataset": "discourse"},
             "ir": {"dataset": "ir_relevance"}}
    (tmp / "schedule.json").write_text(json.dumps({"tasks": tasks, "stages": [
        {"steps": 6, "tasks": {"masking": 2, "reorder": 1, "distance": 1}},
        {"steps": 6, "tasks": {"masking": 1, "reorder": 1, "distance": 1, "discourse": 1, "ir": 1}}]}))
    return tmp / "schedule.json"


def pretrain_args(schedule, out, *extra):
    return ["pretrain", "--schedule", str(schedule), "--vocab_path", VOCAB, "--config_path", "bert/tiny",
            "--embedding", "word", "pos", "seg", "task", "--task_types_num", "5", "--output_model_path", str(out),
            "--batch_size", "8", "--learning_rate", "1e-3", "--report_steps", "1", "--save_checkpoint_steps", "4",
            "--num_workers", "0", "--no_progress", "--deepspeed_config", "zero2", *extra]


@pytest.fixture(scope="module")
def uninterrupted(schedule, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    done = run(pretrain_args(schedule, out / "run", "--metrics_path", str(out / "m.jsonl")))
    assert done.returncode == 0, done.stdout[-3000:]
    return out, done.stdout, records(out / "m.jsonl")


def test_each_step_trains_the_task_of_the_plan(schedule, uninterrupted):
    from uer_ds.data.schedule import read_schedule

    out, log, metrics = uninterrupted
    assert "schedule " in log and "stage 1: steps 1..6: masking 3, reorder 2, distance 1" in log
    assert "stage 2: steps 7..12: masking 2, reorder 1, distance 1, discourse 1, ir 1" in log
    plan = read_schedule(str(schedule)).plan(seed=7)
    owner = dict(zip(TARGETS, ["masking", "reorder", "distance", "discourse", "ir"]))
    names = ["masking", "reorder", "distance", "discourse", "ir"]
    assert [r["step"] for r in metrics] == list(range(1, 13))
    for record, task in zip(metrics, plan):
        trained = [t for t in TARGETS if f"{t}_loss" in record]  # a head with predictions in the step
        assert [owner[t] for t in trained] == [names[task]], record
        assert record[f"{trained[0]}_loss"] == pytest.approx(record["loss"], rel=1e-6)
    assert (out / "run" / "model" / "model.safetensors").is_file()
    config = json.loads((out / "run" / "model" / "config.json").read_text())
    assert config["target"] == TARGETS and config["embedding"] == ["word", "pos", "seg", "task"]
    assert config["sentence_reorder_segments"] == 3 and config["discourse_labels_num"] == 18
    # TensorBoard: each task's loss and accuracy under its head's name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"loss/{t}" for t in TARGETS} | {f"accuracy/{t}" for t in TARGETS} <= tags
    steps = [e.step for e in events.Scalars("loss/discourse")]
    assert steps == [s + 1 for s, task in enumerate(plan) if names[task] == "discourse"]


def test_resume_in_the_middle_of_a_stage_continues_the_uninterrupted_run(schedule, uninterrupted, tmp_path):
    whole, _, a = uninterrupted
    out = tmp_path / "run"
    first = run(pretrain_args(schedule, out, "--stop_after_steps", "8", "--metrics_path", str(tmp_path / "b.jsonl")))
    assert first.returncode == 0, first.stdout[-3000:]
    assert "stopped after step 8 of 12" in first.stdout
    second = run(pretrain_args(schedule, out, "--resume", "--metrics_path", str(tmp_path / "b.jsonl")))
    assert second.returncode == 0, second.stdout[-3000:]
    from uer_ds.data.schedule import read_schedule

    masked = int((read_schedule(str(schedule)).plan(seed=7)[:8] == 0).sum())  # masking steps among steps 1-8
    assert f"resumed at step 8: masking: epoch 0, {8 * masked} samples" in second.stdout
    b = records(tmp_path / "b.jsonl")
    assert [r["step"] for r in b] == list(range(1, 13))
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if key.endswith(("_loss", "_acc")) or key == "loss":
                assert x[key] == pytest.approx(y[key], abs=1e-6), (key, x, y)
    final, again = load_file(whole / "run" / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    for key, value in final.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=1e-6)
    # a changed schedule is not the saved run
    changed = json.loads(schedule.read_text())
    changed["stages"][1]["tasks"]["ir"] = 2
    other = schedule.parent / "changed.json"
    other.write_text(json.dumps(changed))
    refused = run(pretrain_args(other, out, "--resume"))
    assert refused.returncode == 1 and "differs from this run in dataset (run_id" in refused.stdout


def test_two_processes_under_zero3_train_like_one(schedule, tmp_path):
    """1 process x 8 and 2 x 4 are the same global batch (every loss averages over the global batch's
    predictions); dropout off, so the runs differ only in how the work is split."""
    one = run(pretrain_args(schedule, tmp_path / "one", "--dropout", "0", "--metrics_path", str(tmp_path / "1.jsonl")))
    assert one.returncode == 0, one.stdout[-3000:]
    args = pretrain_args(schedule, tmp_path / "two", "--dropout", "0", "--metrics_path", str(tmp_path / "2.jsonl"),
                         "--batch_size", "4", "--deepspeed_config", "zero3")
    two = run_job([str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), "--module",
                   "uer_ds", *args], timeout=400)
    assert two.returncode == 0, two.stdout[-3000:]
    a, b = records(tmp_path / "1.jsonl"), records(tmp_path / "2.jsonl")
    assert [r["step"] for r in b] == list(range(1, 13))
    for x, y in zip(a, b):
        assert [k for k in x if k.endswith("_loss")] == [k for k in y if k.endswith("_loss")]
        assert x["loss"] == pytest.approx(y["loss"], abs=2e-5), (x, y)
    mine, theirs = load_file(tmp_path / "one" / "model" / "model.safetensors"), \
        load_file(tmp_path / "two" / "model" / "model.safetensors")
    for key, value in mine.items():
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=1e-4)


def test_fine_tuning_and_the_tools_read_the_schedule_model(uninterrupted, tmp_path):
    whole, _, _ = uninterrupted
    model = whole / "run" / "model"
    summary = run(["model", "summary", "--config_path", str(model / "config.json")])
    assert summary.returncode == 0, summary.stdout
    for part in ("embedding.task", "target.mlm", "target.sentence_reorder", "target.sentence_distance",
                 "target.discourse", "target.ir_relevance"):
        assert part in summary.stdout
    assert re.search(r"embedding\.task +640\n", summary.stdout)  # 5 task ids x 128
    checked = run(["check-model", "--load_model_path", str(model)])
    assert checked.returncode == 0 and "embedding.task.embedding.weight" in checked.stdout, checked.stdout
    data = CORPORA / "reviews_cls"
    common = ["finetune", "classifier", "--pretrained_model_path", str(model), "--vocab_path", VOCAB,
              "--train_path", str(data / "train.tsv"), "--dev_path", str(data / "dev.tsv"), "--epochs_num", "2",
              "--batch_size", "32", "--seq_length", "32", "--learning_rate", "1e-3", "--no_progress"]
    tuned = run([*common, "--output_model_path", str(tmp_path / "cls")])
    assert tuned.returncode == 0, tuned.stdout[-3000:]
    saved = json.loads((tmp_path / "cls" / "config.json").read_text())
    assert saved["embedding"] == ["word", "pos", "seg", "task"] and saved["task_id"] == 0
    report = json.loads((tmp_path / "cls" / "report.json").read_text())
    assert report["best"]["dev"]["examples"] == 150  # (12 steps of pre-training teach nothing: no accuracy bar)
    task_embedding = load_file(tmp_path / "cls" / "model.safetensors")["embedding.task.embedding.weight"]
    pretrained = load_file(model / "model.safetensors")["embedding.task.embedding.weight"]
    # only row 0 (task_id) is trained; the other rows only shrink by weight decay (their gradients are 0)
    moved = (task_embedding - pretrained).abs().amax(dim=1)
    assert moved[0] > 20 * moved[1:].max()
    torch.testing.assert_close(task_embedding[1:], pretrained[1:], rtol=2e-3, atol=0)
    # the task embedding dropped: refused as a partial load unless asked for, then the body without it
    without = [*common, "--output_model_path", str(tmp_path / "no_task"), "--embedding", "word", "pos", "seg",
               "--epochs_num", "1"]
    refused = run(without)
    assert refused.returncode == 1 and "unexpected keys ['embedding.task.embedding.weight']" in refused.stdout
    dropped = run([*without, "--allow_partial_load"])
    assert dropped.returncode == 0, dropped.stdout[-3000:]
    assert "embedding.task.embedding.weight" not in load_file(tmp_path / "no_task" / "model.safetensors")


def test_schedule_errors_are_named_before_training(schedule, tmp_path):
    both = run(pretrain_args(schedule, tmp_path / "x", "--dataset_path", str(schedule.parent / "mlm")))
    assert both.returncode == 1 and "give --dataset_path (one dataset) or --schedule" in both.stdout
    small = run(pretrain_args(schedule, tmp_path / "x", "--task_types_num", "3"))
    assert small.returncode == 1 and "task id 4 needs a task embedding of more than 4 rows; the model's " \
                                     "task_types_num is 3 (set --task_types_num 5 or more)" in small.stdout
    steps = run(pretrain_args(schedule, tmp_path / "x", "--total_steps", "50"))
    assert steps.returncode == 1 and "--total_steps 50: the schedule" in steps.stdout and "trains 12 steps" in steps.stdout
    pipe = run(pretrain_args(schedule, tmp_path / "x", "--pipeline_stages", "2"))
    assert pipe.returncode == 1 and "--schedule with --pipeline_stages > 1" in pipe.stdout
    bad = schedule.parent / "bad.json"
    bad.write_text(json.dumps({"tasks": {"a": {"dataset": "nowhere"}}, "stages": [{"steps": 2, "tasks": {"a": 1}}]}))
    missing = run(pretrain_args(bad, tmp_path / "x"))
    assert missing.returncode == 1 and "nowhere.idx: no such file" in missing.stdout
    assert not (tmp_path / "x").exists()


def test_each_task_trains_alone(schedule, tmp_path, capsys):
    """Each target without a schedule, `--dataset_path X --target X` (its head sizes from the dataset); in
    this process, one after the other (no launcher start-up per task)."""
    from uer_ds.cli import main

    for processor in ("capitalization", "token_document", "sentence_reorder", "sentence_distance", "discourse",
                      "ir_relevance"):
        dataset = schedule.parent / processor
        if processor in ("capitalization", "token_document"):
            corpus = CORPORA / ("reviews.txt" if processor == "capitalization" else "reviews_bert.txt")
            dataset = tmp_path / processor
            assert main(["preprocess", "--corpus_path", str(corpus), "--vocab_path", VOCAB, "--dataset_path",
                         str(dataset), "--target", processor, "--seq_length", "32", "--no_progress"]) == 0
        out, metrics = tmp_path / f"run_{processor}", tmp_path / f"{processor}.jsonl"
        code = main(["pretrain", "--dataset_path", str(dataset), "--target", processor, "--vocab_path", VOCAB,
                     "--config_path", "bert/tiny", "--output_model_path", str(out), "--total_steps", "3",
                     "--batch_size", "8", "--report_steps", "3", "--num_workers", "0", "--no_progress",
                     "--deepspeed_config", "zero0", "--metrics_path", str(metrics)])
        assert code == 0, capsys.readouterr().err[-2000:]
        record = records(metrics)[-1]
        assert record["step"] == 3 and record[f"{processor}_loss"] > 0 and 0 <= record[f"{processor}_acc"] <= 1
        assert json.loads((out / "model" / "config.json").read_text())["target"] == [processor]
