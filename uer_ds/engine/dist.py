"""Process-group start-up, UER-py's launch flags, and the few collective helpers the loop needs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import urlparse

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEFAULT_DIST_TIMEOUT = 300.0  # seconds; DeepSpeed's default is 10 minutes (DEEPSPEED_TIMEOUT), torch's 30
_rendezvous = None  # the Rendezvous of this process's job (several processes), for failure messages


def init_distributed(timeout: Optional[float] = None, job: Optional[dict] = None) -> None:
    """Join the job the deepspeed launcher (or torchrun, mpirun, UER-py's flags) started; a plain
    `uer-ds ...` run becomes a one-process job.  Idempotent.

    timeout: seconds any collective (and the start-up rendezvous) may wait before it fails
    (--dist_timeout; default DEFAULT_DIST_TIMEOUT).  job: this rank's fingerprint ({section: {entry:
    value}}, see uer_ds.recipes.inputs.job_fingerprint); with several processes every rank's is compared
    before the process group exists (uer_ds.engine.rendezvous.join), and a difference raises ValueError
    naming the entry and each host's value.  Raises RendezvousError when ranks do not all arrive.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    from uer_ds.engine import rendezvous

    global _rendezvous
    timeout = DEFAULT_DIST_TIMEOUT if timeout is None else float(timeout)
    if not timeout > 0:
        raise ValueError(f"--dist_timeout has value {timeout:g}: must be a positive number of seconds")
    if dist.is_available() and dist.is_initialized():
        return
    rendezvous.adopt_mpi_environment()
    if "RANK" not in os.environ:  # not started by a launcher: a job of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK=os.environ.get("LOCAL_RANK", "0"),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())))
    os.environ.setdefault("LOCAL_RANK", "0")
    if os.environ.get("WORLD_SIZE") == "1" and "MASTER_PORT" not in os.environ:  # a job of one without a port
        os.environ.update(MASTER_ADDR=os.environ.get("MASTER_ADDR", "127.0.0.1"), MASTER_PORT=str(_free_port()))
    backend = os.environ.get(BACKEND_ENV) or get_accelerator().communication_backend_name()
    rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    limit = timedelta(seconds=timeout)
    if world > 1:
        _rendezvous = rendezvous.join(rank, world, local_rank, backend, get_accelerator().device_name(local_rank),
                                      timeout, job)
        dist.init_process_group(backend, store=_rendezvous.store, rank=rank, world_size=world, timeout=limit)
        _rendezvous.start_heartbeat()
    deepspeed.init_distributed(dist_backend=backend, timeout=limit)
    _unlink_shm_allreduce_buffer()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def failure_message(err: BaseException) -> Optional[str]:
    """One line naming this rank and host and the peer lost, when `err` is a failed or timed-out
    collective; None for any other error."""
    from uer_ds.engine import rendezvous

    if not rendezvous.is_collective_failure(err):
        return None
    return rendezvous.describe_failure(err, _rendezvous)


def host() -> str:
    return socket.gethostname()


# ---- UER-py's launch flags: --world_size N --gpu_ranks ... [--master_ip tcp://host:port] [--backend] ----
BACKEND_ENV = "UER_DS_BACKEND"  # the process-group backend chosen by --backend (default: the accelerator's)
LAUNCHED_ENV = "UER_DS_LAUNCHED"  # set in the processes launch_local_ranks starts


@dataclass(frozen=True)
class LocalLaunch:
    """This machine's part of a UER-py style job: global ranks `ranks` of `world_size` processes."""

    world_size: int
    ranks: tuple[int, ...]
    master_addr: str
    master_port: int
    backend: Optional[str]

    @property
    def spawns(self) -> bool:
        """Several processes (or a rank other than 0 of a multi-node job) need their own processes."""
        return self.world_size > 1


def parse_master_ip(text: str) -> tuple[str, int]:
    """UER-py's `tcp://host:port` (the scheme may be left out) -> (host, port)."""
    parsed = urlparse(text if "://" in text else f"tcp://{text}")
    if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
        raise ValueError(f"--master_ip has value '{text}': must be tcp://HOST:PORT (UER-py's form, e.g. "
                         "tcp://10.0.0.1:12345), the first node's address and a free port")
    return parsed.hostname, parsed.port


