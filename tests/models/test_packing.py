"""Packing: the real tokens of a padded batch, found on the host by the collate function (issue 16).

Checked against the batch itself (numpy, by hand), and the unpadded transformer path run with the
PyTorch reference kernels (the varlen reference) against the padded path: the model's side of the
unpadded path without Triton (tests/kernels/test_unpadded.py runs it with the kernels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uer_ds.config import ModelConfig
from uer_ds.data.batch import batch_info, collate, forward_kwargs, pick_positions
from uer_ds.models import build_model
from uer_ds.models.encoders import transformer
from uer_ds.models.layers.packing import Packing, PackedHidden, pack, packed_rows, packing_of, unpack
from uer_ds.models.targets.base import Picked, pick


def _seg(rows):
    """(B, T) seg from row strings: '1' / '2' a token of segment 1 / 2, '.' padding."""
    return torch.tensor([[0 if c == "." else int(c) for c in row] for row in rows])


def test_packing_of_a_padded_batch():
    seg = _seg(["1112.", "11...", ".....", "12.21"])  # a padding hole inside the last row
    p = packing_of(seg)
    assert p.indices.tolist() == [0, 1, 2, 3, 5, 6, 15, 16, 18, 19]
    assert p.cu_seqlens.dtype == torch.int32 and p.cu_seqlens.tolist() == [0, 4, 6, 6, 10]
    assert p.max_seqlen == 4 and p.shape == (4, 5)
    assert packing_of(_seg(["11", "12"])) is None  # nothing is padding: no packing needed


def test_pack_and_unpack_round_trip_with_gradients():
    seg = _seg(["111.", "1...", "11.1"])
    p = packing_of(seg)
    x = torch.randn(3, 4, 5, requires_grad=True)
    packed = pack(x, p)
    assert packed.shape == (7, 5)
    torch.testing.assert_close(packed, x[seg > 0])
    back = unpack(packed, p)
    torch.testing.assert_close(back, x * (seg > 0)[..., None])
    back.sum().backward()
    torch.testing.assert_close(x.grad, (seg > 0)[..., None].expand(3, 4, 5).float())


def test_picked_rows_map_to_packed_rows():
    seg = _seg(["111.", "1...", "11.1"])
    labels = torch.full((3, 4), -100)
    labels[0, 2], labels[2, 3], labels[1, 0] = 7, 8, 9
    picked = pick_positions(labels, rows=5, packing=packing_of(seg))
    assert picked.index.tolist() == [2, 4, 11, 0, 0]
    assert picked.packed_index.tolist() == [2, 3, 6, 0, 0]  # padding entries map to row 0 (ignored)
    hidden = torch.randn(3, 4, 6)
    packed = PackedHidden(pack(hidden, packing_of(seg)), packing_of(seg))
    rows, lab = pick(packed, picked)
    torch.testing.assert_close(rows, hidden.flatten(0, 1)[picked.index])
    assert lab.tolist() == [7, 9, 8, -100, -100]


def test_a_label_on_padding_is_an_error_naming_the_position():
    seg = _seg(["11.", "111"])
    with pytest.raises(ValueError, match=r"position 2 \(row 0, column 2\) is labelled but is padding"):
        packed_rows(torch.tensor([2]), packing_of(seg))


def test_collate_carries_the_packing_in_batch_info():
    instances = [{"src": np.arange(1, 6), "seg": np.array([1, 1, 1, 2, 2]), "tgt": {"mlm": np.array([-100, 3, -100, -100, 5])}},
                 {"src": np.arange(1, 4), "seg": np.array([1, 1, 1]), "tgt": {"mlm": np.array([7, -100, -100])}}]
    batch = collate(instances, picked={"mlm": 2})
    info = batch["info"]
    assert info.packing.cu_seqlens.tolist() == [0, 5, 8] and info.packing.max_seqlen == 5
    assert batch["tgt"]["mlm"].packed_index.tolist() == [1, 4, 5, 0]
    assert forward_kwargs(info) == {"padded": info.packing}
    dense = collate(instances[:1], picked={"mlm": 2})
    assert dense["info"].packing is None and forward_kwargs(dense["info"]) == {"padded": False}
    assert batch_info(batch["seg"], {}).packing.indices.tolist() == info.packing.indices.tolist()


def test_packing_of_refuses_device_or_odd_shapes():
    with pytest.raises(ValueError, match=r"packing_of takes seg of shape \(B, T\); got \(4,\)"):
        packing_of(torch.ones(4))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="runs in the collate function on the host"):
            packing_of(torch.ones(2, 2, device="cuda"))


# ---- the model's unpadded path with the reference kernels -----------------------------------------
SMALL = {"hidden_size": 32, "emb_size": 32, "feedforward_size": 64, "heads_num": 2, "layers_num": 2,
         "vocab_size": 60, "dropout": 0.0}


def _batch(cfg):
    rng = np.random.default_rng(0)
    instances = []
    for n in (10, 3, 7):
        seg = np.zeros(10, np.int64)
        seg[:n] = 1
        src = rng.integers(5, 60, 10) * (seg > 0)
        labels = np.where((rng.random(10) < 0.4) & (seg > 0), src, -100)
        tgt = {"mlm": labels, "sp": np.int64(n % 2)} if "sp" in cfg.target else {"mlm": labels}
        instances.append({"src": src, "seg": seg, "tgt": tgt})
    return collate(instances, picked={"mlm": 5})


@pytest.mark.parametrize("name", ["bert/tiny", "albert/base"])
def test_unpadded_path_with_reference_kernels_equals_padded(monkeypatch, name):
    """The transformer run on packed tokens (varlen reference attention, every op on N rows, the MLM
    gathering packed rows) gives the padded path's losses and gradients."""
    cfg = ModelConfig.from_json(name, dict(SMALL, **({"emb_size": 16} if name.startswith("albert") else {})))
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = _batch(cfg)
    padded = model(batch["src"], batch["tgt"], batch["seg"], padded=True)
    padded.loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    monkeypatch.setattr(transformer, "runs_unpadded", lambda mode, x: True)
    hidden = model.encoder(model.embedding(batch["src"], batch["seg"]), batch["seg"], padded=batch["info"].packing)
    assert isinstance(hidden, PackedHidden)
    unpadded = model(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch["info"]))
    unpadded.loss.backward()
    torch.testing.assert_close(unpadded.loss, padded.loss, atol=1e-6, rtol=1e-6)
    for key, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[key], atol=1e-6, rtol=1e-5, msg=lambda m: f"{key}: {m}")


def test_a_packing_for_another_batch_is_refused(monkeypatch):
    cfg = ModelConfig.from_json("bert/tiny", SMALL)
    model = build_model(cfg)
    batch = _batch(cfg)
    monkeypatch.setattr(transformer, "runs_unpadded", lambda mode, x: True)
    other = Packing(batch["info"].packing.indices, batch["info"].packing.cu_seqlens, 10, (4, 10))
    with pytest.raises(ValueError, match=r"Packing is for shape \(4, 10\), the embedding has \(3, 10\)"):
        model(batch["src"], batch["tgt"], batch["seg"], padded=other)


def test_without_the_kernels_a_packing_means_padded():
    """kernels torch/auto: the encoder masks as for padded=True and returns (B, T, H)."""
    cfg = ModelConfig.from_json("bert/tiny", SMALL)
    model = build_model(cfg).eval()
    batch = _batch(cfg)
    with torch.no_grad():
        out = model.encoder(model.embedding(batch["src"], batch["seg"]), batch["seg"], padded=batch["info"].packing)
        ref = model.encode(batch["src"], batch["seg"], padded=True)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, ref)
    assert isinstance(Picked(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)).packed_index,
                      type(None))
