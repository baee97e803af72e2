"""UER-py's names, in one place: the aliases its commands and configs used, resolved to uer_ds's.

UER-py (and TencentPretrain) changed their vocabulary over the years: `--encoder bert` (2019-2021)
became `--encoder transformer --mask fully_visible`, `--target bert` became `--target mlm sp`,
`--embedding word_pos_seg` became `--embedding word pos seg`, `--encoder lstm --bidirectional`
is uer_ds's `bilstm`.  Every place that reads a model config (JSON files and command-line flags)
resolves these through MODEL_ALIASES; `--help`, validation messages and the README's "Coming from
UER-py" table derive from the same dicts.  Adding an alias (or a new encoder's old name) is one line
in MODEL_ALIASES.

FLAG_ALIASES holds UER-py's spellings of command-line flags that uer_ds names differently
(`--beta1` -> `--adam_beta1`, a tool's `--input_path` -> `--test_path`); `add_flag_aliases` gives an
argparse parser those spellings.  ACCEPTED_FLAGS are UER-py flags uer_ds accepts and does not need.
SCRIPTS maps UER-py's scripts to the `uer-ds` command that does their work.
"""
from __future__ import annotations

import argparse
from typing import Any, Mapping, Optional

# config key -> {UER-py name: the uer_ds keys it stands for}.  A list key's alias (embedding, target)
# expands in place inside the list: `--target bert` -> mlm sp, `--target mlm nsp` -> mlm sp.
MODEL_ALIASES: dict[str, dict[str, dict[str, Any]]] = {
    "encoder": {
        "bert": {"encoder": "transformer", "mask": "fully_visible", "layernorm_positioning": "post"},
        "gpt": {"encoder": "transformer", "mask": "causal", "layernorm_positioning": "post"},
        "gpt2": {"encoder": "transformer", "mask": "causal", "layernorm_positioning": "pre"},
    },
    "embedding": {
        "bert": {"embedding": ("word", "pos", "seg")},
        "word_pos_seg": {"embedding": ("word", "pos", "seg")},
        "word_pos": {"embedding": ("word", "pos")},
        "word_sinusoidalpos": {"embedding": ("word", "sinusoidalpos")},
    },
    "target": {
        "bert": {"target": ("mlm", "sp"), "data_processor": "bert"},
        "albert": {"target": ("mlm", "sp"), "data_processor": "albert"},
        "nsp": {"target": ("sp",)},
        "sop": {"target": ("sp",)},
    },
}

# UER-py's `--bidirectional` (recurrent encoders): encoder -> its bidirectional form.
BIDIRECTIONAL: dict[str, str] = {"lstm": "bilstm", "gru": "bigru", "bilstm": "bilstm", "bigru": "bigru"}

# command group -> {UER-py's flag: uer_ds's destination (the flag uer_ds spells)}
FLAG_ALIASES: dict[str, dict[str, str]] = {
    "train": {"--beta1": "adam_beta1", "--beta2": "adam_beta2"},
    # the model tools (cloze, extract-features, nearest-words, generate, ...): UER-py 2019-2021 names
    "tool": {"--pretrained_model_path": "load_model_path", "--input_path": "test_path",
             "--output_path": "prediction_path", "--target_words_path": "test_path"},
    # scripts/build_vocab.py: 2020's --vocab_path / --tokenizer space, today's --delimiter char|space
    "build_vocab": {"--vocab_path": "output_path", "--tokenizer": "kind", "--delimiter": "kind"},
    # every command with model-config flags: 2020's cloze_test.py / generate.py spelled --subencoder so
    "model": {"--subencoder_type": "subencoder"},
}

