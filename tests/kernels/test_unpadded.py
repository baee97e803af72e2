"""The unpadded transformer path (--kernels triton on batches with a Packing) against the padded reference
path: hidden states and every gradient at the dtype tolerance table, the MLM's rows gathered from the
packed tokens, no host reads and no graph breaks, and a tiny BERT pre-trained and fine-tuned 20 steps
with the same losses as the padded PyTorch path (within 1e-4)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import DEVICE, TOLERANCES, triton_interpreter  # noqa: F401

import torch._dynamo  # noqa: E402  (imports triton: after the interpreter is set up)

from conftest import shared
from uer_ds.config import ModelConfig
from uer_ds.data.batch import collate, forward_kwargs
from uer_ds.engine.overhead import OpCounter, syncs
from uer_ds.models import build_model
from uer_ds.models.layers.packing import PackedHidden

V = 97
LOSS_TOLERANCE = 1e-4  # the bound for 20 training steps, unpadded vs padded (fp32)
LENGTHS = (12, 5, 1, 9)  # rows of a batch padded to 12: a full row, a one-token row


def tiny(name: str, kernels_mode: str, **changes) -> ModelConfig:
    """A shipped config at interpreter size: hidden 32, 2 heads of 16, 2 layers."""
    cfg = ModelConfig.from_json(name, {"vocab_size": V, "dropout": 0.0})
    shrink = dict(hidden_size=32, emb_size=32, heads_num=2, feedforward_size=64, layers_num=2, max_seq_length=32)
    return cfg.replace(**{**shrink, "kernels": kernels_mode, **changes})


def pretraining_batch(cfg: ModelConfig, seed: int, lengths=LENGTHS, width: int = 12) -> dict:
    """A collated batch (with its Packing) holding every target's labels: MLM at ~30 % of the tokens."""
    rng = np.random.default_rng(seed)
    instances = []
    for row, n in enumerate(lengths):
        seg = np.zeros(width, np.int64)
        seg[:n] = 1
        seg[n // 2:n] = 2 if n > 2 else 1
        src = rng.integers(5, V, width) * (seg > 0)
        tgt = {}
        for name in cfg.target:
            if name == "mlm":
                tgt[name] = np.where((rng.random(width) < 0.3) & (seg > 0), src, -100)
            elif name == "sp":
                tgt[name] = np.int64(row % 2)
            elif name == "lm":
                tgt[name] = np.where(seg > 0, np.roll(src, -1), -100)
        instances.append({"src": src, "seg": seg, "tgt": tgt})
    return collate(instances, picked={"mlm": 6} if "mlm" in cfg.target else None)


def to_device(batch: dict) -> dict:
    from uer_ds.engine.engine import to_device as move

    return move(batch, torch.device(DEVICE))


def twins(name: str, dtype=torch.float32, **changes):
    """The same weights under kernels='torch' (padded path) and kernels='triton' (unpadded path)."""
    torch.manual_seed(0)
    ref = build_model(tiny(name, "torch", **changes)).to(DEVICE, dtype)
    ours = build_model(tiny(name, "triton", **changes)).to(DEVICE, dtype)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def labels_of(model, batch):
    return batch["tgt"] if len(model.config.target) > 1 else batch["tgt"][model.config.target[0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["bert/tiny", "gpt2/small", "albert/base"])
def test_unpadded_encoder_equals_the_padded_path(name, dtype):
    """Post-LN BERT (fused sublayer closes), pre-LN causal GPT-2, ALBERT (shared layer, factorized
    embedding): the unpadded Triton path in `dtype` against the padded PyTorch path in float64 (same
    weights), hidden states at real positions and every parameter's gradient, at the kernels' tolerance
    table (gradients relative to each tensor's largest: they sum over every token)."""
    ref, ours = twins(name, torch.float32, **({"emb_size": 16} if name.startswith("albert") else {}))
    ref, ours = ref.double().cpu(), ours.to(dtype)
    batch = pretraining_batch(ref.config, seed=1)
    packing = batch["info"].packing
    assert packing is not None and packing.max_seqlen == 12 and packing.cu_seqlens.tolist() == [0, 12, 17, 18, 27]
    probe = torch.randn(*batch["src"].shape, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hidden = {}
    for model, b in ((ref, batch), (ours, to_device(batch))):
        out = model.encoder(model.embedding(b["src"], b["seg"]), b["seg"], padded=b["info"].packing)
        hidden[model.config.kernels] = out
        dense = out.padded() if isinstance(out, PackedHidden) else out
        (dense.double().cpu() * probe * (batch["seg"] > 0)[..., None]).sum().backward()
    assert isinstance(hidden["triton"], PackedHidden) and hidden["triton"].tokens.shape == (27, 32)
    assert isinstance(hidden["torch"], torch.Tensor)
    atol, rtol = TOLERANCES[dtype]
    real = batch["seg"] > 0
    torch.testing.assert_close(hidden["triton"].padded()[real.to(DEVICE)].double().cpu(), hidden["torch"][real],
                               atol=atol, rtol=rtol)
    for (key, p_ref), p_ours in zip(ref.named_parameters(), ours.parameters()):
        if p_ref.grad is None:
            assert p_ours.grad is None, key
            continue
        scale = p_ref.grad.abs().max().clamp(min=1.0)
        torch.testing.assert_close(p_ours.grad.double().cpu() / scale, p_ref.grad / scale, atol=atol, rtol=rtol,
                                   msg=lambda m: f"{key}: {m}")


def test_pruned_heads_on_every_attention_path():
    """A width-pruned layout (one head of 16 in hidden 32: attention_head_size set, heads narrower than
    hidden_size) through the Triton kernels, padded (flash attention with a key padding mask) and unpadded
    (varlen), against the padded PyTorch path (SDPA) in float64 with the same weights."""
    ref, ours = twins("bert/tiny", heads_num=1, attention_head_size=16)
    assert ours.encoder.layer(0).self_attn.query.weight.shape == (16, 32)
    ref = ref.double().cpu()
    batch = pretraining_batch(ref.config, seed=3)
    real = batch["seg"] > 0
    expected = ref.encoder(ref.embedding(batch["src"], batch["seg"]), batch["seg"], padded=True)
    b = to_device(batch)
    with torch.no_grad():
        for padded in (True, b["info"].packing):
            out = ours.encoder(ours.embedding(b["src"], b["seg"]), b["seg"], padded=padded)
            dense = out.padded() if isinstance(out, PackedHidden) else out
            torch.testing.assert_close(dense[real.to(DEVICE)].double().cpu(), expected[real].detach(),
                                       atol=TOLERANCES[torch.float32][0], rtol=TOLERANCES[torch.float32][1])


def test_mlm_takes_its_rows_from_the_packed_tokens_and_losses_agree():
    ref, ours = twins("bert/tiny")
    batch = to_device(pretraining_batch(ref.config, seed=2))
    picked = batch["tgt"]["mlm"]
    assert picked.packed_index is not None
    # the packed rows are the same positions: packed token r sits at flat position indices[r]
    indices = batch["info"].packing.indices
    keep = picked.labels != -100
    assert torch.equal(indices[picked.packed_index[keep]], picked.index[keep])
    results = [model(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch["info"]))
               for model in (ref, ours)]
    for part in ("mlm", "sp"):
        torch.testing.assert_close(results[1].parts[part].loss, results[0].parts[part].loss, atol=2e-5, rtol=1e-5)
        assert int(results[1].parts[part].denominator) == int(results[0].parts[part].denominator)


def test_training_step_reads_nothing_back_and_compiles_whole(monkeypatch):
    """With dropout on: the seeds are drawn on the device, the packing came from collate."""
    from uer_ds.kernels import flash_attention, fused_layer_norm, utils, varlen_flash_attention

    launched = []

    def recording(kernel, grid, *args, **kwargs):
        launched.append(getattr(kernel, "__name__", None) or kernel.fn.__name__)
        utils.launch(kernel, grid, *args, **kwargs)

    for module in (flash_attention, fused_layer_norm, varlen_flash_attention):
        monkeypatch.setattr(module, "launch", recording)
    _, ours = twins("bert/tiny", dropout=0.1)
    ours.train()
    batch = pretraining_batch(ours.config, seed=3)
    counter = OpCounter()
    with counter:
        counter.start()
        result = ours(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch["info"]))
        result.loss.backward()
        counter.stop()
    found = {k: v for phase in counter.ops.values() for k, v in phase.items() if syncs({k: v})}
    assert found == {}, f"device->host reads in an unpadded training step: {found}"
    assert {"_varlen_fwd_kernel", "_varlen_bwd_dq_kernel", "_ln_fwd_kernel", "_ln_bwd_kernel"} <= set(launched)
    assert "_attn_fwd_kernel" not in launched  # no padded attention anywhere
    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(ours)(batch["src"], batch["tgt"], batch["seg"],
                                                **forward_kwargs(batch["info"]))
    finally:
        torch._dynamo.reset()
    assert explained.graph_break_count == 0, [str(r.reason).splitlines()[0] for r in explained.break_reasons]


@pytest.mark.slow
def test_compiled_unpadded_step_equals_eager():
    """torch.compile (fullgraph; AOT autograd over the registered operators) gives eager's loss and gradients."""
    _, ours = twins("bert/tiny")
    batch = pretraining_batch(ours.config, seed=4)

    def step(model):
        ours.zero_grad()
        loss = model(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch["info"])).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in ours.parameters()]

    eager = step(ours)
    torch._dynamo.reset()
    try:
        compiled = step(torch.compile(ours, fullgraph=True, backend="aot_eager"))
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(compiled[0], eager[0], atol=1e-6, rtol=1e-6)
    for a, b in zip(compiled[1], eager[1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def _train(model, batches, steps: int = 20) -> list[float]:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    curve = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = model(batch["src"], labels_of(model, batch) if "task" not in batch["tgt"] else batch["tgt"],
                     batch["seg"], **forward_kwargs(batch["info"])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return curve


@pytest.mark.slow
def test_tiny_bert_pretrains_20_steps_unpadded_like_padded(big_interpreter_tiles):
    ref, ours = twins("bert/tiny")
    batches = [to_device(pretraining_batch(ref.config, seed=100 + i, lengths=(12, 7, 3, 10 - i))) for i in range(4)]
    curves = [_train(model, batches) for model in (ref, ours)]
    diffs = [abs(a - b) for a, b in zip(*curves)]
    assert curves[0][-1] < curves[0][0] - 0.5, f"the reference did not learn: {curves[0]}"
    assert max(diffs) < LOSS_TOLERANCE, f"loss curves differ by up to {max(diffs):.2e}: {curves}"


@pytest.fixture
def big_interpreter_tiles(monkeypatch):
    """One tile per (sequence, head) under the interpreter, whose cost is per program: the training runs
    here test the model's path, the kernel tests the tiling."""
    from uer_ds.kernels import attention_common, fused_layer_norm

    monkeypatch.setattr(attention_common, "INTERPRET_BLOCKS", (64, 64))
    monkeypatch.setattr(fused_layer_norm, "INTERPRET_ROWS", 64)


@pytest.mark.slow
def test_tiny_bert_finetunes_20_steps_unpadded_like_padded(big_interpreter_tiles):
    """A classifier on book_review's real lengths (batches from the runner's collate, Packing included)."""
    from uer_ds.cli.common import model_config_with_vocab, tokenizer_from_args
    from uer_ds.tasks import TASKS, TaskModel
    from uer_ds.cli.finetune import add_finetune_arguments
    from uer_ds.recipes.predict import batch_maker

    task = TASKS["classifier"]
    parser = argparse.ArgumentParser()
    add_finetune_arguments(parser, task)
    data_dir = shared("datasets/test_data/book_review")
    args = parser.parse_args(["--vocab_path", str(shared("models/google_zh_vocab.txt")), "--config_path", "bert/tiny",
                              "--train_path", str(data_dir / "train.tsv"), "--dev_path", str(data_dir / "dev.tsv"),
                              "--output_model_path", "unused", "--seq_length", "32"])
    tokenizer = tokenizer_from_args(args)
    models = []
    for mode in ("torch", "triton"):
        cfg = model_config_with_vocab(args, tokenizer).replace(
            hidden_size=32, emb_size=32, heads_num=2, feedforward_size=64, layers_num=2, dropout=0.0, kernels=mode)
        data = task.load(task.options_from(args), tokenizer, cfg, args.seq_length)
        torch.manual_seed(0)
        model = TaskModel(cfg, task.build_heads(cfg, data.heads, task.options_from(args))).to(DEVICE)
        model.init_weights()
        models.append(model)
    models[1].load_state_dict(models[0].state_dict())
    collate_fn = batch_maker(task, list(data.heads), tokenizer.pad_id or 0)
    examples = data.train[0]
    batches = [to_device(collate_fn(examples[i * 6:(i + 1) * 6], 0)) for i in range(4)]
    assert all(b["info"].packing is not None for b in batches)
    padding = 1 - sum(b["info"].tokens for b in batches) / sum(b["src"].numel() for b in batches)
    assert padding > 0.2, f"book_review batches should be padded (real lengths); {padding:.0%} padding"
    curves = [_train(model, batches) for model in models]
    diffs = [abs(a - b) for a, b in zip(*curves)]
    assert max(diffs) < LOSS_TOLERANCE, f"loss curves differ by up to {max(diffs):.2e}: {curves}"
