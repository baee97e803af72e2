"""The documentation site builds with `mkdocs build --strict` (what CI runs here), a broken link or an
unclosed fence fails that build, and every command's flags are on a page with help text."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from uer_ds.cli import COMMANDS
from uer_ds.cli.reference import undocumented

pytestmark = pytest.mark.slow


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=600, env=env)


def test_site_builds_strictly_with_flag_tables_and_the_api(tmp_path):
    done = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    preprocess = (tmp_path / "site" / "commands" / "preprocess" / "index.html").read_text(encoding="utf-8")
    assert "--corpus_path" in preprocess and "--dataset_path" in preprocess  # the generated flag table
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "MMapDataset" in api and "atomic_path" in api  # mkdocstrings rendered the docstrings


def _site_copy(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ and mkdocs.yml copied, without the API page's mkdocstrings (these builds test the checks only)."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "api.md").write_text("# Python API\n", encoding="utf-8")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["plugins"] = ["search"]
    config["hooks"] = [str(docs / "hooks.py")]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return docs, path


@pytest.mark.parametrize("breakage, message", [
    ("See [the missing page](no-such-page.md).\n", "no-such-page.md"),
    ("See [a missing section](commands/preprocess.md#no-such-section).\n", "no-such-section"),
    ("```console\n$ uer-ds --help\n", "never closed"),
])
def test_a_broken_link_or_fence_fails_the_build(tmp_path, breakage, message):
    docs, config = _site_copy(tmp_path)
    with open(docs / "concepts.md", "a", encoding="utf-8") as f:
        f.write("\n" + breakage)
    done = _mkdocs(config, tmp_path / "site")
    assert done.returncode != 0 and message in done.stderr, done.stderr[-3000:]


def test_every_command_has_a_flag_table_and_every_flag_help_text():
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md"))
    tabled = set(re.findall(r"^<!--\s*flags:\s*([\w -]+?)\s*-->\s*$", text, re.MULTILINE))
    assert set(COMMANDS) - tabled == set(), "commands without a <!-- flags: NAME --> line in docs/"
    missing = [flag for name in COMMANDS for flag in undocumented(name)]
    assert not missing, f"flags without help text (add help= to the parser): {missing}"
