"""Every command's flags as Markdown tables, read from the argparse parsers the commands use.

The documentation site puts these tables in its command pages at build time (docs/hooks.py replaces a
`<!-- flags: COMMAND -->` line with `flag_tables(COMMAND)`), so a flag added to a parser is documented
by its `help=` text the next time the site is built; tests/docs/test_site.py fails when a command has no
such line on any page or a flag has no help text.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Iterator

from uer_ds.cli import COMMANDS


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser `uer-ds NAME` parses with (NAME as in COMMANDS, e.g. 'finetune' or 'export onnx').

    Raises:
        KeyError: NAME is not a command.
    """
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"uer-ds {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return parser


def parsers(name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command line, parser) for the command and each of its sub-commands (`finetune classifier`, ...),
    depth first; a parser with sub-commands is followed by them."""
    def walk(prog: str, parser: argparse.ArgumentParser):
        yield prog, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(f"{prog} {sub_name}", sub)

    yield from walk(f"uer-ds {name}", command_parser(name))


def flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's documented options and positionals: not -h, not sub-command choosers, not hidden ones."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and a.help != argparse.SUPPRESS]


def _help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    return " ".join(text.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def flag_table(prog: str, parser: argparse.ArgumentParser) -> str:
    """One Markdown table: flag (with its other spellings and its argument), default, what it does."""
    rows = ["| flag | default | what it does |", "| --- | --- | --- |"]
    for action in flags(parser):
        names = action.option_strings or [action.dest]
        shown = names[0] if not action.option_strings else " ".join(
            sorted(names, key=lambda n: (not n.startswith("--"), n))[:3])
        meta = ""
        if action.option_strings and action.nargs != 0:
            meta = " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
            if action.nargs in ("+", "*"):
                meta += " ..."
        default = "" if action.default in (None, argparse.SUPPRESS, False) else f"`{action.default}`"
        if action.choices and not isinstance(action.choices, dict):
            choices = ", ".join(str(c) for c in action.choices)
            help_ = _help_text(parser, action)
            help_ = f"{help_} (one of: {choices})" if choices not in help_ else help_
        else:
            help_ = _help_text(parser, action)
        rows.append(f"| `{_cell(shown + meta)}` | {_cell(default)} | {_cell(help_)} |")
    return "\n".join(rows)


def flag_tables(name: str) -> str:
    """Markdown for the command and its sub-commands: a heading line and a table for each parser with flags."""
    out = []
    for prog, parser in parsers(name):
        if flags(parser):
            out += [f"**`{prog}`**", "", flag_table(prog, parser), ""]
    return "\n".join(out)


def undocumented(name: str) -> list[str]:
    """'prog flag' for each flag of the command without help text."""
    return [f"{prog} {(a.option_strings or [a.dest])[0]}" for prog, parser in parsers(name)
            for a in flags(parser) if not _help_text(parser, a)]
