"""uer_ds.outputs: one writer per output (an advisory flock, held by a live process, taken over from a
dead one) and a full disk said as "no space left" with the path, the partial files removed.  The
commands that use them (pretrain, finetune, preprocess) are tested end to end in
tests/engine/test_outputs_cli.py; these are the pieces, against real processes and real errnos."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from uer_ds import outputs
from uer_ds.outputs import NoSpaceError, OutputInUseError, lock_output

HOLD = textwrap.dedent("""
    import sys, time
    from uer_ds.outputs import lock_output
    lock = lock_output(sys.argv[1], "--output_model_path", "holder test", prefix=sys.argv[2] == "prefix")
    print("locked", flush=True)
    time.sleep(600)
""")


def hold(path: Path, prefix: bool = False) -> subprocess.Popen:
    """Another process that takes the lock of `path` and keeps it until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "prefix" if prefix else "dir"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_live_writer_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    try:
        with pytest.raises(OutputInUseError, match=rf"--output_model_path {out} is being written by process "
                                                   rf"{holder.pid} on \S+ \(holder test, started [0-9-]+ [0-9:]+\): "
                                                   r"one writer per output"):
            lock_output(out, "--output_model_path")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # killed without releasing: the kernel dropped the flock, the file still names the dead process
    assert json.loads((out / outputs.LOCK_NAME).read_text())["pid"] == holder.pid
    lock = lock_output(out, "--output_model_path", "the next run")
    assert lock.note("--output_model_path", out) == (
        f"--output_model_path {out}: took over the lock {out / outputs.LOCK_NAME} of process {holder.pid} on "
        f"{json.loads((out / outputs.LOCK_NAME).read_text())['host']} (holder test, started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lock.taken_over['started']))}), which is no longer "
        "running (it ended without releasing it); its output may be incomplete")
    assert json.loads((out / outputs.LOCK_NAME).read_text())["pid"] == os.getpid()
    with pytest.raises(OutputInUseError, match=f"is being written by process {os.getpid()}"):  # one per process too
        lock_output(out, "--output_model_path")
    lock.release()
    assert not (out / outputs.LOCK_NAME).exists()
    again = lock_output(out, "--output_model_path")  # a clean release leaves nothing to take over
    assert again.note("--output_model_path", out) is None
    again.release()


def test_a_forked_worker_does_not_keep_a_killed_writers_lock(tmp_path):
    """A DataLoader worker is a fork of the writer: when the writer is killed, the orphaned worker must not
    go on holding the lock (seen: `kill -9` of a pretrain, then the next run was refused, naming the dead one)."""
    out = tmp_path / "run"
    script = textwrap.dedent("""
        import os, sys, time
        from uer_ds.outputs import lock_output
        lock = lock_output(sys.argv[1], "--output_model_path", "holder test")
        child = os.fork()
        if child == 0:  # os.fork returns here after the fork hooks ran
            print(os.getpid(), flush=True)
            time.sleep(600)
            os._exit(0)
        time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())  # the worker is past the fork
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)  # the worker lives on
        lock = lock_output(out, "--output_model_path")
        assert f"of process {holder.pid} on" in lock.note("--output_model_path", out)
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_dataset_prefix_is_locked_beside_it_and_a_directory_made_for_nothing_goes(tmp_path):
    prefix = tmp_path / "data" / "corpus"
    holder = hold(prefix, prefix=True)
    try:
        assert (tmp_path / "data" / ".corpus.uer_ds.lock").is_file()
        with pytest.raises(OutputInUseError, match=f"--dataset_path {prefix} is being written by process {holder.pid}"):
            lock_output(prefix, "--dataset_path", prefix=True)
        assert lock_output(tmp_path / "data" / "other", "--dataset_path", prefix=True).release() is None  # other name
    finally:
        holder.kill()
        holder.wait()
    fresh = tmp_path / "new" / "run"
    lock_output(fresh, "--output_model_path").release()
    # the run's own directory and the parent the lock made for it, both empty, are removed (a failed run with
    # UER-py's default models/finetuned_model.bin left models/ behind)
    assert not fresh.exists() and not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    with lock_output(kept, "--output_model_path"):
        (kept / "model.bin").write_bytes(b"x")
    assert [p.name for p in kept.iterdir()] == ["model.bin"]


def test_a_full_disk_is_named_and_the_partial_files_removed(tmp_path, monkeypatch):
    partial = tmp_path / "ckpt"
    partial.mkdir()
    (partial / "half.pt").write_bytes(b"x" * 100)
    tmp = tmp_path / ".model.tmp"
    tmp.write_bytes(b"y")
    with pytest.raises(NoSpaceError, match=rf"^no space left on device: writing {partial} failed \([0-9,]+ bytes free "
                                           r"there\); the partial checkpoint was removed\. Free some space") as err:
        with outputs.writing(partial, [partial, tmp], what="checkpoint"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC and not partial.exists() and not tmp.exists()

    # torch.save's own failure has no errno: a full disk when the file system is then (nearly) full
    (tmp_path / "half.pt").write_bytes(b"x")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: SimpleNamespace(free=4096))
    with pytest.raises(NoSpaceError, match="no space left on device: writing .* failed \\(4,096 bytes free there\\)"):
        with outputs.writing(tmp_path / "half.pt", [tmp_path / "half.pt"]):
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 24117568 vs 24117456")
    assert not (tmp_path / "half.pt").exists()
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: SimpleNamespace(free=10 << 30))
    with pytest.raises(RuntimeError, match="file write failed"):  # plenty of space: not a full disk, as it was
        with outputs.writing(tmp_path / "x.pt", [tmp_path / "x.pt"]):
            (tmp_path / "x.pt").write_bytes(b"z")
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert not (tmp_path / "x.pt").exists()  # any failure removes the partial file


def test_torch_save_on_a_full_file_system_is_a_full_disk(tmp_path):
    """The real thing, where it can be had: a 1 MiB tmpfs (root), a 4 MiB tensor, torch.save's own error."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the injected errors above still ran")
    try:
        target = mount / "big.pt"
        with pytest.raises(NoSpaceError, match=f"no space left on device: writing {target} failed"):
            with outputs.writing(target, [target]):
                torch.save(torch.zeros(1 << 20), target)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_released_lock_removes_every_directory_it_made(tmp_path, monkeypatch):
    """UER-py's default output models/finetuned_model.bin: a run that fails before writing leaves neither
    directory behind (the lock made both), but never removes one that was there or holds files."""
    from uer_ds.outputs import lock_output

    monkeypatch.chdir(tmp_path)
    lock_output("models/finetuned_model.bin", "--output_model_path").release()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "models").mkdir()
    lock_output("models/finetuned_model.bin", "--output_model_path").release()
    assert [p.name for p in tmp_path.iterdir()] == ["models"] and not any((tmp_path / "models").iterdir())
    lock = lock_output(tmp_path / "runs" / "a", "--output_model_path")
    (tmp_path / "runs" / "a" / "report.json").write_text("{}")
    lock.release()
    assert (tmp_path / "runs" / "a" / "report.json").is_file()
