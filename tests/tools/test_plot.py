"""`uer-ds plot`: learning curves from a run's metrics file or its TensorBoard events (written here by
TensorBoard's own SummaryWriter under the tags the Reporter uses), one figure per quantity, runs overlaid."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from uer_ds.tools.plot import plot_runs, read_metrics_file, read_run, read_tensorboard  # noqa: E402

STEPS = [(10, 6.0, 0.05), (20, 5.5, 0.08), (30, 5.1, 0.12)]


def _run(tmp_path, name: str, shift: float = 0.0):
    """The same run twice: a metrics file and TensorBoard events, with pre-training and dev lines."""
    folder = tmp_path / name
    folder.mkdir()
    lines, writer = [], SummaryWriter(str(folder / "tensorboard"))
    for step, loss, acc in STEPS:
        record = {"step": step, "loss": loss + shift, "lr": 1e-4 * step, "tokens_per_s": 999.0,
                  "mlm_loss": loss - 0.5 + shift, "mlm_acc": acc, "skipped_steps": 0}
        lines.append(json.dumps(record))
        for key, tag in (("loss", "loss"), ("lr", "lr"), ("mlm_loss", "loss/mlm"), ("mlm_acc", "accuracy/mlm"),
                         ("tokens_per_s", "tokens_per_s")):
            writer.add_scalar(tag, record[key], step)
    dev = {"step": 30, "split": "dev", "examples": 150, "accuracy": 0.8 + shift, "per_class": [{"label": 0}]}
    lines.append(json.dumps(dev))
    writer.add_scalar("dev/accuracy", dev["accuracy"], 30)
    writer.close()
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_metrics_file_and_tensorboard_give_the_same_curves(tmp_path):
    run = _run(tmp_path, "a")
    from_file, from_events = read_metrics_file(run / "metrics.jsonl"), read_tensorboard(run)
    assert set(from_file) == set(from_events) == {"loss", "lr", "mlm_loss", "mlm_acc", "dev/accuracy"}
    for key, points in from_file.items():
        assert [s for s, _ in points] == [s for s, _ in from_events[key]]
        assert [v for _, v in points] == pytest.approx([v for _, v in from_events[key]], rel=1e-6)  # fp32 events
    assert from_file["loss"] == [(10, 6.0), (20, 5.5), (30, 5.1)] and from_file["dev/accuracy"] == [(30, 0.8)]
    assert read_run(run) == read_tensorboard(run)  # a directory: its event files


def test_one_figure_per_quantity_with_every_run_in_it(tmp_path):
    runs = [_run(tmp_path, "base"), _run(tmp_path, "ernie", shift=-0.2)]
    written = plot_runs([runs[0] / "metrics.jsonl", runs[1]], tmp_path / "plots", image_format="svg")
    assert sorted(p.name for p in written) == sorted(["loss.svg", "lr.svg", "mlm_loss.svg", "mlm_acc.svg",
                                                      "dev_accuracy.svg"])
    loss = (tmp_path / "plots" / "loss.svg").read_text()
    assert ">training loss<" in loss.replace("<!-- ", ">").replace(" -->", "<")
    assert "base" in loss and "ernie" in loss  # both legends (default labels: the runs' folder names)
    png = plot_runs([runs[0]], tmp_path / "png", labels=["only"], quantities=["dev/accuracy"])
    import matplotlib.pyplot as plt

    assert [p.name for p in png] == ["dev_accuracy.png"] and plt.imread(png[0]).shape[2] in (3, 4)


def test_bad_input_names_what_and_where(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 2.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a metrics line"):
        read_metrics_file(bad)
    with pytest.raises(FileNotFoundError, match="nothing_here: no such file or directory"):
        read_run(tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no TensorBoard event files"):
        read_run(tmp_path / "empty")
    run = _run(tmp_path, "a")
    with pytest.raises(ValueError, match=r"--quantities \['dev/f1'\]: no run has them"):
        plot_runs([run], tmp_path / "p", quantities=["dev/f1"])
    with pytest.raises(ValueError, match="--labels has 2 name"):
        plot_runs([run], tmp_path / "p", labels=["x", "y"])


def test_command_line(tmp_path):
    run = _run(tmp_path, "a")
    out = subprocess.run([sys.executable, "-m", "uer_ds", "plot", str(run), "--output_dir", str(tmp_path / "fig"),
                          "--quantities", "loss", "lr"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote 2 figure(s) to {tmp_path / 'fig'}: loss.png, lr.png"
    missing = subprocess.run([sys.executable, "-m", "uer_ds", "plot", str(tmp_path / "nope"), "--output_dir",
                              str(tmp_path / "fig")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
