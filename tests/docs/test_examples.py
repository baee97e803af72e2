"""Every example the README and docs/ show: marked, and the `<!-- run -->` ones run in page order with the
output the page shows (tests/doc_examples.py has the rules; docs/contributing.md explains them)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_DATA
from doc_examples import (Block, Command, blocks, check_output, copy_tree, environment, lay_out,
                               output_pattern, run_command, ASSIGNMENT)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


RUN_PAGES = [page for page in PAGES if any(b.marker in ("run", "shared") for b in blocks(page))]
_SHARED: dict[str, tuple[Path, list[tuple[str, int]]]] = {}  # a shared block's text -> (its files, outputs)


def test_every_example_is_marked():
    unmarked = [b.where for page in PAGES for b in blocks(page) if b.marker is None]
    assert not unmarked, ("examples without <!-- run --> or <!-- not run: REASON --> before them "
                          f"(docs/contributing.md): {unmarked}")
    no_reason = [b.where for page in PAGES for b in blocks(page) if b.marker == "not run" and not b.reason.strip()]
    assert not no_reason, f"<!-- not run: --> without a reason: {no_reason}"


@pytest.mark.parametrize("page", RUN_PAGES, ids=_name)
def test_page_examples_run_as_shown(page: Path, tmp_path: Path):
    runnable = [b for b in blocks(page) if b.marker in ("run", "shared")]
    if any("../shared/data" in line for b in runnable for line in b.body) and not SHARED_DATA.exists():
        pytest.skip(f"{_name(page)} reads ../shared/data, absent here ({SHARED_DATA})")
    repo = lay_out(tmp_path, ROOT, SHARED_DATA)
    env, prelude, failures = environment(ROOT), [], []
    started = time.perf_counter()
    for block in runnable:
        failures += _run_block(block, repo, env, prelude, tmp_path)
        if failures:
            break  # later examples build on this one's files
    print(f"\n{_name(page)}: {sum(len(b.commands()) for b in runnable)} command(s) in "
          f"{time.perf_counter() - started:.1f} s")
    assert not failures, "\n\n".join(failures)


def _run_block(block: Block, repo: Path, env: dict, prelude: list[str], tmp_path: Path) -> list[str]:
    cached = _SHARED.get("\n".join(block.body)) if block.marker == "shared" else None
    if cached is not None:
        copy_tree(cached[0], repo)
        results = cached[1]
    else:
        before = _stamps(repo)
        results = []
        for command in block.commands():
            if ASSIGNMENT.match(command.text.strip()):
                prelude.append(command.text)
                results.append(("", 0))
                continue
            results.append(run_command(command, prelude, repo, env))
        if block.marker == "shared":  # keep what this block made or changed, for the next page with it
            snapshot = tmp_path.parent / f"shared_{len(_SHARED)}_{tmp_path.name}"
            for rel, stamp in _stamps(repo).items():
                if before.get(rel) != stamp:
                    (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(repo / rel, snapshot / rel)
            snapshot.mkdir(parents=True, exist_ok=True)
            _SHARED["\n".join(block.body)] = (snapshot, results)
    failures = []
    for command, (output, code) in zip(block.commands(), results):
        problem = check_output(command, output, code)
        if problem:
            shown = "\n".join(command.expected)
            failures.append(f"{block.page.name}:{command.line}: {problem}\n$ {command.text}\n"
                            f"--- the page shows\n{shown}\n--- the command printed (exit {code})\n{output}")
    return failures


def _stamps(repo: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under repo, links to the checkout not followed."""
    return {str(p.relative_to(repo)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in repo.rglob("*") if p.is_file() and not p.is_symlink()
            and p.relative_to(repo).parts[0] not in ("corpora", "launch", "ds_configs")}


# ---- the mechanism itself: it fails where the page and the command disagree ----------------------------

def test_output_pattern_elides_lines_and_text():
    pattern = output_pattern(["wrote 3 files in [...] s", "[...]", "done"])
    assert pattern.fullmatch("wrote 3 files in 0.25 s\nline a\nline b\ndone\n")
    assert pattern.fullmatch("wrote 3 files in 1 s\ndone\n")
    assert not pattern.fullmatch("wrote 4 files in 0.25 s\ndone\n")  # a count is compared
    assert not pattern.fullmatch("wrote 3 files in 0.25 s\ndone\nextra\n")  # nothing after the last line


def test_a_page_with_a_wrong_output_or_exit_status_fails(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("<!-- run -->\n```console\n$ printf 'a\\nb\\n'\na\nc\n$ X=1\n$ echo $X; exit 3\n1\n```\n\n"
                    "```console\n$ echo unmarked\n```\n", encoding="utf-8")
    found = blocks(page)
    assert [b.marker for b in found] == ["run", None]
    first, assign, failing = found[0].commands()
    out, code = run_command(first, [], tmp_path, environment(ROOT))
    assert check_output(first, out, code) == "the output differs from the page"
    assert ASSIGNMENT.match(assign.text)
    out, code = run_command(failing, [assign.text], tmp_path, environment(ROOT))
    assert (out, code) == ("1\n", 3)
    assert check_output(failing, out, code) == "the command exited 3"
    error = Command("echo 'x: error: bad' >&2", expected=["x: error: bad"])
    assert check_output(error, *run_command(error, [], tmp_path, environment(ROOT))) == (
        "the page shows an error, the command exited 0")
