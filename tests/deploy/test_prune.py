"""`uer-ds prune` (uer_ds/deploy/prune.py): Michel et al.'s head and neuron importance against finite
differences of the loss, the pruned model against the original with the same heads and neurons masked to
zero (by hooks written here, in plain PyTorch), width_mult 1.0 as the identity, the config round trip, and
the command's errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from uer_ds.config import ModelConfig
from uer_ds.deploy.prune import (Importance, check_prunable, compute_importance, kept_count, prune_state,
                                 prune_task_dir, top_indices)
from uer_ds.tasks import TASKS
from uer_ds.tasks.model import TaskModel, load_task_model

LABELS = 3
SPEC = {"head": {"labels_num": LABELS, "pooling": "first", "soft": False}}
INFO = {"task": "classifier", "heads": SPEC, "seq_length": 12}


def tiny_config(**changes) -> ModelConfig:
    values = dict(vocab_size=50, emb_size=32, hidden_size=32, feedforward_size=24, heads_num=4, layers_num=2,
                  max_seq_length=16, dropout=0.0, target=[], tie_weights=False, kernels="torch")
    return ModelConfig.from_json("bert/tiny", {**values, **changes})


def tiny_model(cfg: ModelConfig, seed: int = 0) -> TaskModel:
    """A classifier with every parameter drawn at random (LayerNorm and biases included)."""
    torch.manual_seed(seed)
    model = TaskModel(cfg, TASKS["classifier"].build_heads(cfg, SPEC))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.1 if "layer_norm" not in name else 0.05) + ("layer_norm" in name
                                                                                      and name.endswith("weight")))
    return model.eval()


def batches(seed: int = 0, sizes=(4, 3)) -> list[dict]:
    """Padded batches with labels: rows of different lengths (seg 0 at padding)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in sizes:
        lengths = torch.randint(3, 12, (b,), generator=g)
        src = torch.randint(1, 50, (b, 12), generator=g)
        seg = (torch.arange(12)[None] < lengths[:, None]).long()
        out.append({"src": src * seg, "seg": seg, "tgt": {"label": torch.randint(0, LABELS, (b,), generator=g)}})
    return out


def example_loss(model: TaskModel, batch: dict, i: int) -> torch.Tensor:
    """The cross-entropy of example i alone (a batch of one, its padding cut), in the model's dtype (the
    head's own loss casts to float32, too coarse for finite differences)."""
    n = int(batch["seg"][i].sum())
    logits = model(batch["src"][i:i + 1, :n], None, batch["seg"][i:i + 1, :n], predict=True)
    return torch.nn.functional.cross_entropy(logits, batch["tgt"]["label"][i:i + 1])


@torch.no_grad()
def scaled_loss(model: TaskModel, batch: dict, i: int, weight: torch.Tensor, cols: slice, s: float) -> float:
    """Example i's loss with `weight`'s columns `cols` multiplied by s: scaling a head's context vectors (the
    output projection's input) or a neuron's activation (linear_2's input) by s is exactly this."""
    saved = weight[:, cols].clone()
    weight[:, cols] *= s
    try:
        return float(example_loss(model, batch, i))
    finally:
        weight[:, cols] = saved


def finite_difference_importance(model: TaskModel, data: list[dict], weight_of, units: int, width: int,
                                 eps: float = 1e-6) -> torch.Tensor:
    """(layers, units): mean over examples of |dL/ds| at s = 1 by central differences, in float64."""
    out = torch.zeros(model.config.layers_num, units, dtype=torch.float64)
    count = 0
    for batch in data:
        for i in range(batch["src"].shape[0]):
            for layer in range(model.config.layers_num):
                weight = weight_of(model, layer)
                for u in range(units):
                    cols = slice(u * width, (u + 1) * width)
                    plus = scaled_loss(model, batch, i, weight, cols, 1 + eps)
                    minus = scaled_loss(model, batch, i, weight, cols, 1 - eps)
                    out[layer, u] += abs(plus - minus) / (2 * eps)
            count += 1
    return out / count


