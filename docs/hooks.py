"""MkDocs hooks (mkdocs.yml `hooks:`): what the pages' Markdown cannot say by itself.

- `<!-- flags: COMMAND -->` on a line of its own becomes the command's flag tables, generated from its
  argparse parser (uer_ds.cli.reference), so the tables never drift from the code.
- `<!-- not run: REASON -->` (an example CI does not run, tests/docs/test_examples.py) becomes a visible
  note with the reason.
- A fence that is never closed is logged as a warning: `mkdocs build --strict` then fails, where MkDocs
  alone would render the rest of the page as code.
"""
from __future__ import annotations

import logging
import re

log = logging.getLogger("mkdocs.hooks.uer_ds")

FLAGS = re.compile(r"^<!--\s*flags:\s*(?P<command>[\w -]+?)\s*-->\s*$", re.MULTILINE)
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$", re.MULTILINE)
FENCE = re.compile(r"^(```+|~~~+)")


def _unclosed_fence(markdown: str) -> int:
    """1-based line of a fence that is never closed, or 0."""
    open_fence, start = None, 0
    for number, line in enumerate(markdown.split("\n"), 1):
        m = FENCE.match(line)
        if not m:
            continue
        if open_fence is None:
            open_fence, start = m.group(1), number
        elif line.startswith(open_fence) and not line[len(open_fence):].strip():
            open_fence = None
    return start if open_fence else 0


def on_page_markdown(markdown: str, page, config, files) -> str:
    line = _unclosed_fence(markdown)
    if line:
        log.warning(f"{page.file.src_path}:{line}: this code fence is never closed")

    def flags(m: re.Match) -> str:
        from uer_ds.cli import COMMANDS
        from uer_ds.cli.reference import flag_tables

        command = m.group("command")
        if command not in COMMANDS:
            log.warning(f"{page.file.src_path}: <!-- flags: {command} -->: no such command")
            return ""
        return flag_tables(command)

    markdown = FLAGS.sub(flags, markdown)
    return NOT_RUN.sub(lambda m: f"*Not run by CI: {m.group('reason')}.*\n", markdown)
