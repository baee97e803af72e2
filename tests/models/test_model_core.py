"""Model core: shapes, masks, sharing, tying, targets' losses, save/load, the kernel switch."""
from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from uer_ds.config import ModelConfig
from uer_ds.kernels import reference
from uer_ds.models import IGNORE_INDEX, build_model, load_model, save_model

V = 97


def small(name: str, **changes) -> ModelConfig:
    """A shipped config shrunk for CPU tests (dropout off so outputs are deterministic)."""
    cfg = ModelConfig.from_json(name, {"vocab_size": V, "dropout": 0.0})
    shrink = {"layers_num": 3 if cfg.encoder == "gatedcnn" else 2, "max_seq_length": 64}
    if cfg.encoder == "transformer":
        shrink.update(hidden_size=32, heads_num=4, feedforward_size=64,
                      emb_size=16 if cfg.factorized_embedding_parameterization else 32)
    else:
        shrink.update(emb_size=16, hidden_size=32 if cfg.encoder in ("bilstm", "bigru") else 16)
    shrink.update(changes)
    return cfg.replace(**shrink)


def batch(b=3, t=12, pad_from=(12, 9, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, V, (b, t), generator=g)
    seg = torch.ones(b, t, dtype=torch.long)
    for i, start in enumerate(pad_from):
        seg[i, start:] = 0
        src[i, start:] = 0
    return src, seg


def targets_for(cfg: ModelConfig, src, seg):
    g = torch.Generator().manual_seed(1)
    tgt = {}
    for name in cfg.target:
        if name == "mlm":
            tgt[name] = torch.where((torch.rand(src.shape, generator=g) < 0.3) & (seg > 0), src, IGNORE_INDEX)
        elif name in ("sp", "cls"):
            tgt[name] = torch.randint(0, 2, (src.shape[0],), generator=g)
        elif name == "lm":
            tgt[name] = torch.where(seg > 0, src.roll(-1, 1), IGNORE_INDEX)
        elif name == "bilm":
            tgt[name] = torch.stack([torch.where(seg > 0, src.roll(-1, 1), IGNORE_INDEX),
                                     torch.where(seg > 0, src.roll(1, 1), IGNORE_INDEX)], dim=-1)
    return tgt


ALL = ["bert/tiny", "albert/base", "gpt2/small", "rnn/lstm", "rnn/gru", "rnn/bilstm", "cnn/gatedcnn"]


@pytest.mark.parametrize("name", ALL)
def test_encode_shapes_and_a_training_step(name):
    torch.manual_seed(0)
    cfg = small(name)
    model = build_model(cfg)
    src, seg = batch()
    hidden = model.encode(src, seg)
    assert hidden.shape == (3, 12, cfg.hidden_size)
    result = model(src, targets_for(cfg, src, seg), seg)
    assert result.loss.dim() == 0 and torch.isfinite(result.loss)
    assert 0 <= int(result.correct) <= int(result.denominator)
    assert set(result.parts) == (set(cfg.target) if len(cfg.target) > 1 else set())
    # untrained, the vocabulary losses sit near ln(V)
    if cfg.target == ("lm",):
        assert abs(result.loss.item() - math.log(V)) < 0.5
    result.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name, causal", [("bert/tiny", False), ("gpt2/small", True), ("rnn/lstm", True),
                                          ("cnn/gatedcnn", True), ("rnn/bilstm", False)])
def test_causal_and_fully_visible_masks(name, causal):
    model = build_model(small(name)).eval()
    src, seg = batch(b=1, t=10, pad_from=(10,))
    changed = src.clone()
    changed[0, 6] = (src[0, 6] + 1) % V
    with torch.no_grad():
        a, b = model.encode(src, seg), model.encode(changed, seg)
    assert torch.equal(a[0, :6], b[0, :6]) == causal  # earlier positions blind to a later token iff causal
    assert not torch.allclose(a[0, 6:], b[0, 6:])


