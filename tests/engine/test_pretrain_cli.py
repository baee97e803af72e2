"""`uer-ds pretrain` end to end on the shipped corpus: checkpoints, resume, export, TensorBoard and
metrics, two simulated nodes, a killed rank, and the errors users meet."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from conftest import CORPORA, ROOT
from engine_utils import BIN, free_port, run_job, start_job, stop_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
UER_DS = [sys.executable, "-m", "uer_ds"]


def run(args, timeout=300):
    return run_job([*UER_DS, *args], timeout=timeout)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("data") / "reviews"
    out = run(["preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"), "--vocab_path",
               str(CORPORA / "vocab.txt"), "--dataset_path", str(prefix), "--target", "bert", "--seq_length", "64"])
    assert out.returncode == 0, out.stdout
    return prefix


def pretrain_args(dataset, out, *extra, ds_config="zero2"):
    """A short pre-training command; ZeRO-2 unless extra names a config (ds_config=None: the default)."""
    engine = [] if ds_config is None or "--deepspeed_config" in extra else ["--deepspeed_config", ds_config]
    return ["pretrain", "--dataset_path", str(dataset), "--vocab_path", str(CORPORA / "vocab.txt"),
            "--config_path", "bert/tiny", "--output_model_path", str(out), "--total_steps", "6",
            "--batch_size", "8", "--learning_rate", "1e-3", "--report_steps", "1", "--save_checkpoint_steps", "3",
            "--num_workers", "0", "--no_progress", *engine, *extra]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pretrain_saves_resumes_and_exports(dataset, tmp_path):
    out = tmp_path / "run"
    first = run(pretrain_args(dataset, out, "--metrics_path", str(tmp_path / "a.jsonl")))
    assert first.returncode == 0, first.stdout[-3000:]
    a = records(tmp_path / "a.jsonl")
    assert [r["step"] for r in a] == [1, 2, 3, 4, 5, 6]
    assert a[-1]["loss"] < a[0]["loss"]
    assert {"mlm_loss", "mlm_acc", "sp_loss", "sp_acc", "lr", "tokens_per_s", "grad_norm"} <= set(a[0])
    assert (out / "latest").read_text() == "global_step6"
    meta = json.loads((out / "global_step3" / "uer_ds.json").read_text())
    assert meta["step"] == 3 and meta["tokenizer"]["vocab_size"] == 417
    assert json.loads((out / "global_step3" / "config.json").read_text())["vocab_size"] == 417
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    final = load_file(out / "model" / "model.safetensors")

    # resume from step 3 in a copy: steps 4-6 repeat the uninterrupted run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed, ignore=shutil.ignore_patterns("global_step6", "model", "tensorboard"))
    (resumed / "latest").write_text("global_step3")
    second = run(pretrain_args(dataset, resumed, "--resume", "--metrics_path", str(tmp_path / "b.jsonl")))
    assert second.returncode == 0, second.stdout[-3000:]
    b = records(tmp_path / "b.jsonl")
    assert [r["step"] for r in b] == [4, 5, 6]
    for x, y in zip(a[3:], b):
        assert abs(x["loss"] - y["loss"]) < 1e-6, (x, y)
    again = load_file(resumed / "model" / "model.safetensors")
    for key, value in final.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=1e-6)

    # export: one fp32 file equal to the final model; DeepSpeed's zero_to_fp32 agrees
    exported = run(["export", "--checkpoint", str(out), "--output", str(tmp_path / "m.safetensors")])
    assert exported.returncode == 0, exported.stdout
    for key, value in load_file(tmp_path / "m.safetensors").items():
        torch.testing.assert_close(value, final[key], rtol=0, atol=0)
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    theirs = get_fp32_state_dict_from_zero_checkpoint(str(out))
    torch.testing.assert_close(theirs["encoder.transformer.1.feed_forward.linear_2.weight"],
                               final["encoder.transformer.1.feed_forward.linear_2.weight"], rtol=0, atol=0)

    # a tag directory (OUT/global_step3) reads as that step, not as `latest`: DeepSpeed's own reader
    # of that tag is the reference
    from uer_ds.convert.resolve import resolve_model

    step3 = resolve_model(out / "global_step3").state()
    theirs3 = get_fp32_state_dict_from_zero_checkpoint(str(out), tag="global_step3")
    key = "encoder.transformer.1.feed_forward.linear_2.weight"
    torch.testing.assert_close(step3[key], theirs3[key], rtol=0, atol=0)
    assert not torch.equal(step3[key], final[key])
    torch.testing.assert_close(resolve_model(out).state()[key], final[key], rtol=0, atol=0)

    # the checkpoint directory converts straight to Hugging Face, which computes what our model does
    converted = run(["convert", "--from", "uer_ds", "--to", "hf", "--model", "bert", "--input", str(out),
                     "--output", str(tmp_path / "hf")])
    assert converted.returncode == 0, converted.stdout
    from transformers import BertForPreTraining

    from uer_ds.models import load_model

    hf, ours = BertForPreTraining.from_pretrained(tmp_path / "hf").eval(), load_model(out / "model")
    ids = torch.randint(5, 417, (2, 16))
    with torch.no_grad():
        expected = hf(input_ids=ids).prediction_logits
        got = ours.target["mlm"].logits(ours.encode(ids, torch.ones_like(ids)))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_resume_checks_the_run_and_continues_from_the_samples_consumed(dataset, tmp_path):
    """A changed model config, seed or dataset is refused before DeepSpeed starts, naming the saved and
    the given value; a changed batch size and accumulation continue from the samples consumed (the
    issue's case: batch 4 then 8 skipped the samples 8-15 of the epoch).  Export takes the tag."""
    out = tmp_path / "run"
    first = run(pretrain_args(dataset, out, "--stop_after_steps", "3"))
    assert first.returncode == 0, first.stdout[-3000:]
    saved = json.loads((out / "global_step3" / "uer_ds.json").read_text())["data_position"]
    assert {k: saved[k] for k in ("epoch", "in_epoch", "consumed_samples")} == {"epoch": 0, "in_epoch": 24,
                                                                                 "consumed_samples": 24}
    changed = run(pretrain_args(dataset, out, "--resume", "--seed", "8", "--dropout", "0.2"))
    assert changed.returncode == 1
    assert (f"--resume: {out / 'global_step3'} differs from this run in model config dropout: saved 0.1, given 0.2; "
            "--seed: saved 7, given 8. Resume with the saved ones") in changed.stdout
    assert "DeepSpeed ZeRO" not in changed.stdout  # refused before the engine started
    other = tmp_path / "other"
    assert run(["preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"), "--vocab_path",
                str(CORPORA / "vocab.txt"), "--dataset_path", str(other), "--target", "bert", "--seq_length", "48",
                "--no_progress"]).returncode == 0
    wrong = run(pretrain_args(other, out, "--resume"))
    ids = [json.loads(Path(f"{d}.json").read_text())["run_id"] for d in (dataset, other)]
    assert wrong.returncode == 1 and "DeepSpeed ZeRO" not in wrong.stdout
    assert f"dataset (run_id of {dataset} then, {other} now): saved '{ids[0]}', given '{ids[1]}'" in wrong.stdout

    bigger = run(pretrain_args(dataset, out, "--resume", "--batch_size", "16", "--accumulation_steps", "2"))
    assert bigger.returncode == 0, bigger.stdout[-3000:]
    assert "resumed at step 3: epoch 0, 24 of its samples consumed (24 in all)" in bigger.stdout
    position = json.loads((out / "global_step6" / "uer_ds.json").read_text())["data_position"]
    assert position["in_epoch"] == position["consumed_samples"] == 24 + 3 * 16 * 2

    exported = run(["export", "--checkpoint", str(out / "global_step3"), "--output", str(tmp_path / "m3.safetensors")])
    assert exported.returncode == 0, exported.stdout
    from uer_ds.convert.resolve import resolve_model

    step3 = resolve_model(out / "global_step3").state()
    for key, value in load_file(tmp_path / "m3.safetensors").items():
        torch.testing.assert_close(value, step3[key], rtol=0, atol=0)


