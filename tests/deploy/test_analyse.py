"""`uer-ds analyse explain|mislabelled|support` (issue 25 item 2).

References outside the code under test: integrated gradients in closed form on a linear model and as a plain
PyTorch Riemann sum on the fine-tuned model (completeness against the model's own outputs, computed by hand);
cleanlab called directly on the same probabilities, and labels flipped on purpose in a real dataset; scikit-learn's
brute-force NearestNeighbors on vectors read from the model loaded by hand.
"""
from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ROOT, shared
from deploy_cases import VOCAB, finetune, make_data

pytest.importorskip("captum")
pytest.importorskip("cleanlab")
NearestNeighbors = pytest.importorskip("sklearn.neighbors").NearestNeighbors
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
pytestmark = pytest.mark.slow  # a tiny model is fine-tuned (about half a minute), the flipped-labels test 3 more times


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("analyse")
    data = make_data(directory / "data")
    return {"data": data, "model": finetune(directory, data), "dir": directory}


def analyse(*args: str) -> subprocess.CompletedProcess:
    """`uer-ds analyse ...` in a fresh interpreter, which then says whether deepspeed was ever imported."""
    code = ("import sys; from uer_ds.cli import main; rc = main(sys.argv[1:]); "
            "print('deepspeed imported:', 'deepspeed' in sys.modules); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, "analyse", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=600)


def read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def hand_model(model_dir: Path):
    """The task model and tokenizer loaded by hand (not through the analyses' loader)."""
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.model import load_task_model
    from uer_ds.tokenizers import build_tokenizer

    model, _ = load_task_model(model_dir, lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]))
    return model.eval(), build_tokenizer("bert", str(VOCAB))


# ---- explain ---------------------------------------------------------------------------------------------
def test_integrated_gradients_of_a_linear_model_is_the_closed_form():
    """F(x) = w_t . sum_p E[x_p] + b is linear in the embeddings, so IG of token p is exactly
    (E[x_p] - E[x'_p]) . w_t, and the attributions sum to F(x) - F(x')."""
    from uer_ds.deploy.analysis.explain import integrated_gradients

    torch.manual_seed(0)
    model = nn.Module()
    model.embedding = nn.Embedding(12, 6)
    linear = nn.Linear(6, 3)
    tokenizer = SimpleNamespace(pad_id=0, cls_id=1, sep_id=2)
    classifier = SimpleNamespace(model=model, tokenizer=tokenizer,
                                 logits=lambda src, seg: linear(model.embedding(src).sum(dim=1)))
    src = torch.tensor([[1, 5, 9, 3, 2]])
    attributions, f_input, f_baseline, delta = integrated_gradients(classifier, src, torch.ones_like(src), 2,
                                                                    n_steps=7, output="logit")
    baseline = torch.tensor([[1, 0, 0, 0, 2]])
    with torch.no_grad():
        expected = ((model.embedding(src) - model.embedding(baseline))[0] @ linear.weight[2]).double().numpy()
        f = linear(model.embedding(src).sum(1))[0, 2], linear(model.embedding(baseline).sum(1))[0, 2]
    np.testing.assert_allclose(attributions, expected, atol=1e-6)
    assert attributions[0] == attributions[-1] == 0  # [CLS] and [SEP] are kept in the baseline
    assert (f_input, f_baseline) == pytest.approx((float(f[0]), float(f[1])), abs=1e-6)
    assert abs(delta) < 1e-5 and attributions.sum() == pytest.approx(float(f[0] - f[1]), abs=1e-5)


def riemann_ig(model, src, seg, target, specials, steps=400):
    """IG by hand: the embedding layer's output replaced by baseline + a (input - baseline) through a forward
    hook, the probability's gradient averaged over `steps` midpoints, times (input - baseline), summed over H."""
    cls, sep, pad = specials
    baseline = torch.where((src == cls) | (src == sep), src, torch.full_like(src, pad))
    with torch.no_grad():
        e_input, e_base = model.embedding(src, seg), model.embedding(baseline, seg)
    grads = []
    for a in (np.arange(steps) + 0.5) / steps:
        point = (e_base + float(a) * (e_input - e_base)).requires_grad_(True)
        hook = model.embedding.register_forward_hook(lambda m, i, o: point)
        try:
            prob = torch.softmax(model(src, None, seg, predict=True), -1)[0, target]
        finally:
            hook.remove()
        grads.append(torch.autograd.grad(prob, point)[0])
    return ((e_input - e_base) * torch.stack(grads).mean(0))[0].sum(-1).double().numpy(), baseline


