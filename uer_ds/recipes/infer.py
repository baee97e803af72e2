"""Inference: a fine-tuned model -> predictions of a file (`uer-ds infer <task>`), batched, plain PyTorch
(or onnxruntime for an exported model).  The model is a task model directory written by `uer-ds finetune`,
a model UER-py's finetune/run_*.py wrote (.bin), or an ONNX model from `uer-ds export onnx`; the resolver
(uer_ds.convert.resolve) tells them apart."""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from uer_ds.atomic import atomic_path
from uer_ds.config.options import option, options_from_args
from uer_ds.recipes.predict import batch_maker, module_forward, predict_examples
from uer_ds.tasks.base import Task

UER_SEQ_LENGTH = 128  # UER-py's default --seq_length


@dataclass(frozen=True)
class InferOptions:
    """What `uer-ds infer` reads, writes and how it batches."""

    load_model_path: str = option(
        "a task model directory written by `uer-ds finetune`, or a model fine-tuned by UER-py's finetune/run_*.py (a "
        ".bin; give its --config_path and the task's settings, as UER-py's inference scripts take them)", default="",
        required=True)
    test_path: str = option("input in the task's format: TSV with a header, or JSON for cmrc and c3 (labels not "
                            "needed)", default="", required=True)
    prediction_path: str = option("output: TSV, or JSON for cmrc and JSON lines for c3 (written under a temporary "
                                  "name, then renamed)", default="", required=True)
    batch_size: int = option("batch size (default 64)", default=64)
    seq_length: Optional[int] = option("longest input (default: the one the model was fine-tuned with; "
                                       f"{UER_SEQ_LENGTH} for a UER-py .bin, as UER-py)", default=None)
    no_progress: bool = option("no progress bar", default=False)


def infer_tokenizer(args: argparse.Namespace, info: dict):
    """The tokenizer a fine-tuned model was trained with (its task.json's record; flags given override the
    paths), checked against the recorded vocabulary (and sub-vocabulary) hashes."""
    from uer_ds.tokenizers import build_tokenizer

    recorded = info["tokenizer"]
    vocab_path = args.vocab_path or recorded.get("vocab_path")
    spm_path = args.spm_model_path or recorded.get("spm_model_path")
    if vocab_path is None and spm_path is None:
        raise ValueError("give the vocabulary the model was fine-tuned with: --vocab_path (or --spm_model_path)")
    lower = recorded.get("do_lower_case") if args.do_lower_case is None else args.do_lower_case == "true"
    kind = recorded.get("kind", args.tokenizer) if args.tokenizer == "bert" else args.tokenizer
    tokenizer = build_tokenizer(kind, vocab_path, spm_path, do_lower_case=lower)
    sub_vocab_path = args.sub_vocab_path or recorded.get("sub_vocab_path")
    if recorded.get("sub_vocab_sha256") and sub_vocab_path is None:
        raise ValueError("the model encodes words from their characters: give its --sub_vocab_path")
    if recorded.get("sub_vocab_sha256"):
        from uer_ds.recipes.inputs import attach_subwords

        attach_subwords(tokenizer, sub_vocab_path)
        if tokenizer.subwords.identity()["sub_vocab_sha256"] != recorded["sub_vocab_sha256"]:
            raise ValueError(f"the sub-vocabulary given ({sub_vocab_path}) is not the one the model was fine-tuned "
                             f"with (sha256 {recorded['sub_vocab_sha256'][:12]}...)")
    if tokenizer.identity().get("vocab_sha256") != recorded.get("vocab_sha256"):
        raise ValueError(f"the vocabulary given ({vocab_path or spm_path}) is not the one the model was fine-tuned "
                         f"with (sha256 {recorded.get('vocab_sha256', '?')[:12]}..., "
                         f"{recorded.get('vocab_size')} entries)")
    return tokenizer


