"""`uer-ds analyse explain`: token attributions of a fine-tuned classifier's predictions by integrated gradients
(Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep Networks"), computed by Captum's
LayerIntegratedGradients on the output of the embedding layer (word + position + segment embeddings, after
their LayerNorm): the usual way for BERT-like models, whose inputs are discrete ids.

IG of the output F along the straight path from a baseline x' to the input x, for embedding coordinate i:
    IG_i = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da
summed over the hidden dimension to one number per token.  Completeness: sum_i IG_i = F(x) - F(x'); Captum
approximates the integral with --n_steps Gauss-Legendre points and reports the convergence delta
sum_i IG_i - (F(x) - F(x')), written per example (raise --n_steps when it is large against F(x) - F(x')).

Baseline: the same ids with every token but [CLS], [SEP] and [PAD] replaced by [PAD] (segments and positions
kept), so the attributions explain the text's tokens, not the sentence frame.  F: the softmax probability of
the target class (default the predicted one; --target gold for the labelled class; --output logit for its
logit).

Output directory (written together, atomically):
  attributions.html   one row per example: line, gold and predicted label, probability, delta, and the text
                      with each token's characters coloured (green: for the target class, red: against;
                      opacity |attribution| / the example's largest); self-contained, every text escaped
  attributions.tsv    one row per token: line, position, token, segment, start, end (character span of the
                      token in its text column, Python indices; empty for [CLS]/[SEP] and for tokenizers
                      without offsets), attribution
  explain.json        settings and per example: line, gold, predicted, probability, target, f_input,
                      f_baseline, attribution_sum, delta
"""
from __future__ import annotations

import argparse
import html
import json
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from uer_ds.deploy.analysis.common import (Classifier, add_model_arguments, check_positive, line_of, load_classifier,
                                           output_dir, read_examples, write_tsv, writing)
from uer_ds.tasks.data import Example

HTML, TSV, JSON = "attributions.html", "attributions.tsv", "explain.json"


@dataclass
class Explanation:
    """One example's attributions.  attributions: (T,) float64 per token of src; f_input / f_baseline: F at the
    input and the baseline; delta: Captum's convergence delta (sum(attributions) - (f_input - f_baseline))."""

    example: Example
    tokens: list[str]
    spans: list[Optional[tuple[str, int, int]]]  # (text column, start, end) per token, None for specials
    attributions: np.ndarray
    target: int
    predicted: int
    probability: float  # of the predicted class
    f_input: float
    f_baseline: float
    delta: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test_path", required=True,
                        help="texts to explain in the task's format (a label column, when present, is the gold label)")
    parser.add_argument("--n_steps", type=int, default=50, help="integration points of IG (default 50)")
    parser.add_argument("--target", choices=("predicted", "gold"), default="predicted",
                        help="the class whose output is attributed (default: the predicted one)")
    parser.add_argument("--output", choices=("prob", "logit"), default="prob",
                        help="F: the target's softmax probability (default) or its logit")
    parser.add_argument("--max_examples", type=int, help="only the first N rows of the file")
    add_model_arguments(parser)


def baseline_ids(src: torch.Tensor, tokenizer) -> torch.Tensor:
    """The reference input: src (B, T) long with every id except [CLS], [SEP] and [PAD] replaced by [PAD]."""
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    keep = torch.zeros_like(src, dtype=torch.bool)
    for special in (tokenizer.cls_id, tokenizer.sep_id, pad_id):
        if special is not None:
            keep |= src == special
    return torch.where(keep, src, torch.full_like(src, pad_id))