# UER-py flags uer_ds accepts and has no use for: flag -> (argparse kwargs, why it is not needed)
ACCEPTED_FLAGS: dict[str, tuple[dict[str, Any], str]] = {
    "--instances_buffer_size": ({"type": int}, "the memory-mapped dataset reads instances on demand: no buffer"),
    "--docs_buffer_size": ({"type": int}, "preprocessing maps the corpus: no document buffer"),
    "--log_path": ({}, "uer_ds logs to standard output and --metrics_path / TensorBoard"),
    "--log_level": ({}, "uer_ds logs to standard output and --metrics_path / TensorBoard"),
    "--log_file_level": ({}, "uer_ds logs to standard output and --metrics_path / TensorBoard"),
    "--optimizer": ({"choices": ("adamw",)}, "uer_ds trains with AdamW (UER-py's default)"),
    "--workers_num": ({"type": int}, "counting a vocabulary is fast in one process"),
}

# UER-py's model flags for features uer_ds does not have (its T5/BART/LLaMA-era options, byte-level BPE):
# flag -> (argparse kwargs, UER-py's default -- the feature off --, the feature).  Every UER-py command line
# that leaves a feature off parses and runs; asking for one is refused naming it (check_absent_features).
ABSENT_FEATURES: dict[str, tuple[dict[str, Any], Any, str]] = {
    "--tgt_embedding": ({"nargs": "+", "metavar": "NAME"}, "word", "a decoder's own embedding (UER-py's T5/BART)"),
    "--decoder": ({"choices": ("transformer",)}, None, "a transformer decoder (UER-py's T5/BART)"),
    "--share_embedding": ({"action": "store_const", "const": True}, None, "an embedding shared with a decoder"),
    "--relative_position_embedding": ({"action": "store_const", "const": True}, None,
                                      "relative position embeddings (T5)"),
    "--relative_attention_buckets_num": ({"type": int}, 32, "relative position buckets (T5)"),
    "--feed_forward": ({"choices": ("dense", "gated")}, "dense", "the gated feed-forward (T5 v1.1, LLaMA)"),
    "--layernorm": ({"choices": ("normal", "t5")}, "normal", "T5's layer norm (no mean, no bias)"),
    "--remove_attention_scale": ({"action": "store_const", "const": True}, None,
                                 "attention without the 1/sqrt(head size) scale (T5)"),
    "--remove_transformer_bias": ({"action": "store_const", "const": True}, None,
                                  "transformer layers without biases (T5, LLaMA)"),
    "--has_residual_attention": ({"action": "store_const", "const": True}, None, "residual attention (RealFormer)"),
    "--prefix_lm_loss": ({"action": "store_const", "const": True}, None, "a loss on the answer part only (SFT)"),
    "--merges_path": ({}, None, "byte-level BPE merges (--tokenizer bpe)"),
}

# UER-py script -> the uer-ds command that does its work (README table; the seed-command tests use it)
SCRIPTS: dict[str, str] = {
    "preprocess.py": "preprocess",
    "pretrain.py": "pretrain",
    "finetune/run_classifier.py": "finetune classifier",
    "finetune/run_classifier_mt.py": "finetune mt_classifier",
    "finetune/run_classifier_multi_label.py": "finetune multi_label_classifier",
    "finetune/run_ner.py": "finetune ner",
    "finetune/run_cmrc.py": "finetune cmrc",
    "finetune/run_c3.py": "finetune c3",
    "finetune/run_dbqa.py": "finetune dbqa",
    "finetune/run_regression.py": "finetune regression",
    "inference/run_classifier_infer.py": "infer classifier",
    "inference/run_classifier_mt_infer.py": "infer classifier",  # one head per run: --head NAME
    "inference/run_classifier_multi_label_infer.py": "infer multi_label_classifier",
    "inference/run_ner_infer.py": "infer ner",
    "inference/run_cmrc_infer.py": "infer cmrc",
    "inference/run_c3_infer.py": "infer c3",
    "inference/run_regression_infer.py": "infer regression",
    "scripts/average_models.py": "average",
    "scripts/build_vocab.py": "build-vocab",
    "scripts/diff_vocab.py": "diff-vocab",
    "scripts/cloze_test.py": "cloze",
    "scripts/extract_features.py": "extract-features",
    "scripts/topn_words_indep.py": "nearest-words",
    "scripts/topn_words_dep.py": "nearest-words --mode dependent",
    "scripts/generate_lm.py": "generate",
    "scripts/convert_*_from_huggingface_to_uer.py": "convert --from hf --to uer",
    "scripts/convert_*_from_uer_to_huggingface.py": "convert --from uer --to hf",
    # the names the 2019-2021 README used
    "run_classifier.py": "finetune classifier",
    "run_mt_classifier.py": "finetune mt_classifier",
    "run_ner.py": "finetune ner",
    "run_cmrc.py": "finetune cmrc",
    "run_c3.py": "finetune c3",
    "run_dbqa.py": "finetune dbqa",
    "scripts/extract_feature.py": "extract-features",
    "scripts/generate.py": "generate",
}

