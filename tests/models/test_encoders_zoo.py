"""The encoder zoo (issue 18): recurrent encoders without packing, cnn, rcnn, crnn, attn, synt.

Each is checked for shapes, for padding (a padded row encodes as the row alone), for what a position
sees (causal or not, against a changed later token), against an outside reference where there is one
(`pack_padded_sequence` for the recurrences, the Synthesizer paper's formulas worked with plain tensor
ops), for dynamo tracing without graph breaks, and for the config errors of targets that make no sense.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from uer_ds.config import ModelConfig
from uer_ds.models import build_model
from uer_ds.models.encoders import ENCODERS
from uer_ds.models.encoders.rnn import reverse_index

V = 61
BASE = {"vocab_size": V, "emb_size": 16, "hidden_size": 16, "layers_num": 2, "heads_num": 2, "feedforward_size": 32,
        "max_seq_length": 32, "dropout": 0.0, "kernel_size": 3, "embedding": ["word", "pos"]}
# encoder -> (config changes, causal)
ZOO = {
    "lstm": ({}, True), "gru": ({}, True), "bilstm": ({}, False), "bigru": ({"layers_num": 3}, False),
    "cnn": ({"hidden_act": "relu"}, True), "rcnn": ({}, True), "crnn": ({"emb_size": 8, "hidden_size": 16}, True),
    "attn": ({}, False), "attn_causal": ({"encoder": "attn", "mask": "causal"}, True),
    "attn_pre": ({"encoder": "attn", "layernorm_positioning": "pre"}, False),
    "synt": ({}, False), "synt_random": ({"encoder": "synt", "synt_type": "random"}, False),
    "synt_causal": ({"encoder": "synt", "mask": "causal", "layernorm_positioning": "pre"}, True),
}


def config(case: str, **changes) -> ModelConfig:
    extra, causal = ZOO[case]
    values = dict(BASE, encoder=case, target=["lm"] if causal else ["mlm"])
    values.update(extra)
    values.update(changes)
    return ModelConfig.from_dict(values)


def batch(lengths=(9, 6, 1, 4), t=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, V, (len(lengths), t), generator=g)
    seg = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        seg[i, :n] = 1
        src[i, n:] = 0
    return src, seg


@pytest.mark.parametrize("case", list(ZOO))
def test_shapes_padding_and_what_a_position_sees(case):
    torch.manual_seed(0)
    model = build_model(config(case)).eval()
    src, seg = batch()
    noisy = src.clone()
    noisy[seg == 0] = torch.randint(5, V, (int((seg == 0).sum()),))  # whatever sits in the padding
    with torch.no_grad():
        hidden = model.encode(noisy, seg)
        assert hidden.shape == (4, 9, 16)
        assert torch.equal(hidden[seg == 0], torch.zeros_like(hidden[seg == 0])) or case.startswith(("attn", "synt"))
        for row, n in enumerate((9, 6, 1, 4)):  # each row as if alone, without padding
            alone = model.encode(src[row:row + 1, :n], seg[row:row + 1, :n])
            torch.testing.assert_close(hidden[row, :n], alone[0], rtol=1e-5, atol=1e-5)
        changed = src[:1].clone()
        changed[0, 5] = (changed[0, 5] + 1 - 5) % (V - 5) + 5
        a, b = model.encode(src[:1], seg[:1]), model.encode(changed, seg[:1])
    assert torch.equal(a[0, :5], b[0, :5]) == ZOO[case][1]  # earlier positions blind to a later token iff causal
    assert not torch.allclose(a[0, 5:], b[0, 5:])


@pytest.mark.parametrize("case", list(ZOO))
def test_padded_false_is_the_fast_path_of_the_same_function(case):
    torch.manual_seed(0)
    model = build_model(config(case)).eval()
    src, seg = batch(lengths=(7, 7, 7), t=7)
    emb = model.embedding(src, seg)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(emb, seg, padded=False), model.encoder(emb, seg, padded=None))


@pytest.mark.parametrize("case, cell", [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("bilstm", torch.nn.LSTM),
                                        ("bigru", torch.nn.GRU)])
def test_recurrences_equal_pack_padded_sequence(case, cell):
    """The reference: PyTorch's packed sequences (what the encoder did before), same weights."""
    torch.manual_seed(0)
    cfg = config(case, hidden_size=24)
    encoder = ENCODERS[case](cfg).eval()
    bidirectional = case.startswith("bi")
    reference = cell(16, 12 if bidirectional else 24, num_layers=cfg.layers_num, batch_first=True,
                     bidirectional=bidirectional)
    reference.load_state_dict(encoder.rnn.state_dict())  # the same parameter names
    lengths = [9, 6, 1, 4]
    _, seg = batch(lengths)
    emb = torch.randn(4, 9, 16)
    with torch.no_grad():
        ours = encoder(emb, seg)
        packed = pack_padded_sequence(emb, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        theirs, _ = pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=9)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_reverse_index_reverses_within_each_length():
    seg = torch.tensor([[1, 1, 1, 0, 0], [1, 2, 2, 2, 2], [1, 0, 0, 0, 0]])
    assert reverse_index(seg).tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]