def test_resume_with_a_new_schedule_follows_it_from_the_resume_step(dataset, tmp_path):
    """Issue 30: a --resume with another --learning_rate, --warmup and --total_steps trains steps 4.. with
    the learning rates an uninterrupted one-process run of the new flags has there (before: the saved peak
    rate came back with the optimizer, and a new total_steps ran one step of the old schedule), and says
    so; --total_steps at or below the saved step, and a changed optimizer setting, are refused before
    DeepSpeed starts."""
    out = tmp_path / "run"
    first = run(pretrain_args(dataset, out, "--stop_after_steps", "3"))  # lr 1e-3, warmup 0.1, total 6
    assert first.returncode == 0, first.stdout[-3000:]
    for flags, message in ((("--total_steps", "3"), f"--total_steps has value 3: the checkpoint {out / 'global_step3'} "
                                                     "is already at step 3, and a resumed run trains steps "
                                                     "4..--total_steps: give more than 3"),
                           (("--weight_decay", "0.1"), f"--resume: {out / 'global_step3'} differs from this run in "
                                                       "--weight_decay: saved 0.01, given 0.1.")):
        refused = run(pretrain_args(dataset, out, "--resume", *flags))
        assert refused.returncode == 1 and message in refused.stdout, refused.stdout[-3000:]
        assert "DeepSpeed ZeRO" not in refused.stdout
    assert sorted(p.name for p in out.glob("global_step*")) == ["global_step3"]

    new = ("--learning_rate", "5e-4", "--warmup", "0.5", "--total_steps", "8")
    resumed = run(pretrain_args(dataset, out, "--resume", *new, "--metrics_path", str(tmp_path / "resumed.jsonl")))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    whole = run(pretrain_args(dataset, tmp_path / "whole", *new, "--metrics_path", str(tmp_path / "whole.jsonl")))
    assert whole.returncode == 0, whole.stdout[-3000:]
    got = {r["step"]: r["lr"] for r in records(tmp_path / "resumed.jsonl")}
    expected = {r["step"]: r["lr"] for r in records(tmp_path / "whole.jsonl")}
    assert list(got) == [4, 5, 6, 7, 8]
    for step, lr in got.items():
        assert lr == pytest.approx(expected[step], rel=1e-9, abs=0), (step, lr, expected[step])
    # by hand: the saved schedule (no warm-up steps: int(0.1 x 6) = 0, linear to 6) gives step 4
    # 1e-3 x (1 - 3/6); the new one warms up over int(0.5 x 8) = 4 steps: 5e-4 x 3/4
    assert ("--resume: --learning_rate 0.001 -> 0.0005, --warmup 0.1 -> 0.5, --total_steps 6 -> 8: the new schedule "
            "applies from step 4, whose learning rate is 0.000375 (the saved schedule's: 0.0005)") in resumed.stdout
    assert got[4] == pytest.approx(3.75e-4, rel=1e-12)


