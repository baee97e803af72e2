"""Tier 5: README command 1 (launch/quickstart.sh) runs and its printed numbers make sense."""
from __future__ import annotations

import math
import re
import subprocess

from conftest import ROOT


def test_quickstart_prints_a_sane_mlm_loss():
    out = subprocess.run([str(ROOT / "launch" / "quickstart.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    vocab_size = len((ROOT / "corpora" / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert f"vocab {vocab_size})" in out.stdout  # the summary read the shipped vocabulary
    loss = float(re.search(r"MLM loss of the untrained tiny BERT: ([0-9.]+)", out.stdout).group(1))
    masked = int(re.search(r"masked (\d+)", out.stdout).group(1))
    assert masked > 100
    assert abs(loss - math.log(vocab_size)) < 0.3  # untrained: close to uniform over the vocabulary
