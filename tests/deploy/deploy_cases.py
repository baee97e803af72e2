"""A small fine-tuned classifier for the deployment tests: three classes made from the shipped reviews
(0 负面: negative; 1 正面: positive, Chinese only; 2 正面英文: positive with English in it), label names in
a label file, a tiny BERT fine-tuned through `uer-ds finetune` in a subprocess (about half a minute).
Also an independent PyTorch reference: the task model loaded by hand, its softmax on padded batches."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from conftest import CORPORA, ROOT

sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_utils import free_port, run_job  # noqa: E402

VOCAB = CORPORA / "vocab.txt"
NAMES = ["负面", "正面", "正面英文"]
UER_DS = [sys.executable, "-m", "uer_ds"]
SEQ = 48


def three_class_split(source: Path, target: Path) -> list[int]:
    """Rewrite a reviews_cls file with the three named classes; returns the gold ids."""
    lines = source.read_text(encoding="utf-8").splitlines()[1:]
    out, gold = ["label\ttext_a"], []
    for line in lines:
        label, text = line.split("\t")
        cls = 0 if label == "0" else (2 if re.search("[A-Za-z]", text) else 1)
        gold.append(cls)
        out.append(f"{NAMES[cls]}\t{text}")
    target.write_text("\n".join(out) + "\n", encoding="utf-8")
    return gold


def make_data(directory: Path) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {split: directory / f"{split}.tsv" for split in ("train", "dev", "test")}
    for split, path in paths.items():
        three_class_split(CORPORA / "reviews_cls" / f"{split}.tsv", path)
    (directory / "label.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    paths["labels"] = directory / "label.txt"
    return paths


def finetune(directory: Path, data: dict, epochs: int = 3) -> Path:
    """A tiny BERT from random weights fine-tuned on the three-class data; the task directory."""
    out = directory / "model"
    result = run_job([*UER_DS, "finetune", "classifier", "--vocab_path", str(VOCAB), "--config_path", "bert/tiny",
                      "--seq_length", str(SEQ), "--batch_size", "16", "--learning_rate", "1e-3", "--report_steps", "50",
                      "--no_progress", "--epochs_num", str(epochs), "--label_path", str(data["labels"]),
                      "--train_path", str(data["train"]), "--dev_path", str(data["dev"]), "--test_path",
                      str(data["test"]), "--output_model_path", str(out), "--seed", "3"], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    return out


def reference_probs(model_dir: Path, texts: list[str], seq_length: int = SEQ) -> np.ndarray:
    """(N, labels) softmax of the task model, loaded by hand, on batches of 16 padded texts (file order)."""
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.data import encode_texts, pad
    from uer_ds.tasks.model import load_task_model
    from uer_ds.tokenizers import build_tokenizer

    model, _ = load_task_model(model_dir, lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]))
    tokenizer = build_tokenizer("bert", str(VOCAB))
    out = []
    for start in range(0, len(texts), 16):
        encoded = [encode_texts(tokenizer, [t], seq_length) for t in texts[start: start + 16]]
        src, seg = pad([e[0] for e in encoded], 0), pad([e[1] for e in encoded], 0)
        with torch.no_grad():
            out.append(torch.softmax(model.eval()(src, None, seg, predict=True).double(), -1).numpy())
    return np.concatenate(out)


def read_texts(path: Path) -> tuple[list[str], list[str]]:
    """(label names, texts) of a labelled file."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return [r[0] for r in rows], [r[1] for r in rows]


class Server:
    """`uer-ds serve` in a subprocess of its own, on a free port; stop() sends SIGTERM."""

    def __init__(self, model, *flags: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([*UER_DS, "serve", "--load_model_path", str(model), "--port", str(self.port),
                                         *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"uer-ds serve exited {self.process.returncode}:\n{self.process.stdout.read()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("uer-ds serve did not answer /health within 120 s")
            time.sleep(0.2)

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 60):
        """(status, decoded JSON or text, headers) of one request on a new connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body, ensure_ascii=False).encode("utf-8")
                headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=headers or {},
                               encode_chunked=not isinstance(body, (bytes, str, type(None))))
            response = connection.getresponse()
            raw = response.read()
            kind = response.getheader("content-type", "")
            return response.status, json.loads(raw) if "json" in kind else raw.decode("utf-8", "replace"), response
        finally:
            connection.close()

    def predict(self, body):
        status, answer, _ = self.request("POST", "/predict", body)
        assert status == 200, answer
        return answer["predictions"]

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
