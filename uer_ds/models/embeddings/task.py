"""ERNIE 2.0's task embedding (Sun et al., 2020, arXiv 1907.12412, "ERNIE 2.0 Model", "Task Embedding"):
each pre-training task has an id in [0, N) and its own learned vector, added to the word, position and
segment embeddings of every position of the task's batches, so that one encoder can tell which task it
is computing for.  Hugging Face's ErnieModel calls the same table `task_type_embeddings` and its ids
`task_type_ids`; uer_ds's config keys are `task_types_num` (N) and `task_id` (the id used where a batch
brings none: fine-tuning, inference, pre-training on one dataset).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from uer_ds.config import ModelConfig


class TaskEmbedding(nn.Module):
    """The `task` part of the embedding sum.  forward(src, seg, task) -> (B, 1, E) or (B, T, E), or (1, 1, E)
    without ids (broadcast over the batch): src, seg (B, T) int64; task None, (B,) or (B, T) int64 ids in
    [0, task_types_num) (a schedule's ids are checked against task_types_num before training starts, on the
    host, so an out-of-range id is an error naming the flag, not an index fault on the device)."""

    takes_task = True  # Embedding passes the batch's task ids to this part

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.task_types_num, cfg.emb_size)
        self.default_id = cfg.task_id

    def forward(self, src: torch.Tensor, seg: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        if task is None:  # called as a module (not its weight read directly): ZeRO-3 gathers it around the call
            return self.embedding(src.new_full((1, 1), self.default_id))  # (1, 1, E)
        if task.dim() == 1:
            return self.embedding(task).unsqueeze(1)  # (B, 1, E)
        return self.embedding(task)  # (B, T, E)
