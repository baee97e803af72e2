"""PretrainDataset: the torch Dataset of training instances of a preprocessed dataset."""
from __future__ import annotations

from typing import Optional

import torch.utils.data

from uer_ds.data.batch import collate
from uer_ds.data.ernie import ERNIE_BUILDERS
from uer_ds.data.instances import BUILDERS
from uer_ds.data.mmap_dataset import MMapDataset, PathLike, dataset_prefix
from uer_ds.data.preprocessing import load_metadata

BUILDERS.update(ERNIE_BUILDERS)  # ERNIE 2.0's processors (issue 27); ernie.py imports instances.py, not the reverse


class PretrainDataset(torch.utils.data.Dataset):
    """Instances of OUT.bin/.idx, built as OUT.json says (data processor, seq_length, options).

    ds[i] -> {"src": (T,), "seg": (T,), "tgt": {target: labels}} as numpy int64 (see instances.py
    for each target's labels); len(ds) counts every dup_factor copy.  The instance depends only on
    (seed, epoch, i) - and not on the epoch unless masking is dynamic - so a resumed run sees the
    same batches.  ds.meta is OUT.json (data_processor, seq_length, tokenizer identity, vocab_size,
    special_ids, options, counts).  ds.collate is `collate` with this dataset's pad id (and the
    MLM labels as `Picked` positions, a fixed count per instance).

    subwords (a SubwordTable of the dataset's vocabulary): each instance's tgt also gets "sub" (T, C),
    the character ids of its (masked) tokens, for models with subword features.

    set_epoch(e) before iterating an epoch.  A DataLoader's workers get a copy of the dataset when
    an epoch's iterator starts, so do not use persistent_workers with dynamic masking.
    """

    def __init__(self, prefix: PathLike, seed: Optional[int] = None, epoch: int = 0,
                 dynamic_masking: Optional[bool] = None, subwords=None) -> None:
        self.prefix = dataset_prefix(prefix)
        self.data = MMapDataset(self.prefix)
        self.meta = load_metadata(self.prefix)
        if self.meta.get("run_id") != f"{self.data.run_id:016x}":
            raise ValueError(f"{self.prefix}.json belongs to another preprocess run than {self.data.idx_path} "
                             f"(run ids {self.meta.get('run_id')} and {self.data.run_id:016x})")
        processor = self.meta["data_processor"]
        if processor not in BUILDERS:
            raise ValueError(f"{self.prefix}.json: data_processor '{processor}' is not one of {', '.join(BUILDERS)}")
        options = self.meta["options"]
        self.seed = int(options.get("seed", 7) if seed is None else seed)
        dynamic = bool(options.get("dynamic_masking")) if dynamic_masking is None else dynamic_masking
        self.builder = BUILDERS[processor](self.data, self.meta, self.seed, dynamic)
        if subwords is not None:
            if subwords.vocab_size != int(self.meta["vocab_size"]):
                raise ValueError(f"{self.prefix}: the dataset's vocabulary has {self.meta['vocab_size']} entries, the "
                                 f"subword table's {subwords.vocab_size}: give the vocabulary it was built with")
            self.builder.subwords = subwords
        self.epoch = epoch
        # the MLM's masked positions come as a fixed number of rows per instance (static shapes)
        masker = self.builder.masker
        self._picked = {"mlm": masker.count(int(self.meta["seq_length"]))} if masker is not None else None
        self.static_shapes = False
        # s2s: the decoder's steps are as long as the target, not the source: keep every position
        self._full_length = processor == "s2s"

    def collate(self, instances: list[dict]) -> dict:
        """`collate` with this dataset's pad id and MLM bound; with static_shapes (set for torch.compile)
        every batch is padded to seq_length instead of its longest instance."""
        pad_to = int(self.meta["seq_length"]) if self.static_shapes or self._full_length else None
        return collate(instances, pad_id=self.pad_id, pad_to=pad_to, picked=self._picked)

    @property
    def pad_id(self) -> int:
        return int(self.meta["special_ids"]["pad"])

    @property
    def targets(self) -> tuple[str, ...]:
        from uer_ds.data.registry import DATA_PROCESSORS

        return DATA_PROCESSORS[self.meta["data_processor"]]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.builder)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"instance {index} out of range for {self.prefix} ({n} instances)")
        return self.builder.instance(int(index), self.epoch)

    def __repr__(self) -> str:
        return (f"PretrainDataset('{self.prefix}': {len(self)} instances, {self.meta['data_processor']}, "
                f"seq_length {self.meta['seq_length']})")
