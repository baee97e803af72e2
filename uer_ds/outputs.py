"""What a command writes: one writer per output, and a full disk said as such.

One writer per output.  `pretrain`, `finetune` and `preprocess` hold an advisory lock (`fcntl.flock`) on
their output for as long as they run: a lock file in the output directory (`OUT/.uer_ds.lock`), or beside
a dataset prefix (`DIR/.NAME.uer_ds.lock`).  A second command into the same output is refused at once,
naming the process that writes there (pid, host, command, start time, which the holder writes into the
lock file).  The kernel releases a flock when its process ends, however it ends, so a lock file left
by a process that died (killed, out of memory) is taken over, and the run says whose it was.  A clean
end removes the lock file (and the output directory, if the lock made it and nothing else was written).
Advisory: it guards uer_ds commands against each other, not against other programs.

A full disk.  `writing(path, partial)` turns a failed write on a full file system into one error that
says "no space left on device", names the path and the free space, and removes the partial files
first (a torch.save on a full disk raises a RuntimeError without errno, "file write failed" or
"unexpected pos": it counts as a full disk when the file system then has less than 1 MiB free;
safetensors raises its own error, which says "No space left on device").
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import fcntl

PathLike = Union[str, os.PathLike]
LOCK_NAME = ".uer_ds.lock"
FULL_DISK_BYTES = 1 << 20  # less free than this after a failed torch.save: the disk was full
TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos")  # PyTorchStreamWriter's messages


class OutputInUseError(FileExistsError):
    """Another live process holds the output's lock."""


class NoSpaceError(OSError):
    """A write failed because the file system is full (errno ENOSPC); str() is the message alone."""

    def __str__(self) -> str:
        return str(self.strerror)


# ---- one writer per output ------------------------------------------------------------------------
_HELD: list["OutputLock"] = []  # this process's locks


def _drop_in_child() -> None:
    """After a fork: the child (a DataLoader worker, a preprocess worker) closes its copy of each lock's
    descriptor.  That does not release the parent's lock (flock lasts while any copy is open), but it
    means the lock ends when the parent does: an orphaned worker of a killed run does not keep holding it."""
    for lock in _HELD:
        with contextlib.suppress(OSError):
            os.close(lock.fd)
        lock.fd = -1
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_in_child)


class OutputLock:
    """A held lock on one output (see the module's docstring); `release()` ends it, idempotently."""

    def __init__(self, path: Path, fd: int, made_directory: Optional[Path], taken_over: Optional[dict]) -> None:
        self.path, self.fd, self.made_directory = path, fd, made_directory
        self.taken_over = taken_over  # what the lock file said when a dead process had left it

    def note(self, flag: str, output: PathLike) -> Optional[str]:
        """The line a command prints when it took over a dead process's lock (else None)."""
        if self.taken_over is None:
            return None
        return (f"{flag} {output}: took over the lock {self.path} of {describe_holder(self.taken_over)}, which is no "
                f"longer running (it ended without releasing it); its output may be incomplete")

    def release(self) -> None:
        if self.fd < 0:
            return
        if self in _HELD:
            _HELD.remove(self)
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding the lock: the next writer makes a new file
        os.close(self.fd)
        self.fd = -1
        if self.made_directory is not None:  # only when empty: the command wrote nothing there
            for directory in (self.path.parent, *self.path.parent.parents):
                try:
                    directory.rmdir()
                except OSError:
                    break
                if directory == self.made_directory:
                    break

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def describe_holder(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', '?')}, started {when})"


def _command_line() -> str:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":  # python -m uer_ds ...
        program = "python -m uer_ds"
    return " ".join([program, *sys.argv[1:]])


def lock_path_for(output: PathLike, prefix: bool = False) -> Path:
    """The lock file of an output directory (inside it), or of a dataset prefix DIR/NAME (DIR/.NAME.uer_ds.lock)."""
    output = Path(output)
    return output.parent / f".{output.name}{LOCK_NAME}" if prefix else output / LOCK_NAME


def _read_holder(fd: int) -> Optional[dict]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 1 << 16)
    if not raw.strip():
        return None
    try:
        holder = json.loads(raw.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        return {"pid": "?", "command": raw[:200].decode("utf-8", "replace")}
    return holder if isinstance(holder, dict) else None


def lock_output(output: PathLike, flag: str, command: Optional[str] = None, prefix: bool = False) -> OutputLock:
    """Take the lock of `output` (a directory, made if missing; or a dataset prefix with prefix=True) for
    this process.  OutputInUseError naming the holder when another live process has it; a lock file left
    by a dead process is taken over (OutputLock.note says whose it was)."""
    output = Path(output)
    directory = output.parent if prefix else output
    made = None  # the highest directory this call creates (its parents too may be new: models/ of UER-py's default)
    if not prefix:
        for candidate in (directory, *directory.parents):
            if candidate.exists():
                break
            made = candidate
    directory.mkdir(parents=True, exist_ok=True)
    path = lock_path_for(output, prefix)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": (command or _command_line())[:300]}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_holder(fd)
            os.close(fd)
            who = describe_holder(other) if other else "another process (it has not written its name yet)"
            raise OutputInUseError(f"{flag} {output} is being written by {who}: one writer per output. Wait for it "
                                   f"to end, or write to another {flag}") from None
        try:  # the file may have been removed by the holder that just released it: lock the one at `path`
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    left = _read_holder(fd)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode("utf-8"))
    lock = OutputLock(path, fd, made, left)
    _HELD.append(lock)
    return lock


# ---- a full disk ----------------------------------------------------------------------------------
def _free_bytes(path: Path) -> Optional[int]:
    for candidate in (path, *path.parents):
        if candidate.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(candidate).free
            return None
    return None


def is_full_disk(err: BaseException, path: PathLike) -> bool:
    """Whether `err`, raised while writing `path`, means the file system is full."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(m in str(err) for m in ("No space left on device", "StorageFull")):  # e.g. safetensors' own error
        return True
    if isinstance(err, RuntimeError) and any(m in str(err) for m in TORCH_WRITE_FAILURES):
        free = _free_bytes(Path(path))
        return free is not None and free < FULL_DISK_BYTES
    return False


def remove_partial(paths: Iterable[PathLike]) -> None:
    for path in paths:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def writing(path: PathLike, partial: Iterable[PathLike] = (), what: str = "file",
            removed: bool = False) -> Iterator[None]:
    """Around the writing of `path`: on any error the `partial` paths (files or directories) are removed
    first; a full disk is then raised as NoSpaceError ("no space left on device", the path, the free
    space); other errors as they were.  removed=True: the body removes its own partial output (an
    `uer_ds.atomic` write inside), which the message then says too."""
    partial = list(partial)
    try:
        yield
    except BaseException as err:
        full = is_full_disk(err, path)
        free = _free_bytes(Path(path)) if full else None
        remove_partial(partial)
        if not full:
            raise
        said = f"; the partial {what} was removed" if partial or removed else ""
        raise NoSpaceError(errno.ENOSPC, f"no space left on device: writing {path} failed ({free:,} bytes free "
                                         f"there){said}. Free some space, or write elsewhere", str(path)) from err


__all__ = ["LOCK_NAME", "NoSpaceError", "OutputInUseError", "OutputLock", "describe_holder", "is_full_disk",
           "lock_output", "lock_path_for", "remove_partial", "writing"]
