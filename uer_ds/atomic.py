"""The one way uer_ds writes a file or directory that something later trusts: atomically.

Everything is written under a temporary sibling name and renamed over its target (`os.replace`,
atomic on POSIX within one file system) only when the writing succeeded; on any exception the
temporaries are removed and the targets are left as they were.  So a reader never sees a half-written
file, and an interrupted run leaves no partial output a later step could mistake for complete
(DESIGN.md: "leaves no partial output").  Several targets are renamed in the order given: put last
the one whose presence says the rest is complete (a model directory's config.json, a dataset's .json).

A temporary is `.<stem>.tmp-<pid>-<random><suffix>` beside its target: hidden, unique per call, and
with the target's suffix (tools that pick a format from it, such as ONNX's, see the right one).  The
targets of one call share the `<pid>-<random>` part, so `<prefix>.model` and `<prefix>.vocab` get the
temporaries of one prefix (SentencePiece writes both from a prefix).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def temporary_sibling(target: Path, tag: str) -> Path:
    """The temporary name for `target` under this call's `tag`."""
    return target.with_name(f".{target.stem}.tmp-{tag}{target.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_paths(*targets: PathLike, fsync: bool = False) -> Iterator[list[Path]]:
    """Yield one temporary path per target (nothing is created: write a file or make a directory there);
    on success rename each over its target, in the order given; on an exception remove them all.

    A target that is an existing directory is replaced by the new one (removed first: a directory
    cannot be renamed over a non-empty one, so that step alone is not atomic).  Parent directories
    are created.  fsync=True flushes each written file to disk before its rename (a pointer such as a
    checkpoint's `latest`, which must never name a tag whose files a crash lost).
    """
    paths = [Path(t) for t in targets]
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    temps = [temporary_sibling(p, tag) for p in paths]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for tmp, path in zip(temps, paths):
            if fsync and tmp.is_file():
                _fsync(tmp)
            if path.is_dir() and not path.is_symlink() and tmp.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if tmp.exists() or tmp.is_symlink():
                _remove(tmp)


@contextlib.contextmanager
def atomic_path(target: PathLike, fsync: bool = False) -> Iterator[Path]:
    """`atomic_paths` for one target: yield its temporary path, rename it over `target` on success."""
    with atomic_paths(target, fsync=fsync) as (tmp,):
        yield tmp


__all__ = ["atomic_path", "atomic_paths", "temporary_sibling"]
