"""Select a paragraph, then extract the answer from it, in one `uer-ds infer cmrc --select_model_path S` run
(the flow of open-domain reading comprehension, such as ADL's: a question comes with several candidate
paragraphs, a multiple-choice model picks the one that answers it, a span-extraction model reads the answer
there).

Input (--test_path): C3's JSON with the candidate paragraphs as a question's options and no context,
[[], [{"id", "question", "choice": [paragraph, ...]}], document id] -- the same file a selector is
fine-tuned on with `uer-ds finetune c3` (there with "answer": the paragraph that holds the answer).
The selector (--select_model_path: a c3 task model) scores [CLS] paragraph [SEP] question [SEP] for each
candidate; the best paragraph becomes a SQuAD-style paragraph with that question for the extractor
(--load_model_path: a cmrc task model), which decodes as `uer-ds infer cmrc` does.  The flags are
uer_ds.tasks.mrc.CmrcOptions' SELECT fields; uer_ds.cli.infer runs this recipe when --select_model_path is given.
Output (--prediction_path): CMRC2018's prediction format, {question id: answer text}; --selection_path
adds JSON lines {"id", "paragraph": chosen index, "scores": one per candidate}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from uer_ds.atomic import atomic_path


def select_then_extract(args: argparse.Namespace) -> int:
    """Run the flow of the module docstring; returns 0 (errors raise, naming the flag or file)."""
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.multiple_choice import read_c3
    from uer_ds.recipes.infer import infer_model
    from uer_ds.recipes.predict import batch_maker, predict_examples

    if args.batch_size <= 0:
        raise ValueError(f"--batch_size has value {args.batch_size}: must be positive")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    started = time.perf_counter()
    select, extract = TASKS["c3"], TASKS["cmrc"]
    questions = read_c3(args.test_path, labelled=False)
    # 1. selection: the c3 model over each question's candidate paragraphs
    chooser = argparse.Namespace(**vars(args))
    chooser.load_model_path, chooser.seq_length, chooser.max_choices_num = args.select_model_path, None, None
    try:
        forward, info, tokenizer = infer_model(select, chooser, device)
    except (ValueError, FileNotFoundError) as err:  # the selector's errors name its own flag
        text = str(err).replace("--load_model_path", "--select_model_path")
        raise type(err)(text if "--select_model_path" in text else f"--select_model_path: {text}") from None
    names = list(info["heads"])
    examples = select.read(args.test_path, tokenizer, info["seq_length"], info["heads"][names[0]], labelled=False,
                           options=select.options_from(chooser))
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    outputs = predict_examples(forward, examples, 0, batch_maker(select, names, pad_id, tokenizer), args.batch_size)
    scores = select._scores(examples, outputs)  # (questions, most candidates)
    chosen = [int(row[: len(q["choices"])].argmax()) for row, q in zip(scores, questions)]
    # 2. extraction: the cmrc model over the chosen paragraphs, as `uer-ds infer cmrc` reads SQuAD JSON
    squad = {"data": [{"paragraphs": [{"context": q["choices"][k], "qas": [{"id": q["id"], "question": q["question"]}]}
                                      for q, k in zip(questions, chosen)]}]}
    with tempfile.TemporaryDirectory(prefix="uer_ds_select_") as scratch:
        selected = Path(scratch) / "selected.json"
        selected.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
        forward, info, tokenizer = infer_model(extract, args, device)
        names = list(info["heads"])
        spec = info["heads"][names[0]]
        windows = extract.read(str(selected), tokenizer, args.seq_length or info["seq_length"], spec, labelled=False,
                               options=extract.options_from(args))
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    outputs = predict_examples(forward, windows, 0, batch_maker(extract, names, pad_id, tokenizer), args.batch_size)
    with atomic_path(args.prediction_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        extract.write_prediction_file(f, windows, outputs, spec, extract.options_from(args))
    if args.selection_path:
        with atomic_path(args.selection_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for q, k, row in zip(questions, chosen, scores):
                f.write(json.dumps({"id": q["id"], "paragraph": k,
                                    "scores": [round(float(s), 6) for s in row[: len(q["choices"])]]}) + "\n")
    candidates = sum(len(q["choices"]) for q in questions)
    print(f"selected 1 of {candidates / len(questions):.1f} paragraph(s) per question for {len(questions)} "
          f"question(s), extracted their answers ({len(windows)} window(s)) in {time.perf_counter() - started:.1f} s "
          f"-> {args.prediction_path}", flush=True)
    return 0


__all__ = ["select_then_extract"]
