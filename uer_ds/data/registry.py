"""Data processors: what each pre-training data layout feeds to which targets.

The dict lives in uer_ds.registry (below the config, with the other registries); `ModelConfig.data_processor`
and `uer-ds preprocess --target` take their choices from it.
"""
from uer_ds.registry import DATA_PROCESSORS

__all__ = ["DATA_PROCESSORS"]
