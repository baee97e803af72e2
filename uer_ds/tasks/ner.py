"""Named entity recognition as sequence tagging (UER-py's run_ner / run_ner_infer).

Data: TSV with a header, `text_a<TAB>label`: text_a is tokens separated by ASCII spaces (characters
for Chinese; a full-width space U+3000 is a token like any other character), label one tag per
token (BIO or IOBES: O, B-LOC, I-LOC, ...); --label2id_path maps each tag to its id.  Inference
input needs only text_a.

Input: [CLS] pieces... [SEP] (segment 1).  A token the tokenizer splits (WordPiece: 'hello' ->
'hell', '##o') is labelled on its first piece; continuation pieces and the special tokens carry the
ignore label -100 and get no prediction.  Tokens cut off by --seq_length are predicted 'O' (and
counted in the load report), so metrics still cover every gold entity.

Head: linear layer over each position (softmax), or with --crf a linear-chain CRF over the tokens'
first pieces (exact log-likelihood, Viterbi decoding).  Metrics: entity-level P/R/F1 as seqeval
computes them (uer_ds.tasks.scoring).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.config.options import option
from uer_ds.models.targets import TargetResult
from uer_ds.models.targets.base import IGNORE_INDEX, classification_result
from uer_ds.tasks.base import SplitOptions, Task, TaskData, TaskOptions
from uer_ds.tasks.crf import CRF, compress
from uer_ds.tasks.data import Example, TaskDataError, pad, read_tsv, text_column
from uer_ds.tasks.scoring import check_tag, entity_metrics, format_entities, get_entities
from uer_ds.textfile import TextFileError, load_json, split_tokens
from uer_ds.tokenizers import Tokenizer


def note(message: str) -> None:
    """A line of the load report, printed once (data is read before the processes group up)."""
    if os.environ.get("RANK", "0") == "0":
        print(message, flush=True)


# ---- the head ------------------------------------------------------------------------------------
class TaggerHead(nn.Module):
    """(B, T, H) -> tag scores (B, T, L) by one linear layer; optional CRF over the first pieces.

    tgt: "word_mask" (B, T) bool, True at each token's first piece (always given: the CRF decodes
    over these positions), "word_index"/"word_valid" (B, W) the same positions packed to the front
    (from collate), "label" (B, T) tag ids with -100 elsewhere (training only).
    """

    predict_takes_tgt = True

    def __init__(self, cfg: ModelConfig, labels_num: int, crf: bool) -> None:
        super().__init__()
        self.labels_num = labels_num
        self.output_layer = nn.Linear(cfg.hidden_size, labels_num)
        self.crf = CRF(labels_num) if crf else None

    @staticmethod
    def words(logits: torch.Tensor, tgt: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first pieces' scores packed to the front: (B, W, L), mask (B, W), positions (B, W).
        From the collate function's "word_index"/"word_valid" (found on the host) when given; else
        from "word_mask" (compress: reads the widest row's count back from the device)."""
        if "word_index" in tgt:
            index, mask = tgt["word_index"], tgt["word_valid"]
            return logits.gather(1, index.unsqueeze(2).expand(-1, -1, logits.shape[2])), mask, index
        return compress(logits, tgt["word_mask"])

    def forward(self, hidden: torch.Tensor, tgt: dict, seg: torch.Tensor) -> TargetResult:
        logits = self.output_layer(hidden)  # (B, T, L)
        if self.crf is None:
            return classification_result(logits.reshape(-1, self.labels_num), tgt["label"].reshape(-1))
        packed, mask, index = self.words(logits, tgt)  # (B, W, L), (B, W), (B, W)
        labels = tgt["label"].gather(1, index).masked_fill(~mask, 0)  # (B, W)
        words = mask.sum()
        # token-averaged negative log-likelihood: the same scale as the softmax head's loss
        loss = -self.crf.log_likelihood(packed, labels, mask).sum() / words.clamp(min=1)
        path = self.crf.decode(packed.detach(), mask)
        return TargetResult(loss=loss, correct=((path == labels) & mask).sum(), denominator=words)

    def predict(self, hidden: torch.Tensor, seg: torch.Tensor, tgt: dict) -> torch.Tensor:
        """Tag ids (B, T); meaningful at the first pieces only."""
        return decode_tags(self.output_layer(hidden), seg, tgt, self.crf)

    # ONNX export (uer_ds.tasks.onnx): the graph computes the emissions; the CRF decodes on the host
    onnx_outputs = ("logits",)

    def export_outputs(self, hidden: torch.Tensor, seg: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"logits": (B, T, L) fp32}: the tag scores (the CRF's emissions)."""
        return {"logits": self.output_layer(hidden).float()}

    def host_state(self) -> dict:
        """The CRF's parameters as lists of floats (fp32 values, exact through JSON), or {} without a CRF."""
        if self.crf is None:
            return {}
        return {"crf": {k: v.detach().float().tolist() for k, v in self.crf.state_dict().items()}}


def decode_tags(logits: torch.Tensor, seg: torch.Tensor, tgt: dict, crf: Optional[CRF]) -> torch.Tensor:
    """Tag ids (B, T) long from tag scores `logits` (B, T, L): argmax per position, or with `crf` the Viterbi
    path over the first pieces (tgt's "word_index"/"word_valid" or "word_mask"), scattered back to their
    positions (0 elsewhere).  TaggerHead.predict and the ONNX export's host side (NerTask.onnx_predict)."""
    if crf is None:
        return logits.argmax(dim=-1)
    packed, mask, index = TaggerHead.words(logits, tgt)
    path = crf.decode(packed, mask)  # (B, W)
    return torch.zeros(seg.shape, dtype=torch.long, device=seg.device).scatter(1, index, path)


# ---- data ----------------------------------------------------------------------------------------
def read_label2id(path: str) -> list[str]:
    """The tags in id order, from a JSON object {tag: id} with ids 0..n-1."""
    try:
        table = load_json(path, "--label2id_path")
    except TextFileError as err:
        raise TaskDataError(f"{err}: label2id is a JSON object {{tag: id}}") from None
    if not isinstance(table, dict) or not table:
        raise TaskDataError(f"{path}: label2id must be a non-empty JSON object {{tag: id}}, got {type(table).__name__}")
    for tag, value in table.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TaskDataError(f"{path}: tag '{tag}' has id {value!r}: ids are integers")
        rule = check_tag(tag)
        if rule is not None:
            raise TaskDataError(f"{path}: tag '{tag}': {rule}")
    ids = sorted(table.values())
    if ids != list(range(len(table))):
        raise TaskDataError(f"{path}: ids {ids} must be 0..{len(table) - 1}, each once")
    return sorted(table, key=table.get)


def encode_words(tokenizer: Tokenizer, words: Sequence[str], seq_length: int) -> tuple[list[int], list[int]]:
    """[CLS] pieces of each word [SEP], cut at seq_length -> (ids, first-piece position per kept word).
    A word that gives no piece (a control character) is [UNK], so every word keeps a position."""
    special = tokenizer.require_special("cls", "sep")
    src, first = [special["cls"]], []
    for word in words:
        pieces = tokenizer.encode(word) or [tokenizer.require_special("unk")["unk"]]
        if len(src) >= seq_length - 1:
            break
        first.append(len(src))
        src.extend(pieces[: seq_length - 1 - len(src)])
    return src + [special["sep"]], first


def tagging_example(where: str, text: str, words: Sequence[str], tokenizer: Tokenizer, seq_length: int,
                    tags: Optional[Sequence[str]] = None, tag_ids: Optional[dict] = None) -> Example:
    """One sentence of `words` (text_a's tokens) as the tagger reads it: [CLS] pieces [SEP] cut at seq_length
    (encode_words), the tag ids at each word's first piece and -100 elsewhere when `tags` are given; what
    `uer-ds infer ner` and `uer-ds serve` predict on."""
    src, first = encode_words(tokenizer, words, seq_length)
    labels = None
    if tags is not None:
        labels = [IGNORE_INDEX] * len(src)
        for position, tag in zip(first, tags):
            labels[position] = tag_ids[tag]
    return Example(where, {"text_a": text}, src, [1] * len(src), labels,
                   {"first": first, "words": len(words), "tags": list(tags) if tags is not None else None})


UER_PAD_TAG = "[PAD]"  # UER-py's run_ner.py appends this tag to label2id (its padding label)


@dataclass(frozen=True)
class NerOptions(SplitOptions):
    """ner: the tag set and the CRF switch (UER-py's --label2id_path, --crf_target)."""

    TITLE: ClassVar[str] = "ner"
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "label2id_path", "crf")
    INFER: ClassVar[tuple[str, ...]] = ("label2id_path", "crf")
    FINETUNE_DEFAULTS: ClassVar[dict[str, Any]] = {"crf": False}
    INFER_DEFAULTS: ClassVar[dict[str, Any]] = {"label2id_path": None, "crf": None}  # optional at inference
    INFER_HELPS: ClassVar[dict[str, str]] = {
        "label2id_path": "UER-py's label2id JSON: checked against the model's tags; required for a model fine-tuned "
                         "by UER-py (.bin)",
        "crf": "the model has a CRF layer: checked against the model (UER-py's --crf_target)"}

    label2id_path: Optional[str] = option("JSON object {tag: id}, ids 0..n-1 (UER-py's)", default=None, required=True)
    crf: Optional[bool] = option("a CRF layer over the tags (Viterbi decoding); UER-py's --crf_target", default=None,
                                 flags=("--crf_target",))


