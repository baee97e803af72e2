"""uer-ds generate: the KV cache equals full recomputation, greedy equals transformers' argmax step by
step, a seed fixes sampling, and the filters keep what a hand computation says they keep."""
from __future__ import annotations

import math

import pytest
import torch
from tool_cases import TOL, VOCAB, make

from uer_ds.cli import main
from uer_ds.config import ModelConfig
from uer_ds.models import build_model, load_model
from uer_ds.tools.generate import Sampling, choose, filter_logits, generate


def causal_model(seed=0, **overrides):
    values = dict(vocab_size=50, emb_size=32, hidden_size=32, feedforward_size=64, heads_num=4, layers_num=3,
                  max_seq_length=48, dropout=0.0)
    cfg = ModelConfig.from_json("gpt2/small", {**values, **overrides})
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # biases and norms away from 0 and 1
    return model


@pytest.mark.parametrize("overrides", [{}, {"layernorm_positioning": "post", "remove_embedding_layernorm": False},
                                       {"parameter_sharing": True}],
                         ids=["pre-LN", "post-LN", "shared-layer"])
def test_kv_cache_equals_full_recomputation(overrides):
    model = causal_model(**overrides)
    ids = torch.randint(0, 50, (2, 30), generator=torch.Generator().manual_seed(1))
    seg = torch.ones_like(ids)
    with torch.no_grad():
        full = model.encode(ids, seg)  # (B, T, H), every position at once
        cache = model.encoder.new_cache()
        steps = [model.encoder(model.embedding(ids[:, :9], seg[:, :9]), seg[:, :9], cache=cache)]  # the prompt
        for t in range(9, 30):  # then one position per call
            emb = model.embedding(ids[:, : t + 1], seg[:, : t + 1])[:, -1:]
            steps.append(model.encoder(emb, seg[:, t: t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    assert cache[0].length == 30


def test_cache_rejects_what_it_cannot_do():
    model = causal_model()
    with pytest.raises(ValueError, match="takes no padding"):
        model.encoder(torch.zeros(1, 3, 32), torch.tensor([[1, 1, 0]]), cache=model.encoder.new_cache())
    bert = build_model(ModelConfig.from_json("bert/tiny", {"vocab_size": 50}))
    with pytest.raises(ValueError, match="needs a causal encoder"):
        bert.encoder(torch.zeros(1, 3, 128), torch.ones(1, 3, dtype=torch.long), cache=bert.encoder.new_cache())


def test_sampled_generation_is_the_same_with_and_without_the_cache():
    model = causal_model()
    sampling = Sampling(top_k=20, top_p=0.9, temperature=1.3)
    with_cache = generate(model, [1, 2, 3], 40, sampling, seed=5)
    assert with_cache == generate(model, [1, 2, 3], 40, sampling, seed=5, use_cache=False)
    assert len(with_cache) == 40 and with_cache[:3] == [1, 2, 3]


def test_seed_fixes_the_sample():
    model = causal_model()
    runs = [generate(model, [4, 5], 30, Sampling(), seed=s) for s in (1, 1, 2, 3, 4)]
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs}) > 2  # other seeds, other samples


def test_greedy_equals_transformers_argmax_step_by_step(tmp_path):
    hf, ours_dir = make("gpt2", tmp_path)
    ours = load_model(ours_dir)
    prompt = [2, 17, 40, 99]
    got = generate(ours, prompt, 24, Sampling(greedy=True))
    expected = list(prompt)
    with torch.no_grad():
        while len(expected) < 24:  # the reference: transformers' full forward, argmax of the last logits
            logits = hf(input_ids=torch.tensor([expected])).logits[0, -1]
            expected.append(int(logits.argmax()))
        generated = hf.generate(torch.tensor([prompt]), max_length=24, do_sample=False, pad_token_id=0)
    assert got == expected == generated[0].tolist()
    assert generate(ours, prompt, 24, Sampling(top_k=1), seed=9) == expected  # top-1 sampling is greedy


def test_filters_on_a_worked_example():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()

    def kept(**kw):
        return torch.isfinite(filter_logits(logits, **kw)).nonzero().flatten().tolist()

    assert kept(top_k=2) == [0, 1]
    assert kept(top_p=0.3) == [0]  # the most likely token alone reaches 0.3
    assert kept(top_p=0.75) == [0, 1]  # 0.5 < 0.75 <= 0.5 + 0.3
    assert kept(top_p=0.85) == [0, 1, 2]
    assert kept(top_k=3, top_p=0.75) == [0, 1]
    assert kept() == [0, 1, 2, 3]
    # temperature 2 flattens: p_i^(1/2) / sum_j p_j^(1/2), sampled 4000 times with one seed
    expected = [math.sqrt(p) for p in probs.tolist()]
    expected = [e / sum(expected) for e in expected]
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([choose(logits, Sampling(temperature=2.0), g) for _ in range(4000)]),
                            minlength=4)
    assert max(abs(c / 4000 - e) for c, e in zip(counts.tolist(), expected)) < 0.03


