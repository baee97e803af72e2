"""Real sizes, bf16/fp16, compiled kernels: run only where CUDA is present (skipped elsewhere).

Correctness only, never speed (speed is `uer-ds bench kernels`).  The comparison rule at these sizes is
FlashAttention's: our max error against a float64 result is at most 2x PyTorch's own error in the
same dtype, plus the table's atol (kernel_helpers.assert_no_worse_than_torch).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import assert_no_worse_than_torch, triton_interpreter  # noqa: F401

import uer_ds.kernels as kernels
from uer_ds.kernels import reference
from uer_ds.kernels import attention_keep_mask as dropout_keep_mask
from uer_ds.kernels import attention_with_seed as flash_attention

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _grads(out, inputs, do):
    return torch.autograd.grad(out, inputs, do)


@pytest.mark.parametrize("shape, residual", [((8, 512, 768), True), ((4096, 8192), False), ((5, 123, 4095), True)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_layer_norm_real_sizes(dtype, shape, residual):
    g = torch.Generator(device="cuda").manual_seed(0)
    n = shape[-1]
    x = (torch.randn(shape, device="cuda", generator=g) * 2 + 0.5).to(dtype).requires_grad_()
    r = torch.randn(shape, device="cuda", generator=g).to(dtype).requires_grad_() if residual else None
    w = (1 + 0.2 * torch.randn(n, device="cuda", generator=g)).to(dtype).requires_grad_()
    b = (0.2 * torch.randn(n, device="cuda", generator=g)).to(dtype).requires_grad_()
    dy = torch.randn(shape, device="cuda", generator=g).to(dtype)
    inputs = [x, w, b] + ([r] if residual else [])
    ours = kernels.layer_norm(x, w, b, 1e-5, residual=r)
    theirs = reference.layer_norm(x, w, b, 1e-5, residual=r)
    exact_in = [t.detach().double().requires_grad_() for t in inputs]
    exact = reference.layer_norm(*exact_in[:3], 1e-5, residual=exact_in[3] if residual else None)
    names = ["y", "dx", "dweight", "dbias", "dresidual"]
    for name, a, t, e in zip(names, [ours, *_grads(ours, inputs, dy)], [theirs, *_grads(theirs, inputs, dy)],
                             [exact, *_grads(exact, exact_in, dy.double())]):
        assert_no_worse_than_torch(a, e, t, name)


ATTENTION_CASES = {
    "bert-base-padded": (8, 12, 512, 512, 64, False, True),
    "gpt-causal-d128": (4, 16, 1024, 1024, 128, True, False),
    "long-padded-causal": (1, 8, 4096 - 3, 4096 - 3, 64, True, True),
    "kv-cache-shape": (2, 8, 7, 1000, 64, True, False),
    "d32": (4, 8, 333, 333, 32, False, True),
}


@pytest.mark.parametrize("case", list(ATTENTION_CASES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_real_sizes(dtype, case):
    b, h, tq, tk, d, causal, padded = ATTENTION_CASES[case]
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, h, tq, d, device="cuda", generator=g).to(dtype).requires_grad_()
    k, v = (torch.randn(b, h, tk, d, device="cuda", generator=g).to(dtype).requires_grad_() for _ in range(2))
    do = torch.randn(b, h, tq, d, device="cuda", generator=g).to(dtype)
    kpm = None
    if padded:
        lengths = torch.randint(tk // 2, tk + 1, (b,), device="cuda", generator=g)
        lengths[0], lengths[-1] = tk, 0  # one full row, one all-padding row
        kpm = torch.arange(tk, device="cuda")[None, :] >= lengths[:, None]
    ours = kernels.attention(q, k, v, key_padding_mask=kpm, causal=causal)
    theirs = reference.attention(q, k, v, key_padding_mask=kpm, causal=causal)
    exact_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
    exact = reference.attention(*exact_in, key_padding_mask=kpm, causal=causal)
    for name, a, t, e in zip(["o", "dq", "dk", "dv"], [ours, *_grads(ours, [q, k, v], do)],
                             [theirs, *_grads(theirs, [q, k, v], do)], [exact, *_grads(exact, exact_in, do.double())]):
        assert_no_worse_than_torch(a, e, t, name)


def test_attention_dropout_on_gpu_matches_its_mask_and_repeats():
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(2, 4, 256, 64, device="cuda", generator=g).half().requires_grad_() for _ in range(3))
    do = torch.randn(2, 4, 256, 64, device="cuda", generator=g).half()
    kpm = torch.arange(256, device="cuda")[None, :] >= torch.tensor([256, 100], device="cuda")[:, None]
    ours = flash_attention(q, k, v, kpm, True, 0.2, seed=99)
    again = flash_attention(q, k, v, kpm, True, 0.2, seed=99)
    assert torch.equal(ours, again)
    keep = dropout_keep_mask(99, (2, 4, 256, 256), 0.2, "cuda")
    assert abs(keep.float().mean().item() - 0.8) < 0.01
    exact_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
    exact = reference.attention_with_dropout_mask(*exact_in, keep, kpm, True, 0.2)
    theirs = reference.attention_with_dropout_mask(q, k, v, keep, kpm, True, 0.2)
    for name, a, t, e in zip(["o", "dq", "dk", "dv"], [ours, *_grads(ours, [q, k, v], do)],
                             [theirs, *_grads(theirs, [q, k, v], do)], [exact, *_grads(exact, exact_in, do.double())]):
        assert_no_worse_than_torch(a, e, t, name)


VARLEN_CASES = {  # (lengths, heads, head dim, causal)
    "book-review-like-d64": ([512, 37, 1, 130, 300, 64] * 4, 12, 64, False),
    "d128-causal": ([1000, 333, 17, 1], 16, 128, True),
    "d32": ([128] * 16, 8, 32, False),
}


@pytest.mark.parametrize("case", list(VARLEN_CASES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_varlen_attention_real_sizes(dtype, case):
    """Compiled varlen kernels (at their fixed GPU tiles) against SDPA run per sequence."""
    lengths, h, d, causal = VARLEN_CASES[case]
    g = torch.Generator(device="cuda").manual_seed(0)
    n = sum(lengths)
    q, k, v = (torch.randn(n, h, d, device="cuda", generator=g).to(dtype).requires_grad_() for _ in range(3))
    do = torch.randn(n, h, d, device="cuda", generator=g).to(dtype)
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    ours = kernels.varlen_attention(q, k, v, cu, max(lengths), causal=causal)
    theirs = reference.varlen_attention(q, k, v, cu, max(lengths), causal=causal)
    exact_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
    exact = reference.varlen_attention(*exact_in, cu, max(lengths), causal=causal)
    for name, a, t, e in zip(["o", "dq", "dk", "dv"], [ours, *_grads(ours, [q, k, v], do)],
                             [theirs, *_grads(theirs, [q, k, v], do)], [exact, *_grads(exact, exact_in, do.double())]):
        assert_no_worse_than_torch(a, e, t, name)


def test_fused_sublayer_close_real_size():
    from uer_ds.kernels import bias_dropout_add_layer_norm_with_seed as fused_bias_dropout_add_layer_norm
    from uer_ds.kernels import layer_norm_keep_mask as ln_keep

    g = torch.Generator(device="cuda").manual_seed(2)
    shape, n = (8192, 768), 768
    x, r = (torch.randn(shape, device="cuda", generator=g).bfloat16().requires_grad_() for _ in range(2))
    bias, w, b = (torch.randn(n, device="cuda", generator=g).bfloat16().requires_grad_() for _ in range(3))
    dy = torch.randn(shape, device="cuda", generator=g).bfloat16()
    keep = ln_keep(5, shape, 0.1, "cuda")
    assert abs(keep.float().mean().item() - 0.9) < 0.01
    inputs = [x, bias, r, w, b]
    ours = fused_bias_dropout_add_layer_norm(x, bias, r, w, b, 1e-12, 0.1, seed=5)
    theirs = reference.bias_dropout_add_layer_norm_with_keep_mask(x, bias, r, w, b, 1e-12, 0.1, keep)
    exact_in = [t.detach().double().requires_grad_() for t in inputs]
    exact = reference.bias_dropout_add_layer_norm_with_keep_mask(*exact_in, 1e-12, 0.1, keep)
    for name, a, t, e in zip(["y", "dx", "dbias", "dresidual", "dweight", "dln_bias"],
                             [ours, *_grads(ours, inputs, dy)], [theirs, *_grads(theirs, inputs, dy)],
                             [exact, *_grads(exact, exact_in, dy.double())]):
        assert_no_worse_than_torch(a, e, t, name)


def test_unpadded_bert_base_step_is_graph_capturable_and_sync_free():
    """The unpadded training step issues no device->host sync (CUDA's sync debug mode 'error') and its
    forward and backward replay from a CUDA graph with the eager result."""
    from uer_ds.config import ModelConfig
    from uer_ds.data.batch import collate, forward_kwargs
    from uer_ds.engine.engine import to_device
    from uer_ds.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig.from_json("bert/base", {"vocab_size": 21128, "dropout": 0.0, "kernels": "triton"})
    model = build_model(cfg).cuda().to(torch.bfloat16).train()
    rng = torch.Generator().manual_seed(0)
    instances = []
    for n in torch.randint(16, 129, (32,), generator=rng).tolist():
        src = torch.randint(5, 21128, (n,), generator=rng).numpy()
        mlm = torch.where(torch.rand(n, generator=rng) < 0.15, torch.from_numpy(src), -100).numpy()
        instances.append({"src": src, "seg": [1] * n, "tgt": {"mlm": mlm, "sp": 0}})
    batch = to_device(collate(instances, picked={"mlm": 32}), torch.device("cuda"))
    kwargs = forward_kwargs(batch["info"])

    def step():
        model.zero_grad(set_to_none=False)
        loss = model(batch["src"], batch["tgt"], batch["seg"], **kwargs).loss
        loss.backward()
        return loss

    for _ in range(3):  # compile outside the capture
        eager = step().detach().clone()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
        with torch.cuda.graph(graph):
            captured = step()
    torch.cuda.current_stream().wait_stream(stream)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(captured) and abs(captured.item() - eager.item()) < 1e-2 * abs(eager.item())


def test_bert_base_bf16_training_steps_track_the_reference():
    from uer_ds.config import ModelConfig
    from uer_ds.models import IGNORE_INDEX, build_model

    curves = []
    for mode in ("torch", "triton"):
        torch.manual_seed(0)
        cfg = ModelConfig.from_json("bert/base", {"vocab_size": 21128, "dropout": 0.0, "kernels": mode})
        model = build_model(cfg).cuda().to(torch.bfloat16).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(0)
        curve = []
        for _ in range(5):
            src = torch.randint(5, 21128, (8, 256), generator=g)
            seg = torch.ones_like(src)
            lengths = torch.randint(64, 257, (8,), generator=g)
            seg[torch.arange(256)[None, :] >= lengths[:, None]] = 0
            mlm = torch.where((torch.rand(src.shape, generator=g) < 0.15) & (seg > 0), src, IGNORE_INDEX)
            tgt = {"mlm": mlm.cuda(), "sp": torch.randint(0, 2, (8,), generator=g).cuda()}
            loss = model(src.cuda(), tgt, seg.cuda()).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(curve)
    assert max(abs(a - b) for a, b in zip(*curves)) < 0.05, curves


def test_bench_runs_on_the_gpu(tmp_path):
    out = subprocess.run([sys.executable, "-m", "uer_ds", "bench", "kernels", "--ops", "layer_norm", "--hidden", "768",
                          "--rows", "2048", "--providers", "triton", "torch", "--out", str(tmp_path / "k.json"),
                          "--chart", "none"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "k.json").read_text())["layer_norm"]
    assert all(r["GB/s"] > 0 for r in rows)


def test_unpadded_bert_base_bf16_training_tracks_the_padded_reference():
    """5 AdamW steps on collated (packed) batches: --kernels triton unpadded vs torch padded, bf16."""
    from uer_ds.config import ModelConfig
    from uer_ds.data.batch import collate, forward_kwargs
    from uer_ds.engine.engine import to_device
    from uer_ds.models import build_model

    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(5):
        instances = []
        for n in torch.randint(16, 257, (16,), generator=g).tolist():
            src = torch.randint(5, 21128, (n,), generator=g)
            mlm = torch.where(torch.rand(n, generator=g) < 0.15, src, -100)
            instances.append({"src": src.numpy(), "seg": [1] * n, "tgt": {"mlm": mlm.numpy(), "sp": n % 2}})
        batches.append(to_device(collate(instances, picked={"mlm": 40}), torch.device("cuda")))
    curves = []
    for mode in ("torch", "triton"):
        torch.manual_seed(0)
        cfg = ModelConfig.from_json("bert/base", {"vocab_size": 21128, "dropout": 0.0, "kernels": mode})
        model = build_model(cfg).cuda().to(torch.bfloat16).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        curve = []
        for batch in batches:
            loss = model(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch["info"])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(curve)
    assert max(abs(a - b) for a, b in zip(*curves)) < 0.05, curves
