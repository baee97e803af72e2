"""uer_ds.atomic: what a reader of the targets sees when the writing succeeds, and when it fails."""
from __future__ import annotations

import pytest

from uer_ds.atomic import atomic_path, atomic_paths


def test_success_renames_in_order_and_leaves_no_temporary(tmp_path):
    seen = []
    target, last = tmp_path / "sub" / "weights.bin", tmp_path / "sub" / "config.json"
    with atomic_paths(target, last) as (tmp, tmp_last):
        assert tmp.parent == target.parent and tmp.suffix == ".bin" and tmp.name.startswith(".weights.tmp-")
        assert tmp_last.name.split(".tmp-")[1].split(".")[0] == tmp.name.split(".tmp-")[1].split(".")[0]  # one tag
        tmp.write_bytes(b"w")
        tmp_last.write_text("{}")
        seen.append(target.exists())
    assert seen == [False]  # nothing at the target until the block succeeded
    assert target.read_bytes() == b"w" and last.read_text() == "{}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json", "weights.bin"]


def test_failure_keeps_the_old_target_and_removes_the_temporaries(tmp_path):
    target = tmp_path / "latest"
    target.write_text("global_step1")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target, fsync=True) as tmp:
            tmp.write_text("global_step2")
            raise RuntimeError("disk full")
    assert target.read_text() == "global_step1"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]


def test_a_directory_replaces_the_old_one(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "half.txt").write_text("half")
            raise ValueError("interrupted")
    assert [p.name for p in target.iterdir()] == ["new.txt"] and [p.name for p in tmp_path.iterdir()] == ["model"]
