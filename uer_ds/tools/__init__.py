"""UER-py's script suite as library functions; `uer-ds <tool>` (uer_ds/cli/<tool>.py) wraps each.

average (average_models), cloze (cloze), extract-features (features), generate (generate),
nearest-words (nearest), build-vocab and diff-vocab (vocab).  Model-reading tools take a uer_ds model
directory, a Hugging Face directory, or a UER-py/TencentPretrain .bin with its --config_path.
"""
