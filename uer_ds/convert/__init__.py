"""Checkpoint conversion between uer_ds and other formats.

CONVERSIONS maps (from, to) to a function(input, output, family) -> Report; `uer-ds convert` derives
its choices from it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

from uer_ds.convert.hf import FAMILIES, Report, hf_to_uer_ds

PathLike = Union[str, os.PathLike]


def convert_hf_to_uer_ds(input_dir: PathLike, output_dir: PathLike, family: str) -> Report:
    from uer_ds.models import build_model, save_model
    from uer_ds.models.io import load_state_dict_checked

    cfg, state, report = hf_to_uer_ds(input_dir, family)
    model = build_model(cfg, device="meta").to_empty(device="cpu")
    model.init_weights()
    load_state_dict_checked(model, state, source=str(input_dir), strict=True)
    save_model(model, Path(output_dir))
    return report


CONVERSIONS: dict[tuple[str, str], Callable[[PathLike, PathLike, str], Report]] = {
    ("hf", "uer_ds"): convert_hf_to_uer_ds,
}
MODEL_FAMILIES = tuple(FAMILIES)

__all__ = ["CONVERSIONS", "MODEL_FAMILIES", "Report", "convert_hf_to_uer_ds"]
