"""The s2s target and data processor: source<TAB>target corpora, the decoder's steps, the LSTM decoder
against its equations, and a model that learns to copy."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import CORPORA
from uer_ds.config import ModelConfig
from uer_ds.data import PreprocessOptions, PretrainDataset, preprocess
from uer_ds.models import build_model
from uer_ds.tokenizers import build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")


def test_s2s_instances_are_the_source_and_the_shifted_target(tmp_path, tok):
    lines = [line for line in (CORPORA / "reviews.txt").read_text(encoding="utf-8").splitlines()[:40] if line.strip()]
    pairs = [(line[:30], line[:30][::-1]) for line in lines]  # "translation": the text reversed
    (tmp_path / "pairs.txt").write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    preprocess(tmp_path / "pairs.txt", tmp_path / "ds", tok, PreprocessOptions("s2s", 24), progress=False)
    ds = PretrainDataset(tmp_path / "ds")
    assert len(ds) == len(pairs)
    for i, (source, target) in enumerate(pairs):
        x = ds[i]
        n = int((x["seg"] > 0).sum())
        assert list(x["src"][:n]) == [tok.cls_id] + tok.encode(source)[:22] + [tok.sep_id]
        t = tok.encode(target)[:23]
        steps = x["tgt"]["s2s"]
        assert list(steps[:len(t) + 1, 0]) == [tok.cls_id] + t and list(steps[:len(t) + 1, 1]) == t + [tok.sep_id]
        assert (steps[len(t) + 1:] == -100).all()
    batch = ds.collate([ds[0], ds[1]])
    assert batch["src"].shape == (2, 24) and batch["tgt"]["s2s"].shape == (2, 24, 2)  # every decoder step kept


def test_s2s_corpus_errors_name_the_line(tmp_path, tok):
    (tmp_path / "bad.txt").write_text("源\t目标\n只有一列\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt: line 2 \(byte 11\): an s2s line must be source<TAB>target"):
        preprocess(tmp_path / "bad.txt", tmp_path / "ds", tok, PreprocessOptions("s2s", 24), progress=False)
    assert not list(tmp_path.glob("ds*"))


def _lstm_by_hand(lstm: torch.nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The LSTM equations (PyTorch's gate order i, f, g, o), one step at a time.  x: (B, S, E); h, c: (B, H)."""
    outputs = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def test_decoder_starts_from_the_last_real_position_and_follows_the_lstm_equations():
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({"vocab_size": 30, "emb_size": 8, "hidden_size": 12, "layers_num": 1, "dropout": 0.0,
                                 "encoder": "bilstm", "embedding": ["word"], "target": ["s2s"],
                                 "data_processor": "s2s", "has_lmtarget_bias": True})
    head = build_model(cfg).target["s2s"]
    hidden = torch.randn(2, 6, 12)
    seg = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    inputs = torch.tensor([[2, 7, 9, -100], [2, 5, 6, 8]])
    with torch.no_grad():
        got = head.logits(hidden, seg, inputs)
        start = torch.stack([hidden[0, 3], hidden[1, 5]])  # the last real source positions
        out = _lstm_by_hand(head.decoder, head.embedding(inputs.clamp(min=0)), start, start)
        expected = out @ head.output_layer.weight.T + head.output_layer.bias
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    labels = torch.tensor([[7, 9, 3, -100], [5, 6, 8, 3]])
    result = head(hidden, torch.stack([inputs, labels], dim=-1), seg)
    reference = torch.nn.functional.cross_entropy(expected[labels != -100], labels[labels != -100])
    torch.testing.assert_close(result.loss.detach(), reference, rtol=1e-5, atol=1e-6)
    assert int(result.denominator) == 7


SYMBOLS = "甲乙丙丁戊己"  # ids 4-9 of the copy task's vocabulary
COPY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *SYMBOLS, "[MASK]"]


def _copy_batch(rng: np.random.Generator, size: int = 32):
    """Sequences of 1-4 of the 6 symbols, as the s2s data processor lays out source<TAB>source."""
    cls, sep = 2, 3
    seqs = [rng.integers(4, 10, size=n) for n in rng.integers(1, 5, size=size)]
    src = torch.zeros(size, 6, dtype=torch.long)
    seg = torch.zeros(size, 6, dtype=torch.long)
    tgt = torch.full((size, 6, 2), -100)
    for b, s in enumerate(seqs):
        src[b, :len(s) + 2] = torch.tensor([cls, *s, sep])
        seg[b, :len(s) + 2] = 1
        tgt[b, :len(s) + 1, 0] = torch.tensor([cls, *s])
        tgt[b, :len(s) + 1, 1] = torch.tensor([*s, sep])
    return seqs, src, seg, tgt


