"""uer_ds.compat, the one home of UER-py's names: docs/coming-from.md shows its tables as they are, every name
it maps to exists, and the flag helpers give parsers UER-py's spellings."""
from __future__ import annotations

import argparse

import pytest

from conftest import ROOT
from uer_ds.cli import COMMANDS
from uer_ds.compat import (ACCEPTED_FLAGS, BIDIRECTIONAL, MODEL_ALIASES, SCRIPTS, accepted_notes, add_accepted_flags,
                           add_flag_aliases, alias_table_markdown, expand_aliases, scripts_table_markdown)
from uer_ds.models.registry import DATA_PROCESSORS, EMBEDDINGS, ENCODERS, TARGETS
from uer_ds.tasks import TASKS


def test_docs_show_the_tables_of_compat():
    page = (ROOT / "docs" / "coming-from.md").read_text(encoding="utf-8")
    assert alias_table_markdown() in page
    assert scripts_table_markdown() in page


def test_aliases_expand_to_registered_names():
    legal = {"encoder": ENCODERS, "embedding": EMBEDDINGS, "target": TARGETS, "data_processor": DATA_PROCESSORS}
    for key, table in MODEL_ALIASES.items():
        for name, expansion in table.items():
            assert name not in legal[key], f"alias {name} shadows a registered {key}"
            for k, v in expansion.items():
                if k in legal:
                    assert all(part in legal[k] for part in ([v] if isinstance(v, str) else v)), (name, k, v)
    assert all(v in ENCODERS for v in BIDIRECTIONAL.values())


def test_scripts_map_to_commands_that_exist():
    for script, command in SCRIPTS.items():
        words = command.split()
        name = " ".join(words[:2]) if " ".join(words[:2]) in COMMANDS else words[0]
        assert name in COMMANDS, script
        if name in ("finetune", "infer"):
            assert words[1] in TASKS, script


def test_expand_aliases_reports_what_each_alias_set():
    values, implied = expand_aliases({"encoder": "gpt", "target": ["mlm", "nsp"], "layernorm_positioning": "pre"})
    assert values == {"encoder": "transformer", "mask": "causal", "layernorm_positioning": "pre",
                      "target": ["mlm", "sp"]}
    assert implied == {"mask": "encoder gpt"}  # layernorm_positioning was written out: it wins, not implied


def test_flag_aliases_and_accepted_flags():
    parser = argparse.ArgumentParser()
    parser.add_argument("--load_model_path", required=True)
    parser.add_argument("--test_path")
    add_flag_aliases(parser, "tool")
    add_accepted_flags(parser, ("--instances_buffer_size",))
    args = parser.parse_args(["--pretrained_model_path", "m.bin", "--input_path", "in.txt",
                              "--instances_buffer_size", "25600"])
    assert (args.load_model_path, args.test_path) == ("m.bin", "in.txt")
    assert accepted_notes(args) == [f"note: --instances_buffer_size is accepted for UER-py compatibility and not "
                                    f"needed: {ACCEPTED_FLAGS['--instances_buffer_size'][1]}"]
    with pytest.raises(SystemExit):
        parser.parse_args([])  # still required, under either spelling


def test_fp16_flags_pick_the_fp16_ds_config(tmp_path):
    import json

    from uer_ds.cli.common import deepspeed_config_name

    def name(**kw):
        args = argparse.Namespace(**{"deepspeed_config": "zero2", "fp16": False, "fp16_opt_level": None, **kw})
        return deepspeed_config_name(args)

    assert name() == ("zero2", [])
    assert name(fp16=True)[0] == "zero2_fp16"
    assert name(fp16=True, deepspeed_config="zero3_offload")[0] == "zero3_offload_fp16"
    got, notes = name(fp16=True, fp16_opt_level="O1")
    assert got == "zero2_fp16" and "apex's" in notes[0]
    with pytest.raises(ValueError, match="--fp16_opt_level O1 needs --fp16"):
        name(fp16_opt_level="O1")
    with pytest.raises(ValueError, match="zero2_bf16: that config trains in bf16"):
        name(fp16=True, deepspeed_config="zero2_bf16")
    plain = tmp_path / "ds.json"
    plain.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    with pytest.raises(ValueError, match=r"ds.json: that file does not enable fp16"):
        name(fp16=True, deepspeed_config=str(plain))
    plain.write_text(json.dumps({"zero_optimization": {"stage": 1}, "fp16": {"enabled": True}}))
    assert name(fp16=True, deepspeed_config=str(plain))[0] == str(plain)


def test_pretrain_and_finetune_parse_uer_py_flags():
    from uer_ds.cli import pretrain
    from uer_ds.cli.finetune import add_finetune_arguments

    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    args = parser.parse_args(["--dataset_path", "d", "--output_model_path", "o", "--world_size", "8", "--gpu_ranks",
                              *"01234567", "--master_ip", "tcp://10.0.0.1:12345", "--backend", "nccl", "--beta1",
                              "0.8", "--beta2", "0.98", "--fp16", "--fp16_opt_level", "O1", "--instances_buffer_size",
                              "25600", "--save_checkpoint", "5000"])  # argparse takes UER-py's abbreviation too
    assert (args.world_size, args.gpu_ranks, args.adam_beta1, args.adam_beta2, args.save_checkpoint_steps) == \
        (8, list(range(8)), 0.8, 0.98, 5000)
    parser = argparse.ArgumentParser()
    add_finetune_arguments(parser, TASKS["classifier"])
    args = parser.parse_args(["--train_path", "t", "--dev_path", "d", "--log_path", "x.log", "--encoder", "bert"])
    assert args.output_model_path == "models/finetuned_model.bin" and args.config_path is None