@pytest.mark.parametrize("name", ["bert/tiny", "gpt2/small", "rnn/bilstm", "rnn/gru", "cnn/gatedcnn"])
def test_padding_is_invisible(name):
    """A padded sequence encodes exactly as the same sequence alone without padding."""
    model = build_model(small(name)).eval()
    src, seg = batch(b=2, t=12, pad_from=(12, 7))
    noisy = src.clone()
    noisy[1, 7:] = torch.randint(5, V, (5,))  # whatever sits in the padding
    with torch.no_grad():
        padded = model.encode(noisy, seg)[1, :7]
        alone = model.encode(src[1:, :7], seg[1:, :7])[0]
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)


def test_albert_sharing_and_factorized_embedding():
    cfg = small("albert/base")
    model = build_model(cfg)
    assert len(model.encoder.transformer) == 1 and cfg.layers_num == 2
    assert model.encoder.linear.weight.shape == (cfg.hidden_size, cfg.emb_size)
    unshared = build_model(cfg.replace(parameter_sharing=False))
    layer = sum(p.numel() for p in model.encoder.transformer[0].parameters())
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(unshared) - total(model) == layer
    assert model.target["mlm"].linear_2.weight.shape == (V, cfg.emb_size)


def test_tied_output_matrix_shares_storage_and_survives_save_load(tmp_path):
    model = build_model(small("bert/tiny"))
    word = model.embedding.word.embedding.weight
    assert model.target["mlm"].linear_2.weight is word
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.target["mlm"].linear_2.weight is loaded.embedding.word.embedding.weight
    untied = build_model(small("bert/tiny", tie_weights=False))
    assert untied.target["mlm"].linear_2.weight is not untied.embedding.word.embedding.weight


def test_save_load_round_trip_and_errors(tmp_path):
    torch.manual_seed(3)
    model = build_model(small("gpt2/small")).eval()
    src, seg = batch()
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.encode(src, seg), model.encode(src, seg), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="not a model directory: config.json is missing"):
        load_model(tmp_path)
    other = build_model(small("gpt2/small", hidden_size=48, emb_size=48))
    save_model(other, tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "m" / "config.json").read_text())
    with pytest.raises(ValueError, match=r"other/model.safetensors: key 'embedding\.\w+\.embedding\.weight' has "
                                         r"shape \(\d+, 48\), the model expects \(\d+, 32\)"):
        load_model(tmp_path / "other")


def test_targets_losses_equal_torch_cross_entropy():
    torch.manual_seed(0)
    cfg = small("bert/tiny")
    model = build_model(cfg).eval()
    src, seg = batch()
    tgt = targets_for(cfg, src, seg)
    with torch.no_grad():
        result = model(src, tgt, seg)
        hidden = model.encode(src, seg)
        mlm_logits = model.target["mlm"].logits(hidden)  # (B, T, V)
        sp_logits = model.target["sp"].logits(hidden)
    keep = tgt["mlm"] != IGNORE_INDEX
    mlm = F.cross_entropy(mlm_logits[keep], tgt["mlm"][keep])
    sp = F.cross_entropy(sp_logits, tgt["sp"])
    torch.testing.assert_close(result.parts["mlm"].loss, mlm)
    torch.testing.assert_close(result.parts["sp"].loss, sp)
    torch.testing.assert_close(result.loss, mlm + sp)
    assert int(result.parts["mlm"].denominator) == int(keep.sum())
    assert int(result.parts["mlm"].correct) == int((mlm_logits[keep].argmax(-1) == tgt["mlm"][keep]).sum())


def test_no_masked_position_gives_zero_loss_with_gradients():
    model = build_model(small("bert/tiny", target=("mlm",), data_processor="mlm"))
    src, seg = batch()
    result = model(src, torch.full_like(src, IGNORE_INDEX), seg)
    assert result.loss.item() == 0.0 and int(result.denominator) == 0
    result.loss.backward()  # connected graph, finite grads


