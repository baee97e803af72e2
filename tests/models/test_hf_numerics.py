"""Tier 2: Hugging Face BERT and GPT-2 (random weights, built offline) converted in give the same
outputs within 1e-5 (fp32, CPU), padding in the batch included."""
from __future__ import annotations

import pytest
import torch

from uer_ds.cli import main
from uer_ds.convert import convert_hf_to_uer_ds
from uer_ds.models import load_model

transformers = pytest.importorskip("transformers")
TOL = dict(rtol=1e-5, atol=1e-5)
V = 211


def padded_batch(seed=0, b=4, t=24, lengths=(24, 17, 9, 1)):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids * mask, mask


def save_hf(model, path):
    model.eval().save_pretrained(path)
    return path


@pytest.mark.parametrize("head", ["BertModel", "BertForPreTraining"])
def test_bert_equals_hugging_face(head, tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32)
    hf = getattr(transformers, head)(cfg).eval()
    report = convert_hf_to_uer_ds(save_hf(hf, tmp_path / "hf"), tmp_path / "ours", "bert")
    ours = load_model(tmp_path / "ours")
    ids, mask = padded_batch()
    types = torch.zeros_like(ids)
    types[0, 12:] = 1  # a second segment in the first row
    seg = (types + 1) * mask  # UER segments: 0 padding, 1 first, 2 second
    with torch.no_grad():
        body = hf if head == "BertModel" else hf.bert
        expected = body(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        hidden = ours.encode(ids, seg)
    torch.testing.assert_close(hidden, expected, **TOL)  # padding positions too
    if head == "BertModel":
        assert report.unused_input == ["pooler.dense.bias", "pooler.dense.weight"]  # reported, not silent
        return
    assert report.unused_input == []
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        torch.testing.assert_close(ours.target["mlm"].logits(hidden), out.prediction_logits, **TOL)
        torch.testing.assert_close(ours.target["sp"].logits(hidden), out.seq_relationship_logits, **TOL)


@pytest.mark.parametrize("head", ["GPT2Model", "GPT2LMHeadModel"])
def test_gpt2_equals_hugging_face(head, tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=V, n_embd=64, n_layer=3, n_head=4, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    hf = getattr(transformers, head)(cfg).eval()
    convert_hf_to_uer_ds(save_hf(hf, tmp_path / "hf"), tmp_path / "ours", "gpt2")
    ours = load_model(tmp_path / "ours")
    assert ours.config.mask == "causal" and ours.config.layernorm_positioning == "pre"
    ids, mask = padded_batch(seed=1)
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = ours.encode(ids, mask)
    valid = mask.bool()
    torch.testing.assert_close(hidden[valid], out.hidden_states[-1][valid], **TOL)
    if head == "GPT2LMHeadModel":
        assert ours.target["lm"].output_layer.weight is ours.embedding.word.embedding.weight
        torch.testing.assert_close(ours.target["lm"].logits(hidden)[valid], out.logits[valid], **TOL)


def test_convert_command_line(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    hf_dir = save_hf(transformers.BertForPreTraining(cfg), tmp_path / "hf")
    assert main(["convert", "--from", "hf", "--to", "uer_ds", "--model", "bert", "--input", str(hf_dir),
                 "--output", str(tmp_path / "out")]) == 0
    assert "converted tensors: 30" in capsys.readouterr().out
    assert load_model(tmp_path / "out").config.target == ("mlm", "sp")
    # wrong family: the missing keys are named, exit 1, no output directory
    assert main(["convert", "--from", "hf", "--to", "uer_ds", "--model", "gpt2", "--input", str(hf_dir),
                 "--output", str(tmp_path / "bad")]) == 1
    assert "KeyError" not in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_pickled_bin_is_read_with_weights_only(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    hf = transformers.BertModel(cfg).eval()
    (tmp_path / "hf").mkdir()
    cfg.save_pretrained(tmp_path / "hf")
    torch.save(hf.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    convert_hf_to_uer_ds(tmp_path / "hf", tmp_path / "ours", "bert")
    ids, mask = padded_batch(lengths=(24, 5, 3, 2))
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "ours").encode(ids, mask),
                                   hf(input_ids=ids, attention_mask=mask).last_hidden_state, **TOL)

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Evil()}, tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="not a readable PyTorch weight file with tensors only"):
        convert_hf_to_uer_ds(tmp_path / "hf", tmp_path / "evil", "bert")
