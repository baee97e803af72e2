"""Issue 30, through the command line: one writer per output (a second pretrain / finetune / preprocess
into an output a live process writes is refused at once, naming it; a dead one's lock is taken over), a
full disk during preprocess or a save (a real, small tmpfs: "no space left", the path, nothing partial,
`latest` on the last good checkpoint, which resumes), and a fine-tuning's best model: never a non-finite
one, and in fp32 equal to DeepSpeed's own zero_to_fp32 of the checkpoint saved at the same step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CORPORA
from engine_utils import ENV, ROOT, run_job, start_job, stop_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
UER_DS = [sys.executable, "-m", "uer_ds"]
VOCAB = str(CORPORA / "vocab.txt")


def run(args, timeout=300):
    return run_job([*UER_DS, *args], timeout=timeout)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("data") / "reviews"
    done = run(["preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"), "--vocab_path", VOCAB,
                "--dataset_path", str(prefix), "--target", "bert", "--seq_length", "64", "--no_progress"])
    assert done.returncode == 0, done.stdout
    return prefix


def pretrain_args(dataset, out, *extra):
    return ["pretrain", "--dataset_path", str(dataset), "--vocab_path", VOCAB, "--config_path", "bert/tiny",
            "--output_model_path", str(out), "--total_steps", "4", "--batch_size", "8", "--learning_rate", "1e-3",
            "--report_steps", "1", "--save_checkpoint_steps", "2", "--num_workers", "0", "--no_progress",
            "--deepspeed_config", "zero2", *extra]


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    """The shipped review classification, cut to 200 training rows (13 steps of 16)."""
    folder = tmp_path_factory.mktemp("cls")
    lines = (CORPORA / "reviews_cls" / "train.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "train.tsv").write_text("\n".join(lines[:201]) + "\n", encoding="utf-8")
    return folder


def finetune_args(task_data, out, *extra):
    return ["finetune", "classifier", "--vocab_path", VOCAB, "--config_path", "bert/tiny", "--seq_length", "32",
            "--batch_size", "16", "--learning_rate", "1e-3", "--epochs_num", "1", "--no_progress",
            "--train_path", str(task_data / "train.tsv"), "--dev_path", str(CORPORA / "reviews_cls" / "dev.tsv"),
            "--output_model_path", str(out), *extra]


def wait_for(job: subprocess.Popen, text: str, timeout: float = 240) -> str:
    """Read a running job's output until a line holds `text`; what was read."""
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = job.stdout.readline()
        if not line and job.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    stop_job(job)
    pytest.fail(f"'{text}' never came; the job said:\n{''.join(seen)[-3000:]}")


# ---- one writer per output -----------------------------------------------------------------------------
def test_a_second_pretraining_into_a_live_runs_output_is_refused_at_once(dataset, tmp_path):
    out = tmp_path / "run"
    first = start_job([*UER_DS, *pretrain_args(dataset, out, "--total_steps", "100000", "--save_checkpoint_steps",
                                                "100000", "--report_steps", "100000")])
    try:
        wait_for(first, "uer-ds pretrain: DeepSpeed")  # training
        second = run(pretrain_args(dataset, out))
        assert second.returncode == 1, second.stdout[-3000:]
        assert (f"uer-ds pretrain: error: --output_model_path {out} is being written by process {first.pid} on "
                in second.stdout), second.stdout[-3000:]
        # at once: before DeepSpeed starts, and nothing of the first run's output touched
        assert "one writer per output" in second.stdout and "DeepSpeed ZeRO" not in second.stdout
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # dies holding the lock: no release
        first.wait()
    third = run(pretrain_args(dataset, out, "--total_steps", "2"))
    assert third.returncode == 0, third.stdout[-3000:]
    assert (f"--output_model_path {out}: took over the lock {out / '.uer_ds.lock'} of process {first.pid} on "
            in third.stdout), third.stdout[-3000:]
    assert "which is no longer running" in third.stdout
    assert not (out / ".uer_ds.lock").exists() and (out / "latest").read_text() == "global_step2"