def test_forward_argument_errors():
    model = build_model(small("bert/tiny"))
    src, seg = batch()
    with pytest.raises(ValueError, match=r"targets \['mlm', 'sp'\]: give tgt as a dict"):
        model(src, src, seg)
    with pytest.raises(ValueError, match=r"tgt lacks labels for target\(s\) \['sp'\]"):
        model(src, {"mlm": src}, seg)
    with pytest.raises(ValueError, match="sequence length 70 exceeds max_seq_length \\(64\\)"):
        model.encode(torch.ones(1, 70, dtype=torch.long), torch.ones(1, 70, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size is 0"):
        build_model(ModelConfig.from_json("bert/tiny"))


def test_sinusoidal_positions_have_no_parameters():
    cfg = small("bert/tiny", embedding=("word", "sinusoidalpos", "seg"))
    model = build_model(cfg)
    assert not any("sinusoidal" in k for k in model.state_dict())
    table = model.embedding.sinusoidalpos.table
    torch.testing.assert_close(table[0, 0::2], torch.zeros(16))
    torch.testing.assert_close(table[0, 1::2], torch.ones(16))
    torch.testing.assert_close(table[5, 2], torch.tensor(math.sin(5 / 10000 ** (2 / 32))))
    meta = build_model(cfg, device="meta").to_empty(device="cpu")
    meta.init_weights()
    torch.testing.assert_close(meta.embedding.sinusoidalpos.table, table)


def test_dual_model_encodes_pairs_and_ties_streams():
    stream = {"vocab_size": V, "emb_size": 16, "hidden_size": 16, "layers_num": 1, "embedding": ["word"],
              "encoder": "lstm", "remove_embedding_layernorm": True}
    cfg = ModelConfig.from_dict({"embedding": ["dual"], "encoder": "dual", "stream_0": stream, "stream_1": stream,
                                 "tie_weights": True})
    model = build_model(cfg).eval()
    assert model.encoder.encoder_1 is model.encoder.encoder_0
    src, seg = batch()
    a, b = model.encode((src, src), (seg, seg))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="has no target"):
        model((src, src), src, (seg, seg))


def test_attention_reference_against_explicit_softmax():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, requires_grad=True) for _ in range(3))
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    pad[1, :] = True  # an all-padding sequence
    for causal in (False, True):
        out = reference.attention(q, k, v, key_padding_mask=pad, causal=causal)
        scores = q @ k.transpose(-1, -2) / math.sqrt(8)
        masked = pad[:, None, None, :] | (torch.ones(7, 7).triu(1).bool() if causal else False)
        probs = scores.masked_fill(masked, float("-inf")).softmax(-1).nan_to_num(0.0)
        torch.testing.assert_close(out, probs @ v)
        assert torch.equal(out[1], torch.zeros_like(out[1]))  # all-padding rows give zeros
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_kernel_switch_resolution():
    cfg = small("bert/tiny")
    src, seg = batch()
    torch.manual_seed(0)
    auto = build_model(cfg).eval()
    torch.manual_seed(0)
    torch_path = build_model(cfg.replace(kernels="torch")).eval()
    torch.testing.assert_close(auto.encode(src, seg), torch_path.encode(src, seg), rtol=0, atol=0)
    triton_cpu = build_model(cfg.replace(kernels="triton"))
    if "TRITON_INTERPRET" not in __import__("os").environ:
        with pytest.raises(RuntimeError, match="kernels='triton' needs CUDA tensors"):
            triton_cpu.encode(src, seg)


def test_models_package_never_imports_deepspeed():
    code = ("import sys, uer_ds.models, uer_ds.config, uer_ds.tokenizers, uer_ds.convert; "
            "sys.exit(1 if 'deepspeed' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    importing = re.compile(r"^\s*(import|from)\s+deepspeed", re.MULTILINE)
    offenders = [p for p in (ROOT / "uer_ds" / "models").rglob("*.py") if importing.search(p.read_text())]
    assert not offenders
