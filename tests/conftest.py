"""Shared fixtures: where the real data lives, and the repository root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# CI puts the shared data beside the checkout; a user's clone may not have it (tests then skip).
SHARED_DATA = Path(os.environ.get("UER_DS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPORA = ROOT / "corpora"


def shared(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the shared UER-py data; set UER_DS_SHARED_DATA to its folder)")
    return path


# pytest-xdist (`-n 2`, what launch/test.sh runs): one torch thread per worker, so two workers share the
# two cores instead of four threads fighting over them (oneDNN's LSTM slows down many times when
# oversubscribed); subprocesses inherit OMP_NUM_THREADS.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# An in-process command makes the test process a job of one (uer_ds.engine.dist.init_distributed sets
# RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and keeps its process group: the rank
# variables stay (DeepSpeed reads LOCAL_RANK when it builds the next engine), but MASTER_PORT, a port
# this process still listens on, must not reach a later test's subprocess (EADDRINUSE there)
@pytest.fixture(autouse=True)
def _master_port_not_inherited():
    before = os.environ.get("MASTER_PORT")
    yield
    if before is None:
        os.environ.pop("MASTER_PORT", None)


@pytest.fixture
def zh_vocab() -> Path:
    return shared("models/google_zh_vocab.txt")


@pytest.fixture(scope="session")
def sample_vocab() -> Path:
    return CORPORA / "vocab.txt"


# DeepSpeed compiles its CPU ops (CPU Adam, the shared-memory allreduce) the first time a job needs
# them, into TORCH_EXTENSIONS_DIR.  Tests share one folder, and the ops are built here, in the test
# process, before the first multi-process launch: a build inside a launched job runs under that job's
# timeout, and a build killed half-way leaves torch's lock file behind, on which every later job waits
# forever (what stalled CI on a fresh machine).
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions"))


@pytest.fixture(scope="session")
def deepspeed_ops() -> None:
    import time

    from deepspeed.accelerator import get_accelerator

    for name in ("CPUAdamBuilder", "ShareMemCommBuilder"):
        builder = get_accelerator().create_op_builder(name)
        if builder is not None and builder.is_compatible(verbose=False):
            start = time.perf_counter()
            builder.load(verbose=False)
            print(f"\n[deepspeed_ops] {name} ready in {time.perf_counter() - start:.0f} s")


# ---- the suite leaves no files in the checkout (temporary directories only) ---------------------------
# What a run may add at the top level: caches and build outputs the set-up itself makes.
_ALLOWED_NEW = {".torch_extensions", ".pytest_cache", ".hypothesis", "build", "uer_ds.egg-info", ".whl"}


def _checkout_files() -> set[str]:
    """Top-level names of the checkout and every file under out/ (where users keep their runs)."""
    names = {p.name for p in ROOT.iterdir()}
    out = ROOT / "out"
    if out.is_dir():
        names |= {str(p.relative_to(ROOT)) for p in out.rglob("*")}
    return names


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist), not a worker
        session.config._uer_ds_files = _checkout_files()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_uer_ds_files", None)
    if before is None:
        return
    added = sorted(_checkout_files() - before - _ALLOWED_NEW)
    if added:
        print(f"\nthe test run wrote into the checkout (tests must use temporary directories): {added[:20]}")
        session.exitstatus = 1
