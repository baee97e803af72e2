"""Multi-node training for real: hosts made from network namespaces on this machine (launch/testcluster),
each with its own address, hostname and sshd; `deepspeed --hostfile` on node1 reaches the others through
pdsh over ssh (or mpirun), gloo runs over the namespaces' network, checkpoints go to a shared directory.

Every host's /etc/hosts maps its own name to 127.0.1.1, as Debian's installer writes it: the case in
which gloo, left to itself, advertises an address no other host can reach (a test shows it does).

What is compared with what (dropout 0, so that runs of different shapes train the same model):
- the reference: ONE process training on the global batch (12 samples) without any launcher;
- 2 hosts x 6 and 3 hosts x 4 (ZeRO-3, then `uer-ds export`) against it within 2e-5 (the engine
  equivalence tests' tolerance: reductions sum in another order); mpirun's 2 hosts against pdsh's 2
  hosts within 1e-6; a fine-tuning job on 2 hosts against 2 processes on one host within 1e-6;
- faults: a worker SIGKILLed, a link cut, an sshd stopped at launch, a worker killed during a checkpoint
  save; each ends the whole job non-zero within its bound, names the host and rank, leaves no process on
  any host; the last complete checkpoint then resumes on 2, 3 and 1 host(s) to the uninterrupted losses.
One cluster (3 hosts) serves the whole module; launches are few (each costs 5-15 s of start-up).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cluster_utils import Cluster, stop, unavailable
from conftest import CORPORA, ROOT
from engine_utils import BIN, ENV, run_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
WHY_NOT = unavailable()
if WHY_NOT:
    pytestmark.append(pytest.mark.skip(reason=f"no test cluster on this machine: {WHY_NOT}"))

STEPS, SAVE_EVERY, GLOBAL_BATCH = 60, 10, 12
TIMEOUT = 15  # --dist_timeout of the fault runs (seconds)
BOUND_KILL = 30  # a worker killed: the job ends within this (measured: about 2 s)
BOUND_TIMEOUT = TIMEOUT + 15 + 10  # a cut link / a host that never starts: the timeout, ssh's keep-alive, slack
TOLERANCE = 2e-5  # another world size: the engine equivalence tests' tolerance
SAME_SHAPE = 1e-6  # the same world size through another path


# ---- the cluster and the data ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    start = time.monotonic()
    made = Cluster.up(3)
    print(f"\n[multihost] 3 hosts up in {time.monotonic() - start:.1f} s")
    try:
        for host in made.hosts:  # Debian's /etc/hosts: a machine's own name is 127.0.1.1
            made.ctl("hosts-entry", host, "127.0.1.1")
        yield made
    finally:
        made.down()
    assert not Path(made.dir).exists()
    assert made.namespace("node1") not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                         text=True).stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("multihost")


@pytest.fixture(scope="module")
def dataset(work):
    prefix = work / "data" / "reviews"
    prefix.parent.mkdir()
    done = run_job([sys.executable, "-m", "uer_ds", "preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"),
                    "--vocab_path", str(CORPORA / "vocab.txt"), "--dataset_path", str(prefix), "--target", "bert",
                    "--seq_length", "48"])
    assert done.returncode == 0, done.stdout
    return prefix


@pytest.fixture(scope="module")
def launch_env(work):
    """A fresh login's environment on node1, and the .deepspeed_env that carries what every host needs
    (DS_ENV_FILE names it; DeepSpeed otherwise reads ./.deepspeed_env or ~/.deepspeed_env)."""
    path = f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin"
    env_file = work / "deepspeed_env"
    env_file.write_text(f"DS_ACCELERATOR=cpu\nTORCH_EXTENSIONS_DIR={ENV['TORCH_EXTENSIONS_DIR']}\n"
                        f"OMP_NUM_THREADS=1\nPATH={path}\n")
    return {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "DS_ENV_FILE": str(env_file),
            "DS_ACCELERATOR": "cpu", "TORCH_EXTENSIONS_DIR": ENV["TORCH_EXTENSIONS_DIR"], "OMP_NUM_THREADS": "1"}


def pretrain_args(dataset, out: Path, batch: int, *extra: str, ds_config: str = "zero2") -> list[str]:
    return ["pretrain", "--dataset_path", str(dataset), "--vocab_path", str(CORPORA / "vocab.txt"),
            "--config_path", "bert/tiny", "--dropout", "0", "--output_model_path", str(out), "--total_steps",
            str(STEPS), "--batch_size", str(batch), "--learning_rate", "1e-3", "--report_steps", "1",
            "--save_checkpoint_steps", str(SAVE_EVERY), "--num_workers", "0", "--no_progress",
            "--deepspeed_config", ds_config, "--metrics_path", f"{out}.jsonl", *extra]


def deepspeed(cluster, hosts, work, port, *args, launcher_args=(), master_addr=None) -> list[str]:
    """`deepspeed --hostfile H --master_addr A --master_port P [launcher_args] --module uer_ds ARGS`."""
    hostfile = cluster.hostfile(hosts, work / f"hostfile_{'_'.join(hosts)}")
    return [str(BIN / "deepspeed"), "--hostfile", str(hostfile), "--master_addr",
            master_addr or cluster.addresses[hosts[0]], "--master_port", str(port), *launcher_args, "--module",
            "uer_ds", *args]


PORTS = iter(range(29700, 29800))  # the namespaces have their own ports: no clash with the machine's


def finish(job: subprocess.Popen, timeout: float = 300) -> tuple[int, str, float]:
    """(exit status, output, seconds) of a job started with Cluster.start; killed past `timeout`."""
    start = time.monotonic()
    try:
        out, _ = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(job)
        out, _ = job.communicate()
        pytest.fail(f"ran past {timeout} s:\n{out[-4000:]}")
    finally:
        stop(job)
    return job.returncode, out, time.monotonic() - start


def losses(path) -> dict[int, float]:
    """step -> training loss, from a --metrics_path file (evaluation records, with "split", left out)."""
    return {r["step"]: r["loss"] for r in map(json.loads, Path(path).read_text().splitlines())
            if "loss" in r and "split" not in r}


def assert_losses_close(ours: dict, theirs: dict, tolerance: float, steps) -> None:
    steps = list(steps)
    assert steps and all(s in ours for s in steps), (sorted(ours), steps)
    worst = max(abs(ours[s] - theirs[s]) for s in steps)
    assert worst <= tolerance, f"largest loss difference {worst:.3g} over steps {steps[0]}..{steps[-1]}"


def assert_models_close(a: Path, b: Path, tolerance: float) -> None:
    ours, theirs = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=tolerance, msg=key)


def nothing_left(cluster, hosts, within: float = 20) -> None:
    left = cluster.wait_gone(hosts, within)
    cluster.kill_everything(hosts)
    assert not left, f"processes left running: {left}"


# ---- the reference and the real launch --------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(dataset, work):
    """One process, no launcher, the whole global batch in each step."""
    out = work / "reference"
    start = time.monotonic()
    done = run_job([sys.executable, "-m", "uer_ds", *pretrain_args(dataset, out, GLOBAL_BATCH)])
    assert done.returncode == 0, done.stdout[-3000:]
    print(f"\n[multihost] the reference (1 process): {time.monotonic() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def two_hosts(cluster, dataset, work, launch_env):
    """The README's command on node1: launch/pretrain_multinode.sh (ssh check, pdsh, 2 hosts x 6)."""
    out = work / "two_hosts"
    hostfile = cluster.hostfile(["node1", "node2"], work / "hostfile_readme")
    job = cluster.start("node1", [str(ROOT / "launch" / "pretrain_multinode.sh"), str(hostfile), str(dataset), str(out),
                                  *pretrain_args(dataset, out, GLOBAL_BATCH // 2)[1:]],
                        env=dict(launch_env, MASTER_PORT=str(next(PORTS))))
    code, output, seconds = finish(job)
    assert code == 0, output[-4000:]
    print(f"\n[multihost] launch/pretrain_multinode.sh on 2 hosts: {seconds:.1f} s")
    return out, output


def test_two_hosts_over_ssh_train_like_one_process(two_hosts, reference, cluster):
    out, output = two_hosts
    # every host took part, said so at the start and at the end; the address is the route's, not 127.0.1.1
    for rank, host in enumerate(("node1", "node2")):
        assert re.search(rf"{host}: uer-ds: rank {rank} of 2 on {host}: local rank 0, device cpu, backend gloo, "
                         rf"address {cluster.addresses[host]} via eth0", output), output[-4000:]
        assert re.search(rf"{host}: uer-ds: rank {rank} of 2 on {host} done: steps 1..{STEPS} \({STEPS} steps\), "
                         rf"{STEPS * GLOBAL_BATCH // 2} samples", output), output[-4000:]
    assert "node1: uer-ds: 2 ranks on 2 host(s) (node1: rank 0; node2: rank 1) run the same job" in output
    ours, theirs = losses(f"{out}.jsonl"), losses(f"{reference}.jsonl")
    assert_losses_close(ours, theirs, TOLERANCE, range(1, STEPS + 1))
    assert_models_close(out, reference, TOLERANCE)
    assert json.loads((out / f"global_step{STEPS}" / "uer_ds.json").read_text())["world_size"] == 2


def test_plain_gloo_fails_on_these_hosts(cluster, work):
    """The control: torch's gloo without uer_ds's choice of address advertises what `hostname` resolves
    to (127.0.1.1 here), and the hosts cannot connect; uer_ds's runs above and below do connect."""
    probe = work / "probe.py"
    probe.write_text("import datetime, torch, torch.distributed as dist\n"
                     "dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=8))\n"
                     "t = torch.ones(1); dist.all_reduce(t); print('connected', t.item())\n")
    port = str(next(PORTS))
    jobs = [cluster.start(host, [sys.executable, str(probe)],
                          env=dict(ENV, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR=cluster.addresses["node1"],
                                   MASTER_PORT=port))
            for rank, host in enumerate(("node1", "node2"))]
    code, output, _ = finish(jobs[1], timeout=60)  # node2 gives up connecting to the address node1 advertised
    stop(jobs[0])
    assert code != 0 and "connected" not in output, output[-2000:]
    # gloo names the advertised address when a connection is refused, and only "Connect timeout" when
    # node2's connects to its own 127.0.1.1 go unanswered until the timeout: either way the mesh fails
    assert "Gloo connectFullMesh failed" in output, output[-2000:]
    assert "remote=[127.0.1.1]" in output or "Connect timeout" in output, output[-2000:]


def test_master_addr_resolving_to_loopback_stops_at_once(cluster, dataset, work, launch_env):
    """--master_addr node1, which node1's own /etc/hosts maps to 127.0.1.1: stopped before any collective,
    naming the host, the address and the fix."""
    out = work / "loopback"
    job = cluster.start("node1", deepspeed(cluster, ["node1", "node2"], work, next(PORTS),
                                           *pretrain_args(dataset, out, 6), master_addr="node1"), env=launch_env)
    code, output, seconds = finish(job, timeout=120)
    assert code != 0
    assert re.search(r"node\d: uer-ds pretrain: error: the job spans 2 hosts \(node1, node2\) but node1 \(rank 0\): "
                     r"MASTER_ADDR 'node1' resolves to 127\.0\.1\.1 here, a loopback address, and `hostname` \(node1\) "
                     r"resolves to 127\.0\.1\.1.*Fix: give --master_addr the address of node1 that the other hosts "
                     r"reach \(`hostname -I` there: 10\.231\.0\.2\)", output), output[-3000:]
    assert not Path(f"{out}.jsonl").exists()
    nothing_left(cluster, ["node1", "node2"])
    print(f"\n[multihost] loopback MASTER_ADDR: stopped after {seconds:.1f} s (launch included)")


def test_openmpi_runner_across_hosts(cluster, dataset, work, launch_env, two_hosts):
    """`deepspeed --launcher openmpi`: mpirun starts the ranks over ssh; uer_ds takes the ranks from
    OMPI_COMM_WORLD_*, MASTER_ADDR/PORT from mpirun -x."""
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed (.ci/run installs Debian's openmpi-bin)")
    out = work / "openmpi"
    port = next(PORTS)
    job = cluster.start("node1", deepspeed(
        cluster, ["node1", "node2"], work, port, *pretrain_args(dataset, out, GLOBAL_BATCH // 2),
        launcher_args=["--launcher", "openmpi", "--launcher_args",
                       f"-x MASTER_ADDR={cluster.addresses['node1']} -x MASTER_PORT={port}"]),
        env=dict(launch_env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
    code, output, _ = finish(job)
    assert code == 0, output[-4000:]
    assert "mpirun -n 2 -hostfile" in output
    assert "uer-ds: rank 1 of 2 on node2: local rank 0" in output
    assert_losses_close(losses(f"{out}.jsonl"), losses(f"{two_hosts[0]}.jsonl"), SAME_SHAPE, range(1, STEPS + 1))
    assert_models_close(out, two_hosts[0], SAME_SHAPE)


def test_three_hosts_zero3_then_export(cluster, dataset, work, launch_env, reference):
    out = work / "three_zero3"
    job = cluster.start("node1", deepspeed(cluster, ["node1", "node2", "node3"], work, next(PORTS),
                                           *pretrain_args(dataset, out, GLOBAL_BATCH // 3, ds_config="zero3")),
                        env=launch_env)
    code, output, _ = finish(job)
    assert code == 0, output[-4000:]
    assert "uer-ds: 3 ranks on 3 host(s) (node1: rank 0; node2: rank 1; node3: rank 2)" in output
    assert_losses_close(losses(f"{out}.jsonl"), losses(f"{reference}.jsonl"), TOLERANCE, range(1, STEPS + 1))
    exported = work / "three_zero3.safetensors"
    done = run_job([sys.executable, "-m", "uer_ds", "export", "--checkpoint", str(out), "--output", str(exported)])
    assert done.returncode == 0, done.stdout[-3000:]
    ours, theirs = load_file(exported), load_file(reference / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=TOLERANCE, msg=key)


# ---- fine-tuning --------------------------------------------------------------------------------------
def test_finetuning_on_two_hosts_equals_one_host(cluster, work, launch_env, reference):
    data = work / "cls"
    data.mkdir()
    for split, rows in (("train", slice(0, 97)), ("dev", slice(0, 33))):
        lines = (CORPORA / "reviews_cls" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        (data / f"{split}.tsv").write_text("\n".join([lines[0], *lines[1:][rows]]) + "\n", encoding="utf-8")

    def args(out):
        return ["finetune", "classifier", "--pretrained_model_path", str(reference / "model"), "--vocab_path",
                str(CORPORA / "vocab.txt"), "--train_path", str(data / "train.tsv"), "--dev_path", str(data / "dev.tsv"),
                "--output_model_path", str(out), "--epochs_num", "2", "--batch_size", "8", "--seq_length", "48",
                "--learning_rate", "1e-3", "--dropout", "0", "--report_steps", "1", "--no_progress",
                "--deepspeed_config", "zero1", "--metrics_path", f"{out}.jsonl"]

    runs = {}
    for name, cmd in (("one_host", [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(next(PORTS)),
                                    "--module", "uer_ds", *args(work / "ft_one_host")]),
                      ("two_hosts", deepspeed(cluster, ["node1", "node2"], work, next(PORTS), *args(work / "ft_two_hosts")))):
        code, output, _ = finish(cluster.start("node1", cmd, env=launch_env))
        assert code == 0, output[-4000:]
        runs[name] = work / f"ft_{name}"
    assert "node2: uer-ds: rank 1 of 2 on node2 done" in output
    one, two = (losses(f"{runs[n]}.jsonl") for n in ("one_host", "two_hosts"))
    assert_losses_close(two, one, SAME_SHAPE, sorted(one))
    dev = [[r["accuracy"] for r in map(json.loads, Path(f"{runs[n]}.jsonl").read_text().splitlines())
            if r.get("split") == "dev"] for n in ("one_host", "two_hosts")]
    assert dev[0] and dev[0] == dev[1]
    a, b = load_file(runs["two_hosts"] / "model.safetensors"), load_file(runs["one_host"] / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=SAME_SHAPE, msg=key)


# ---- every rank runs the same job ---------------------------------------------------------------------
def test_uer_py_two_node_command_with_flags_left_out_on_node2(cluster, dataset, work):
    """UER-py's README: node 0 gives --report_steps / --save_checkpoint_steps, node 1 leaves them out.
    Both nodes stop within seconds, naming each flag and each host's value."""
    out = work / "uer_two_node"
    master = f"tcp://{cluster.addresses['node1']}:{next(PORTS)}"
    common = ["pretrain", "--dataset_path", str(dataset), "--vocab_path", str(CORPORA / "vocab.txt"),
              "--config_path", "bert/tiny", "--output_model_path", str(out), "--world_size", "2",
              "--total_steps", "20", "--master_ip", master, "--backend", "gloo", "--no_progress"]
    start = time.monotonic()
    nodes = [cluster.start("node1", [sys.executable, "-m", "uer_ds", *common, "--gpu_ranks", "0",
                                     "--save_checkpoint_steps", "5", "--report_steps", "1"], env=ENV),
             cluster.start("node2", [sys.executable, "-m", "uer_ds", *common, "--gpu_ranks", "1"], env=ENV)]
    results = [finish(node, timeout=120) for node in nodes]
    seconds = time.monotonic() - start
    for code, output, _ in results:
        assert code == 1, output[-3000:]
        assert re.search(r"uer-ds pretrain: error: the ranks do not run the same job \(compared at start-up, before "
                         r"the first collective\): --report_steps: 1 on node1 \(rank 0\); 100 \(default\) on node2 "
                         r"\(rank 1\); --save_checkpoint_steps: 5 on node1 \(rank 0\); 10000 \(default\) on node2 "
                         r"\(rank 1\)\. Give every host the same command", output), output[-3000:]
    assert seconds < 60, seconds
    assert not out.exists()
    print(f"\n[multihost] UER-py two-node command, node 2 without two flags: both nodes stopped after {seconds:.1f} s")


# ---- faults ------------------------------------------------------------------------------------------
def wait_for_step(job, metrics: Path, step: int, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while not (metrics.exists() and max(losses(metrics), default=0) >= step):
        assert job.poll() is None, job.stdout.read()[-4000:]
        assert time.monotonic() < deadline, f"step {step} not reached in {within} s"
        time.sleep(0.02)


def latest(out: Path) -> str:
    return (out / "latest").read_text().strip()


def resume(cluster, hosts, work, dataset, out, launch_env, metrics: Path) -> str:
    """The same command with --resume (and the global batch kept) on `hosts`: 1 host is one process."""
    args = pretrain_args(dataset, out, GLOBAL_BATCH // len(hosts), "--resume")
    args[args.index("--metrics_path") + 1] = str(metrics)
    if len(hosts) == 1:
        cmd = [sys.executable, "-m", "uer_ds", *args]
    else:
        cmd = deepspeed(cluster, hosts, work, next(PORTS), *args)
    code, output, _ = finish(cluster.start(hosts[0], cmd, env=launch_env if len(hosts) > 1 else ENV))
    assert code == 0, output[-4000:]
    return output


def test_fault_a_worker_killed(cluster, dataset, work, launch_env, two_hosts):
    """SIGKILL of node2's rank mid-run; then resume on the same 2 hosts."""
    out = work / "fault_a"
    job = cluster.start("node1", deepspeed(cluster, ["node1", "node2"], work, next(PORTS),
                                           *pretrain_args(dataset, out, GLOBAL_BATCH // 2, "--dist_timeout",
                                                          str(TIMEOUT))), env=launch_env)
    wait_for_step(job, Path(f"{out}.jsonl"), SAVE_EVERY + 3)
    cluster.ranks("node2")[0].send_signal(signal.SIGKILL)
    code, output, seconds = finish(job)
    assert code != 0 and seconds < BOUND_KILL, (code, seconds)
    assert re.search(r"node1: uer-ds pretrain: error: rank 0 on node1 \(10\.231\.0\.2\): a collective failed; lost "
                     r"rank 1 on node2 \(10\.231\.0\.3\)", output), output[-4000:]
    nothing_left(cluster, ["node1", "node2"])
    print(f"\n[multihost] (a) worker SIGKILLed: job ended after {seconds:.1f} s (rc {code}); resumes at {latest(out)}")
    step = int(latest(out).removeprefix("global_step"))
    resume(cluster, ["node1", "node2"], work, dataset, out, launch_env, work / "fault_a_resumed.jsonl")
    assert_losses_close(losses(work / "fault_a_resumed.jsonl"), losses(f"{two_hosts[0]}.jsonl"), SAME_SHAPE,
                        range(step + 1, STEPS + 1))
    assert_models_close(out, two_hosts[0], SAME_SHAPE)


def test_fault_b_link_cut(cluster, dataset, work, launch_env, reference):
    """node2's link goes down mid-run: the collective times out (--dist_timeout), ssh's keep-alive ends
    the connection to node2; then resume on 3 hosts (another world size: the universal checkpoint)."""
    out = work / "fault_b"
    job = cluster.start("node1", deepspeed(cluster, ["node1", "node2"], work, next(PORTS),
                                           *pretrain_args(dataset, out, GLOBAL_BATCH // 2, "--dist_timeout",
                                                          str(TIMEOUT))), env=launch_env)
    wait_for_step(job, Path(f"{out}.jsonl"), SAVE_EVERY + 3)
    cluster.ctl("link", "node2", "down")
    try:
        code, output, seconds = finish(job)
        left = cluster.wait_gone(["node1", "node2"], 20)
    finally:
        cluster.ctl("link", "node2", "up")
    cluster.kill_everything(["node1", "node2"])
    assert code != 0 and seconds < BOUND_TIMEOUT, (code, seconds)
    assert not left, f"processes left running: {left}"
    # said by the heartbeat's watchdog (gloo itself may wait in TCP's retransmissions for 15 minutes), or by
    # gloo's timeout, whichever comes first
    assert re.search(r"node1: uer-ds(?: pretrain)?: error: rank 0 on node1 \(10\.231\.0\.2\): .*rank 1 on node2 "
                     r"\(10\.231\.0\.3\) not heard from for \d+ s", output), output[-4000:]
    assert "pdsh@node1: node2: ssh exited with exit code 255" in output
    print(f"\n[multihost] (b) link cut: job ended after {seconds:.1f} s (rc {code}, --dist_timeout {TIMEOUT}); "
          f"resumes at {latest(out)} on 3 hosts")
    step = int(latest(out).removeprefix("global_step"))
    output = resume(cluster, ["node1", "node2", "node3"], work, dataset, out, launch_env, work / "fault_b_resumed.jsonl")
    assert "loading it through DeepSpeed's universal checkpoint" in output
    assert_losses_close(losses(work / "fault_b_resumed.jsonl"), losses(f"{reference}.jsonl"), TOLERANCE,
                        range(step + 1, STEPS + 1))


def test_fault_c_host_without_sshd_at_launch(cluster, dataset, work, launch_env):
    """node2's sshd is down: launch/pretrain_multinode.sh refuses at once; plain `deepspeed --hostfile`
    starts node1 only, whose rank 0 waits --dist_timeout for rank 1 and then stops, naming it."""
    out = work / "fault_c"
    cluster.hostfile(["node1", "node2"], work / "hostfile_c")
    cluster.ctl("sshd", "node2", "stop")
    try:
        job = cluster.start("node1", [str(ROOT / "launch" / "pretrain_multinode.sh"), str(work / "hostfile_c"),
                                      str(dataset), str(out)], env=launch_env)
        code, output, quick = finish(job, timeout=60)
        assert code == 1 and "pretrain_multinode.sh: host node2 does not answer ssh" in output, output[-3000:]
        assert "not launching: no ssh to node2" in output
        job = cluster.start("node1", deepspeed(cluster, ["node1", "node2"], work, next(PORTS),
                                               *pretrain_args(dataset, out, 6, "--dist_timeout", str(TIMEOUT))),
                            env=launch_env)
        code, output, seconds = finish(job)
    finally:
        cluster.ctl("sshd", "node2", "start")
    assert code != 0 and seconds < BOUND_TIMEOUT, (code, seconds)
    assert "pdsh@node1: node2: ssh exited with exit code 255" in output
    assert re.search(rf"node1: uer-ds pretrain: error: rank 0 on node1: rank\(s\) 1 \(node2\) did not reach the "
                     rf"rendezvous within {TIMEOUT} s \(--dist_timeout\); 1 of 2 did \(0 \(node1\)\)", output), output[-3000:]
    nothing_left(cluster, ["node1", "node2"])
    assert not Path(f"{out}.jsonl").exists()
    print(f"\n[multihost] (c) sshd down at launch: pretrain_multinode.sh refused after {quick:.1f} s; deepspeed "
          f"--hostfile ended after {seconds:.1f} s (rc {code}, --dist_timeout {TIMEOUT})")


def test_fault_d_worker_killed_during_a_checkpoint_save(cluster, dataset, work, launch_env, reference):
    """node2's rank is stopped the moment a checkpoint directory appears (while `latest` still names the
    previous one), then killed: `latest` stays on the last complete checkpoint, which resumes on 1 host;
    the interrupted step's directory, left with node2's shard of 2 ranks, is replaced, not mixed in."""
    out = work / "fault_d"
    job = cluster.start("node1", deepspeed(cluster, ["node1", "node2"], work, next(PORTS),
                                           *pretrain_args(dataset, out, GLOBAL_BATCH // 2, "--dist_timeout",
                                                          str(TIMEOUT))), env=launch_env)
    wait_for_step(job, Path(f"{out}.jsonl"), SAVE_EVERY + 1)  # a complete checkpoint first
    ranks = cluster.ranks("node2")
    assert len(ranks) == 1
    partial = stop_during_save(job, out, ranks[0])
    ranks[0].send_signal(signal.SIGKILL)  # a stopped process dies too
    code, output, seconds = finish(job)
    assert code != 0 and seconds < BOUND_KILL, (code, seconds)
    assert "lost rank 1 on node2 (10.231.0.3)" in output, output[-4000:]
    nothing_left(cluster, ["node1", "node2"])
    step = int(partial.removeprefix("global_step"))
    assert latest(out) == f"global_step{step - SAVE_EVERY}", latest(out)
    assert not (out / partial / "uer_ds.json").exists()
    print(f"\n[multihost] (d) worker killed while {partial} was being saved: job ended after {seconds:.1f} s "
          f"(rc {code}); latest is {latest(out)}; resumes on 1 host")
    resume(cluster, ["node1"], work, dataset, out, launch_env, work / "fault_d_resumed.jsonl")
    assert_losses_close(losses(work / "fault_d_resumed.jsonl"), losses(f"{reference}.jsonl"), TOLERANCE,
                        range(step - SAVE_EVERY + 1, STEPS + 1))
    assert not list((out / partial).glob("*zero_pp_rank_1_*"))  # the 2-rank leftover went before the re-save


def stop_during_save(job, out: Path, rank, within: float = 180) -> str:
    """SIGSTOP `rank` as soon as a checkpoint directory that `latest` does not name appears; if that
    checkpoint turns out complete already (the stop came late), let it go on and wait for the next.
    Returns the tag caught half-way."""
    deadline, tried = time.monotonic() + within, {latest(out)}
    while time.monotonic() < deadline:
        assert job.poll() is None, job.stdout.read()[-4000:]
        fresh = [p.name for p in out.glob("global_step*") if p.name not in tried and not p.name.endswith("_universal")]
        if fresh:
            rank.suspend()
            tag = fresh[0]
            if latest(out) != tag and not (out / tag / "uer_ds.json").exists():
                return tag
            tried.add(tag)
            rank.resume()
        time.sleep(0.001)
    pytest.fail("no checkpoint save caught half-way")
