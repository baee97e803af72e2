"""Imports go one way (DESIGN.md, "Contracts added in the third milestone"; issue 30 item 2): the import
graph of the package, uer_ds/ and kernels/src (installed as uer_ds.kernels), has no cycle.

The graph is read from the source with `ast`, not by importing: an edge A -> B for every `import B` /
`from B import x` in A (a relative import resolved; `from P import m` where P.m is a module is an edge
to P.m).  Importing a.b.c runs a/__init__, then a.b, then a.b.c, so an edge to a module is also an edge
to each package above it -- except A's own packages, which are always initialised before A.

Two graphs are checked:
- module-level imports (those that run when the module is imported, `if TYPE_CHECKING:` blocks left
  out): a cycle there is a partially initialised module at import time;
- every import, function-level ("lazy") ones included.  A lazy import defers *when* a module loads
  (torch, deepspeed, onnx only when a command needs them: `uer-ds --help` stays fast), not *which way*
  the dependency goes; one that climbs back up is the same circle, deferred until a call finds a
  module half set up or a refactor moves the import to the top.  That is what made config.py (which
  validated against the model registries, lazily) and every model module (which imports ModelConfig)
  a circle of 23 files; the registries' names now live in uer_ds/registry.py, below the config.  So
  lazy imports count as edges too, and no exception is listed.

Imports resolved at run time by name (uer_ds.registry.locate("module:attribute")) are edges of the
registries; they are checked to point downward: no module a registry names imports the config's layer
back into a cycle (test_registry_entries_point_to_modules_below).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SOURCES = ((ROOT / "uer_ds", "uer_ds"), (ROOT / "kernels" / "src", "uer_ds.kernels"))


def modules() -> dict[str, Path]:
    """{dotted name: file} of every module of the package."""
    found = {}
    for base, package in SOURCES:
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported(name: str, path: Path, lazy: bool, known: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports (module level only, or every import with lazy=True)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()

    def visit(nodes, at_module_level: bool) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if lazy:
                    visit(ast.iter_child_nodes(node), False)
                continue
            if _type_checking(node):
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
            visit(ast.iter_child_nodes(node), at_module_level)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, True)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # the module and every package above it
            module = ".".join(parts[:i])
            if module in known and not (name == module or name.startswith(module + ".")):
                edges.add(module)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def graph(lazy: bool) -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, lazy, known) for name, path in known.items()}


def describe(components: list[list[str]], g: dict[str, set[str]]) -> str:
    return "\n".join(f"{len(c)} modules: " + "; ".join(f"{m} -> {sorted(w for w in g[m] if w in c)}" for m in c)
                     for c in components)


def test_the_reader_finds_a_cycle_where_there_is_one():
    """The checker itself: a made-up graph with a cycle through a package import is found."""
    g = {"a": {"b.c"}, "b": set(), "b.c": {"d"}, "d": {"a"}, "e": {"a"}}
    assert cycles(g) == [["a", "b.c", "d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # and it reads what it must: the config flags' function-level import of compat is an edge only when lazy
    known = modules()
    assert "uer_ds.compat" in imported("uer_ds.config.flags", known["uer_ds.config.flags"], True, known)
    assert "uer_ds.compat" not in imported("uer_ds.config.flags", known["uer_ds.config.flags"], False, known)
    assert "uer_ds.config" in imported("uer_ds.models.model", known["uer_ds.models.model"], False, known)
    assert "uer_ds.kernels" in imported("uer_ds.models.layers.dispatch", known["uer_ds.models.layers.dispatch"],
                                        False, known)


def test_module_level_imports_have_no_cycle():
    g = graph(lazy=False)
    assert len(g) > 100
    assert cycles(g) == [], describe(cycles(g), g)


def test_imports_have_no_cycle_lazy_ones_included():
    g = graph(lazy=True)
    assert cycles(g) == [], describe(cycles(g), g)


def test_config_and_registries_sit_below_the_model_modules():
    """uer_ds.config and uer_ds/registry.py reach no model module, at any level: validating a config never
    imports a model (nor torch)."""
    g = graph(lazy=True)
    below = set()
    todo = ["uer_ds.config", "uer_ds.registry"]
    while todo:
        for module in g[todo.pop()]:
            if module not in below:
                below.add(module)
                todo.append(module)
    assert not any(m.startswith(("uer_ds.models", "uer_ds.kernels", "uer_ds.engine")) for m in below), sorted(below)
    import subprocess
    import sys

    code = ("import sys; from uer_ds.config import ModelConfig; ModelConfig.from_json('bert/tiny'); "
            "ModelConfig.from_json('rnn/lstm', {'target': ['lm']}); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('uer_ds.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_registry_entries_point_to_modules_below():
    """Every name of uer_ds.registry resolves to its implementation, and the facts config validates with
    (what each encoder's positions see) are the implementations' own."""
    from uer_ds import registry
    from uer_ds.models.encoders import ENCODERS

    known = modules()
    for table in (registry.EMBEDDINGS, registry.ENCODERS, registry.TARGETS, registry.ACTIVATIONS,
                  registry.SYNTHESIZERS, registry.SUBENCODERS):
        for name, entry in table.items():
            where = entry.where if isinstance(entry, registry.EncoderEntry) else entry
            module = where.partition(":")[0]
            assert module in known or not module.startswith("uer_ds"), (name, where)
            assert registry.locate(where) is not None
            if module in known:  # an implementation never reaches back to the registry's users above it
                assert "uer_ds.cli" not in graph(lazy=True)[module]
    for name, entry in registry.ENCODERS.items():
        assert getattr(ENCODERS[name], "bidirectional", False) == entry.bidirectional, name


def test_what_the_registry_says_each_encoder_sees_is_what_it_does():
    """registry.ENCODERS[name].causal, which config validation trusts (lm needs a causal encoder; sp reads
    position 0), against the encoders themselves: a change at position 5 moves earlier outputs only for
    an encoder that sees both sides."""
    import torch

    from uer_ds import registry
    from uer_ds.config import ModelConfig
    from uer_ds.models import build_model

    checked = []
    for name, entry in registry.ENCODERS.items():
        if entry.causal is None or name == "dual":  # the mask decides; dual is two whole streams
            continue
        cfg = ModelConfig(embedding=("word",), encoder=name, target=(), vocab_size=30, emb_size=16, hidden_size=16,
                          layers_num=3, kernel_size=3, block_size=2, dropout=0.0)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        src = torch.randint(5, 30, (1, 9))
        changed = src.clone()
        changed[0, 5] = 4 if int(src[0, 5]) != 4 else 6
        seg = torch.ones_like(src)
        with torch.no_grad():
            before, after = model.encode(src, seg), model.encode(changed, seg)
        moved = not torch.allclose(before[0, :5], after[0, :5])
        assert moved == (not entry.causal), (name, entry)
        checked.append(name)
    assert len(checked) >= 8


def test_the_registry_s_encoder_capabilities_are_the_implementations_own():
    """registry.ENCODERS[name].recurrent (the engine sets dynamo's allow_rnn for it), .convolutional (the
    rules require kernel_size) and .attention_heads (heads split hidden_size, no emb -> hidden projection),
    against the built encoders' modules."""
    from torch import nn

    from uer_ds import registry
    from uer_ds.config import ModelConfig
    from uer_ds.models import build_model

    for name, entry in registry.ENCODERS.items():
        if name == "dual":  # two whole streams of other encoders
            continue
        cfg = ModelConfig(embedding=("word",), encoder=name, target=(), vocab_size=30, emb_size=16, hidden_size=16,
                          heads_num=2, feedforward_size=32, layers_num=3, kernel_size=3, block_size=2)
        modules = list(build_model(cfg).encoder.modules())
        assert entry.recurrent == any(isinstance(m, nn.RNNBase) for m in modules), name
        assert entry.convolutional == any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in modules), name
    with_heads = [name for name, entry in registry.ENCODERS.items() if entry.attention_heads]
    assert with_heads
    for name in with_heads:  # the rules the flag stands for: emb_size must equal hidden_size
        with pytest.raises(ValueError, match="needs it equal to hidden_size"):
            ModelConfig(embedding=("word",), encoder=name, target=(), vocab_size=30, emb_size=8, hidden_size=16,
                        heads_num=2, feedforward_size=32)


