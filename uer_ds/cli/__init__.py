"""`uer-ds <command>` and `python -m uer_ds <command>`.

COMMANDS is the one list of commands: name -> (module, one-line help); a name may be two words
(`export onnx`), matched before the one-word command.  A command module provides
`add_arguments(parser)` and `run(args) -> int`; it is imported only when its command runs, so
`uer-ds --help` starts fast.  Errors a user can cause (ValueError, FileNotFoundError) print one line
and exit 1; set UER_DS_DEBUG=1 for the traceback.  UER_DS_PARSE_ONLY=1 parses a command line and stops
there (exit 0 when it parses, 2 with argparse's message when not): launch/gpu_preflight.sh checks the GPU
measurement's commands with it.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from uer_ds.outputs import NoSpaceError

COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("uer_ds.cli.preprocess", "corpus -> OUT.bin + OUT.idx + OUT.json for pre-training"),
    "augment": ("uer_ds.cli.augment", "easy data augmentation of classification TSV (swap, delete, insert, synonyms; "
                                      "EDA), labels kept"),
    "pretrain": ("uer_ds.cli.pretrain", "pre-train with DeepSpeed (ZeRO 0-3, offload, pipeline)"),
    "export": ("uer_ds.cli.export", "gather a checkpoint (ZeRO shards, pipeline layers) into one fp32 model"),
    "finetune": ("uer_ds.cli.finetune",
                 "fine-tune a task with DeepSpeed: classifier, mt_classifier, multi_label_classifier, regression, ner, cmrc, "
                 "c3, dbqa"),
    "infer": ("uer_ds.cli.infer", "predictions of a fine-tuned task model -> TSV (cmrc: JSON, c3: JSON lines)"),
    "evaluate": ("uer_ds.cli.evaluate",
                 "a fine-tuned model on a labelled split: metrics, per-class table, confusion, top-k, bad cases -> "
                 "JSON + TSV"),
    "analyse": ("uer_ds.cli.analyse", "analyse a fine-tuned classifier: token attributions (explain), likely "
                                      "mislabelled training rows (mislabelled), weakly supported test rows (support)"),
    "serve": ("uer_ds.cli.serve", "an HTTP server (FastAPI) for a fine-tuned classifier (PyTorch or ONNX), "
                                  "NER or MRC model, with dynamic batching"),
    "prune": ("uer_ds.cli.prune", "width-prune a fine-tuned transformer classifier: heads and feed-forward neurons by "
                                  "gradient importance (Michel et al. 2019), --width_mult kept per layer"),
    "export onnx": ("uer_ds.cli.export_onnx", "a fine-tuned classifier -> ONNX (checked with onnxruntime)"),
    "convert": ("uer_ds.cli.convert", "convert checkpoints: hf | uer | tencentpretrain | uer_ds -> hf | uer | uer_ds"),
    "model": ("uer_ds.cli.model", "inspect a model config: `uer-ds model summary --config_path X`"),
    "plan": ("uer_ds.cli.plan", "estimate memory per rank for ZeRO 0-3 / offload and recommend a ds_config"),
    "bench": ("uer_ds.cli.bench", "benchmarks: print a table, write JSON (`uer-ds bench <what> --help`)"),
    "plot": ("uer_ds.cli.plot", "learning curves of runs (loss, accuracy, lr, dev metrics) -> PNG/SVG, runs overlaid"),
    "build-vocab": ("uer_ds.cli.build_vocab", "build a vocabulary (WordPiece, SentencePiece, char, space, word)"),
    "diff-vocab": ("uer_ds.cli.diff_vocab", "compare two vocabularies"),
    "average": ("uer_ds.cli.average", "average several checkpoints of one model"),
    "cloze": ("uer_ds.cli.cloze", "mask a position of each line, list the MLM's top-n tokens"),
    "extract-features": ("uer_ds.cli.extract_features", "last-layer or pooled vectors per line -> .npy / .pt"),
    "generate": ("uer_ds.cli.generate",
                 "continue text with a GPT-style model, or decode with an s2s model (greedy, top-k, top-p)"),
    "nearest-words": ("uer_ds.cli.nearest_words", "nearest words by cosine, from embeddings or hidden states"),
    "extract-embeddings": ("uer_ds.cli.extract_embeddings",
                           "the word embedding matrix with its vocabulary -> text (word2vec format) or .npy"),
    "check-model": ("uer_ds.cli.check_model", "list a checkpoint's tensors and the model configs they fit"),
    "adapt-vocab": ("uer_ds.cli.adapt_vocab",
                    "carry a model's embedding/output rows over to a new vocabulary (new tokens initialised)"),
}
# `uer-ds --help` lists the commands in these groups, each starting at its first command
SECTIONS = {"preprocess": "data, training, inference", "model": "inspect, plan, measure",
            "build-vocab": "vocabularies and model tools"}


def _strip_local_rank(argv: list[str]) -> list[str]:
    """The deepspeed launcher appends --local_rank=N to every command; record it in LOCAL_RANK."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--local_rank="):
            os.environ.setdefault("LOCAL_RANK", arg.split("=", 1)[1])
        elif arg == "--local_rank" and i + 1 < len(argv):
            os.environ.setdefault("LOCAL_RANK", argv[i + 1])
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: uer-ds <command> [options]   (uer-ds <command> --help for its options)"]
    for name, (_, help_) in COMMANDS.items():
        if name in SECTIONS:
            lines += ["", f"{SECTIONS[name]}:"]
        lines.append(f"  {name:<{width}}  {help_}")
    return "\n".join(lines)