def infer_model(task: Task, args: argparse.Namespace, device: torch.device, load_model_path: Optional[str] = None):
    """(forward(batch) -> the head's outputs, task info, tokenizer) of --load_model_path, recognised by the
    resolver (uer_ds.convert.resolve): a task directory (the model-shape flags given must agree with it;
    --kernels picks the implementation), a model UER-py's finetune/run_*.py wrote (.bin: its config and
    head settings from the flags, as UER-py's inference scripts take them), or an ONNX model from `uer-ds
    export onnx` (predicted through onnxruntime).  `load_model_path`: the model (default --load_model_path;
    select-then-extract's selector is another)."""
    from uer_ds.config import ModelConfig
    from uer_ds.convert.resolve import INFER_KINDS, MODEL_KINDS, resolve_model
    from uer_ds.recipes.inputs import check_model_flags

    path = uer_2020_output(task, load_model_path or args.load_model_path)
    source = resolve_model(path, "--load_model_path", kinds=MODEL_KINDS + ("onnx",), config_path=args.config_path)
    if source.kind not in INFER_KINDS and not (source.kind == "weights" and task.uer_head):
        raise ValueError(f"--load_model_path '{path}' is {source.description}, not a fine-tuned "
                         f"model: fine-tune it first (uer-ds finetune {task.name} --pretrained_model_path "
                         f"{path} ...), then infer with the directory that writes")
    if source.kind in ("uer", "weights"):
        return _uer_inference(task, args, source, device, path)
    info = read_info_checked(source.task_info(), path, task)
    tokenizer = infer_tokenizer(args, info)
    options = task.options_from(args)
    spec = info["heads"][head_name(options, info)]
    head_values = {k: spec[k] for k in ("pooling", "labels_num") if k in spec}
    saved = source.own_config() if source.kind == "task" else ModelConfig.from_dict(info["config"], "the ONNX model")
    cfg = check_model_flags(args, saved, path, head_values)
    task.check_infer_flags(options, spec, path)
    if source.kind == "onnx":
        if cfg.kernels != saved.kernels:
            raise ValueError(f"--kernels {cfg.kernels}: {path} runs in onnxruntime, which has its own "
                             "kernels; leave --kernels out")
        forward, _ = source.onnx_forward()
        return forward, info, tokenizer
    model, _ = source.task_model(lambda c, i: task.build_heads(c, i["heads"]), kernels=cfg.kernels, device=device)
    return module_forward(model, device), info, tokenizer


def uer_2020_output(task: Task, load_model_path: str) -> str:
    """UER-py's 2019-2020 run_*.py wrote the fine-tuned model to a name per task (models/classifier_model.bin,
    ner_model.bin, cmrc_model.bin, ...), and that era's inference commands read it; `uer-ds finetune`, as
    UER-py's finetune/run_*.py today, writes models/finetuned_model.bin.  When --load_model_path is the
    task's old name, absent, and the directory beside it holds finetuned_model.bin, that model is read
    (said so; read_info_checked still checks it is this task's model).  Returns the path to read."""
    old = task.uer_2020_output_path
    given = Path(load_model_path)
    if old is None or given.exists() or given.as_posix().removeprefix("./") != old.removeprefix("./"):
        return load_model_path
    written = given.parent / Path(task.uer_output_model_path).name
    if not written.is_dir():
        return load_model_path
    print(f"note: --load_model_path {load_model_path} does not exist: UER-py's run_*.py of 2019-2020 wrote the "
          f"fine-tuned {task.name} model there; uer_ds's finetune (as UER-py's today) writes "
          f"{task.uer_output_model_path}: reading {written}", flush=True)
    return str(written)


