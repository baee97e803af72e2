"""UER-py's launch flags: `--world_size N --gpu_ranks ... [--master_ip tcp://host:port] [--backend]`.

The plan (which ranks, which devices, which rendezvous) is checked against UER-py's documented meaning;
two multi-process runs on CPU (gloo) check that `--world_size 2 --gpu_ranks 0 1` trains exactly as
the deepspeed launcher with two processes does, and that two simulated machines (`--gpu_ranks 0` and
`--gpu_ranks 1`, one `--master_ip`) do too."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import CORPORA
from engine_utils import BIN, free_port, run_job, start_job, stop_job
from uer_ds.engine.dist import launch_env, parse_master_ip, plan_local_launch

UER_DS = [sys.executable, "-m", "uer_ds"]


# ---- the plan: UER-py's meaning of the flags ----------------------------------------------------------
def test_no_flags_no_plan():
    assert plan_local_launch(None, [], None, None, cuda_available=False) is None


def test_one_machine_two_processes():
    plan = plan_local_launch(2, [0, 1], None, None, cuda_available=False)
    assert plan.spawns and plan.ranks == (0, 1) and plan.master_addr == "127.0.0.1"
    envs = [launch_env(plan, i) for i in range(2)]
    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_SIZE"]) for e in envs] == \
        [("0", "0", "2", "2"), ("1", "1", "2", "2")]
    assert envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]


def test_second_machine_of_a_multi_node_job():
    # UER-py's README: Node-1 runs `--world_size 16 --gpu_ranks 8 9 ... 15 --master_ip tcp://9.73.138.133:12345`
    plan = plan_local_launch(16, list(range(8, 16)), "tcp://9.73.138.133:12345", "nccl", cuda_available=True)
    env = launch_env(plan, 3)
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["LOCAL_SIZE"]) == ("11", "3", "16", "8")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"], env["UER_DS_BACKEND"]) == ("9.73.138.133", "12345", "nccl")


def test_single_device_mode_uses_that_device():
    # UER-py: `--gpu_ranks 3` (world_size 1) trains in one process on GPU 3
    plan = plan_local_launch(None, [3], None, None, cuda_available=True)
    assert not plan.spawns
    env = launch_env(plan, 0)
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("0", "3", "1")


@pytest.mark.parametrize("world, ranks, master, backend, message", [
    (2, [], None, None, r"--world_size 2 needs --gpu_ranks"),
    (2, [0, 0], None, None, r"--gpu_ranks has value \[0, 0\]: each rank may appear once"),
    (2, [0, 2], None, None, r"ranks must be in 0..1 \(--world_size 2\)"),
    (1, [0, 1], None, None, r"--gpu_ranks has 2 ranks but --world_size is 1"),
    (4, [0, 1], None, None, r"give --master_ip tcp://FIRST_NODE:PORT"),
    (2, [0, 1], "localhost", None, r"--master_ip has value 'localhost': must be tcp://HOST:PORT"),
    (2, [0, 1], None, "nccl", r"--backend nccl needs CUDA GPUs and this machine has none: use --backend gloo"),
    (0, [], None, None, r"--world_size has value 0: must be positive"),
])
def test_bad_launch_flags_name_the_flag_and_rule(world, ranks, master, backend, message):
    with pytest.raises(ValueError, match=message):
        plan_local_launch(world, ranks, master, backend, cuda_available=False)


def test_master_ip_forms():
    assert parse_master_ip("tcp://localhost:12345") == ("localhost", 12345)
    assert parse_master_ip("10.0.0.2:29500") == ("10.0.0.2", 29500)


# ---- multi-process runs on CPU ---------------------------------------------------------------------------
def _args(dataset, out, metrics, *extra):
    return ["pretrain", "--dataset_path", str(dataset), "--vocab_path", str(CORPORA / "vocab.txt"),
            "--config_path", "bert/tiny", "--output_model_path", str(out), "--total_steps", "4",
            "--batch_size", "8", "--learning_rate", "1e-3", "--report_steps", "1", "--save_checkpoint_steps", "4",
            "--num_workers", "0", "--no_progress", "--metrics_path", str(metrics), *extra]


def _losses(path):
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("data") / "reviews"
    out = run_job([*UER_DS, "preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"), "--vocab_path",
                   str(CORPORA / "vocab.txt"), "--dataset_path", str(prefix), "--target", "bert", "--seq_length",
                   "48"])
    assert out.returncode == 0, out.stdout
    return prefix


@pytest.fixture(scope="module")
def deepspeed_two(dataset, tmp_path_factory, deepspeed_ops):
    """The reference: `deepspeed --num_gpus 2 --module uer_ds pretrain ...` (two processes on CPU)."""
    tmp = tmp_path_factory.mktemp("ds")
    job = run_job([str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), "--module", "uer_ds",
                   *_args(dataset, tmp / "out", tmp / "m.jsonl")])
    assert job.returncode == 0, job.stdout[-3000:]
    return _losses(tmp / "m.jsonl")


@pytest.mark.slow
def test_world_size_2_gpu_ranks_0_1_trains_like_the_deepspeed_launcher(dataset, deepspeed_two, tmp_path):
    job = run_job([*UER_DS, *_args(dataset, tmp_path / "out", tmp_path / "m.jsonl", "--world_size", "2",
                                   "--gpu_ranks", "0", "1", "--backend", "gloo")])
    assert job.returncode == 0, job.stdout[-3000:]
    assert "starting global rank(s) [0, 1] of 2 on this machine" in job.stdout
    assert _losses(tmp_path / "m.jsonl") == pytest.approx(deepspeed_two, abs=1e-6)
    assert json.loads((tmp_path / "out" / "global_step4" / "uer_ds.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_two_simulated_machines_with_one_master_ip(dataset, deepspeed_two, tmp_path):
    master = f"tcp://127.0.0.1:{free_port()}"
    nodes = [start_job([*UER_DS, *_args(dataset, tmp_path / "out", tmp_path / "m.jsonl", "--world_size", "2",
                                        "--gpu_ranks", str(rank), "--master_ip", master)]) for rank in (0, 1)]
    try:
        for node in nodes:
            assert node.wait(timeout=300) == 0, node.stdout.read()[-3000:]
    finally:
        for node in nodes:
            stop_job(node)
    assert _losses(tmp_path / "m.jsonl") == pytest.approx(deepspeed_two, abs=1e-6)


@pytest.mark.slow
def test_bad_input_fails_before_any_process_starts(dataset, tmp_path):
    job = run_job([*UER_DS, *_args(dataset, tmp_path / "out", tmp_path / "m.jsonl", "--world_size", "2",
                                   "--gpu_ranks", "0", "1", "--deepspeed_config", str(tmp_path / "missing.json"))],
                  timeout=120)
    assert job.returncode == 1 and "missing.json': no such file" in job.stdout
    assert "starting global rank" not in job.stdout and not (tmp_path / "out").exists()
