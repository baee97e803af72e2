"""The classifier over every encoder family the shipped configs name (shrunk to test size): a pre-trained
model of the same config loads into its body, training reduces the loss, and padding does not change
a prediction (dynamic padding per batch is safe for every encoder)."""
from __future__ import annotations

import pytest
import torch

from uer_ds.config import ModelConfig
from uer_ds.models import build_model
from uer_ds.tasks import TASKS, TaskModel, select_pretrained

SMALL = {"hidden_size": 32, "emb_size": 32, "layers_num": 2, "vocab_size": 60, "dropout": 0.0}
CASES = {
    "bert/tiny": ({"heads_num": 4, "feedforward_size": 64}, "first"),
    "albert/base": ({"emb_size": 16, "heads_num": 4, "feedforward_size": 64}, "first"),
    "gpt2/small": ({"heads_num": 4, "feedforward_size": 64}, "last"),
    "rnn/lstm": ({}, "mean"),
    "rnn/bilstm": ({"hidden_size": 64}, "max"),  # tied bilm output: hidden / 2 == emb_size
    "rnn/gru": ({}, "last"),
    "cnn/gatedcnn": ({"layers_num": 3}, "mean"),
}


@pytest.mark.parametrize("config", list(CASES))
def test_classifier_trains_on_every_encoder(config):
    extra, pooling = CASES[config]
    cfg = ModelConfig.from_json(config, dict(SMALL, **extra, pooling=pooling))
    heads = {"classifier": {"labels_num": 3, "pooling": pooling, "soft": False}}
    torch.manual_seed(0)
    pretrained = build_model(cfg).state_dict()
    model = TaskModel(cfg, TASKS["classifier"].build_heads(cfg, heads))
    model.init_weights()
    state, _ = select_pretrained(pretrained, model, config, allow_partial=False)
    model.load_state_dict(state, strict=False)
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)

    src = torch.randint(5, 60, (6, 9))
    seg = torch.ones(6, 9, dtype=torch.long)
    seg[3:, 6:] = 0
    src[3:, 6:] = 0
    tgt = {"label": torch.tensor([0, 1, 2, 0, 1, 2]), "task": torch.tensor([0])}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        result = model(src, tgt, seg)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(float(result.loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses

    model.eval()
    with torch.no_grad():
        short = model(src[3:, :6], None, seg[3:, :6], predict=True)  # (3, labels) without padding
        padded = model(src[3:], None, seg[3:], predict=True)  # the same rows with 3 padding positions
    assert short.shape == (3, 3)
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)