def test_importance_matches_finite_differences_per_example():
    """Every head's and (a slice of) every neuron's score = E_x |dL(x)/d mask| computed one example at a time by
    central differences of the loss: the batched per-example masks give each example's own gradient."""
    cfg = tiny_config(feedforward_size=6)
    model = tiny_model(cfg).double()
    data = batches()
    scores = compute_importance(model, data)
    assert scores.examples == 7 and scores.heads.shape == (2, 4) and scores.neurons.shape == (2, 6)
    heads = finite_difference_importance(model, data, lambda m, l: m.encoder.layer(l).self_attn.output.weight, 4, 8)
    neurons = finite_difference_importance(model, data, lambda m, l: m.encoder.layer(l).feed_forward.linear_2.weight,
                                           6, 1)
    # the head's loss is float32 (its cross-entropy casts), the rest float64: agreement to ~1e-7 relative
    torch.testing.assert_close(scores.heads, heads, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(scores.neurons, neurons, rtol=1e-5, atol=1e-8)
    assert all(p.requires_grad for p in model.parameters())  # switched back on
    assert all(p.grad is None for p in model.parameters())  # and never given gradients


def test_a_head_without_output_scores_zero_and_ablating_an_important_one_changes_the_loss():
    model = tiny_model(tiny_config())
    with torch.no_grad():
        model.encoder.layer(1).self_attn.output.weight[:, 16:24] = 0  # head 2 of layer 1 contributes nothing
    data = batches()
    scores = compute_importance(model, data)
    assert float(scores.heads[1, 2]) == 0.0 and bool((scores.heads[0] > 0).all())
    top = int(scores.heads[0].argmax())
    with torch.no_grad():
        base = sum(float(example_loss(model, b, i)) for b in data for i in range(b["src"].shape[0]))
    ablated = sum(scaled_loss(model, b, i, model.encoder.layer(0).self_attn.output.weight,
                              slice(top * 8, top * 8 + 8), 0.0) for b in data for i in range(b["src"].shape[0]))
    assert abs(ablated - base) > 1e-3


def test_top_indices_keeps_the_highest_in_order_and_breaks_ties_by_index():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    assert top_indices(scores, 2) == [[1, 3], [0, 1]]
    assert top_indices(scores, 3) == [[1, 2, 3], [0, 1, 2]]


def reference_masked_logits(model: TaskModel, batch: dict, heads: list, neurons: list) -> torch.Tensor:
    """The original model with every head outside heads[l] and neuron outside neurons[l] zeroed by forward
    hooks on the attention's context and the feed-forward activation (plain PyTorch, no pruning code)."""
    handles = []
    for layer in range(model.config.layers_num):
        block = model.encoder.layer(layer)
        attn, size = block.self_attn, block.self_attn.head_size
        head_keep = torch.zeros(attn.heads_num * size)
        for h in heads[layer]:
            head_keep[h * size:(h + 1) * size] = 1
        neuron_keep = torch.zeros(block.feed_forward.linear_1.out_features)
        neuron_keep[list(neurons[layer])] = 1
        handles.append(attn.output.register_forward_pre_hook(lambda m, a, k=head_keep: (a[0] * k,)))
        handles.append(block.feed_forward.linear_2.register_forward_pre_hook(lambda m, a, k=neuron_keep: (a[0] * k,)))
    try:
        with torch.no_grad():
            return model(batch["src"], None, batch["seg"], predict=True)
    finally:
        for h in handles:
            h.remove()


def pruned_model(model: TaskModel, heads, neurons) -> TaskModel:
    state, cfg = prune_state(model.state_dict(), model.config, heads, neurons)
    pruned = TaskModel(cfg, TASKS["classifier"].build_heads(cfg, SPEC))
    pruned.load_state_dict(state, strict=True)
    return pruned.eval()


def test_pruned_model_equals_the_original_with_the_same_heads_and_neurons_masked():
    model = tiny_model(tiny_config())
    heads, neurons = [[1, 3], [0, 2]], [[0, 3, 5, 6, 9, 10, 17, 20, 21, 23, 2, 4], list(range(12, 24))]
    neurons = [sorted(n) for n in neurons]
    pruned = pruned_model(model, heads, neurons)
    assert (pruned.config.heads_num, pruned.config.attention_head_size, pruned.config.feedforward_size) == (2, 8, 12)
    assert pruned.encoder.layer(0).self_attn.query.weight.shape == (16, 32)
    assert pruned.encoder.layer(0).self_attn.output.weight.shape == (32, 16)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    for batch in batches(seed=4):
        with torch.no_grad():
            got = pruned(batch["src"], None, batch["seg"], predict=True)
        torch.testing.assert_close(got, reference_masked_logits(model, batch, heads, neurons), rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            full = model(batch["src"], None, batch["seg"], predict=True)
        assert not torch.allclose(got, full, atol=1e-3)  # the masking does change the outputs


def test_width_mult_one_is_the_original_exactly(tmp_path):
    model = tiny_model(tiny_config())
    record = prune_task_dir("<memory>", str(tmp_path / "same"), 1.0, batches(), model, INFO,
                            TASKS["classifier"].build_heads)
    assert record["kept_heads"] == [[0, 1, 2, 3]] * 2 and record["feedforward_size"] == [24, 24]
    loaded, _ = load_task_model(tmp_path / "same", lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]))
    assert loaded.config == model.config
    original = model.state_dict()
    assert sorted(loaded.state_dict()) == sorted(original)
    assert all(torch.equal(loaded.state_dict()[k], original[k]) for k in original)


