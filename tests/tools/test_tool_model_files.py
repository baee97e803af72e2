"""extract-embeddings, check-model and adapt-vocab, through the command line with UER-py's flag names, checked
against the model's own tensors and computations."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import CORPORA, ROOT
from uer_ds.config import ModelConfig
from uer_ds.models import build_model, load_model, save_model
from uer_ds.tokenizers import Vocab

VOCAB = CORPORA / "vocab.txt"


def run(*args):
    return subprocess.run([sys.executable, "-m", "uer_ds", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """bert/tiny over the shipped vocabulary, saved as a model directory."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "tiny"
    save_model(build_model(ModelConfig.from_json("bert/tiny", {"vocab_size": len(Vocab.load(VOCAB))})), path)
    return path


def test_extract_embeddings_as_text_and_npy(tiny, tmp_path):
    weight = load_model(tiny).embedding.word_embedding().weight.detach().numpy()
    tokens = Vocab.load(VOCAB).id_to_token
    out = run("extract-embeddings", "--load_model_path", tiny, "--vocab_path", VOCAB,
              "--word_embedding_path", tmp_path / "emb.txt")  # UER-py's flag name
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "emb.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{len(tokens)} 128"
    assert [line.split(" ", 1)[0] for line in lines[1:]] == tokens
    parsed = np.array([[np.float32(v) for v in line.split(" ")[1:]] for line in lines[1:]])
    assert np.array_equal(parsed, weight)  # 9 significant digits give float32 back exactly
    out = run("extract-embeddings", "--load_model_path", tiny, "--vocab_path", VOCAB, "--output_path",
              tmp_path / "emb.npy")
    assert out.returncode == 0, out.stderr
    assert np.array_equal(np.load(tmp_path / "emb.npy"), weight)
    assert (tmp_path / "emb.vocab.txt").read_text(encoding="utf-8").splitlines() == tokens


def test_extract_embeddings_refuses_another_vocabulary(tiny, tmp_path):
    (tmp_path / "small.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    out = run("extract-embeddings", "--load_model_path", tiny, "--vocab_path", tmp_path / "small.txt",
              "--output_path", tmp_path / "e.txt")
    assert out.returncode == 1 and "vocab_size is 417 but the vocabulary" in out.stderr
    assert not (tmp_path / "e.txt").exists()


