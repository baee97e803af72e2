"""Data processors: what each pre-training data layout feeds to which targets.

One dict; `ModelConfig.data_processor` and `uer-ds preprocess --target` take their choices from it.
"""
DATA_PROCESSORS: dict[str, tuple[str, ...]] = {
    "bert": ("mlm", "sp"),     # MLM + next-sentence prediction
    "albert": ("mlm", "sp"),   # MLM + sentence-order prediction (same head, different pairs)
    "mlm": ("mlm",),
    "lm": ("lm",),
    "bilm": ("bilm",),
    "cls": ("cls",),
    "s2s": ("s2s",),           # source<TAB>target lines: an LSTM decoder reads the encoder (UER-py's s2s)
    # ERNIE 2.0's tasks (issue 27; uer_ds/data/ernie.py): each feeds the target of its name
    "capitalization": ("capitalization",),
    "token_document": ("token_document",),
    "sentence_reorder": ("sentence_reorder",),
    "sentence_distance": ("sentence_distance",),
    "discourse": ("discourse",),
    "ir_relevance": ("ir_relevance",),
}