def test_a_second_finetuning_or_preprocess_into_a_live_output_is_refused(task_data, tmp_path):
    out = tmp_path / "model"
    first = start_job([*UER_DS, *finetune_args(task_data, out, "--epochs_num", "1000", "--report_steps", "100000")])
    try:
        wait_for(first, "uer-ds finetune classifier: DeepSpeed")
        second = run(finetune_args(task_data, out))
        assert second.returncode == 1, second.stdout[-3000:]
        assert (f"uer-ds finetune: error: --output_model_path {out} is being written by process {first.pid} "
                in second.stdout), second.stdout[-3000:]
        assert "DeepSpeed ZeRO" not in second.stdout and not (out / "report.json").exists()
    finally:
        stop_job(first)
        first.wait()
    # preprocess: a process holding the dataset prefix's lock, as a running preprocess does
    prefix = tmp_path / "data" / "reviews"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from uer_ds.outputs import lock_output; "
                               "lock = lock_output(sys.argv[1], '--dataset_path', 'uer-ds preprocess (holder)', "
                               "prefix=True); print('locked', flush=True); time.sleep(600)", str(prefix)],
                              stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = run(["preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"), "--vocab_path", VOCAB,
                       "--dataset_path", str(prefix), "--target", "bert", "--seq_length", "64", "--no_progress"])
        assert refused.returncode == 1
        assert (f"uer-ds preprocess: error: --dataset_path {prefix} is being written by process {holder.pid} on "
                in refused.stdout), refused.stdout
        assert sorted(p.name for p in prefix.parent.iterdir()) == [".reviews.uer_ds.lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


# ---- a full disk ----------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a fresh tmpfs of that many bytes (root only; otherwise the test skips), unmounted after."""
    mounts = []

    def mount(size: int, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): tests/test_outputs.py injects the errors")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_preprocess_on_a_full_disk_names_it_and_leaves_nothing(tmp_path, small_disk):
    corpus = tmp_path / "big.txt"
    corpus.write_text((CORPORA / "reviews_bert.txt").read_text(encoding="utf-8") * 8, encoding="utf-8")  # 3.4 MB
    disk = small_disk(1 << 20)
    prefix = disk / "reviews"
    done = run(["preprocess", "--corpus_path", str(corpus), "--vocab_path", VOCAB, "--dataset_path", str(prefix),
                "--target", "bert", "--seq_length", "64", "--no_progress"])
    assert done.returncode == 1, done.stdout[-3000:]
    assert (f"uer-ds preprocess: error: no space left on device: writing the dataset {prefix}.bin/.idx/.json failed "
            in done.stdout), done.stdout[-3000:]
    assert "the partial files were removed" in done.stdout and "Traceback" not in done.stdout
    assert list(disk.iterdir()) == []


def test_a_save_on_a_full_disk_names_it_keeps_latest_and_resumes(dataset, tmp_path, small_disk):
    """A disk with room for one checkpoint and a half: the save of step 4 fails with "no space left" and
    its path; its partial tag is removed, `latest` stays on global_step2, and once there is room a
    --resume from it repeats the uninterrupted run's steps 3-4."""
    reference = tmp_path / "reference"
    whole = run(pretrain_args(dataset, reference, "--metrics_path", str(tmp_path / "ref.jsonl")))
    assert whole.returncode == 0, whole.stdout[-3000:]
    size = sum(p.stat().st_size for p in (reference / "global_step2").rglob("*") if p.is_file())
    disk = small_disk(size * 3 // 2)
    out = disk / "run"
    full = run(pretrain_args(dataset, out))
    assert full.returncode == 1, full.stdout[-3000:]
    assert (f"uer-ds pretrain: error: no space left on device: writing {out / 'global_step4'} failed"
            in full.stdout), full.stdout[-3000:]
    assert "the partial checkpoint global_step4 was removed" in full.stdout and "Traceback" not in full.stdout
    assert (out / "latest").read_text() == "global_step2" and not (out / "global_step4").exists()
    assert not list(out.glob(".*tmp*")) and not (out / ".uer_ds.lock").exists()
    subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(disk)], check=True)
    resumed = run(pretrain_args(dataset, out, "--resume", "--metrics_path", str(tmp_path / "resumed.jsonl")))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    expected = {r["step"]: r["loss"] for r in records(tmp_path / "ref.jsonl")}
    got = {r["step"]: r["loss"] for r in records(tmp_path / "resumed.jsonl")}
    assert list(got) == [3, 4]
    for step, loss in got.items():
        assert abs(loss - expected[step]) < 1e-6, (step, loss, expected[step])


# ---- the best model of a fine-tuning -------------------------------------------------------------------------
@pytest.mark.parametrize("ds_config", ["zero2_bf16", "zero3_bf16"])
def test_the_best_model_is_the_fp32_master_weights(task_data, tmp_path, ds_config):
    """Under bf16 the best model holds the optimizer's fp32 weights: exactly what DeepSpeed's zero_to_fp32
    gives for the checkpoint saved after the same evaluation (before: the bf16 copy cast up, ~4e-3 off)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    out = tmp_path / "model"
    done = run(finetune_args(task_data, out, "--deepspeed_config", ds_config))
    assert done.returncode == 0, done.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert (out / "checkpoint" / "latest").read_text() == f"global_step{report['best']['step']}"
    theirs = get_fp32_state_dict_from_zero_checkpoint(str(out / "checkpoint"))
    best = load_file(out / "model.safetensors")
    assert set(best) <= set(theirs) and len(best) > 10
    largest = 0.0
    for key, value in best.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, theirs[key].float(), rtol=0, atol=0, msg=key)
        largest = max(largest, float((value - value.bfloat16().float()).abs().max()))
    assert largest > 1e-4  # the weights are not bf16 values: the comparison above could tell them apart


def test_a_diverged_fine_tuning_keeps_no_best_model(task_data, tmp_path):
    """A learning rate of 1e30: the loss turns NaN a few steps in, inside epoch 1.  The evaluation at the
    epoch's end is refused (before: the NaN model was evaluated, saved as the best, predicted `nan`), the
    run ends with an error naming the step, and the output holds no model and no checkpoint."""
    out = tmp_path / "model"
    done = run(finetune_args(task_data, out, "--learning_rate", "1e30", "--epochs_num", "2", "--report_steps", "1000"))
    assert done.returncode == 1, done.stdout[-3000:]
    assert "uer-ds finetune: error: the loss is not finite (NaN or inf) at step " in done.stdout, done.stdout[-3000:]
    assert "found before the evaluation of step 13: training stopped, nothing of that step saved" in done.stdout
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint" / "latest").exists()
    assert "epoch 1 (step 13) dev" not in done.stdout  # never evaluated