class NerTask(Task):
    name = "ner"
    uer_2020_output_path = "models/ner_model.bin"
    help = "named entity recognition: tag each token (BIO), softmax or --crf (UER-py run_ner)"
    metrics = ("f1", "precision", "recall", "tag_accuracy")
    uer_head = "tagger"

    options = NerOptions

    def uer_spec(self, options: NerOptions, cfg: ModelConfig, head: dict[str, torch.Tensor], source: str) -> dict:
        """run_ner.py's tagger: label2id's tags plus UER-py's [PAD] tag, a CRF when the file has one, and
        UER-py's input layout (space-separated tokens looked up whole, no [CLS]/[SEP])."""
        if not options.label2id_path:
            raise ValueError(f"{source}: a model fine-tuned by UER-py holds no tag names: give "
                             "--label2id_path, as UER-py's run_ner_infer.py takes it")
        labels = read_label2id(options.label2id_path) + [UER_PAD_TAG]
        rows = head[f"target.{self.name}.output_layer.weight"].shape[0]
        if rows != len(labels):
            raise ValueError(f"--label2id_path {options.label2id_path} has {len(labels) - 1} tags (+ UER-py's [PAD]: "
                             f"{len(labels)}) but the model in {source} has {rows} outputs")
        crf = f"target.{self.name}.crf.transitions" in head
        if options.crf is not None and options.crf != crf:
            raise ValueError(f"--crf_target is given but the model in {source} has "
                             f"{'a' if crf else 'no'} CRF layer")
        return {"labels": labels, "crf": crf, "layout": "uer"}

    def check_infer_flags(self, options: NerOptions, spec: dict, source: str) -> None:
        if options.label2id_path:
            labels = read_label2id(options.label2id_path)
            if labels != list(spec["labels"]):
                raise ValueError(f"--label2id_path {options.label2id_path} has tags {labels} but the model in {source} "
                                 f"has {list(spec['labels'])}: give the label2id it was fine-tuned with")
        if options.crf is not None and bool(options.crf) != bool(spec["crf"]):
            raise ValueError(f"--crf_target is given but the model in {source} has "
                             f"{'a' if spec['crf'] else 'no'} CRF layer")

    # ---- data -----------------------------------------------------------------------------------
    def read(self, path: str, tokenizer: Tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[TaskOptions] = None) -> list[Example]:
        if seq_length < 3:
            raise ValueError(f"--seq_length {seq_length}: NER needs at least 3 ([CLS], a token, [SEP])")
        tag_ids = {tag: i for i, tag in enumerate(spec["labels"])}
        _, rows = read_tsv(path, ["text_a", "label"] if labelled else ["text_a"])
        if spec.get("layout") == "uer":
            return self._read_uer_layout(rows, tokenizer, seq_length, tag_ids if labelled else None)
        examples, cut = [], 0
        for row in rows:
            words = split_tokens(text_column(row, "text_a"))
            tags = None
            if labelled:
                tags = split_tokens(row.values["label"])
                if len(tags) != len(words):
                    raise row.error(f"label has {len(tags)} tag(s) for {len(words)} token(s) of text_a: one tag per "
                                    "space-separated token")
                for position, tag in enumerate(tags, start=1):
                    if tag not in tag_ids:
                        raise row.error(f"tag '{tag}' (token {position}) is not in label2id ({', '.join(tag_ids)})")
            example = tagging_example(row.where, row.values["text_a"], words, tokenizer, seq_length, tags, tag_ids)
            cut += len(example.extra["first"]) < len(words)
            examples.append(example)
        if cut:
            note(f"{path}: {cut} of {len(rows)} sentence(s) longer than --seq_length {seq_length}: their last tokens "
                 "are predicted 'O'")
        return examples

    @staticmethod
    def _read_uer_layout(rows, tokenizer: Tokenizer, seq_length: int, tag_ids: Optional[dict]) -> list[Example]:
        """UER-py's run_ner.py input: text_a split on single spaces, each token looked up whole in the
        vocabulary ([UNK] if absent), no [CLS]/[SEP], cut at seq_length; a tag per token."""
        examples = []
        for row in rows:
            tokens = text_column(row, "text_a").strip().split(" ")
            src = tokenizer.convert_tokens_to_ids(tokens)[:seq_length]
            tags = row.values["label"].split(" ") if tag_ids is not None else None
            labels = [tag_ids[t] for t in tags][:seq_length] if tags is not None else None
            examples.append(Example(row.where, {"text_a": row.values["text_a"]}, src, [1] * len(src), labels,
                                    {"first": list(range(len(src))), "words": len(tokens), "tags": tags}))
        return examples

    def load(self, options: TaskOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        spec = {"labels": read_label2id(options.label2id_path), "crf": bool(options.crf)}
        read = lambda path: self.read(path, tokenizer, seq_length, spec, True)  # noqa: E731
        return TaskData({"ner": spec}, [read(options.train_path)], [read(options.dev_path)],
                        [read(options.test_path) if options.test_path else None])

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        src = pad([e.src for e in examples], pad_id)
        word_mask = torch.zeros(src.shape, dtype=torch.bool)
        width = max(1, max(len(e.extra["first"]) for e in examples))
        # first pieces packed to the front, then the other positions (distinct, as compress does: predict
        # scatters the decoded path back through this index, so no two slots may name one position)
        word_index = torch.zeros((len(examples), width), dtype=torch.long)
        word_valid = torch.zeros((len(examples), width), dtype=torch.bool)
        for i, e in enumerate(examples):
            first = e.extra["first"]
            word_mask[i, first] = True
            taken = set(first)
            rest = [p for p in range(src.shape[1]) if p not in taken][: width - len(first)]
            word_index[i] = torch.as_tensor(list(first) + rest, dtype=torch.long)
            word_valid[i, : len(first)] = True
        tgt: dict[str, Any] = {"task": head, "word_mask": word_mask, "word_index": word_index, "word_valid": word_valid}
        if examples[0].tgt is not None:
            tgt["label"] = pad([e.tgt for e in examples], IGNORE_INDEX)
        return {"src": src, "seg": pad([e.seg for e in examples], 0), "tgt": tgt}

    # ---- model ----------------------------------------------------------------------------------
    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[TaskOptions] = None) -> dict[str, nn.Module]:
        if cfg.encoder == "dual":
            raise ValueError("NER takes one encoder; siamese (dual) models are not supported")
        return {name: TaggerHead(cfg, len(spec["labels"]), bool(spec["crf"])) for name, spec in heads.items()}

    def onnx_predict(self, spec: dict, outputs: dict[str, torch.Tensor], batch: dict, host: dict) -> torch.Tensor:
        """Tag ids (B, T) from the exported emissions, decoded as TaggerHead.predict decodes them (decode_tags);
        a CRF's parameters come from the export's host state."""
        crf = None
        if spec.get("crf"):
            if "crf" not in host:
                raise ValueError("the ONNX export of a CRF tagger carries no CRF parameters: export it again with "
                                 "`uer-ds export onnx`")
            crf = CRF(len(spec["labels"]))
            crf.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in host["crf"].items()})
        return decode_tags(outputs["logits"], batch["seg"], batch["tgt"], crf)

    # ---- evaluation and output ------------------------------------------------------------------
    @staticmethod
    def predicted_tags(example: Example, output: np.ndarray, labels: Sequence[str]) -> list[str]:
        """One tag per token of text_a: the first piece's prediction, 'O' for tokens cut off."""
        tags = [labels[int(output[p])] for p in example.extra["first"]]
        return tags + ["O"] * (example.extra["words"] - len(tags))

    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        pred = [self.predicted_tags(e, o, spec["labels"]) for e, o in zip(examples, outputs)]
        return entity_metrics([e.extra["tags"] for e in examples], pred)

    def format_report(self, metrics: dict, title: str) -> str:
        return format_entities(metrics, title)

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        rows = []
        for example, output in zip(examples, outputs):
            pred = self.predicted_tags(example, output, spec["labels"])
            if set(get_entities(pred)) != set(get_entities(example.extra["tags"])):
                rows.append([example.source, example.text["text_a"], " ".join(example.extra["tags"]), " ".join(pred)])
        return ["source", "text_a", "gold", "predicted"], rows

    def write_predictions(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                          options: TaskOptions, header: bool) -> None:
        if header:
            handle.write("label\n")
        for example, output in zip(examples, outputs):
            handle.write(" ".join(self.predicted_tags(example, output, spec["labels"])) + "\n")


__all__ = ["NerTask", "TaggerHead", "encode_words", "read_label2id", "tagging_example"]