@pytest.fixture(scope="module")
def cls_dataset(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("cls") / "reviews"
    out = run(["preprocess", "--corpus_path", str(CORPORA / "reviews_cls.txt"), "--vocab_path",
               str(CORPORA / "vocab.txt"), "--dataset_path", str(prefix), "--target", "cls", "--seq_length", "64"])
    assert out.returncode == 0, out.stdout
    return prefix


UNIVERSAL = ["--target", "cls", "--tie_weights", "false", "--dropout", "0", "--total_steps", "4",
             "--save_checkpoint_steps", "2"]


@pytest.fixture(scope="module")
def uninterrupted(cls_dataset, tmp_path_factory):
    """4 steps in one process: the run a resumed one must continue (ZeRO stages give the same losses)."""
    out = tmp_path_factory.mktemp("whole")
    done = run(pretrain_args(cls_dataset, out / "run", *UNIVERSAL, "--metrics_path", str(out / "m.jsonl")))
    assert done.returncode == 0, done.stdout[-3000:]
    return records(out / "m.jsonl"), load_file(out / "run" / "model" / "model.safetensors")


@pytest.mark.parametrize("ds_config", ["zero2", "zero3"])
def test_resume_on_another_number_of_processes_through_the_universal_checkpoint(cls_dataset, uninterrupted, ds_config,
                                                                                  tmp_path):
    """The issue's case: a ZeRO-2 checkpoint of 1 process resumed by 2 (DeepSpeed refused it after its
    start-up).  It goes through DeepSpeed's universal checkpoint and continues the uninterrupted run:
    the cls target averages over samples, so 1 x 8 and 2 x 4 are the same global batch to 1e-7; a
    resume without the optimizer's moments is off by 0.04 at step 4, and ZeRO-3 without the mend of
    checkpoint.load_universal by 3.6e-5."""
    out = tmp_path / "run"
    args = lambda *extra: pretrain_args(cls_dataset, out, *UNIVERSAL, "--deepspeed_config", ds_config, *extra)  # noqa
    assert run(args("--stop_after_steps", "2")).returncode == 0
    two = launcher(args("--resume", "--batch_size", "4", "--metrics_path", str(tmp_path / "two.jsonl")),
                   "--num_gpus", "2", "--master_port", str(free_port()))
    log, _ = two.communicate(timeout=300)
    assert two.returncode == 0, log[-3000:]
    assert "was saved by another number of processes: loading it through DeepSpeed's universal checkpoint" in log
    assert (out / "global_step2_universal" / "zero").is_dir()
    a, b = uninterrupted[0], records(tmp_path / "two.jsonl")
    assert [r["step"] for r in b] == [3, 4]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a[2:]], abs=1e-6)
    theirs = load_file(out / "model" / "model.safetensors")
    for key, value in uninterrupted[1].items():
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=1e-6)