LIST_KEYS = ("embedding", "target")


class AliasError(ValueError):
    """An alias that cannot apply (`--bidirectional` on a transformer); `key` is the config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def alias_names(key: str) -> tuple[str, ...]:
    """UER-py's names accepted for a config key's values (for --help and error messages)."""
    return tuple(MODEL_ALIASES.get(key, {}))


def _split(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return list(value)


def expand_aliases(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """One layer of a config (a JSON file's keys, or the command line's) with aliases resolved.

    Returns (values, implied) where implied maps each key an alias set to the alias that set it
    ("mask" -> "encoder=gpt"), so errors can name what the user wrote.  Keys written explicitly in
    the same layer win over what an alias implies (`--encoder gpt --layernorm_positioning pre`).
    """
    out = dict(values)
    implied: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for key, table in MODEL_ALIASES.items():
        if key not in values or values[key] is None:
            continue
        if key in LIST_KEYS:
            parts: list[str] = []
            for name in _split(values[key]):
                expansion = table.get(name)
                if expansion is None:
                    parts.append(name)
                    continue
                parts.extend(p for p in expansion[key] if p not in parts)
                for k, v in expansion.items():
                    if k != key:
                        implied[k], origin[k] = v, f"{key} {name}"
            out[key] = parts
        elif isinstance(values[key], str) and values[key] in table:
            expansion = table[values[key]]
            out[key] = expansion[key]
            for k, v in expansion.items():
                if k != key:
                    implied[k], origin[k] = v, f"{key} {values[key]}"
    for k, v in implied.items():
        out.setdefault(k, v)
    return out, {k: origin[k] for k in implied if k not in values}


def apply_bidirectional(values: dict[str, Any], flag: bool) -> dict[str, Any]:
    """UER-py's `--bidirectional`: lstm -> bilstm, gru -> bigru (on the merged config)."""
    if not flag:
        return values
    encoder = values.get("encoder")
    if encoder not in BIDIRECTIONAL:
        raise AliasError("encoder", f"it applies to the recurrent encoders lstm and gru, not encoder '{encoder}'")
    return dict(values, encoder=BIDIRECTIONAL[encoder])


def add_flag_aliases(parser: argparse.ArgumentParser, group: str, only: Optional[tuple[str, ...]] = None) -> None:
    """Give `parser` UER-py's spellings (FLAG_ALIASES[group]) of flags it already has: each alias
    writes to the same destination, and --help lists it.  `only` limits to some destinations."""
    for flag, dest in FLAG_ALIASES[group].items():
        if only is not None and dest not in only:
            continue
        action = next((a for a in parser._actions if a.dest == dest), None)  # noqa: SLF001 (argparse has no API)
        if action is None or flag in parser._option_string_actions:  # noqa: SLF001
            continue
        action.option_strings.append(flag)
        parser._option_string_actions[flag] = action  # noqa: SLF001


def add_accepted_flags(parser: argparse.ArgumentParser, flags: tuple[str, ...]) -> None:
    """UER-py flags that uer_ds accepts without needing them (see ACCEPTED_FLAGS); `accepted_notes`
    says what each one given means."""
    group = parser.add_argument_group("accepted for UER-py compatibility (not needed by uer_ds)")
    for flag in flags:
        kwargs, why = ACCEPTED_FLAGS[flag]
        group.add_argument(flag, default=None, help=f"accepted, unused: {why}", **kwargs)