def test_explain_against_a_hand_computed_ig_and_completeness(trained, tmp_path):
    texts = ["这本书的结构相当平淡。<script>alert('&')</script>", "人物写得生动，What a charming plot!"]
    test = tmp_path / "explain.tsv"
    test.write_text("label\ttext_a\n" + "".join(f"负面\t{t}\n" for t in texts), encoding="utf-8")
    out = tmp_path / "out"
    result = analyse("explain", "--load_model_path", str(trained["model"]), "--test_path", str(test),
                     "--output_dir", str(out), "--n_steps", "64", "--no_progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deepspeed imported: False" in result.stdout  # deployment never loads the training engine
    report = json.loads((out / "explain.json").read_text(encoding="utf-8"))
    _, rows = read_tsv(out / "attributions.tsv")
    model, tokenizer = hand_model(trained["model"])
    from uer_ds.tasks.data import encode_texts

    for example, text in zip(report["examples"], texts):
        src, seg = (torch.tensor([x]) for x in encode_texts(tokenizer, [text], 48))
        mine = [r for r in rows if int(r["line"]) == example["line"]]
        assert [r["token"] for r in mine] == tokenizer.convert_ids_to_tokens(src[0].tolist())
        attributions = np.array([float(r["attribution"]) for r in mine])
        with torch.no_grad():
            probs = torch.softmax(model(src, None, seg, predict=True).double(), -1)[0]
        target = int(probs.argmax())
        assert example["predicted"] == example["target"] == ["负面", "正面", "正面英文"][target]
        reference, baseline = riemann_ig(model, src, seg, target,
                                         (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id))
        with torch.no_grad():
            f_baseline = float(torch.softmax(model(baseline, None, seg, predict=True).double(), -1)[0, target])
        # completeness against the model's own outputs, within the delta Captum reports (plus TSV rounding)
        assert abs(example["delta"]) < 1e-3
        assert attributions.sum() == pytest.approx(float(probs[target]) - f_baseline,
                                                   abs=abs(example["delta"]) + 1e-5)
        np.testing.assert_allclose(attributions, reference, atol=2e-3 * np.abs(reference).max() + 1e-6)
        for r in mine:  # each token maps back to the characters it came from
            if r["start"]:
                piece = text[int(r["start"]): int(r["end"])].lower()
                assert r["token"] == "[UNK]" or piece == r["token"].removeprefix("##"), r
    page = (out / "attributions.html").read_text(encoding="utf-8")
    assert page.count("<tr>") == 1 + len(texts) and "<script>" not in page and "&lt;" in page
    cells = re.findall(r'<td class="text">(.*?)</td></tr>', page)  # the texts, escaped, inside coloured spans
    assert [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells] == texts
    assert "负面" in page and "title=" in page


# ---- support -----------------------------------------------------------------------------------------------
def test_support_equals_brute_force_nearest_neighbours(trained, tmp_path):
    out = tmp_path / "support"
    data = trained["data"]
    result = analyse("support", "--load_model_path", str(trained["model"]), "--train_path", str(data["train"]),
                     "--test_path", str(data["test"]), "--k", "4", "--output_dir", str(out), "--no_progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deepspeed imported: False" in result.stdout
    model, tokenizer = hand_model(trained["model"])
    from uer_ds.tasks.data import encode_texts, pad

    def cls_vectors(path):  # pooling 'first': the [CLS] hidden state is what the head reads
        texts = [line.split("\t")[1] for line in path.read_text(encoding="utf-8").splitlines()[1:]]
        out = []
        for start in range(0, len(texts), 32):
            encoded = [encode_texts(tokenizer, [t], 48) for t in texts[start: start + 32]]
            with torch.no_grad():
                out.append(model.encode(pad([e[0] for e in encoded], 0), pad([e[1] for e in encoded], 0))[:, 0])
        return torch.cat(out).double().numpy()

    train, test = cls_vectors(data["train"]), cls_vectors(data["test"])
    distances, _ = NearestNeighbors(n_neighbors=4, metric="cosine", algorithm="brute").fit(train).kneighbors(test)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(test) @ unit(train).T
    _, rows = read_tsv(out / "support.tsv")
    assert len(rows) == len(test)
    supports = [float(r["support"]) for r in rows]
    assert supports == sorted(supports)  # weakest first
    for row in rows:
        i = int(row["line"]) - 2
        sims = [float(s) for s in row["neighbour_similarities"].split()]
        lines = [int(n) for n in row["neighbour_lines"].split()]
        np.testing.assert_allclose(sims, 1 - distances[i], atol=2e-5)  # the k best similarities
        np.testing.assert_allclose(sims, similarity[i, np.array(lines) - 2], atol=2e-5)  # of the rows named
        assert float(row["support"]) == pytest.approx(np.mean(1 - distances[i]), abs=2e-5)
    summary = json.loads((out / "support.json").read_text(encoding="utf-8"))
    assert summary["train_rows"] == len(train) and summary["k"] == 4


# ---- mislabelled -----------------------------------------------------------------------------------------------
@pytest.mark.data
def test_mislabelled_finds_flipped_labels_as_cleanlab_does(tmp_path):
    from cleanlab.filter import find_label_issues

    source = shared("datasets/test_data/chnsenticorp")
    lines = (source / "train.tsv").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(np.arange(1, len(lines)), size=50, replace=False).tolist())  # 10% of 500 rows
    rows = [lines[0]] + [(str(1 - int(l.split("\t")[0])) + l[1:]) if i in flipped else l
                         for i, l in enumerate(lines) if i]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "mislabelled"
    result = analyse("mislabelled", "--train_path", str(train), "--folds", "3", "--output_dir", str(out),
                     "--no_progress", "--", "--vocab_path", str(shared("models/google_zh_vocab.txt")),
                     "--config_path", "bert/tiny", "--seq_length", "64", "--batch_size", "16", "--learning_rate",
                     "5e-4", "--pooling", "mean", "--epochs_num", "10", "--report_steps", "100", "--no_progress",
                     "--dev_path", str(source / "dev.tsv"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "folds").exists()
    _, found = read_tsv(out / "label_issues.tsv")
    probs = np.load(out / "oof_probs.npy")
    labels = np.array([int(r.split("\t")[0]) for r in rows[1:]])
    direct = find_label_issues(labels, probs, filter_by="prune_by_noise_rate",
                               return_indices_ranked_by="self_confidence")
    assert [int(r["line"]) for r in found] == [i + 2 for i in direct]  # cleanlab's rows, in its order
    flagged_lines = {int(r["line"]) - 1 for r in found}  # 1-based data rows, as `flipped` counts them
    precision = len(flagged_lines & flipped) / max(len(flagged_lines), 1)
    recall = len(flagged_lines & flipped) / len(flipped)
    # a tiny BERT from random weights on 333 rows is a weak model (seen: 161 flagged, 33 of the 50 flipped among
    # them: precision 0.20 against the base rate 0.10, recall 0.66 against the 0.32 of all rows flagged)
    share = len(flagged_lines) / 500
    assert precision > 1.5 * 0.1 and recall > 1.5 * share, (precision, recall, len(flagged_lines))
    for r in found:
        i = int(r["line"]) - 2
        assert r["given"] == str(labels[i]) and r["suggested"] == str(probs[i].argmax())
        assert float(r["label_quality"]) == pytest.approx(probs[i, labels[i]], abs=1e-6)

    # the same probabilities given precomputed: the same output, without fine-tuning
    again = tmp_path / "again"
    result = analyse("mislabelled", "--train_path", str(train), "--probs_path", str(out / "oof_probs.npy"),
                     "--output_dir", str(again))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (again / "label_issues.tsv").read_text(encoding="utf-8") == (out / "label_issues.tsv").read_text(
        encoding="utf-8")


def test_mislabelled_bad_input_names_the_file_and_leaves_nothing(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n0\t好\n1\t差\n0\t一般\n", encoding="utf-8")
    probs = tmp_path / "probs.txt"
    probs.write_text("0.9 0.1\n0.2 0.8\n", encoding="utf-8")
    out = tmp_path / "out"
    result = analyse("mislabelled", "--train_path", str(train), "--probs_path", str(probs), "--output_dir", str(out))
    assert result.returncode == 1 and f"--probs_path {probs}: shape (2, 2), expected (3, classes)" in result.stderr
    assert not out.exists()
    probs.write_text("0.9 0.1\n0.2 0.8\n0.7 0.7\n", encoding="utf-8")
    result = analyse("mislabelled", "--train_path", str(train), "--probs_path", str(probs), "--output_dir", str(out))
    assert result.returncode == 1 and f"row 3 (for {train}:4) is [0.7, 0.7]" in result.stderr
    assert "summing to 1" in result.stderr and not out.exists()
    result = analyse("mislabelled", "--train_path", str(train), "--folds", "2", "--output_dir", str(out), "--",
                     "--train_path", "x.tsv", "--dev_path", str(train))
    assert result.returncode == 1 and "--train_path is set by `analyse mislabelled`" in result.stderr
    train.write_text("label\ttext_a\n0\t好\n7x\t差\n", encoding="utf-8")
    result = analyse("mislabelled", "--train_path", str(train), "--probs_path", str(probs), "--output_dir", str(out))
    assert result.returncode == 1 and f"{train}:3: label '7x' is not an integer" in result.stderr