@pytest.fixture(scope="module")
def copy_model():
    """An LSTM encoder-decoder trained 800 steps to autoencode; (model, per-step teacher-forced accuracy)."""
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({"vocab_size": len(COPY_VOCAB), "emb_size": 32, "hidden_size": 64, "layers_num": 1,
                                 "dropout": 0.0, "encoder": "lstm", "embedding": ["word"], "target": ["s2s"],
                                 "data_processor": "s2s", "remove_embedding_layernorm": True})
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    accuracy = []
    for _ in range(800):
        _, src, seg, tgt = _copy_batch(rng)
        result = model(src, {"s2s": tgt}, seg)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        accuracy.append(float(result.correct) / float(result.denominator))
    return model.eval(), accuracy


def test_an_encoder_decoder_learns_to_copy(copy_model):
    """Autoencoding sequences of 1-4 of 6 symbols: accuracy far above chance (1/6 for a symbol, [SEP] after
    the last), over the last 20 batches."""
    _, accuracy = copy_model
    assert np.mean(accuracy[:20]) < 0.4 and np.mean(accuracy[-20:]) > 0.7, (accuracy[:20], accuracy[-20:])


def test_decoding_gives_back_the_sources_it_was_trained_to_copy(copy_model):
    """generate_s2s on sequences the model never saw: greedy decoding (one LSTM step per token) gives back
    the source exactly when, and only when, the teacher-forced forward of training predicts every token
    and the [SEP] after them; it does for nearly all; and it equals decoding that recomputes every step."""
    from uer_ds.tools.generate import Sampling, generate_s2s

    model, _ = copy_model
    seqs, src, seg, tgt = _copy_batch(np.random.default_rng(123), size=60)
    with torch.no_grad():
        predicted = model.target["s2s"].logits(model.encode(src, seg), seg, tgt[..., 0]).argmax(-1)
    exact = 0
    for s, row, mask, steps, guess in zip(seqs, src, seg, tgt, predicted):
        source = row[mask > 0].tolist()
        decoded = generate_s2s(model, source, 8, start_id=2, sampling=Sampling(greedy=True), stop_id=3)
        assert decoded == generate_s2s(model, source, 8, start_id=2, sampling=Sampling(greedy=True), stop_id=3,
                                       use_cache=False)
        teacher_forced_right = bool((guess[: len(s) + 1] == steps[: len(s) + 1, 1]).all())
        assert (decoded == s.tolist()) == teacher_forced_right, (s, decoded, guess)
        exact += decoded == s.tolist()
    assert exact >= 0.9 * len(seqs), f"{exact} of {len(seqs)} sources copied exactly"
    sampled = [generate_s2s(model, [2, 4, 5, 3], 8, 2, Sampling(top_k=3, temperature=1.5), seed=9, use_cache=cache,
                            stop_id=3) for cache in (True, False, True)]
    assert sampled[0] == sampled[1] == sampled[2]  # a seed fixes the sample, with the cache or without
    assert len(generate_s2s(model, [2, 4, 5, 3], 2, 2, Sampling(greedy=True), stop_id=None)) == 2  # max_length
    with pytest.raises(ValueError, match="max_length has value 0"):
        generate_s2s(model, [2, 4, 3], 0, 2)
    with pytest.raises(ValueError, match="the source is empty"):
        generate_s2s(model, [], 4, 2)