def test_bidirectional_gradients_equal_the_packed_reference():
    torch.manual_seed(0)
    encoder = ENCODERS["bilstm"](config("bilstm"))
    reference = torch.nn.LSTM(16, 8, num_layers=2, batch_first=True, bidirectional=True)
    reference.load_state_dict(encoder.rnn.state_dict())
    lengths = [9, 6, 1, 4]
    _, seg = batch(lengths)
    emb = torch.randn(4, 9, 16)
    weights = torch.randn(4, 9, 16) * (seg > 0).unsqueeze(-1)
    (encoder(emb, seg) * weights).sum().backward()
    packed = pack_padded_sequence(emb, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    (pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=9)[0] * weights).sum().backward()
    for (name, ours), theirs in zip(encoder.rnn.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6, msg=name)


def _synthesizer_by_hand(layer, x, heads, random: bool):
    """Tay et al. (2020), eqs. 1-3 per head, written out: B = W2 relu(W1 x + b1) + b2 (dense) or R,
    Y_h = softmax(B_h) (x W_v + b_v)_h, output = concat_h(Y_h) W_o + b_o."""
    s = layer.synthesizer
    b, t, h = x.shape
    values = x @ s.value.weight.T + s.value.bias
    outputs = []
    for head in range(heads):
        if random:
            logits = s.random[head, :t, :t].expand(b, t, t)
        else:
            rows = F.relu(x @ s.linear_1.weight.T + s.linear_1.bias) @ s.linear_2.weight.T + s.linear_2.bias
            logits = rows[..., head * s.length: head * s.length + t]
        width = h // heads
        outputs.append(torch.softmax(logits, dim=-1) @ values[..., head * width: (head + 1) * width])
    return torch.cat(outputs, dim=-1) @ s.output.weight.T + s.output.bias


@pytest.mark.parametrize("synt_type", ["dense", "random"])
def test_synthesizer_computes_the_papers_formula(synt_type):
    torch.manual_seed(0)
    cfg = config("synt", synt_type=synt_type, layers_num=1)
    encoder = build_model(cfg).encoder.eval()
    x = torch.randn(2, 7, 16)
    layer = encoder.layers[0]
    with torch.no_grad():
        got = layer.synthesizer(x, None, False)
        expected = _synthesizer_by_hand(layer, x, cfg.heads_num, synt_type == "random")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_synthesizer_refuses_sequences_longer_than_its_width():
    model = build_model(config("synt", max_seq_length=8, embedding=["word"]))
    src, seg = batch(lengths=(9,), t=9)
    with pytest.raises(ValueError, match=r"sequence length 9 exceeds max_seq_length \(8\)"):
        model.encode(src, seg)


@pytest.mark.parametrize("case", list(ZOO))
def test_forward_traces_without_graph_breaks(case):
    """torch.compile(fullgraph=True) readiness.  Dynamo traces nn.LSTM/GRU only with its allow_rnn
    switch (off by default, when it skips the frame); with it on, no graph break is allowed."""
    import torch._dynamo as dynamo

    cfg = config(case)
    encoder = build_model(cfg).encoder.train()
    _, seg = batch()
    emb = torch.randn(4, 9, cfg.emb_size)
    dynamo.reset()
    with dynamo.config.patch(allow_rnn=True):
        for padded in (None, False):
            explained = dynamo.explain(encoder)(emb, seg, padded=padded)
            assert explained.graph_break_count == 0, explained.break_reasons
            assert explained.graph_count == 1
    dynamo.reset()


@pytest.mark.parametrize("changes, message", [
    ({"encoder": "bilstm", "target": ["lm"]}, r"'lm', which predicts each next token: it needs a causal encoder "
                                              r"\(lstm, gru, gatedcnn, cnn, rcnn, crnn, or transformer/attn/synt "
                                              r"with mask 'causal'\); encoder 'bilstm' sees both sides"),
    ({"encoder": "attn", "target": ["lm"]}, r"encoder 'attn' with mask 'fully_visible' sees both sides"),
    ({"encoder": "transformer", "target": ["lm"]}, r"the transformer's mask is 'fully_visible'"),
    ({"encoder": "cnn", "target": ["mlm", "sp"]}, r"'sp', which reads position 0: encoder 'cnn' is causal"),
    ({"encoder": "lstm", "target": ["cls"]}, r"'cls' with pooling 'first', which reads position 0"),
    ({"encoder": "synt", "mask": "causal", "target": ["sp"]}, r"encoder 'synt' is causal"),
    ({"encoder": "rcnn", "target": ["bilm"]},
     r"'bilm': it needs a bidirectional encoder \(bilstm, bigru\), not 'rcnn'"),
    ({"encoder": "synt", "synt_type": "mixed"}, r"key 'synt_type' has value 'mixed': must be one of dense, random"),
    ({"encoder": "attn", "emb_size": 8}, r"key 'emb_size' has value 8: encoder 'attn' needs it equal to hidden_size"),
    ({"encoder": "synt", "heads_num": 3}, r"key 'heads_num' has value 3: it must divide hidden_size \(16\)"),
    ({"encoder": "crnn", "kernel_size": 0}, r"key 'kernel_size' has value 0: must be positive"),
])
def test_config_refuses_targets_and_settings_that_make_no_sense(changes, message):
    values = dict(BASE, target=["mlm"])
    values.update(changes)
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(values)


def test_targets_that_fit_are_accepted():
    for encoder, target, extra in [("cnn", ["lm"], {}), ("lstm", ["cls"], {"pooling": "mean"}),
                                   ("attn", ["mlm", "sp"], {}), ("synt", ["lm"], {"mask": "causal"}),
                                   ("bigru", ["bilm"], {}), ("rcnn", ["mlm"], {})]:
        ModelConfig.from_dict(dict(BASE, encoder=encoder, target=target, **extra))
