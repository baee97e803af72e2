"""`uer-ds bench preprocess` runs end to end and writes its JSON (speed is never asserted)."""
from __future__ import annotations

import json

import pytest

from conftest import CORPORA
from uer_ds.cli import main


@pytest.mark.slow
def test_bench_preprocess_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "preprocess", "--corpus_path", str(CORPORA / "reviews.txt"), "--vocab_path",
                 str(CORPORA / "vocab.txt"), "--runs", "1", "--processes", "1,2", "--json_path", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [row["name"] for row in report["rows"]]
    assert names[0].startswith("uer_ds preprocess (C), 1 process") and any(n.startswith("HF tokenizers") for n in names)
    assert all(row["ids_equal"] for row in report["rows"])  # HF and pure Python give our ids
    assert all(row["mb_per_s"] > 0 and row["cpu_seconds"] > 0 and row["tokens"] == report["rows"][0]["tokens"]
               for row in report["rows"])
    assert 2.0 < report["rows"][0]["bytes_per_token"] < 2.5
    assert "x HF" in capsys.readouterr().out