def test_check_model_lists_tensors_and_finds_the_config(tiny, tmp_path):
    state = load_model(tiny).state_dict()
    out = run("check-model", "--input_model_path", tiny / "model.safetensors", "--all")  # UER-py's flag name
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0]: line for line in out.stdout.splitlines()[2:] if line.startswith(("embedding", "encoder",
                                                                                                "target"))}
    assert set(listed) == set(state) - {"target.mlm.linear_2.weight"}  # tied: stored once
    key = "encoder.transformer.0.self_attn.query.weight"
    assert "(128, 128)" in listed[key] and "float32" in listed[key] and "16,384" in listed[key]
    assert f"fits: {tiny / 'config.json'} (its own)" in out.stdout  # the config.json beside the weights
    (tmp_path / "alone").mkdir()  # without a config beside them: every shipped config is tried
    (tmp_path / "alone" / "weights.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    out = run("check-model", "--load_model_path", tmp_path / "alone" / "weights.safetensors")
    assert out.returncode == 0 and "fits: bert/tiny" in out.stdout
    # the same weights in UER-py's layout, and against a config they do not fit
    assert run("convert", "--from", "uer_ds", "--to", "uer", "--model", "bert", "--input", tiny, "--output",
               tmp_path / "tiny.bin").returncode == 0
    out = run("check-model", "--load_model_path", tmp_path / "tiny.bin")  # tiny_config.json beside it
    assert out.returncode == 0 and "key scheme uer" in out.stdout
    assert f"fits: {tmp_path / 'tiny_config.json'} (its own)" in out.stdout
    (tmp_path / "tiny_config.json").unlink()
    out = run("check-model", "--load_model_path", tmp_path / "tiny.bin")
    assert out.returncode == 0 and "fits: bert/tiny" in out.stdout
    out = run("check-model", "--load_model_path", tiny, "--config_path", "bert/mini")
    assert out.returncode == 1 and "does not fit bert/mini" in out.stdout
    assert "embedding.word.embedding.weight: shape (417, 128), the config needs (417, 256)" in out.stdout


def test_adapt_vocab_carries_rows_by_token(tiny, tmp_path):
    old = Vocab.load(VOCAB)
    kept = old.id_to_token[:5] + old.id_to_token[200:260][::-1]  # specials first, then a reversed slice
    new_tokens = ["新词甲", "新词乙", "新词丙"]
    (tmp_path / "new.txt").write_text("\n".join(kept[:30] + new_tokens + kept[30:]) + "\n", encoding="utf-8")
    new = Vocab.load(tmp_path / "new.txt")
    out = run("adapt-vocab", "--old_model_path", tiny, "--old_vocab_path", VOCAB, "--new_vocab_path",
              tmp_path / "new.txt", "--new_model_path", tmp_path / "adapted")  # UER-py's flag names
    assert out.returncode == 0, out.stderr
    assert f"{len(kept)} tokens kept their rows, 3 new tokens initialised, {len(old) - len(kept)} old tokens" \
        in out.stdout
    before, after = load_model(tiny), load_model(tmp_path / "adapted")
    assert after.config.vocab_size == len(new)
    old_ids = torch.tensor([old.get(t) for t in kept])
    new_ids = torch.tensor([new.get(t) for t in kept])
    for get in (lambda m: m.embedding.word_embedding().weight, lambda m: m.target["mlm"].linear_2.bias):
        assert torch.equal(get(after)[new_ids], get(before)[old_ids])
    fresh = after.embedding.word_embedding().weight.detach()[[new.get(t) for t in new_tokens]]
    assert 0.01 < float(fresh.std()) < 0.03
    assert float(after.target["mlm"].linear_2.bias.detach()[new.get("新词甲")]) == 0.0
    assert after.target["mlm"].linear_2.weight is after.embedding.word_embedding().weight  # still tied
    # the same text (tokens in both vocabularies) encodes alike, and scores the kept tokens alike
    src_old, src_new = old_ids[None, 5:25], new_ids[None, 5:25]
    seg = torch.ones_like(src_old)
    with torch.no_grad():
        h_old, h_new = before.encode(src_old, seg), after.encode(src_new, seg)
        torch.testing.assert_close(h_new, h_old)
        torch.testing.assert_close(after.target["mlm"].logits(h_new)[..., new_ids],
                                   before.target["mlm"].logits(h_old)[..., old_ids])


def test_adapt_vocab_refuses_the_wrong_old_vocabulary(tiny, tmp_path):
    (tmp_path / "v.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    out = run("adapt-vocab", "--load_model_path", tiny, "--vocab_path", tmp_path / "v.txt", "--new_vocab_path", VOCAB,
              "--output_model_path", tmp_path / "out")
    assert out.returncode == 1 and "the model's vocab_size is 417 but" in out.stderr
    assert not (tmp_path / "out").exists()


def test_adapt_vocab_covers_every_vocabulary_sized_tensor_of_an_s2s_model():
    from uer_ds.tools.adapt_vocab import adapt_vocab, vocabulary_keys

    old = Vocab([f"t{i}" for i in range(20)], source="old")
    new = Vocab([f"t{i}" for i in range(10, 30)], source="new")
    cfg = ModelConfig.from_dict({"vocab_size": 20, "emb_size": 8, "hidden_size": 8, "layers_num": 1, "encoder": "lstm",
                                 "embedding": ["word"], "target": ["s2s"], "data_processor": "s2s",
                                 "has_lmtarget_bias": True})
    model = build_model(cfg)
    sized = {k for k, v in model.state_dict().items() if v.shape[0] == 20}
    assert set(vocabulary_keys(model)) == sized == {"embedding.word.embedding.weight", "target.s2s.embedding.weight",
                                                     "target.s2s.output_layer.weight", "target.s2s.output_layer.bias"}
    adapted, counts = adapt_vocab(model, old, new)
    assert counts == {"kept": 10, "new": 10, "dropped": 10}
    for key in sized:
        assert torch.equal(adapted.state_dict()[key][:10], model.state_dict()[key][10:])
