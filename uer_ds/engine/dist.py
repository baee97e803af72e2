"""Process-group start-up and the few collective helpers the loop needs."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> None:
    """Join the job the deepspeed launcher (or torchrun) started; a plain `uer-ds ...` run becomes a
    one-process job.  Idempotent."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if dist.is_available() and dist.is_initialized():
        return
    if "RANK" not in os.environ:  # not started by a launcher: a job of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK=os.environ.get("LOCAL_RANK", "0"),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())))
    os.environ.setdefault("LOCAL_RANK", "0")
    backend = get_accelerator().communication_backend_name()
    deepspeed.init_distributed(dist_backend=backend)
    _unlink_shm_allreduce_buffer()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


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