def _one_line_warnings(prog: str) -> None:
    """uer_ds's own warnings (a do_lower_case set against the vocabulary, ...) as one line on stderr."""
    from uer_ds.config import ConfigNote
    from uer_ds.tokenizers import CaseMismatchWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (CaseMismatchWarning, ConfigNote)):
            print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _torch_extensions_in_checkout() -> None:
    """One build cache for DeepSpeed's JIT ops (CPU Adam, the shared-memory allreduce): run from a checkout,
    the checkout's `.torch_extensions/` (what launch/quickstart.sh and the tests use), unless
    TORCH_EXTENSIONS_DIR is set; processes a launcher starts inherit it."""
    checkout = Path(__file__).resolve().parents[2]
    if "TORCH_EXTENSIONS_DIR" not in os.environ and (checkout / ".git").exists() and (checkout / "setup.py").exists():
        os.environ["TORCH_EXTENSIONS_DIR"] = str(checkout / ".torch_extensions")


def main(argv: Optional[Sequence[str]] = None) -> int:
    _torch_extensions_in_checkout()
    args = _strip_local_rank(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if rest and f"{name} {rest[0]}" in COMMANDS:  # two-word commands: `uer-ds export onnx ...`
        name, rest = f"{name} {rest[0]}", rest[1:]
    if name not in COMMANDS:
        print(f"uer-ds: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"uer-ds {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    parsed = parser.parse_args(rest)
    parsed.command_argv = [*name.split(), *rest]  # what a launcher re-runs in each process it starts
    if os.environ.get("UER_DS_PARSE_ONLY") == "1":  # launch/gpu_preflight.sh: check a command line, run nothing
        print(f"uer-ds {name}: arguments parse (UER_DS_PARSE_ONLY=1: not run)")
        return 0
    try:
        if "OMPI_COMM_WORLD_RANK" in os.environ:  # mpirun's ranks: RANK, WORLD_SIZE, ... before a command reads them
            from uer_ds.engine.rendezvous import adopt_mpi_environment

            adopt_mpi_environment()
        with warnings.catch_warnings():
            _one_line_warnings(f"uer-ds {name}")
            return int(module.run(parsed) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, FloatingPointError,
            NoSpaceError) as err:
        if os.environ.get("UER_DS_DEBUG") == "1":
            raise
        print(f"uer-ds {name}: error: {err}", file=sys.stderr, flush=True)
        return 1
    except Exception as err:  # ranks that did not start together, or a collective that failed or timed out
        message, collective = _distributed_failure(err)
        if message is None or os.environ.get("UER_DS_DEBUG") == "1":
            raise
        print(f"uer-ds {name}: error: {message}", file=sys.stderr, flush=True)
        if not collective:
            return 1
        # the process group cannot be shut down cleanly once a peer is gone (its destructor may wait for
        # that peer): leave at once, with the error status
        sys.stdout.flush()
        os._exit(1)


def _distributed_failure(err: BaseException) -> tuple[Optional[str], bool]:
    """(one-line message, whether a collective failed) for an error of the job's processes together;
    (None, False) for others.  Ranks that did not start together (RendezvousError), or a collective that
    failed or timed out, naming the rank and host lost.  Only where the engine was loaded (a command that
    never started a job has none)."""
    rendezvous = sys.modules.get("uer_ds.engine.rendezvous")
    if rendezvous is None:
        return None, False
    if isinstance(err, rendezvous.RendezvousError):
        return str(err), False
    from uer_ds.engine import dist

    message = dist.failure_message(err)
    return message, message is not None


__all__ = ["COMMANDS", "main"]