def plan_local_launch(world_size: Optional[int], gpu_ranks: Sequence[int], master_ip: Optional[str],
                      backend: Optional[str], cuda_available: bool) -> Optional[LocalLaunch]:
    """Check UER-py's launch flags and say what to start; None when none was given.

    UER-py's meaning: `--world_size` processes in the whole job; `--gpu_ranks` the global ranks this
    machine runs, one process each, on local devices 0, 1, ... in that order; `--master_ip` where
    rank 0 listens (needed when other machines take part); `--world_size 1 --gpu_ranks K` is one
    process on device K.  Errors name the flag, the value and the rule.
    """
    if world_size is None and not gpu_ranks and master_ip is None and backend is None:
        return None
    world = 1 if world_size is None else world_size
    ranks = tuple(gpu_ranks)
    if world <= 0:
        raise ValueError(f"--world_size has value {world}: must be positive")
    if world > 1 and not ranks:
        raise ValueError(f"--world_size {world} needs --gpu_ranks: the global ranks (0..{world - 1}) this machine "
                         "runs, e.g. --gpu_ranks 0 1")
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"--gpu_ranks has value {list(ranks)}: each rank may appear once")
    if world > 1 and any(not 0 <= r < world for r in ranks):
        raise ValueError(f"--gpu_ranks has value {list(ranks)}: ranks must be in 0..{world - 1} (--world_size {world})")
    if world == 1 and len(ranks) > 1:
        raise ValueError(f"--gpu_ranks has {len(ranks)} ranks but --world_size is 1: give --world_size {len(ranks)}")
    if backend == "nccl" and not cuda_available:
        raise ValueError("--backend nccl needs CUDA GPUs and this machine has none: use --backend gloo")
    if master_ip is not None:
        addr, port = parse_master_ip(master_ip)
    elif world > len(ranks):
        raise ValueError(f"--world_size {world} with --gpu_ranks {list(ranks)}: the other ranks run on other machines, "
                         "so give --master_ip tcp://FIRST_NODE:PORT (the same on every machine)")
    else:
        addr, port = "127.0.0.1", _free_port()
    return LocalLaunch(world, ranks or (0,), addr, port, backend)


def launch_env(plan: LocalLaunch, index: int) -> dict[str, str]:
    """The environment of this machine's index-th process (what torch.distributed's env:// reads)."""
    single = plan.world_size == 1
    env = {"RANK": "0" if single else str(plan.ranks[index]), "WORLD_SIZE": str(plan.world_size),
           # UER-py: one process on device gpu_ranks[0] alone; otherwise process i on local device i
           "LOCAL_RANK": str(plan.ranks[0] if single else index), "LOCAL_SIZE": str(len(plan.ranks)),
           "MASTER_ADDR": plan.master_addr, "MASTER_PORT": str(plan.master_port), LAUNCHED_ENV: "1"}
    if plan.backend:
        env[BACKEND_ENV] = plan.backend
    return env


def launch_local_ranks(plan: LocalLaunch, argv: Sequence[str]) -> int:
    """Start this machine's processes (`python -m uer_ds ARGV` each, with launch_env) and wait.

    If one fails, the others are stopped and its exit status returned; Ctrl-C stops them all.
    """
    procs = []
    for index in range(len(plan.ranks)):
        env = dict(os.environ, **launch_env(plan, index))
        procs.append(subprocess.Popen([sys.executable, "-m", "uer_ds", *argv], env=env))
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = next((c for c in codes if c not in (None, 0)), None)
            if failed is not None or all(c == 0 for c in codes):
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        failed = 130
    if failed is not None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return int(failed)
    return 0


def in_launched_process() -> bool:
    """True inside a process started by launch_local_ranks (or any launcher that set RANK)."""
    return "RANK" in os.environ


def _unlink_shm_allreduce_buffer() -> None:
    """DeepSpeed's CPU backend creates a 66 MB shared-memory file per rank,
    /dev/shm/deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>, and never removes it: every CPU
    job (one process or many) left 66 MB of RAM per rank behind, until a machine running many jobs
    (our test suite) ran out of memory.  Its start-up maps every peer's file before it returns, so
    once all ranks pass a barrier each rank removes its own name; the memory stays mapped while the
    job runs and is freed when the last process exits, however it exits."""
    shm = Path("/dev/shm")
    name = "deepspeed_allreduce_buffer_{}_{}_{}_{}".format(os.getuid(), os.environ.get("MASTER_ADDR", ""),
                                                         os.environ.get("MASTER_PORT", ""), os.environ["RANK"])
    # DeepSpeed makes the files only when all ranks are on this machine (LOCAL_SIZE == WORLD_SIZE), a
    # condition every rank sees alike, so either all ranks reach the barrier or none does
    if os.environ.get("LOCAL_SIZE") != os.environ.get("WORLD_SIZE") or not (shm / name).exists():
        return
    barrier()
    (shm / name).unlink(missing_ok=True)


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank0() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over all ranks (a copy; float64 on CPU so counts stay exact)."""
    out = values.detach().to(torch.float64).cpu().clone()
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            out = out.cuda()
        dist.all_reduce(out)
    return out.cpu()


def all_reduce_in_place(values: torch.Tensor, group=None, op: str = "sum") -> None:
    """Reduce `values` over the ranks of `group` (default: all) in place, where they are (a device
    tensor stays on the device: nothing is read back).  op: sum or min."""
    if world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM, group=group)


def all_gather_object(obj: object) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (pickled; for small results such as
    predictions)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def device() -> torch.device:
    from deepspeed.accelerator import get_accelerator

    return torch.device(get_accelerator().device_name(int(os.environ.get("LOCAL_RANK", "0"))))
