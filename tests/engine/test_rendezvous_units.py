"""The start-up check of a multi-process job without processes: what ranks compare (and what they may
not differ in), the messages a difference, a missing rank or a lost peer gives, the address a rank
advertises, OpenMPI's rank variables, and the removal of an interrupted save's leftovers."""
from __future__ import annotations

import argparse
import json
import time

import pytest

from uer_ds.cli.common import file_identity, flags_given, job_fingerprint
from uer_ds.cli.pretrain import add_arguments
from uer_ds.engine import checkpoint as ckpt
from uer_ds.engine.rendezvous import (Peer, Rendezvous, adopt_mpi_environment, choose_address, describe_failure,
                                      is_collective_failure, job_differences, start_line, verdict)

# UER-py's README, "Pre-training on multiple machines": node 0 and node 1 (uer_ds takes the same flags)
UER_NODE = ["pretrain", "--dataset_path", "dataset.pt", "--vocab_path", "models/google_zh_vocab.txt",
            "--config_path", "models/bert/base_config.json", "--output_model_path", "models/output_model.bin",
            "--world_size", "16", "--total_steps", "100000", "--master_ip", "tcp://9.73.138.133:12345"]
NODE_0 = [*UER_NODE, "--gpu_ranks", *map(str, range(8)), "--save_checkpoint_steps", "10000", "--report_steps", "100"]
NODE_1 = [*UER_NODE, "--gpu_ranks", *map(str, range(8, 16))]


def fingerprint(argv: list[str], **sections) -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(argv[1:])
    args.command_argv = argv
    return json.loads(json.dumps(job_fingerprint(args, **sections)))  # as it travels between ranks


def peer(rank: int, host: str, address: str = None, problem: str = None, machine: str = None) -> Peer:
    return Peer(rank, host, address, "eth0" if address else None, "test", 0, "cpu", "gloo", 100 + rank,
                machine or host, problem)


def test_uer_py_commands_as_documented_agree():
    """Node 1 leaves out --save_checkpoint_steps and --report_steps, but node 0 gives their defaults:
    the same job (a difference only in --gpu_ranks, which names each node's own ranks)."""
    assert job_differences([fingerprint(NODE_0), fingerprint(NODE_1)], ["node0 (rank 0)", "node1 (rank 8)"]) == []


def test_a_flag_left_out_on_one_node_is_named_with_each_value():
    node_0 = [*UER_NODE, "--gpu_ranks", "0", "--save_checkpoint_steps", "500", "--report_steps", "10"]
    lines = job_differences([fingerprint(node_0), fingerprint(NODE_1)], ["node0 (rank 0)", "node1 (rank 8)"])
    assert lines == ["--report_steps: 10 on node0 (rank 0); 100 (default) on node1 (rank 8)",
                     "--save_checkpoint_steps: 500 on node0 (rank 0); 10000 (default) on node1 (rank 8)"]


def test_sections_beyond_the_arguments_are_compared_entry_by_entry():
    jobs = [fingerprint(NODE_0, **{"model config": {"hidden_size": 768}, "ds_config": {"zero_optimization": {
        "stage": 2}}, "dataset": {"run_id": "aa"}}) for _ in range(3)]
    jobs[2]["ds_config"]["zero_optimization"]["stage"] = 3
    jobs[1]["dataset"]["run_id"] = "bb"
    where = ["h1 (rank 0)", "h2 (rank 1)", "h3 (rank 2)"]
    assert job_differences(jobs, where) == ['dataset run_id: "aa" on h1 (rank 0), h3 (rank 2); "bb" on h2 (rank 1)',
                                            "ds_config zero_optimization.stage: 2 on h1 (rank 0), h2 (rank 1); "
                                            "3 on h3 (rank 2)"]
    message = verdict([peer(r, f"h{r + 1}") for r in range(3)], jobs)
    assert message.startswith("the ranks do not run the same job (compared at start-up, before the first collective): "
                              "dataset run_id")
    assert verdict([peer(r, f"h{r + 1}") for r in range(3)], [jobs[0]] * 3) is None


