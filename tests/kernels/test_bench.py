"""`uer-ds bench kernels`: the command, its table and its JSON (a CPU smoke run through the interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import DEVICE, triton_interpreter  # noqa: F401


def _uer_ds(*args, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the command sets it itself
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "uer_ds", "bench", "kernels", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_interpreter_smoke_run_writes_table_json_and_chart(tmp_path):
    out = _uer_ds("--interpret", "--hidden", "128", "--out", str(tmp_path / "k.json"))
    assert out.returncode == 0, out.stderr
    assert "interpreter smoke run: timings meaningless" in out.stdout
    assert "triton/torch" in out.stdout and "triton/sdpa" in out.stdout
    result = json.loads((tmp_path / "k.json").read_text())
    assert result["device"] == "CPU (Triton interpreter)" and result["interpret"] is True
    ln, attn = result["layer_norm"], result["attention"]
    assert {(r["provider"], r["mode"]) for r in ln} == {(p, m) for p in ("triton", "torch")
                                                         for m in ("fwd", "bwd", "fwd+bwd")}
    assert all(r["ms"] > 0 and r["GB/s"] > 0 for r in ln)
    assert {(r["padded"], r["causal"]) for r in attn} == {(p, c) for p in (False, True) for c in (False, True)}
    assert {r["provider"] for r in attn} == {"triton", "torch", "sdpa"}
    assert all(r["ms"] > 0 and r["TFLOP/s"] > 0 for r in attn), [r for r in attn if not r.get("ms")]
    # the fused sublayer close, and varlen on real lengths: book_review's (from the kept histogram) and full
    assert {(r["provider"], r["mode"]) for r in result["sublayer"]} == {(p, m) for p in ("triton", "torch")
                                                                        for m in ("fwd", "bwd", "fwd+bwd")}
    varlen = result["varlen"]
    assert {(r["lengths"], r["provider"]) for r in varlen} == {(d, p) for d in ("book_review", "full")
                                                               for p in ("triton", "sdpa")}
    assert all(r["padding"] == 0 for r in varlen if r["lengths"] == "full")
    assert all(0 < r["padding"] < 1 and r["tokens"] < 64 for r in varlen if r["lengths"] == "book_review")
    assert all(r["ms"] > 0 and r["TFLOP/s"] > 0 for r in varlen)
    assert "triton/sdpa" in out.stdout.split("varlen attention")[1]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "k.png").stat().st_size > 10_000


@pytest.mark.skipif(DEVICE == "cuda", reason="checks the message on a machine without a GPU")
def test_without_a_gpu_it_says_so(tmp_path):
    out = _uer_ds("--out", str(tmp_path / "unused.json"))
    assert out.returncode == 1
    assert "bench kernels needs a CUDA GPU and found none" in out.stderr and "--interpret" in out.stderr
    assert not (tmp_path / "unused.json").exists()


def test_listed_by_bench_help():
    out = subprocess.run([sys.executable, "-m", "uer_ds", "bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "kernels" in out.stdout


@pytest.mark.slow
def test_kernels_compile_for_an_h100_without_one():
    """Triton's compiler (not the interpreter) accepts the riskiest variants: ptxas for sm_90 ships in the wheel."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip(f"this triton wheel has no ptxas ({ptxas})")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "uer_ds.kernels.compile_check", "--quick"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # padded attention (3), varlen (3: the same fixed tiles, no autotuner configs since issue 28), the two
    # preprocessing kernels, the LayerNorm kernels at hidden 768 (4 rows a program) and 8192, bf16 and
    # autocast's fp32 residual (2 x 2 x 3), the key-range kernel and the dropout-mask kernel (padded, varlen)
    assert "compiled 23 kernel variants for sm_90" in out.stdout


def test_kept_length_distributions_are_the_datas():
    """length_distributions.json (what the GPU machine, which has no ../shared/data, samples from) equals the
    lengths the project's readers give on the data today."""
    from conftest import SHARED_DATA, shared

    from uer_ds.kernels import lengths

    shared("datasets/book_review/dev.tsv")
    shared("datasets/cmrc2018/dev.json")
    assert lengths.measure(SHARED_DATA) == lengths.load()


def test_length_samples_follow_the_histogram_and_the_cut():
    import numpy as np

    from uer_ds.kernels import lengths

    table = lengths.load()
    counts = table["book_review"]["128"]["counts"]
    mean = sum(int(k) * v for k, v in counts.items()) / sum(counts.values())
    rng = np.random.default_rng(0)
    drawn = lengths.sample("book_review", 128, 20000, rng, table)
    assert abs(np.mean(drawn) - mean) < 1.0 and max(drawn) <= 128 and min(drawn) >= 3
    assert max(lengths.sample("cmrc2018", 64, 500, rng, table)) == 64  # seq 64 cuts the 128 histogram
    assert lengths.sample("full", 32, 3, rng) == [32, 32, 32]
    uniform = lengths.sample("uniform", 10, 5000, rng)
    assert set(uniform) == set(range(1, 11))
    with pytest.raises(ValueError, match="length distribution 'wiki' is unknown: it must be one of book_review"):
        lengths.sample("wiki", 128, 1, rng)


def test_varlen_rows_are_handed_over_shape_by_shape():
    """A GPU call stopped by its time limit keeps the varlen rows measured so far: the runner saves them
    after every shape (progress), not only at the end."""
    from uer_ds.kernels import bench

    cfg = dict(bench.INTERPRET_DEFAULTS, lengths=["book_review", "full"], varlen_seq=[32], head_dim=[16], causal="false")
    seen = []
    rows = bench._varlen_rows(cfg, ["triton", "sdpa"], torch.float32, "cpu", bench._timer(False, graphs=False),
                              progress=lambda so_far: seen.append([dict(r) for r in so_far]))
    assert [len(s) for s in seen] == [6, 12]  # one shape per distribution: 2 providers x (fwd, bwd, fwd+bwd)
    assert {r["lengths"] for r in seen[0]} == {"book_review"} and seen[1] == rows