def test_pruned_directory_round_trips_its_config_and_masked_outputs(tmp_path):
    model = tiny_model(tiny_config())
    data = batches()
    record = prune_task_dir("<memory>", str(tmp_path / "half"), 0.5, data, model, INFO,
                            TASKS["classifier"].build_heads)
    scores = compute_importance(model, data)
    assert record["kept_heads"] == top_indices(scores.heads, 2)
    assert record["kept_neurons"] == top_indices(scores.neurons, 12)
    saved = json.loads((tmp_path / "half" / "config.json").read_text())
    assert (saved["heads_num"], saved["attention_head_size"], saved["feedforward_size"]) == (2, 8, 12)
    cfg = ModelConfig.from_json(tmp_path / "half" / "config.json")
    cfg.to_json(tmp_path / "again.json")
    assert ModelConfig.from_json(tmp_path / "again.json") == cfg
    assert json.loads((tmp_path / "half" / "task.json").read_text()) == INFO
    loaded, _ = load_task_model(tmp_path / "half", lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]))
    for batch in batches(seed=7):
        with torch.no_grad():
            got = loaded(batch["src"], None, batch["seg"], predict=True)
        torch.testing.assert_close(got, reference_masked_logits(model, batch, record["kept_heads"],
                                                                record["kept_neurons"]), rtol=1e-5, atol=1e-6)


# ---- the config key ----------------------------------------------------------------------------------
def test_attention_head_size_rules():
    assert tiny_config().head_size == 8 and tiny_config(attention_head_size=8).head_size == 8
    assert tiny_config(heads_num=3, attention_head_size=8).head_size == 8  # 3 does not divide 32: allowed with it
    with pytest.raises(ValueError, match=r"attention_head_size has value 12: heads_num \(4\) \* "
                                         r"attention_head_size must be at most hidden_size \(32\)"):
        tiny_config(attention_head_size=12)
    with pytest.raises(ValueError, match=r"attention_head_size has value -1: must be >= 0"):
        tiny_config(attention_head_size=-1)
    with pytest.raises(ValueError, match=r"heads_num has value 3: it must divide hidden_size \(32\)"):
        tiny_config(heads_num=3)
    with pytest.raises(ValueError, match=r"attention_head_size' has value 8: only the transformer encoder supports "
                                         r"it \(encoder is 'lstm'\)"):
        ModelConfig.from_dict({"encoder": "lstm", "target": [], "attention_head_size": 8})


# ---- errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [0.0, -0.5, 1.5])
def test_width_mult_outside_zero_one(width):
    with pytest.raises(ValueError, match=rf"--width_mult has value {width}: must be in \(0, 1\]"):
        kept_count(12, width, "heads")


def test_a_head_count_that_would_drop_to_zero():
    assert kept_count(12, 0.5, "heads") == 6 and kept_count(3072, 0.75, "neurons") == 2304
    assert kept_count(10, 0.3, "heads") == 3  # 0.3 * 10 is 3.0000000000000004 in floats: still 3
    with pytest.raises(ValueError, match=r"--width_mult 0.2 keeps 0.2 \* 4 heads per layer, which rounds down to 0: "
                                         r"each layer needs at least one \(use --width_mult >= 0.25\)"):
        kept_count(4, 0.2, "heads")


def test_only_transformer_encoders_without_sharing():
    with pytest.raises(ValueError, match="m: encoder is 'lstm': width pruning needs the transformer encoder"):
        check_prunable(ModelConfig.from_dict({"encoder": "lstm", "target": []}), "m")
    with pytest.raises(ValueError, match="m: parameter_sharing is true"):
        check_prunable(ModelConfig.from_json("albert/base", {"target": []}), "m")


def test_importance_needs_examples():
    with pytest.raises(ValueError, match="no examples to score"):
        compute_importance(tiny_model(tiny_config()), [])
    assert isinstance(Importance(torch.zeros(1, 1), torch.zeros(1, 1), 1), Importance)


