"""Data path: text -> tokenizer -> .bin/.idx -> instances -> batches."""
from uer_ds.data.registry import DATA_PROCESSORS

__all__ = ["DATA_PROCESSORS"]
