"""The kernels inside the model: the switch, interchangeable checkpoints, and training that tracks the reference."""
from __future__ import annotations

import inspect

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import DEVICE, triton_interpreter  # noqa: F401

import uer_ds.kernels as kernels
from uer_ds.config import ModelConfig
import uer_ds.kernels as triton_ops  # the one door: the switch resolves to the package
from uer_ds.kernels import reference
from uer_ds.models import IGNORE_INDEX, build_model, load_model, save_model
from uer_ds.models.io import model_from_state
from uer_ds.models.layers import kernel_ops

V = 97
# Losses of a tiny BERT trained 20 AdamW steps in fp32, kernels vs reference, agree to this (measured
# difference under the interpreter: see docs/gpu-kernels.md; fp32 rounding only).
LOSS_TOLERANCE = 1e-4


def tiny(name: str, kernels_mode: str, **changes) -> ModelConfig:
    """A shipped config shrunk to CPU-interpreter size: hidden 32, 2 heads of 16, 2 layers."""
    cfg = ModelConfig.from_json(name, {"vocab_size": V, "dropout": 0.0})
    shrink = dict(hidden_size=32, emb_size=32, heads_num=2, feedforward_size=64, layers_num=2, max_seq_length=32)
    return cfg.replace(**{**shrink, "kernels": kernels_mode, **changes})


def batch(cfg: ModelConfig, seed: int, b: int = 3, t: int = 12, lengths=(12, 9, 4)):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, V, (b, t), generator=g)
    seg = torch.ones(b, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        seg[i, n:] = 0
        src[i, n:] = 0
    tgt = {}
    for name in cfg.target:
        if name == "mlm":
            tgt[name] = torch.where((torch.rand(src.shape, generator=g) < 0.3) & (seg > 0), src, IGNORE_INDEX)
        elif name == "sp":
            tgt[name] = torch.randint(0, 2, (b,), generator=g)
        elif name == "lm":
            tgt[name] = torch.where(seg > 0, src.roll(-1, 1), IGNORE_INDEX)
    return src.to(DEVICE), {k: v.to(DEVICE) for k, v in tgt.items()}, seg.to(DEVICE)


def twin_models(name: str, **changes):
    """The same weights under kernels='torch' and kernels='triton' (loaded across: same state_dict keys)."""
    torch.manual_seed(0)
    ref = build_model(tiny(name, "torch", **changes)).to(DEVICE)
    ours = build_model(tiny(name, "triton", **changes)).to(DEVICE)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def test_switch_resolves_to_the_triton_ops():
    x = torch.zeros(1, device=DEVICE)
    assert kernel_ops("triton", x) is triton_ops
    assert kernel_ops("torch", x) is reference
    assert kernel_ops("auto", x) is reference  # the Triton kernels are opt-in (slower on an H100 so far)


@pytest.mark.parametrize("name", ["layer_norm", "attention"])
def test_public_functions_have_the_reference_signatures(name):
    expected = inspect.signature(getattr(reference, name))
    for module in (kernels, triton_ops):
        got = inspect.signature(getattr(module, name))
        assert [(p.name, p.default) for p in got.parameters.values()] == \
               [(p.name, p.default) for p in expected.parameters.values()], module.__name__


def test_checkpoints_are_interchangeable(tmp_path):
    ref, ours = twin_models("bert/tiny")
    assert list(ref.state_dict()) == list(ours.state_dict())
    save_model(ours.cpu(), tmp_path / "triton")
    loaded = load_model(tmp_path / "triton", device=DEVICE)  # config says kernels=triton
    assert loaded.config.kernels == "triton"
    state = {k: v for k, v in loaded.state_dict().items()}
    as_torch = model_from_state(loaded.config.replace(kernels="torch"), state, "test", strict=False,
                                device=DEVICE).eval()
    src, _, seg = batch(loaded.config, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(src, seg), as_torch.encode(src, seg), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(as_torch.encode(src, seg), ref.eval().encode(src, seg), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["bert/tiny", "gpt2/small", "albert/base"])
def test_one_step_gradients_match(name):
    """Post-LN BERT (fused residual), pre-LN causal GPT-2 (final LN), ALBERT (shared layer, factorized)."""
    ref, ours = twin_models(name, **({"emb_size": 16} if name.startswith("albert") else {}))
    src, tgt, seg = batch(ref.config, seed=2)
    losses = []
    for model in (ref, ours):
        model.zero_grad()
        loss = model(src, tgt if len(tgt) > 1 else next(iter(tgt.values())), seg).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-5
    for (key, p_ref), p_ours in zip(ref.named_parameters(), ours.parameters()):
        torch.testing.assert_close(p_ours.grad, p_ref.grad, atol=1e-5, rtol=1e-4, msg=lambda m: f"{key}: {m}")


@pytest.mark.slow
def test_tiny_bert_trains_20_steps_like_the_reference():
    ref, ours = twin_models("bert/tiny")
    curves = []
    for model in (ref, ours):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        curve = []
        for step in range(20):
            src, tgt, seg = batch(model.config, seed=100 + step % 4)
            loss = model(src, tgt, seg).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(curve)
    diffs = [abs(a - b) for a, b in zip(*curves)]
    assert curves[0][-1] < curves[0][0] - 0.5, f"the reference did not learn: {curves[0]}"
    assert max(diffs) < LOSS_TOLERANCE, f"loss curves differ by up to {max(diffs):.2e}: {curves}"


def test_dropout_training_is_reproducible_and_finite():
    """With dropout on, kernels='triton' draws its attention-dropout seed from torch's generator."""
    _, ours = twin_models("bert/tiny", dropout=0.1)
    ours.train()
    src, tgt, seg = batch(ours.config, seed=3)
    results = []
    for _ in range(2):
        torch.manual_seed(11)
        ours.zero_grad()
        loss = ours(src, tgt, seg).loss
        loss.backward()
        results.append((loss.item(), ours.encoder.transformer[0].self_attn.query.weight.grad.clone()))
    assert torch.isfinite(torch.tensor(results[0][0]))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