def test_generate_command_decodes_an_s2s_model(copy_model, tmp_path, capsys):
    """`uer-ds generate` on a saved s2s model: one decoded target per input line (a blank line keeps its row)."""
    from uer_ds.cli import main
    from uer_ds.models import save_model
    from uer_ds.tools.generate import Sampling, generate_s2s

    model, _ = copy_model
    save_model(model, tmp_path / "copy")
    (tmp_path / "vocab.txt").write_text("\n".join(COPY_VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "in.txt").write_text("甲乙丙\n\n丁\n己戊丁丙\n", encoding="utf-8")
    args = ["generate", "--load_model_path", str(tmp_path / "copy"), "--vocab_path", str(tmp_path / "vocab.txt"),
            "--test_path", str(tmp_path / "in.txt"), "--seq_length", "6", "--greedy"]
    assert main(args + ["--prediction_path", str(tmp_path / "out.txt")]) == 0
    expected = []  # each line as the s2s data processor lays it out, decoded directly
    for line in ["甲乙丙", "", "丁", "己戊丁丙"]:
        source = [2, *(4 + SYMBOLS.index(c) for c in line), 3]
        expected.append("".join(SYMBOLS[i - 4] for i in generate_s2s(model, source, 6, 2, Sampling(greedy=True),
                                                                      stop_id=3)) if line else "")
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n") == expected + [""]
    assert expected[0] == "甲乙丙"  # what the model was trained to do
    assert main(args + ["--no_cache"]) == 0
    assert capsys.readouterr().out.split("\n") == expected + [""]


# ---- issue 30: the command line, as a user runs it ---------------------------------------------------
CJK_SYMBOLS = "山天地风月夜城大"  # 8 characters of corpora/vocab.txt


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    import os
    import sys

    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "uer_ds", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.usefixtures("deepspeed_ops")
def test_the_command_line_learns_to_copy_the_source(tmp_path):
    """Issue 30's sequence: a copy corpus of 4,000 `source<TAB>source` lines (3-7 of 8 CJK characters) ->
    `preprocess --target s2s --seq_length 16` -> `pretrain --config_path rnn/lstm --target s2s` (the
    shipped config, the issue's sizes and rate, fewer steps) -> `generate --greedy` on sources the
    corpus does not hold.  Before the fix (the LSTM read an N(0, 0.02) embedding) decoding gave one output
    per source length and copied none; the trained model must copy most sources, and give as many
    different outputs as there are different sources."""
    import random

    rng = random.Random(30)

    def source() -> str:
        return "".join(rng.choice(CJK_SYMBOLS) for _ in range(rng.randint(3, 7)))

    train = [source() for _ in range(4000)]
    seen = set(train)
    held_out = []
    while len(held_out) < 100:
        text = source()
        if text not in seen and text not in held_out:
            held_out.append(text)
    (tmp_path / "copy.txt").write_text("".join(f"{s}\t{s}\n" for s in train), encoding="utf-8")
    (tmp_path / "held_out.txt").write_text("".join(f"{s}\n" for s in held_out), encoding="utf-8")
    vocab = str(CORPORA / "vocab.txt")
    steps = [
        ("preprocess", "--corpus_path", "copy.txt", "--vocab_path", vocab, "--dataset_path", "copy", "--target", "s2s",
         "--seq_length", "16", "--no_progress"),
        ("pretrain", "--dataset_path", "copy", "--vocab_path", vocab, "--config_path", "rnn/lstm", "--target", "s2s",
         "--data_processor", "s2s", "--emb_size", "128", "--hidden_size", "128", "--total_steps", "600",
         "--batch_size", "32", "--learning_rate", "2e-3", "--output_model_path", "run", "--report_steps", "100",
         "--metrics_path", "metrics.jsonl", "--num_workers", "0", "--no_progress"),
        ("generate", "--load_model_path", "run/model", "--vocab_path", vocab, "--test_path", "held_out.txt",
         "--prediction_path", "out.txt", "--seq_length", "16", "--greedy"),
    ]
    for args in steps:
        done = _cli(*args, cwd=tmp_path)
        assert done.returncode == 0, (args[0], done.stdout[-3000:], done.stderr[-3000:])
    outputs = [line.replace(" ", "") for line in (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()]
    assert len(outputs) == len(held_out)
    copied = sum(o == s for o, s in zip(outputs, held_out))
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    summary = f"{copied} of {len(held_out)} copied, {len(set(outputs))} distinct outputs, s2s_acc {last['s2s_acc']:.3f}"
    print(summary)
    assert copied >= 0.7 * len(held_out), summary
    assert len(set(outputs)) >= 0.9 * len(held_out), summary  # the output follows the source, not its length
    for length in range(3, 8):  # among sources of one length too
        same = [o for o, s in zip(outputs, held_out) if len(s) == length]
        assert len(set(same)) >= 0.9 * len(same), (length, same, summary)