def accepted_notes(args: argparse.Namespace) -> list[str]:
    """One line per accepted-but-unused UER-py flag the user gave."""
    notes = []
    for flag, (_, why) in ACCEPTED_FLAGS.items():
        if getattr(args, flag.lstrip("-"), None) is not None:
            notes.append(f"note: {flag} is accepted for UER-py compatibility and not needed: {why}")
    return notes


def add_absent_features(parser: argparse.ArgumentParser) -> None:
    """UER-py's flags of ABSENT_FEATURES, so its command lines parse; check_absent_features refuses a
    value that asks for the feature."""
    group = parser.add_argument_group("UER-py's flags for features uer_ds does not have (accepted off)")
    for flag, (kwargs, off, feature) in ABSENT_FEATURES.items():
        if flag in parser._option_string_actions:  # noqa: SLF001 (a command's own flag of that name)
            continue
        shown = "off" if off is None else f"{off}"
        group.add_argument(flag, default=None, help=f"accepted at UER-py's default ({shown}): {feature} is not in "
                                                    "uer_ds", **kwargs)


def check_absent_features(args: argparse.Namespace) -> None:
    """Raise ValueError naming the flag when a command line asks for a feature of ABSENT_FEATURES."""
    for flag, (_, off, feature) in ABSENT_FEATURES.items():
        value = getattr(args, flag.lstrip("-"), None)
        if value is None or value == off or (isinstance(value, list) and value == [off]):
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else ("" if value is True else str(value))
        default = "off" if off is None else repr(off)
        raise ValueError(f"{flag} {shown}".rstrip() + f": {feature} is not in uer_ds (UER-py's default, {default}, "
                         "is what uer_ds computes; leave the flag out)")


# ---- the README's tables (tests/test_compat.py checks the README holds exactly these) ------------------
def _show(value: Any) -> str:
    return " ".join(value) if isinstance(value, (list, tuple)) else str(value)


def alias_table_markdown() -> str:
    """MODEL_ALIASES, BIDIRECTIONAL and FLAG_ALIASES as the README's "Coming from UER-py" table."""
    lines = ["| UER-py wrote | uer_ds reads it as |", "| --- | --- |"]
    for key, table in MODEL_ALIASES.items():
        for name, expansion in table.items():
            meaning = ", ".join(f"`{k} {_show(v)}`" for k, v in expansion.items())
            lines.append(f"| `--{key} {name}` (or `\"{key}\": \"{name}\"` in a config) | {meaning} |")
    for encoder, both in BIDIRECTIONAL.items():
        if encoder != both:
            lines.append(f"| `--encoder {encoder} --bidirectional` | `encoder {both}` |")
    for group, flags in FLAG_ALIASES.items():
        for flag, dest in flags.items():
            lines.append(f"| `{flag}` ({'model tools' if group == 'tool' else group.replace('_', '-')}) | "
                         f"`--{dest}` |")
    for flag, (_, why) in ACCEPTED_FLAGS.items():
        lines.append(f"| `{flag}` | accepted, not needed: {why} |")
    for flag, (_, off, feature) in ABSENT_FEATURES.items():
        lines.append(f"| `{flag}` | accepted at UER-py's default ({'off' if off is None else off}) only: {feature} "
                     "is not in uer_ds |")
    return "\n".join(lines)


def scripts_table_markdown() -> str:
    """SCRIPTS as the README's table: UER-py script -> uer-ds command."""
    lines = ["| UER-py | uer-ds |", "| --- | --- |"]
    lines += [f"| `{script}` | `uer-ds {command}` |" for script, command in SCRIPTS.items()]
    return "\n".join(lines)


__all__ = ["ABSENT_FEATURES", "ACCEPTED_FLAGS", "BIDIRECTIONAL", "FLAG_ALIASES", "MODEL_ALIASES", "SCRIPTS",
           "AliasError", "accepted_notes", "add_absent_features", "add_accepted_flags", "add_flag_aliases",
           "alias_names", "alias_table_markdown", "apply_bidirectional", "check_absent_features", "expand_aliases",
           "scripts_table_markdown"]
