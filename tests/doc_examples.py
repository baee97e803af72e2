"""The documentation's examples as tests: parse a Markdown page's marked shell blocks, run them, compare.

The rules (docs/contributing.md says the same for writers):

- A fenced block whose lines start with `$ ` is an example. The line before its opening fence is a marker:
  `<!-- run -->` (CI runs it), `<!-- run: shared -->` (runs it once per test session and gives later pages
  with the very same block its files and output: the pages' common set-up), or `<!-- not run: REASON -->`
  (a GPU, several hosts, BERT-large, ...; the site shows the reason). An example without a marker fails
  tests/docs/test_examples.py.
- In a run block, a `$ ` line is a command (a line ending in `\\` continues on the next line), the lines
  after it up to the next command are what it prints (stdout and stderr together). `[...]` alone on a line
  stands for any number of lines, `[...]` inside a line for any text: timings, throughput and other
  numbers that change from run to run are written so, and not compared.
- A command whose shown output has a line with `: error:` must exit non-zero; every other must exit 0.
- A command with a here-document (`python - <<'PY'` ... `PY`) takes the lines up to the terminator.
- A command of the form `NAME=value` (variables only) is kept and put before every later command of the
  page, as a shell would keep it.
- DeepSpeed's own chatter (its timestamped log lines, the messages of a JIT op build or load) is dropped
  from the output before the comparison: whether it appears depends on the machine's build cache.
- Each page runs in its own temporary directory laid out like a checkout: `corpora/`, `launch/`,
  `ds_configs/` are links to the checkout's, and `../shared/data` to the shared data, so a page's paths read
  as they do in a checkout; `out/` is the page's own.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MARKER = re.compile(r"^<!--\s*(run|run:\s*shared|not run:\s*(?P<reason>.+?))\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
ELLIPSIS = "[...]"
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
NOISE = re.compile(r"^(\[\d{4}-\d\d-\d\d [\d:,]+\] |DeepSpeed deepspeed\.ops\.|Using \S+ as PyTorch extensions root|"
                   r"Emitting ninja build file|Building extension module|Loading extension module|ninja: |"
                   r"Time to load \w+ op|Detected CUDA files|Creating extension directory|\[\d+/\d+\] )")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=(\"[^\"]*\"|'[^']*'|\S*)(\s+[A-Za-z_][A-Za-z0-9_]*=(\"[^\"]*\"|'[^']*'|\S*))*$")


@dataclass
class Command:
    text: str  # the command as a shell reads it (continuation lines joined by newlines)
    expected: list[str] = field(default_factory=list)
    line: int = 0  # 1-based line of the `$ ` in the page


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    marker: Optional[str]  # "run", "shared", "not run" or None
    reason: str
    body: list[str]

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[Command]:
        """The block's commands with the output shown after each."""
        out: list[Command] = []
        lines, i = self.body, 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                parts, start = [line[2:]], i
                while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    parts.append(lines[i])
                here = HEREDOC.search(parts[-1])
                if here:  # the here-document's lines are part of the command, up to its terminator
                    while i + 1 < len(lines) and lines[i].strip() != here.group(1):
                        i += 1
                        parts.append(lines[i])
                out.append(Command("\n".join(parts), line=self.line + 1 + start))
            elif out:
                out[-1].expected.append(line)
            else:
                raise ValueError(f"{self.where}: output before the first `$ ` command: {line!r}")
            i += 1
        return out


def blocks(page: Path) -> list[Block]:
    """Every fenced block of the page that holds a `$ ` line, with the marker before it."""
    text = page.read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(text):
        m = FENCE.match(text[i])
        if not m:
            i += 1
            continue
        fence, start = m.group("fence"), i
        j = i + 1
        while j < len(text) and not text[j].startswith(fence):
            j += 1
        if j == len(text):
            raise ValueError(f"{page}:{start + 1}: the fence {fence} is never closed")
        body = text[i + 1:j]
        if any(line.startswith("$ ") for line in body):
            k = start - 1
            while k >= 0 and not text[k].strip():
                k -= 1
            mark = MARKER.match(text[k].strip()) if k >= 0 else None
            kind = reason = None
            if mark:
                word = mark.group(1)
                kind = "not run" if word.startswith("not run") else ("shared" if "shared" in word else "run")
                reason = mark.group("reason") or ""
            found.append(Block(page, start + 1, kind, reason or "", body))
        i = j + 1
    return found


def output_pattern(expected: list[str]) -> re.Pattern:
    """A regex for the whole output: `[...]` alone is any lines, inside a line any text."""
    while expected and not expected[-1].strip():
        expected = expected[:-1]
    parts = []
    for line in expected:
        line = line.rstrip()
        if line.strip() == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split(ELLIPSIS)) + r"[ \t]*\n")
    return re.compile("".join(parts))


def normalise(output: str) -> str:
    """Output as compared: lines right-stripped, trailing blank lines dropped, one final newline."""
    lines = [line.rstrip() for line in output.replace("\r\n", "\n").split("\n") if not NOISE.match(line)]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def check_output(command: Command, output: str, returncode: int) -> Optional[str]:
    """None when the output and exit status agree with the page, else what differs."""
    got = normalise(output)
    wants_error = any(": error:" in line for line in command.expected)
    if wants_error and returncode == 0:
        return "the page shows an error, the command exited 0"
    if not wants_error and returncode != 0:
        return f"the command exited {returncode}"
    if not output_pattern(command.expected).fullmatch(got):
        return "the output differs from the page"
    return None


def lay_out(workdir: Path, checkout: Path, shared_data: Path) -> Path:
    """A checkout-like folder for a page: links to corpora/, launch/, ds_configs/, and ../shared/data."""
    repo = workdir / "repo"
    repo.mkdir(parents=True)
    for name in ("corpora", "launch", "ds_configs"):
        (repo / name).symlink_to(checkout / name)
    if shared_data.exists():
        (workdir / "shared").mkdir()
        (workdir / "shared" / "data").symlink_to(shared_data)
    return repo


def environment(checkout: Path) -> dict[str, str]:
    """The checkout's venv first on PATH, the CPU accelerator, no progress bars, one thread."""
    venv = Path(os.environ.get("UER_DS_VENV", checkout / ".venv"))
    env = dict(os.environ)
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", DS_ACCELERATOR="cpu", TQDM_DISABLE="1",
               OMP_NUM_THREADS="1", PYTHONHASHSEED="0", LC_ALL="C.UTF-8", COLUMNS="100",
               TORCH_EXTENSIONS_DIR=env.get("TORCH_EXTENSIONS_DIR", str(checkout / ".torch_extensions")))
    for name in ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        env.pop(name, None)  # an in-process test's job must not leak into the page's commands
    return env


def run_command(command: Command, prelude: list[str], cwd: Path, env: dict[str, str],
                timeout: float = 300) -> tuple[str, int]:
    """Run one command with bash in cwd; (stdout and stderr interleaved, exit status)."""
    script = "\n".join([*prelude, command.text])
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout)
    return proc.stdout.decode("utf-8", errors="replace"), proc.returncode


def copy_tree(source: Path, target: Path) -> None:
    """Files a shared block made, copied into another page's folder (links kept as links)."""
    for item in source.iterdir():
        if item.is_symlink() or item.name in ("corpora", "launch", "ds_configs"):
            continue
        dest = target / item.name
        if item.is_dir():
            shutil.copytree(item, dest, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dest)
