"""One resolver for every model path (issue 30 item 1; uer_ds/convert/resolve.py).

The reference is outside the code under test: a random Hugging Face BERT (transformers, every parameter
redrawn) over the shipped vocabulary.  The same weights are written in every kind of path the resolver
knows -- the Hugging Face directory itself, a uer_ds model directory, a training run (and its tag) laid
out as DeepSpeed writes a ZeRO-0 checkpoint, a fine-tuned task directory, a UER-py .bin with its
config beside it, a state dict with uer_ds's names -- and each must give transformers' hidden states.
Then each command meets the same paths: a missing one is "no such file or directory" everywhere, a
config that does not fit is named before DeepSpeed is imported, --kernels reaches the built model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from tool_cases import TOL, VOCAB, VOCAB_SIZE, make  # noqa: E402

from conftest import CORPORA, ROOT  # noqa: E402
from uer_ds.cli import main  # noqa: E402
from uer_ds.convert import convert  # noqa: E402
from uer_ds.convert.resolve import KINDS, config_beside, resolve_model  # noqa: E402

TRAIN, DEV = CORPORA / "reviews_cls" / "train.tsv", CORPORA / "reviews_cls" / "dev.tsv"


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict:
    """{kind: path} holding one model (a BERT with an MLM head), and the Hugging Face original."""
    from safetensors.torch import save_file

    from uer_ds.engine.checkpoint import write_latest, write_metadata
    from uer_ds.models import load_model
    from uer_ds.tasks import TASKS, TaskModel
    from uer_ds.tasks.model import write_task_dir

    d = tmp_path_factory.mktemp("kinds")
    hf, ours = make("bert-mlm", d)
    model = load_model(ours)
    state = {k: v for k, v in model.state_dict().items() if k != "target.mlm.linear_2.weight"}  # tied: once
    convert("uer_ds", "uer", ours, d / "uer" / "model.bin", "bert")  # writes model_config.json beside it
    (d / "weights").mkdir()
    save_file(state, str(d / "weights" / "body.safetensors"))
    model.config.to_json(d / "weights" / "body_config.json")
    # a run as `uer-ds pretrain` leaves it at ZeRO-0: latest -> global_step2, DeepSpeed's module states
    for step in (1, 2):
        tag = d / "run" / f"global_step{step}"
        tag.mkdir(parents=True)
        torch.save({"module": {k: v * (1 if step == 2 else 0) for k, v in model.state_dict().items()}},
                   tag / "mp_rank_00_model_states.pt")
        write_metadata(tag, model.config, {"step": step, "ds_config": {"zero_optimization": {"stage": 0}}})
    write_latest(d / "run", "global_step2")
    # a fine-tuned task directory: this body under a classifier head
    heads = {"classifier": {"labels_num": 2, "pooling": "first"}}
    task = TaskModel(model.config, TASKS["classifier"].build_heads(model.config, heads))
    task.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("target.")}, strict=False)
    from uer_ds.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("bert", str(VOCAB))
    write_task_dir(d / "task", task, task.state_dict(), {
        "task": "classifier", "heads": heads, "seq_length": 32,
        "tokenizer": {"kind": "bert", "vocab_path": str(VOCAB), **tokenizer.identity()}})
    return {"hf": d / "hf", "model": ours, "run": d / "run", "tag": d / "run" / "global_step2",
            "task": d / "task", "uer": d / "uer" / "model.bin", "weights": d / "weights" / "body.safetensors",
            "reference": hf, "dir": d}


def _ids():
    torch.manual_seed(1)
    src = torch.randint(5, VOCAB_SIZE, (3, 12))
    src[2, 8:] = 0  # padding
    return src, (src > 0).long()


@pytest.mark.parametrize("kind", ["hf", "model", "run", "tag", "task", "uer", "weights"])
def test_every_kind_is_recognised_and_gives_the_reference_model(paths, kind):
    source = resolve_model(paths[kind])
    assert source.kind == kind and KINDS[kind]
    src, seg = _ids()
    # a UER-py file computes LayerNorm as UER-py does by default; as the others do here, to compare
    model = source.model(uer_layer_norm=False)
    with torch.no_grad():
        theirs = paths["reference"].bert(src, attention_mask=seg).last_hidden_state
        ours = model.encode(src, seg)
    valid = seg.bool()
    torch.testing.assert_close(ours[valid], theirs[valid], **TOL)
    expected_targets = () if kind == "task" else ("mlm",)  # a task directory's encoder, without its head
    assert tuple(model.target) == expected_targets


def test_a_run_reads_its_latest_step_and_a_tag_its_own(paths):
    from uer_ds.models.io import WEIGHTS_NAME
    from safetensors.torch import load_file

    saved = load_file(str(paths["model"] / WEIGHTS_NAME))
    key = "encoder.transformer.0.self_attn.query.weight"
    assert torch.equal(resolve_model(paths["run"]).state()[key], saved[key])
    assert torch.equal(resolve_model(paths["run"] / "global_step1").state()[key], torch.zeros_like(saved[key]))
    assert resolve_model(paths["run"]).config_file == paths["run"] / "global_step2" / "config.json"


def test_the_config_beside_a_file_is_used_unless_one_is_given(paths):
    uer = resolve_model(paths["uer"])
    assert uer.config_file == paths["uer"].with_name("model_config.json") == config_beside(paths["uer"])
    assert uer.own_config().hidden_size == 32 and uer.own_config().vocab_size == VOCAB_SIZE
    default, note = uer.default_config(None)
    assert default == str(uer.config_file) and "the model's own; --config_path overrides it" in note
    assert uer.default_config("bert/tiny") == ("bert/tiny", None)
    # a Hugging Face config.json beside a file is not a UER config
    assert config_beside(paths["hf"] / "model.safetensors") is None
    default, note = resolve_model(paths["hf"]).default_config(None)
    assert default.hidden_size == 32 and default.target == ("mlm",) and "Hugging Face config.json" in note


def test_what_is_no_model_is_named(paths, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--pretrained_model_path '.*nowhere': no such file or directory"):
        resolve_model(tmp_path / "nowhere", "--pretrained_model_path")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty': a directory that is no model: expected a fine-tuned task"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"is a fine-tuned task directory .*; this command takes a uer_ds model "
                                         r"directory"):
        resolve_model(paths["task"], "--input", kinds=("model",))
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ValueError, match=r"model has value 't5': must be one of bert, roberta, albert, gpt2"):
        resolve_model(tmp_path / "t5").model()


def _cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uer_ds", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=dict(os.environ, DS_ACCELERATOR="cpu"))


COMMANDS = {  # every command that takes a model, with the flag that names it
    "infer": ["infer", "classifier", "--vocab_path", VOCAB, "--test_path", DEV, "--prediction_path", "p.tsv",
              "--load_model_path"],
    "finetune": ["finetune", "classifier", "--vocab_path", VOCAB, "--train_path", TRAIN, "--dev_path", DEV,
                 "--pretrained_model_path"],
    "extract-features": ["extract-features", "--vocab_path", VOCAB, "--test_path", DEV, "--prediction_path", "f.npy",
                         "--load_model_path"],
    "cloze": ["cloze", "--vocab_path", VOCAB, "--test_path", DEV, "--load_model_path"],
    "extract-embeddings": ["extract-embeddings", "--vocab_path", VOCAB, "--output_path", "e.txt", "--load_model_path"],
    "adapt-vocab": ["adapt-vocab", "--vocab_path", VOCAB, "--new_vocab_path", VOCAB, "--output_model_path", "o",
                    "--load_model_path"],
    "export": ["export", "--output", "m.safetensors", "--checkpoint"],
    "export onnx": ["export", "onnx", "--output", "m.onnx", "--load_model_path"],
    "convert": ["convert", "--from", "uer_ds", "--to", "hf", "--model", "bert", "--output", "o", "--input"],
    "check-model": ["check-model", "--load_model_path"],
    "average": ["average", "--output_model_path", "o", "--model_list_path", "missing_model"],
    "evaluate": ["evaluate", "--test_path", DEV, "--load_model_path"],
    "serve": ["serve", "--load_model_path"],
    "analyse explain": ["analyse", "explain", "--test_path", DEV, "--output_dir", "o", "--load_model_path"],
    "analyse support": ["analyse", "support", "--train_path", TRAIN, "--test_path", DEV, "--output_dir", "o",
                        "--load_model_path"],
    "augment": ["augment", "--input_path", DEV, "--output_path", "a.tsv", "--vocab_path", VOCAB, "--no_progress",
                "--load_model_path"],
}


def test_a_missing_path_is_no_such_file_for_every_command(tmp_path, monkeypatch, capsys):
    """Not "no task.json" (what infer said before), nor a torch.load traceback."""
    monkeypatch.chdir(tmp_path)
    for name, argv in COMMANDS.items():
        assert main([str(a) for a in argv] + ["missing_model"]) == 1, name
        err = capsys.readouterr().err
        assert "'missing_model': no such file or directory" in err, (name, err)
        assert "task.json" not in err and "Traceback" not in err, name


def test_a_config_that_does_not_fit_is_named_before_deepspeed_starts(paths, tmp_path):
    """finetune with a config of another shape: the mismatch is the error, before the data is read and
    before DeepSpeed starts its process group (it once surfaced after DeepSpeed's start-up, 16-39 s in)."""
    code = ("import torch; from uer_ds.cli import main; from uer_ds.tasks import TASKS; read = []; "
            "task = type(TASKS['classifier']); load = task.load; "
            "task.load = lambda *a, **k: read.append(1) or load(*a, **k); "
            f"rc = main({[str(a) for a in COMMANDS['finetune']] + [str(paths['model'])]!r} + "
            f"['--config_path', 'bert/mini', '--output_model_path', {str(tmp_path / 'out')!r}]); "
            "print('exit', rc, 'data read:', bool(read), 'process group:', torch.distributed.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=dict(os.environ, DS_ACCELERATOR="cpu"))
    assert out.stdout.strip().splitlines()[-1] == "exit 1 data read: False process group: False", \
        out.stdout + out.stderr
    assert "key 'embedding.layer_norm.bias' has shape (32,), the model expects (256,)" in out.stderr
    assert not (tmp_path / "out").exists()


def test_a_hugging_face_file_is_told_to_give_its_directory(paths, tmp_path, capsys):
    """A Hugging Face weights file alone (no config beside it) is named as such, with what to do."""
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "pytorch_model.bin").write_bytes((paths["hf"] / "model.safetensors").read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(str(paths["hf"] / "model.safetensors")), tmp_path / "alone" / "pytorch_model.bin")
    assert main([str(a) for a in COMMANDS["finetune"]] + [str(tmp_path / "alone" / "pytorch_model.bin"),
                                                          "--config_path", "bert/tiny"]) == 1
    err = capsys.readouterr().err
    assert "holds Hugging Face key names: give its directory" in err and "the embedding/encoder does not match" in err


def test_finetune_starts_from_a_hugging_face_directory(paths, tmp_path, capsys):
    """--pretrained_model_path of a Hugging Face directory loads directly, its config.json (converted) the
    model config when --config_path is absent; the fine-tuned encoder starts from transformers' weights."""
    from uer_ds.recipes.finetune import pretrained_source, read_pretrained

    class Args:
        pretrained_model_path, config_path, allow_partial_load = str(paths["hf"]), None, False

    source = pretrained_source(Args, Args.config_path)
    cfg = source.default_config(None)[0]
    state, notes = read_pretrained(source, cfg, Args)
    word = paths["reference"].bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(state["embedding.word.embedding.weight"], word, rtol=0, atol=0)
    assert any("read Hugging Face bert" in line for line in notes)
    out = tmp_path / "ft"
    assert main([str(a) for a in COMMANDS["finetune"]] + [str(paths["hf"]), "--output_model_path", str(out),
                                                          "--epochs_num", "1", "--batch_size", "64", "--seq_length",
                                                          "32", "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert f"config: {paths['hf']} (Hugging Face config.json, converted" in printed
    assert f"pretrained: loaded 37 embedding/encoder tensors from {paths['hf']}" in printed  # 5 + 2 layers x 16
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32


def test_kernels_reach_every_model_a_command_builds(paths, tmp_path, monkeypatch, capsys):
    """--kernels triton builds the Triton slots (LayerNorm, attention) for the tools and infer too; where
    Triton cannot run (no CUDA, no interpreter) it is an error naming the flag, not a silent PyTorch run."""
    from uer_ds.models.layers import LayerNorm, MultiHeadedAttention
    from uer_ds.tasks import TASKS

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for kind in ("model", "run", "task", "hf", "uer"):
        with pytest.raises(ValueError, match=r"--kernels triton: the Triton kernels need a CUDA device"):
            resolve_model(paths[kind]).model(kernels="triton")
    for argv in (COMMANDS["extract-features"] + [paths["model"]], COMMANDS["infer"] + [paths["task"]]):
        assert main([str(a) for a in argv] + ["--kernels", "triton"]) == 1
        assert "--kernels triton: the Triton kernels need a CUDA device" in capsys.readouterr().err
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # where they can run, the model is built with them
    for kind in ("model", "run", "task", "hf", "uer"):
        model = resolve_model(paths[kind]).model(kernels="triton")
        slots = [m for m in model.modules() if isinstance(m, (LayerNorm, MultiHeadedAttention))]
        # a UER-py file's LayerNorm computes UER-py's formula (no Triton kernel); its attention takes it
        assert slots and all(m.kernels == "triton" for m in slots), kind
        assert model.config.kernels == "triton"
    task_model, _ = resolve_model(paths["task"]).task_model(
        lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]), kernels="triton")
    assert all(m.kernels == "triton" for m in task_model.modules() if isinstance(m, (LayerNorm, MultiHeadedAttention)))


@pytest.mark.slow
def test_kernels_triton_runs_the_triton_kernels_in_the_tools(paths, tmp_path):
    """Under the Triton interpreter, extract-features --kernels triton calls the Triton LayerNorm and
    attention, and gives the PyTorch path's features."""
    import numpy as np

    from uer_ds.config import ModelConfig
    from uer_ds.models import build_model, save_model

    torch.manual_seed(0)  # head width 16: the narrowest the Triton attention takes
    save_model(build_model(ModelConfig.from_json("bert/tiny", {"vocab_size": VOCAB_SIZE, "emb_size": 32,
                                                               "hidden_size": 32, "feedforward_size": 64,
                                                               "heads_num": 2, "layers_num": 1})), tmp_path / "m")
    lines = tmp_path / "lines.txt"
    lines.write_text("这本书很好看。\n结局出人意料\n", encoding="utf-8")
    common = ["extract-features", "--load_model_path", str(tmp_path / "m"), "--vocab_path", str(VOCAB),
              "--test_path", str(lines), "--pooling", "mean"]
    assert main(common + ["--prediction_path", str(tmp_path / "torch.npy"), "--kernels", "torch"]) == 0
    # the kernel package's one door, as the model's dispatch loads it (once); a post-LN sublayer takes the fused
    # bias+dropout+residual+LayerNorm and a packed batch the varlen attention: each counts for its family
    code = ("from uer_ds.models.layers.dispatch import triton_ops; ops = triton_ops()\n"
            "calls = {'layer_norm': 0, 'attention': 0}\n"
            "def counted(name, family):\n    inner = getattr(ops, name)\n"
            "    def call(*a, **k):\n        calls[family] += 1\n        return inner(*a, **k)\n    return call\n"
            "for name, family in [('layer_norm', 'layer_norm'), ('bias_dropout_add_layer_norm', 'layer_norm'),\n"
            "                     ('attention', 'attention'), ('varlen_attention', 'attention')]:\n"
            "    setattr(ops, name, counted(name, family))\n"
            "from uer_ds.cli import main\n"
            f"rc = main({common + ['--prediction_path', str(tmp_path / 'triton.npy'), '--kernels', 'triton']!r})\n"
            "print(rc, calls)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env=dict(os.environ, TRITON_INTERPRET="1", DS_ACCELERATOR="cpu"))
    rc, calls = out.stdout.strip().splitlines()[-1].split(" ", 1)
    calls = eval(calls)  # noqa: S307 (our own print of a dict of ints)
    assert rc == "0" and calls["layer_norm"] > 0 and calls["attention"] > 0, out.stdout + out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "triton.npy"), np.load(tmp_path / "torch.npy"), atol=1e-4)


def test_infer_predicts_with_an_exported_onnx_model(paths, tmp_path, capsys):
    """`infer --load_model_path model.onnx` (a torch.load error before): onnxruntime's predictions equal the
    task directory's."""
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "model.onnx"
    assert main(["export", "onnx", "--load_model_path", str(paths["task"]), "--output", str(onnx)]) == 0
    capsys.readouterr()
    rows = {}
    for name, path in (("dir", paths["task"]), ("onnx", onnx)):
        out = tmp_path / f"{name}.tsv"
        assert main([str(a) for a in COMMANDS["infer"][:-3]] + ["--prediction_path", str(out), "--output_logits",
                                                                "--output_prob", "--load_model_path", str(path),
                                                                "--no_progress"]) == 0
        rows[name] = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows["dir"][0] == rows["onnx"][0] == ["label", "logits", "prob"]
    assert len(rows["onnx"]) == len(DEV.read_text().splitlines())
    assert [r[0] for r in rows["onnx"]] == [r[0] for r in rows["dir"]]
    for ours, theirs in zip(rows["dir"][1:], rows["onnx"][1:]):
        assert np_close(ours[2], theirs[2], 1e-4)
    with pytest.raises(ValueError, match=r"runs in onnxruntime, which has its own kernels"):
        from uer_ds.tasks import TASKS
        from uer_ds.recipes.infer import infer
        import argparse

        parser = argparse.ArgumentParser()
        from uer_ds.cli.infer import add_infer_arguments

        add_infer_arguments(parser, TASKS["classifier"])
        infer(TASKS["classifier"], parser.parse_args(["--load_model_path", str(onnx), "--test_path", str(DEV),
                                                      "--prediction_path", str(tmp_path / "x.tsv"), "--kernels",
                                                      "torch"]))


def np_close(a: str, b: str, tol: float) -> bool:
    return all(abs(float(x) - float(y)) <= tol for x, y in zip(a.split(), b.split()))


def test_tools_read_a_task_directory_as_its_encoder(paths, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("这本书很好看。\n", encoding="utf-8")
    for kind in ("task", "model"):
        assert main(["extract-features", "--load_model_path", str(paths[kind]), "--vocab_path", str(VOCAB),
                     "--test_path", str(lines), "--prediction_path", str(tmp_path / f"{kind}.npy")]) == 0
    import numpy as np

    np.testing.assert_array_equal(np.load(tmp_path / "task.npy"), np.load(tmp_path / "model.npy"))
    assert main(["cloze", "--load_model_path", str(paths["task"]), "--vocab_path", str(VOCAB), "--test_path",
                 str(lines)]) == 1
    assert "the model has targets none; this tool needs its 'mlm' head" in capsys.readouterr().err