def output_function(classifier: Classifier, output: str):
    """F(src, seg) -> (B, C): softmax probabilities or logits of the classifier head."""
    def forward(src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        logits = classifier.logits(src, seg)
        return torch.softmax(logits, dim=-1) if output == "prob" else logits
    return forward


def integrated_gradients(classifier: Classifier, src: torch.Tensor, seg: torch.Tensor, target: int, n_steps: int,
                         output: str = "prob", internal_batch_size: Optional[int] = None
                         ) -> tuple[np.ndarray, float, float, float]:
    """IG of F's `target` column for one example, src and seg (1, T) long: (attributions (T,) float64 summed
    over the hidden size, F(input), F(baseline), Captum's convergence delta)."""
    from captum.attr import LayerIntegratedGradients

    forward = output_function(classifier, output)
    reference = baseline_ids(src, classifier.tokenizer)
    ig = LayerIntegratedGradients(forward, classifier.model.embedding)
    attributions, delta = ig.attribute(src, baselines=reference, target=target, additional_forward_args=(seg,),
                                       n_steps=n_steps, internal_batch_size=internal_batch_size,
                                       return_convergence_delta=True)
    with torch.no_grad():
        f_input = float(forward(src, seg)[0, target])
        f_baseline = float(forward(reference, seg)[0, target])
    return (attributions.sum(dim=-1)[0].detach().double().numpy(), f_input, f_baseline, float(delta.reshape(-1)[0]))


def token_spans(classifier: Classifier, example: Example) -> list[Optional[tuple[str, int, int]]]:
    """Each position of example.src -> (text column, start, end) of the characters it came from, None for
    [CLS]/[SEP] or when the tokenizer cannot give offsets (or its ids do not line up with src)."""
    from uer_ds.tokenizers.base import gives_offsets

    spans: list[Optional[tuple[str, int, int]]] = [None] * len(example.src)
    if not gives_offsets(classifier.tokenizer):
        return spans
    position = 1  # after [CLS]
    for column in ("text_a", "text_b"):
        if column not in example.text:
            continue
        ids, offsets = classifier.tokenizer.encode_with_offsets(example.text[column])
        for token_id, (start, end) in zip(ids, offsets):
            if position >= len(example.src) or example.src[position] != token_id:
                return spans if position >= len(example.src) else [None] * len(example.src)
            spans[position] = (column, start, end)
            position += 1
        position += 1  # [SEP]
    return spans


def explain(classifier: Classifier, examples: Sequence[Example], n_steps: int, target: str = "predicted",
            output: str = "prob", batch_size: Optional[int] = None, progress: bool = False) -> list[Explanation]:
    """IG attributions of each example (one at a time, without padding; n_steps points in batches of
    batch_size).  target 'gold' needs labelled examples (ValueError naming the first without a label)."""
    from tqdm import tqdm

    out = []
    for example in tqdm(examples, desc="explain", disable=not progress, leave=False):
        src, seg = torch.tensor([example.src]), torch.tensor([example.seg])
        with torch.no_grad():
            probs = torch.softmax(classifier.logits(src, seg).double(), dim=-1)[0]
        predicted = int(probs.argmax())
        if target == "gold" and example.tgt is None:
            raise ValueError(f"{example.source}: --target gold needs a label column")
        chosen = predicted if target == "predicted" else int(example.tgt)
        attributions, f_input, f_baseline, delta = integrated_gradients(classifier, src, seg, chosen, n_steps, output,
                                                                        batch_size)
        out.append(Explanation(example, classifier.tokenizer.convert_ids_to_tokens(example.src),
                               token_spans(classifier, example), attributions, chosen, predicted,
                               float(probs[predicted]), f_input, f_baseline, delta))
    return out


# ---- output ----------------------------------------------------------------------------------------------
def _colour(value: float, scale: float) -> str:
    """A background for an attribution: green (for) or red (against), opacity |value| / scale."""
    alpha = 0.0 if scale <= 0 else min(abs(value) / scale, 1.0)
    rgb = "0,160,60" if value >= 0 else "220,40,40"
    return f"background-color: rgba({rgb},{alpha:.3f})"


def _segments(item: Explanation, column: str) -> list[tuple[int, int, float, list[str]]]:
    """(start, end, attribution, tokens) of `column`'s text, tokens whose spans overlap merged (pieces of an
    unknown word share the word's span)."""
    merged: list[list] = []
    for token, span, value in zip(item.tokens, item.spans, item.attributions):
        if span is None or span[0] != column:
            continue
        _, start, end = span
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] += float(value)
            merged[-1][3].append(token)
        else:
            merged.append([start, end, float(value), [token]])
    return [tuple(m) for m in merged]


def _html_text(item: Explanation, column: str, scale: float) -> str:
    text = item.example.text[column]
    parts, cursor = [], 0
    for start, end, value, tokens in _segments(item, column):
        parts.append(html.escape(text[cursor:start]))
        title = html.escape(f"{' '.join(tokens)}: {value:+.4f}", quote=True)
        parts.append(f'<span style="{_colour(value, scale)}" title="{title}">{html.escape(text[start:end])}</span>')
        cursor = end
    parts.append(html.escape(text[cursor:]))
    return "".join(parts)


