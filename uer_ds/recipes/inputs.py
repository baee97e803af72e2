"""What the recipes (and the commands and deploy/ around them) read from their flags: the tokenizer,
the model config (a saved model's own, the JSON's, the flags'), the model-shape flags an inference
command repeats, and the job's fingerprint that every rank of a multi-process job compares.

Nothing here writes into the argparse Namespace; where a default is filled (the config path of a model
a command was given) the value is returned."""
from __future__ import annotations

import argparse
from typing import Optional

from uer_ds.config import UER_DEFAULT_CONFIG, ModelConfig, model_config_from_args
from uer_ds.tokenizers import TOKENIZERS, Tokenizer, build_tokenizer


def add_tokenizer_arguments(parser: argparse.ArgumentParser, required: bool = False, subwords: bool = False) -> None:
    """--vocab_path --spm_model_path --tokenizer --do_lower_case (and --sub_vocab_path where the command
    serves models with subword features)."""
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--vocab_path", help="vocabulary file, one token per line")
    group.add_argument("--spm_model_path", help="SentencePiece model (replaces the vocabulary, as in UER-py)")
    group.add_argument("--tokenizer", default="bert", choices=tuple(TOKENIZERS), help="tokenizer kind (default bert)")
    group.add_argument("--do_lower_case", default=None, choices=("true", "false"),
                       help="lower-case before tokenizing (default: follows the vocabulary: false when it is cased, "
                            "true when uncased; without cased letters true for bert, false otherwise); set against "
                            "the vocabulary, a warning names both")
    if not subwords:
        parser.set_defaults(sub_vocab_path=None)
    else:
        group.add_argument("--sub_vocab_path",
                           help="character vocabulary of the subword features (with --subword_type char and "
                                "--tokenizer word; build it with `uer-ds build-vocab --kind char`)")


def tokenizer_from_args(args: argparse.Namespace) -> Optional[Tokenizer]:
    sub_vocab_path = args.sub_vocab_path  # None where the command has no --sub_vocab_path (add_tokenizer_arguments)
    if args.vocab_path is None and args.spm_model_path is None:
        if sub_vocab_path is not None:
            raise ValueError("--sub_vocab_path needs the word vocabulary too: give --vocab_path")
        return None
    lower = None if args.do_lower_case is None else args.do_lower_case == "true"
    tokenizer = build_tokenizer(args.tokenizer, args.vocab_path, args.spm_model_path, do_lower_case=lower)
    if sub_vocab_path is not None:
        attach_subwords(tokenizer, sub_vocab_path)
    return tokenizer


def attach_subwords(tokenizer: Tokenizer, sub_vocab_path: str) -> None:
    """Give a word tokenizer the SubwordTable of its vocabulary and the character vocabulary."""
    from uer_ds.tokenizers import Vocab
    from uer_ds.tokenizers.subword import SubwordTable, check_subword_tokenizer

    check_subword_tokenizer(tokenizer.kind)
    pad = tokenizer.special_tokens.get("pad")
    tokenizer.use_subwords(SubwordTable(tokenizer.vocab, Vocab.load(sub_vocab_path), pad_token=pad,
                                        unk_token=tokenizer.special_tokens.get("unk") or "[UNK]"))


def resolve_config_default(config_path: Optional[str], source
                           ) -> tuple[Optional[ModelConfig], Optional[str], Optional[str]]:
    """The model config a command starts from when --config_path (`config_path`) is not given, from the
    model it was given (a ModelSource of uer_ds.convert.resolve, or None): its own config file, else UER-py's
    default (bert/base).  Returns (the model's own config where it has no UER JSON file -- a Hugging Face
    directory's, converted -- to merge the flags over; a note line when the model's config was taken; the
    config path to read, None when the first is given)."""
    if config_path is not None:
        return None, None, config_path
    if source is None:
        return None, None, UER_DEFAULT_CONFIG
    default, note = source.default_config(None)
    if isinstance(default, ModelConfig):
        return default, note, None
    return None, note, default


def model_config_with_vocab(args: argparse.Namespace, tokenizer: Optional[Tokenizer],
                            targets: bool = True, base: Optional[ModelConfig] = None,
                            config_path: Optional[str] = None) -> ModelConfig:
    """The merged model config; vocab_size comes from the tokenizer when one is given.  targets=False
    (fine-tuning and inference, whose heads replace the pre-training targets): the config's `target` is
    dropped before validation, so a UER-py config's pre-training targets that its fine-tuned encoder
    could not serve (`sp` under a causal LSTM) do not stop the command.  `base` / `config_path`: the
    config to merge the flags over (resolve_config_default's; default: --config_path)."""
    cfg = model_config_from_args(args, base=base, config_path=config_path, **({} if targets else {"target": []}))
    if tokenizer is not None:
        if cfg.vocab_size not in (0, tokenizer.vocab_size):
            raise ValueError(f"vocab_size {cfg.vocab_size} in the model config disagrees with the vocabulary "
                             f"({tokenizer.vocab_size} entries in {tokenizer.vocab.source})")
        cfg = cfg.replace(vocab_size=tokenizer.vocab_size)
    return with_sub_vocab(cfg, getattr(tokenizer, "subwords", None))


def with_sub_vocab(cfg: ModelConfig, table) -> ModelConfig:
    """sub_vocab_size from the SubwordTable (or None); subword_type and --sub_vocab_path must agree."""
    if table is None:
        return cfg
    if cfg.subword_type == "none":
        raise ValueError("--sub_vocab_path is given but the model config has subword_type 'none': add "
                         "--subword_type char (or leave out --sub_vocab_path)")
    if cfg.sub_vocab_size not in (0, table.sub_vocab_size):
        raise ValueError(f"sub_vocab_size {cfg.sub_vocab_size} in the model config disagrees with the "
                         f"sub-vocabulary ({table.sub_vocab_size} entries in {table.sub_vocab.source})")
    return cfg.replace(sub_vocab_size=table.sub_vocab_size)