# ---- the command, on a model fine-tuned by `uer-ds finetune` ------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from deploy_cases import finetune, make_data

    root = tmp_path_factory.mktemp("prune")
    data = make_data(root / "data")
    return root, data, finetune(root, data, epochs=1)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    from deploy_cases import UER_DS, VOCAB

    return subprocess.run([*UER_DS, "prune", "--vocab_path", str(VOCAB), "--no_progress", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_prunes_a_finetuned_classifier(finetuned):
    from deploy_cases import VOCAB, read_texts

    root, data, model_dir = finetuned
    out = root / "half"
    result = run_cli("--load_model_path", str(model_dir), "--train_path", str(data["train"]), "--width_mult", "0.5",
                     "--output_model_path", str(out), "--max_examples", "40")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "prune.json").read_text())
    original = ModelConfig.from_json(model_dir / "config.json")
    assert record["examples"] == 40 and record["heads_num"] == [original.heads_num, original.heads_num // 2]
    pruned_cfg = ModelConfig.from_json(out / "config.json")
    assert pruned_cfg.kernels == original.kernels == "auto"  # scored with 'torch', written with the model's own
    assert f"heads per layer {original.heads_num} -> {original.heads_num // 2}" in result.stdout
    # the pruned directory predicts as the original with the other heads and neurons masked
    from uer_ds.tasks.data import encode_texts, pad
    from uer_ds.tokenizers import build_tokenizer

    build = lambda c, i: TASKS["classifier"].build_heads(c, i["heads"])  # noqa: E731
    teacher, _ = load_task_model(model_dir, build)
    student, _ = load_task_model(out, build)
    _, texts = read_texts(data["test"])
    tokenizer = build_tokenizer("bert", str(VOCAB))
    encoded = [encode_texts(tokenizer, [t], 48) for t in texts[:16]]
    batch = {"src": pad([e[0] for e in encoded], 0), "seg": pad([e[1] for e in encoded], 0)}
    with torch.no_grad():
        got = student(batch["src"], None, batch["seg"], predict=True)
    torch.testing.assert_close(got, reference_masked_logits(teacher, batch, record["kept_heads"],
                                                            record["kept_neurons"]), rtol=1e-5, atol=1e-5)
    evaluated = subprocess.run([sys.executable, "-m", "uer_ds", "evaluate", "--load_model_path", str(out),
                                "--test_path", str(data["test"]), "--output_dir", str(root / "eval"), "--no_progress"],
                               capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    accuracy = json.loads((root / "eval" / "report.json").read_text())["metrics"]["accuracy"]
    # the pruned model exports to ONNX (the export's own check: onnxruntime against PyTorch) and benchmarks
    onnx = root / "half.onnx"
    exported = subprocess.run([sys.executable, "-m", "uer_ds", "export", "onnx", "--load_model_path", str(out),
                               "--output", str(onnx), "--check_path", str(data["dev"])],
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    check = json.loads(exported.stdout.strip().splitlines()[-1])
    assert check["max_abs_prob_diff"] < 1e-5 and check["same_prediction"] == 1.0
    bench = subprocess.run([sys.executable, "-m", "uer_ds", "bench", "infer", "--load_model_path", str(out), str(onnx),
                            "--test_path", str(data["test"]), "--seconds", "0.3", "--json_path",
                            str(root / "bench.json")], capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr[-3000:]
    rows = json.loads((root / "bench.json").read_text())["results"]
    assert [r["kind"] for r in rows] == ["pytorch-w0.5", "pytorch-w0.5", "onnx-fp32", "onnx-fp32"]
    assert all(r["accuracy"] == pytest.approx(accuracy, abs=1e-4) for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--width_mult", "0"], r"--width_mult has value 0.0: must be in \(0, 1\]"),
    (["--width_mult", "1.5"], r"--width_mult has value 1.5: must be in \(0, 1\]"),
    (["--width_mult", "0.1"], r"rounds down to 0: each layer needs at least one"),
    (["--width_mult", "0.5", "--batch_size", "0"], r"--batch_size has value 0: must be positive"),
])
def test_cli_errors_leave_no_output(finetuned, args, message):
    root, data, model_dir = finetuned
    out = root / "bad"
    result = run_cli("--load_model_path", str(model_dir), "--train_path", str(data["train"]), "--output_model_path",
                     str(out), *args)
    assert result.returncode != 0
    assert __import__("re").search(message, result.stderr), result.stderr[-2000:]
    assert not out.exists()