def _html_tokens(item: Explanation, scale: float) -> str:
    """The tokens themselves, coloured (tokenizers without character offsets)."""
    return " ".join(f'<span style="{_colour(v, scale)}" title="{v:+.4f}">{html.escape(t)}</span>'
                    for t, v in zip(item.tokens, item.attributions))


def render_html(items: Sequence[Explanation], classifier: Classifier, title: str) -> str:
    """The self-contained page of the module docstring."""
    rows = []
    for item in items:
        scale = float(np.abs(item.attributions).max()) if len(item.attributions) else 0.0
        if any(span is not None for span in item.spans):
            text = " <b>|</b> ".join(_html_text(item, c, scale) for c in ("text_a", "text_b") if c in item.example.text)
        else:
            text = _html_tokens(item, scale)
        gold = classifier.label_name(item.example.tgt)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
            line_of(item.example), gold, classifier.label_name(item.predicted), f"{item.probability:.4f}",
            classifier.label_name(item.target), f"{item.delta:+.2e}")) + f'<td class="text">{text}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("line", "gold", "predicted", "probability", "target", "delta", "text"))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title>\n"
            "<style>body{font-family:sans-serif} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
            "padding:4px;vertical-align:top} td.text{line-height:1.8}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>Integrated gradients of the target class; green: for it, red: "
            "against it; hover a token for its attribution.</p>\n"
            f"<table><tr>{head}</tr>\n" + "\n".join(rows) + "\n</table></body></html>\n")


def tsv_rows(items: Sequence[Explanation]) -> list[list]:
    """One row per token: line, position, token, segment, start, end, attribution (see the module docstring)."""
    rows = []
    for item in items:
        for position, (token, span, value) in enumerate(zip(item.tokens, item.spans, item.attributions)):
            start, end = ("", "") if span is None else span[1:]
            rows.append([line_of(item.example), position, token, item.example.seg[position], start, end,
                         f"{value:.6g}"])
    return rows


def run(args: argparse.Namespace) -> int:
    """`uer-ds analyse explain`: read, attribute, write the three files, print a summary."""
    check_positive(n_steps=args.n_steps, batch_size=args.batch_size, max_examples=args.max_examples)
    with output_dir(args.output_dir) as out:
        classifier = load_classifier(args.load_model_path, args, head=args.head, seq_length=args.seq_length)
        examples = read_examples(classifier, args.test_path, args, labelled=True if args.target == "gold" else None)
        examples = examples[: args.max_examples]
        started = time.perf_counter()
        items = explain(classifier, examples, args.n_steps, args.target, args.output, args.batch_size,
                        progress=not args.no_progress)
        seconds = time.perf_counter() - started
        summary = {"model": classifier.path, "head": classifier.head_name, "test_path": str(args.test_path),
                   "method": "integrated gradients (captum LayerIntegratedGradients, embedding layer output)",
                   "baseline": "[PAD] for every token but [CLS], [SEP], [PAD]", "n_steps": args.n_steps,
                   "output": args.output, "target": args.target, "seconds": round(seconds, 3),
                   "examples": [{"line": line_of(i.example), "gold": classifier.label_name(i.example.tgt) or None,
                                 "predicted": classifier.label_name(i.predicted), "probability": i.probability,
                                 "target": classifier.label_name(i.target), "f_input": i.f_input,
                                 "f_baseline": i.f_baseline, "attribution_sum": float(i.attributions.sum()),
                                 "delta": i.delta} for i in items]}
        with writing(out / HTML, out / TSV, out / JSON) as (page, table, report):
            page.write_text(render_html(items, classifier, f"Integrated gradients: {args.test_path}"),
                            encoding="utf-8")
            write_tsv(table, ["line", "position", "token", "segment", "start", "end", "attribution"],
                      tsv_rows(items))
            report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    deltas = np.abs([i.delta for i in items])
    print(f"explained {len(items)} example(s) in {seconds:.1f} s ({args.n_steps} steps each); |delta| max "
          f"{deltas.max():.2e}, mean {deltas.mean():.2e}; wrote {HTML}, {TSV}, {JSON} to {args.output_dir}", flush=True)
    return 0


__all__ = ["Explanation", "baseline_ids", "explain", "integrated_gradients", "render_html", "run", "token_spans"]
