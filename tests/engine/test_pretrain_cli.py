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


def pretrain_args(dataset, out, *extra):
    return ["pretrain", "--dataset_path", str(dataset), "--vocab_path", str(CORPORA / "vocab.txt"),
            "--config_path", "bert/tiny", "--output_model_path", str(out), "--total_steps", "6",
            "--batch_size", "8", "--learning_rate", "1e-3", "--report_steps", "1", "--save_checkpoint_steps", "3",
            "--num_workers", "0", "--no_progress", *extra]


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
    from uer_ds.engine.checkpoint import read_pretrained

    step3 = read_pretrained(out / "global_step3")
    theirs3 = get_fp32_state_dict_from_zero_checkpoint(str(out), tag="global_step3")
    key = "encoder.transformer.1.feed_forward.linear_2.weight"
    torch.testing.assert_close(step3[key], theirs3[key], rtol=0, atol=0)
    assert not torch.equal(step3[key], final[key])
    torch.testing.assert_close(read_pretrained(out)[key], final[key], rtol=0, atol=0)

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