def test_user_errors_are_named_before_training(dataset, tmp_path):
    out = run(pretrain_args(dataset, tmp_path / "x", "--target", "lm", "--data_processor", "lm", "--mask", "causal"))
    assert out.returncode == 1 and "does not match the dataset" in out.stdout and "'bert'" in out.stdout
    out = run(pretrain_args(dataset, tmp_path / "x", "--deepspeed_config",
                            str(ROOT.parent / "shared" / "data" / "models" / "deepspeed_config.json"))) \
        if (ROOT.parent / "shared" / "data").exists() else None
    if out is not None:
        assert out.returncode == 1 and "offload_param needs ZeRO stage 3" in out.stdout
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"embedding.word.embedding.weight": torch.zeros(3, 3)}, str(bad))
    out = run(pretrain_args(dataset, tmp_path / "y", "--pretrained_model_path", str(bad)))
    assert out.returncode == 1
    assert "key 'embedding.word.embedding.weight' has shape (3, 3), the model expects (417, 128)" in out.stdout


JOBS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_job_outlives_its_test():
    yield
    while JOBS:
        stop_job(JOBS.pop())


def launcher(args, *launcher_args, node_env=None):
    job = start_job([str(BIN / "deepspeed"), *launcher_args, "--module", "uer_ds", *args], env=node_env)
    JOBS.append(job)
    return job