def test_files_named_by_arguments_are_compared_by_content(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    first = fingerprint([*NODE_0[:4], str(vocab), *NODE_0[5:]])
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n")
    second = fingerprint([*NODE_0[:4], str(vocab), *NODE_0[5:]])
    assert first["files"]["--vocab_path"] != second["files"]["--vocab_path"]
    [line] = job_differences([first, second], ["a (rank 0)", "b (rank 1)"])
    assert line.startswith("files --vocab_path: \"sha256 ")
    assert file_identity(str(vocab)) == second["files"]["--vocab_path"]
    assert flags_given(["pretrain", "--a", "1", "--b=2", "x"]) == ["a", "b"]


def test_an_unreachable_address_matters_only_across_machines():
    problem = "MASTER_ADDR 'node1' resolves to 127.0.1.1 here"
    one_machine = [peer(0, "vm", problem=problem, machine="m"), peer(1, "vm", machine="m")]
    assert verdict(one_machine, [{}, {}]) is None  # simulated nodes on one machine: loopback reaches all
    two = [peer(0, "node1", problem=problem), peer(1, "node2", "10.0.0.3")]
    assert verdict(two, [{}, {}]) == f"the job spans 2 hosts (node1, node2) but node1 (rank 0): {problem}"


def test_address_from_the_route_or_the_named_interface(monkeypatch):
    interfaces = {"lo": ["127.0.0.1"], "eth0": ["10.1.2.3"]}
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    chosen = choose_address("127.0.0.1", "gloo", env={}, interfaces=interfaces)
    assert chosen.address is None and "127.0.0.1" in chosen.problem and "10.1.2.3" in chosen.problem
    assert choose_address("x", "gloo", env={"GLOO_SOCKET_IFNAME": "eth0"}, interfaces=interfaces).address == "10.1.2.3"
    lo = choose_address("x", "gloo", env={"GLOO_SOCKET_IFNAME": "lo"}, interfaces=interfaces)
    assert "loopback interface" in lo.problem
    with pytest.raises(ValueError, match=r"host box: GLOO_SOCKET_IFNAME=ib0 names no interface with an IPv4 address "
                                         r"here \(interfaces: eth0 \(10\.1\.2\.3\), lo \(127\.0\.0\.1\)\)"):
        choose_address("x", "gloo", env={"GLOO_SOCKET_IFNAME": "ib0"}, interfaces=interfaces)
    with pytest.raises(ValueError, match=r"host box: MASTER_ADDR 'no-such-host\.invalid' does not resolve here"):
        choose_address("no-such-host.invalid", "gloo", env={}, interfaces=interfaces)
    # NCCL's exclusion lists are NCCL's to resolve
    assert choose_address("x", "nccl", env={"NCCL_SOCKET_IFNAME": "^docker"}, interfaces=interfaces).address is None


def test_route_to_a_master_on_this_machine_is_its_own_interface():
    """MASTER_ADDR one of this machine's addresses: the route's source is that address, on its interface
    (what `ip addr` lists, read here through psutil)."""
    from uer_ds.engine.rendezvous import interface_addresses, is_loopback

    mine = [(name, a) for name, addrs in interface_addresses().items() for a in addrs if not is_loopback(a)]
    if not mine:
        pytest.skip("this machine has no non-loopback IPv4 address")
    name, address = mine[0]
    chosen = choose_address(address, "gloo", env={})
    assert (chosen.address, chosen.interface, chosen.problem) == (address, name, None)
    assert chosen.how == f"the route to MASTER_ADDR {address}"


def test_start_line_names_host_rank_device_backend_and_address():
    assert start_line(peer(1, "node2", "10.0.0.3"), 2) == ("uer-ds: rank 1 of 2 on node2: local rank 0, device cpu, "
                                                            "backend gloo, address 10.0.0.3 via eth0, test")


def test_openmpi_rank_variables(monkeypatch):
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_ADDR": "10.0.0.1"}
    assert adopt_mpi_environment(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_SIZE"], env["MASTER_PORT"]) == \
        ("3", "4", "1", "2", "29500")
    assert not adopt_mpi_environment(env)  # RANK set: a launcher already named the ranks
    with pytest.raises(ValueError, match=r"started by OpenMPI \(OMPI_COMM_WORLD_SIZE=4\) without MASTER_ADDR"):
        adopt_mpi_environment({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4"})


def test_a_lost_peer_is_named_from_the_address_in_the_error():
    peers = [peer(0, "node1", "10.0.0.2"), peer(1, "node2", "10.0.0.3"), peer(2, "node3", "10.0.0.4")]
    rdv = Rendezvous(None, peers, peers[0], 20.0, "10.0.0.2:29500")
    now = time.monotonic()
    rdv.heard.update({0: now, 1: now, 2: now})
    err = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error [10.0.0.3]:45783: Connection reset by peer")
    assert is_collective_failure(err) and not is_collective_failure(RuntimeError("shape mismatch"))
    assert describe_failure(err, rdv).startswith("rank 0 on node1 (10.0.0.2): a collective failed; lost rank 1 on "
                                                 "node2 (10.0.0.3) (its process ended or the network to it was cut)")
    rdv.heard[2] = now - 30  # node3 went silent: a timeout names it
    timeout = RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 20000ms for recv")
    assert describe_failure(timeout, rdv).startswith(
        "rank 0 on node1 (10.0.0.2): a collective did not complete within 20 s (--dist_timeout); rank 2 on node3 "
        "(10.0.0.4) not heard from for 30 s (its host down or cut off?)")


def test_an_interrupted_save_is_removed_but_never_latest(tmp_path):
    for tag in ("global_step10", "global_step20"):
        (tmp_path / tag).mkdir()
        (tmp_path / tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_text("x")
    ckpt.write_latest(tmp_path, "global_step10")
    assert not ckpt.remove_incomplete(tmp_path, "global_step10") and (tmp_path / "global_step10").is_dir()
    assert ckpt.remove_incomplete(tmp_path, "global_step20") and not (tmp_path / "global_step20").exists()
    assert not ckpt.remove_incomplete(tmp_path, "global_step30")


def test_dist_timeout_must_be_positive():
    from uer_ds.engine import dist

    with pytest.raises(ValueError, match=r"--dist_timeout has value 0: must be a positive number of seconds"):
        dist.init_distributed(timeout=0)


def test_the_watchdog_stops_a_rank_once_a_peer_is_silent_longer_than_the_timeout():
    """What bounds a cut link: gloo may wait in TCP's retransmissions for 15 minutes."""
    peers = [peer(0, "node1", "10.0.0.2"), peer(1, "node2", "10.0.0.3")]
    now = time.monotonic()
    zero = Rendezvous(None, peers, peers[0], 15.0, "10.0.0.2:29500", heard={0: now, 1: now - 10})
    assert zero.lost(15) is None
    zero.heard[1] = now - 16
    assert zero.lost(15).startswith("rank 0 on node1 (10.0.0.2): rank 1 on node2 (10.0.0.3) not heard from for 16 s "
                                    "(longer than --dist_timeout 15 s): its host is down or cut off")
    one = Rendezvous(None, peers, peers[1], 15.0, "10.0.0.2:29500", last_reply=now - 5)
    assert one.lost(15) is None
    one.last_reply = now - 20
    assert one.lost(15).startswith("rank 1 on node2 (10.0.0.3): rank 0's store (10.0.0.2:29500) unanswered for 20 s")
