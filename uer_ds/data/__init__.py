"""Data path: text -> tokenizer (C extension) -> OUT.bin/.idx -> instances -> batches.

What the engine uses (names are the contract):
  MMapDataset(prefix)             the .bin/.idx reader (numpy memmap, zero copy): len, ds[i] -> ids,
                                  ds.document(d), ds.doc_idx, ds.labels; pickles only its path
  PretrainDataset(prefix, seed=None, epoch=0, dynamic_masking=None)
                                  torch Dataset of instances built as OUT.json says; ds[i] ->
                                  {"src": (T,), "seg": (T,), "tgt": {target: labels}}; ds.meta;
                                  ds.set_epoch(e); ds.collate (collate with the dataset's pad id)
  collate(instances, pad_id=0, pad_to=None)
                                  -> {"src": (B, T), "seg": (B, T), "tgt": {name: LongTensor}}
  ShardedSampler(num_samples, rank, world_size, seed, shuffle=True, drop_last=True, start=0)
                                  one rank's indices; set_epoch(epoch, start=0); resume with start
                                  = samples consumed in the epoch by all ranks (state_dict /
                                  load_state_dict carry it)
  preprocess(corpus_path, dataset_path, tokenizer, PreprocessOptions(...), processes_num=1)
                                  what `uer-ds preprocess` runs
  DATA_PROCESSORS                 data processor -> the targets it feeds
The on-disk format is documented in FORMAT.md beside this file.  Names that need torch
(PretrainDataset, collate, ShardedSampler) are imported on first use, so preprocessing never
imports torch.
"""
from __future__ import annotations

import importlib

from uer_ds.data.mmap_dataset import MMapDataset, write_dataset
from uer_ds.data.preprocessing import PreprocessOptions, load_metadata, preprocess
from uer_ds.data.registry import DATA_PROCESSORS

_LAZY = {"PretrainDataset": "uer_ds.data.dataset", "collate": "uer_ds.data.batch",
         "ShardedSampler": "uer_ds.data.sampler"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'uer_ds.data' has no attribute '{name}'")


__all__ = ["DATA_PROCESSORS", "MMapDataset", "PreprocessOptions", "PretrainDataset", "ShardedSampler", "collate",
           "load_metadata", "preprocess", "write_dataset"]