def test_two_simulated_nodes_train_like_one_node_of_two(dataset, tmp_path):
    port = str(free_port())
    one = launcher(pretrain_args(dataset, tmp_path / "one", "--metrics_path", str(tmp_path / "one.jsonl")),
                   "--num_gpus", "2", "--master_port", port)
    assert one.wait(timeout=300) == 0, one.stdout.read()[-3000:]
    assert not shm_buffers(port)  # DeepSpeed's per-rank shared-memory files are gone with the job
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    port = str(free_port())
    nodes = [launcher(pretrain_args(dataset, tmp_path / "two", "--metrics_path", str(tmp_path / "two.jsonl")),
                      "--hostfile", str(hostfile), "--no_ssh", "--num_nodes", "2", "--node_rank", str(rank),
                      "--master_addr", "127.0.0.1", "--master_port", port) for rank in (0, 1)]
    for node in nodes:
        assert node.wait(timeout=300) == 0, node.stdout.read()[-3000:]
    a, b = records(tmp_path / "one.jsonl"), records(tmp_path / "two.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    assert json.loads((tmp_path / "two" / "global_step6" / "uer_ds.json").read_text())["world_size"] == 2
    ours, theirs = load_file(tmp_path / "one" / "model" / "model.safetensors"), \
        load_file(tmp_path / "two" / "model" / "model.safetensors")
    for key, value in ours.items():
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=1e-6)


def test_killing_one_rank_fails_the_job_without_hanging(dataset, tmp_path):
    args = pretrain_args(dataset, tmp_path / "k", "--metrics_path", str(tmp_path / "k.jsonl"))
    args[args.index("--total_steps") + 1] = "100000"
    port = str(free_port())
    job = launcher(args, "--num_gpus", "2", "--master_port", port)
    deadline = time.time() + 240
    while not (tmp_path / "k.jsonl").exists() or len(records(tmp_path / "k.jsonl")) < 2:
        assert job.poll() is None, job.stdout.read()[-3000:]
        assert time.time() < deadline, "training did not start"
        time.sleep(0.5)
    ranks = [p for p in psutil.Process(job.pid).children(recursive=True)
             if p.environ().get("LOCAL_RANK") == "1" and "uer_ds" in " ".join(p.cmdline())]
    assert ranks, "rank 1 not found"
    os.kill(ranks[0].pid, signal.SIGKILL)
    start = time.time()
    code = job.wait(timeout=120)
    assert code != 0
    assert time.time() - start < 120
    for child in psutil.Process().children(recursive=True):  # nothing left behind
        assert "uer_ds" not in " ".join(child.cmdline())
    assert not shm_buffers(port)  # not even the 66 MB shared-memory file of each rank


def shm_buffers(port: str) -> list[Path]:
    """The shared-memory files DeepSpeed's CPU allreduce makes for the job on `port` (66 MB per rank;
    DeepSpeed itself never removes them: uer_ds.engine.dist does, once every rank has mapped them)."""
    return sorted(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))


def test_compiled_pretraining_follows_the_eager_run(dataset, tmp_path):
    """--compile (DeepSpeed's engine.compile(), inductor on the CPU) trains the same model: with dropout 0
    its losses follow the eager run's within 1e-4 over 6 steps (fused kernels round differently), and the
    default ds_config of one process is zero0, said on the first line."""
    losses = {}
    for mode in ("eager", "compile"):
        out = tmp_path / mode
        done = run(pretrain_args(dataset, out, "--dropout", "0", "--metrics_path", str(tmp_path / f"{mode}.jsonl"),
                                 *(["--compile"] if mode == "compile" else []), ds_config=None), timeout=600)
        assert done.returncode == 0, done.stdout[-3000:]
        assert "uer-ds pretrain: DeepSpeed ZeRO-0 fp32, 1 process(es)" in done.stdout  # the default for one process
        losses[mode] = [r["loss"] for r in records(tmp_path / f"{mode}.jsonl")]
    assert len(losses["compile"]) == 6
    for a, b in zip(losses["eager"], losses["compile"]):
        assert abs(a - b) < 1e-4 * abs(a), losses