# ---- model-shape flags given to a command that loads a saved model ----------------------------------
# keys a saved model's config fixes; a UER-py config file given at inference is compared on these only
# (its pre-training targets, dropout, vocab_size 0 and data processor say nothing about the model)
SHAPE_KEYS = ("embedding", "encoder", "emb_size", "hidden_size", "feedforward_size", "heads_num", "layers_num",
              "max_seq_length", "hidden_act", "mask", "layernorm_positioning", "remove_embedding_layernorm",
              "factorized_embedding_parameterization", "parameter_sharing", "kernel_size", "block_size")
RUNTIME_KEYS = ("kernels", "dropout")  # may differ from the saved model's: they do not change its weights


def check_model_flags(args: argparse.Namespace, saved: ModelConfig, source: str,
                      head_values: Optional[dict] = None) -> ModelConfig:
    """UER-py's inference commands repeat the model's shape (`--encoder bert --pooling mean
    --layers_num 12 ...`, `--config_path`): values equal to the saved model's pass, others are an error
    naming the flag, both values and the model.  `head_values` are the head's settings (pooling,
    labels_num) checked the same way.  Returns the saved config with the runtime keys given (kernels)."""
    from uer_ds.compat import apply_bidirectional, expand_aliases
    from uer_ds.config import _coerce, model_config_overrides

    given = model_config_overrides(args)
    bidirectional = given.pop("bidirectional", None)
    values, implied = expand_aliases(given)
    if bidirectional is not None:
        values = apply_bidirectional(dict(values, encoder=values.get("encoder", saved.encoder)),
                                     str(bidirectional).lower() in ("1", "true", "yes", "on"))
    mine = dict(saved.to_dict(), **(head_values or {}))
    for key, value in values.items():
        if key in RUNTIME_KEYS or key not in mine:
            continue
        wanted, have = _coerce(key, value, "--" + key), mine[key]
        have = tuple(have) if isinstance(have, list) else have
        if wanted != have:
            flag = f"--{implied[key]}" if key in implied else f"--{key}"
            what = f" (which means {key} {wanted!r})" if key in implied else f" has value {wanted!r}"
            raise ValueError(f"{flag}{what} but the model in {source} has {key} {have!r}: leave the flag out, "
                             "or give the value the model was trained with")
    if args.config_path:  # the file as the flags complete it (UER-py 2020's configs name no encoder)
        # target dropped: the file's pre-training targets say nothing about the model's shape
        from_file = ModelConfig.from_json(args.config_path, dict(given, target=[], **(
            {"bidirectional": bidirectional} if bidirectional is not None else {})))
        for key in SHAPE_KEYS:
            if key not in values and getattr(from_file, key) != getattr(saved, key):
                raise ValueError(f"--config_path {args.config_path} has {key} {getattr(from_file, key)!r} but the "
                                 f"model in {source} has {getattr(saved, key)!r} (the model's own config.json is "
                                 "used; leave --config_path out)")
    runtime = {k: _coerce(k, given[k], "--" + k) for k in ("kernels",) if k in given}
    return saved.replace(**runtime) if runtime else saved


# ---- what every rank of a job must agree on ---------------------------------------------------------
# flags that may differ between the hosts of one job: UER-py's --gpu_ranks names each node's own ranks;
# the rest only change what rank 0 shows or writes, or where
PER_HOST_ARGUMENTS = ("gpu_ranks", "no_progress", "metrics_path", "tensorboard_dir", "command_argv", "local_rank")
HASHED_BYTES = 64 << 20  # files up to this size are hashed whole, larger ones by size, head and tail


def file_identity(path: str) -> str:
    """sha256 of a file's bytes (of its size, first and last 16 MiB when larger than 64 MiB)."""
    import hashlib
    import os

    digest = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size <= HASHED_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            return f"sha256 {digest.hexdigest()[:16]}, {size} bytes"
        digest.update(f.read(16 << 20))
        f.seek(size - (16 << 20))
        digest.update(f.read())
    return f"sha256 of head and tail {digest.hexdigest()[:16]}, {size} bytes"


def flags_given(argv: list[str]) -> list[str]:
    """The --flags on a command line (--name=value counted as --name)."""
    return sorted({a.split("=", 1)[0][2:] for a in argv if a.startswith("--")})


def job_fingerprint(args: argparse.Namespace, **sections: dict) -> dict:
    """This rank's description of its job, which every rank of a multi-process job compares before the
    first collective (uer_ds.engine.rendezvous): the arguments (all but PER_HOST_ARGUMENTS), the identity
    of every file an argument names (a vocabulary, a ds_config, the training data), the software, and the
    sections given (model config, dataset, ds_config, ...: {entry: value}).  "given" lists the flags on
    this rank's command line, so that a difference can say which value was a default."""
    import importlib.metadata
    import json
    import os
    import platform

    arguments, files = {}, {}
    for key, value in sorted(vars(args).items()):
        if key in PER_HOST_ARGUMENTS or callable(value):
            continue
        arguments[key] = json.loads(json.dumps(value, default=str))
        if isinstance(value, str) and os.path.isfile(value):
            files[f"--{key}"] = file_identity(value)
    software = {"python": platform.python_version()}
    for package in ("uer_ds", "torch", "deepspeed"):
        try:
            software[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            software[package] = None
    return {"arguments": arguments, "files": files, **sections, "software": software,
            "given": flags_given(args.command_argv or [])}