def test_bad_settings_are_named():
    model = causal_model()
    with pytest.raises(ValueError, match="top_p has value 1.5"):
        Sampling(top_p=1.5)
    with pytest.raises(ValueError, match="temperature has value 0"):
        Sampling(temperature=0)
    with pytest.raises(ValueError, match=r"max_length has value 60: .* max_seq_length \(48\)"):
        generate(model, [1], 60)
    with pytest.raises(ValueError, match="the prompt has 5 tokens, max_length is 5"):
        generate(model, [1, 2, 3, 4, 5], 5)


def test_generate_command(tmp_path, capsys):
    _, ours_dir = make("gpt2", tmp_path)
    (tmp_path / "prompts.txt").write_text("这本书\n情节写得\n", encoding="utf-8")
    args = ["generate", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
            str(tmp_path / "prompts.txt"), "--max_length", "16"]
    assert main(args + ["--greedy", "--prediction_path", str(tmp_path / "a.txt")]) == 0
    assert main(args + ["--greedy", "--no_cache", "--prediction_path", str(tmp_path / "b.txt")]) == 0
    a = (tmp_path / "a.txt").read_text(encoding="utf-8").splitlines()
    assert a == (tmp_path / "b.txt").read_text(encoding="utf-8").splitlines()
    assert len(a) == 2 and a[0].startswith("这本书") and a[1].startswith("情节写得")
    capsys.readouterr()
    outputs = []
    for _ in range(2):  # sampled, printed to standard output: one seed, one text
        assert main(args + ["--top_p", "0.9", "--seed", "3"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 2
    (tmp_path / "gaps.txt").write_text("这本书\n\n情节写得\n", encoding="utf-8")  # a blank line keeps its row
    assert main(args[:6] + [str(tmp_path / "gaps.txt"), *args[7:], "--greedy"]) == 0
    assert capsys.readouterr().out.split("\n") == [a[0], "", a[1], ""]
    (tmp_path / "b").mkdir()
    make("bert-mlm", tmp_path / "b")
    assert main(["generate", "--load_model_path", str(tmp_path / "b" / "ours"), "--vocab_path", str(VOCAB),
                 "--test_path", str(tmp_path / "prompts.txt")]) == 1
    assert "this tool needs its 'lm' or 's2s' head" in capsys.readouterr().err


def test_kv_cache_through_the_triton_attention_kernel():
    """The cache hands the kernel slot strided (B, nh, T_past + 1, hs) views with Tq = 1 < Tk; the Triton
    kernel (interpreted on CPU) must give the reference's full-sequence result."""
    pytest.importorskip("triton")
    import subprocess
    import sys

    code = """
import torch
from uer_ds.config import ModelConfig
from uer_ds.models import build_model
cfg = ModelConfig.from_json('gpt2/small', {'vocab_size': 50, 'layers_num': 2, 'hidden_size': 32, 'emb_size': 32,
                             'heads_num': 2, 'feedforward_size': 64, 'max_seq_length': 40, 'kernels': 'triton'})
torch.manual_seed(0)
model = build_model(cfg).eval()
reference = build_model(cfg.replace(kernels='torch')).eval()
reference.load_state_dict(model.state_dict())
ids = torch.randint(0, 50, (1, 12))
seg = torch.ones_like(ids)
with torch.no_grad():
    full = reference.encode(ids, seg)
    cache = model.encoder.new_cache()
    outs = [model.encoder(model.embedding(ids[:, :5], seg[:, :5]), seg[:, :5], cache=cache)]
    for t in range(5, 12):
        emb = model.embedding(ids[:, :t + 1], seg[:, :t + 1])[:, -1:]
        outs.append(model.encoder(emb, seg[:, t:t + 1], cache=cache))
torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-5)
print('ok')
"""
    env = dict(__import__("os").environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