def test_only_the_commands_import_the_cli_and_nothing_below_imports_the_recipes():
    """The house (issue 28): uer_ds.cli holds flags and launching; the recipes (uer_ds.recipes), the tasks and
    deploy/ never import it, at any level (lazy imports included); and the parts the recipes put together
    (tasks, engine, models, data, config, ...) never import a recipe.  Checked on the graph, and the checker
    on a graph where tasks reaches the CLI."""

    def offenders(g: dict[str, set[str]], sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
        return sorted(f"{m} -> {w}" for m, targets in g.items() if m.startswith(sources)
                      for w in targets if w.startswith(forbidden))

    made_up = {"uer_ds.tasks.runner": {"uer_ds.cli.common"}, "uer_ds.cli.common": set()}
    assert offenders(made_up, ("uer_ds.tasks",), ("uer_ds.cli",)) == ["uer_ds.tasks.runner -> uer_ds.cli.common"]
    g = graph(lazy=True)
    assert any(m.startswith("uer_ds.recipes.") for m in g), "no recipes package"
    assert offenders(g, ("uer_ds.tasks", "uer_ds.deploy", "uer_ds.recipes"), ("uer_ds.cli",)) == []
    below = tuple(f"uer_ds.{p}" for p in ("tasks", "engine", "models", "data", "config", "convert", "tokenizers",
                                          "train", "registry", "compat", "atomic", "outputs", "kernels"))
    assert offenders(g, below, ("uer_ds.recipes",)) == []