def _uer_inference(task: Task, args: argparse.Namespace, source, device: torch.device, path: str):
    """(forward, task info, tokenizer) of a model fine-tuned by UER-py's finetune/run_*.py: a .bin state dict
    with UER-py's names, the model config from --config_path (default: beside the file, else bert/base)
    and the flags, the head's settings from the task's flags (--labels_num, --label2id_path, ...), as
    UER-py's inference scripts take them.  Converted in memory; computed with UER-py's LayerNorm, so
    the outputs are UER-py's."""
    from uer_ds.recipes.inputs import model_config_with_vocab, resolve_config_default, tokenizer_from_args

    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the vocabulary the model was fine-tuned with: --vocab_path (or --spm_model_path)")
    kind = task.uer_head
    if kind is None:
        raise ValueError(f"{path}: a file, not a task model directory; UER-py checkpoints load for "
                         f"{', '.join(_uer_tasks())}, not '{task.name}' (convert its body with `uer-ds convert` and "
                         "fine-tune here)")
    if source.kind != "uer":
        raise ValueError(f"{path}: a weight file without UER-py's key names; give a task model directory written by "
                         "`uer-ds finetune`, or a model fine-tuned by UER-py's finetune/run_*.py")
    base, _, config_path = resolve_config_default(args.config_path, source)
    cfg = model_config_with_vocab(args, tokenizer, targets=False, base=base, config_path=config_path)
    options = task.options_from(args)
    model, spec = source.uer_task_model(cfg, kind, task.name, lambda head: task.uer_spec(options, cfg, head, path),
                                        lambda c, specs: task.build_heads(c, specs), device)
    info = {"task": task.name, "heads": {task.name: spec}, "seq_length": args.seq_length or UER_SEQ_LENGTH}
    return module_forward(model, device), info, tokenizer


def _uer_tasks() -> list[str]:
    from uer_ds.tasks import TASKS

    return [name for name, t in TASKS.items() if t.uer_head]


def head_name(options, info: dict) -> str:
    """--head (the classifier's, for multi-task models; a TaskOptions field), else the model's first head."""
    names = list(info["heads"])
    head_name = options.head or names[0]
    if head_name not in info["heads"]:
        raise ValueError(f"--head '{head_name}': the model's heads are {names}")
    return head_name


def infer(task: Task, args: argparse.Namespace) -> int:
    """`uer-ds infer <task>`: the model (infer_model), the input file read as the task reads it, batched
    predictions, the task's prediction file written whole (a temporary name, then renamed)."""
    from uer_ds.engine import dist

    options = options_from_args(InferOptions, args)
    if options.batch_size <= 0:
        raise ValueError(f"--batch_size has value {options.batch_size}: must be positive")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    forward, info, tokenizer = infer_model(task, args, device)
    names = list(info["heads"])
    task_options = task.options_from(args)
    head = head_name(task_options, info)
    spec = info["heads"][head]
    task.check_head_counts(task_options, info, spec, options.load_model_path)
    examples = task.read(options.test_path, tokenizer, options.seq_length or info["seq_length"], spec,
                         labelled=False, options=task_options)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    started = time.perf_counter()
    outputs = predict_examples(forward, examples, names.index(head), batch_maker(task, names, pad_id, tokenizer),
                               options.batch_size, desc=None if options.no_progress else "predict")
    with atomic_path(options.prediction_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        task.write_prediction_file(f, examples, outputs, spec, task_options)
    seconds = time.perf_counter() - started
    if dist.is_rank0():
        print(f"predicted {len(examples)} example(s) in {seconds:.1f} s ({len(examples) / max(seconds, 1e-9):.0f}/s) "
              f"with head '{head}' -> {Path(options.prediction_path)}", flush=True)
    return 0


def read_info_checked(info: dict, source: str, task: Task) -> dict:
    """A fine-tuned model's task.json, checked to serve `task` (its own, or one it reads models of)."""
    compatible = {task.name} | set(task.reads_models_of)
    if info.get("task") not in compatible:
        raise ValueError(f"{source} holds a '{info.get('task')}' model, not one for '{task.name}'")
    return info




__all__ = ["InferOptions", "UER_SEQ_LENGTH", "head_name", "infer", "infer_model",
           "infer_tokenizer", "read_info_checked", "uer_2020_output"]
