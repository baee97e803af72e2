"""Tier 5: README command 1 (launch/quickstart.sh) runs end to end, prints what the README shows, and its outputs
are complete and sane."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from safetensors.torch import load_file

from conftest import ROOT
from doc_examples import blocks, check_output

pytestmark = pytest.mark.slow


def test_quickstart_preprocesses_pretrains_resumes_finetunes_infers(tmp_path):
    run = tmp_path / "quickstart"  # never the user's out/quickstart
    out = subprocess.run([str(ROOT / "launch" / "quickstart.sh")], capture_output=True, text=True, timeout=1200,
                         env=dict(os.environ, QUICKSTART_OUT=str(run), OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the quickstart block of the README and of docs/installation.md (timings elided) is this run's output,
    # with the pages' out/quickstart
    printed = out.stdout.replace(str(run), "out/quickstart")
    for page in (ROOT / "README.md", ROOT / "docs" / "installation.md"):
        shown = [b for b in blocks(page) if b.body and b.body[0] == "$ ./launch/quickstart.sh"]
        assert len(shown) == 1, f"{page.name}: no (or more than one) block with `$ ./launch/quickstart.sh` alone"
        assert check_output(shown[0].commands()[0], printed, out.returncode) is None, (page.name, printed)
    assert "stopped after step 100 of 200" in out.stdout
    assert "steps 101..200" in out.stdout  # the second run resumed, not restarted
    rows = [json.loads(line) for line in (run / "pretrain_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [50, 100, 150, 200]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3  # it learns
    assert rows[-1]["mlm_acc"] > 0.05
    weights = load_file(run / "pretrain" / "model" / "model.safetensors")
    assert weights["embedding.word.embedding.weight"].shape == (417, 128)
    assert (run / "pretrain" / "latest").read_text() == "global_step200"
    # fine-tuned from the pre-trained body, then predictions for every unlabelled test line
    assert "loaded 37 embedding/encoder tensors" in out.stdout and "['mlm', 'sp']" in out.stdout
    report = json.loads((run / "classifier" / "report.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    assert report["test"]["examples"] == 150 and report["test"]["accuracy"] > 0.6  # chance: 0.5
    lines = (run / "predictions.tsv").read_text(encoding="utf-8").splitlines()
    inputs = (ROOT / "corpora" / "reviews_cls" / "test_nolabel.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "label\tprob" and len(lines) == len(inputs) == 151
    for line in lines[1:]:
        label, prob = line.split("\t")
        probs = [float(v) for v in prob.split()]
        assert label in ("0", "1") and abs(sum(probs) - 1) < 1e-4 and probs[int(label)] == max(probs)
