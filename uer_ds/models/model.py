"""Model = embedding + encoder + targets, built from a ModelConfig."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.embeddings import build_embedding
from uer_ds.models.embeddings.parts import SinusoidalPosEmbedding
from uer_ds.models.encoders import ENCODERS
from uer_ds.models.layers import LayerNorm
from uer_ds.models.layers.packing import PackedHidden, Packing
from uer_ds.models.targets import TARGETS, TargetResult

INIT_STD = 0.02  # BERT's and UER-py's initializer range
# tgt's entry with each row's task id for the task embedding (ERNIE 2.0): an input, like tgt["sub"], not labels
TASK_TYPE_KEY = "task_type"


def _check_vocab(cfg: ModelConfig) -> None:
    streams = [cfg.stream_0, cfg.stream_1] if cfg.encoder == "dual" else [cfg]
    for stream in streams:
        if stream.vocab_size <= 0:
            raise ValueError("vocab_size is 0: give a vocabulary (--vocab_path / --spm_model_path), whose size "
                             "sets it, or set vocab_size in the model config")
        if stream.subword_type != "none" and stream.sub_vocab_size <= 0:
            raise ValueError(f"sub_vocab_size is 0: subword_type '{stream.subword_type}' needs a character "
                             "vocabulary (--sub_vocab_path), whose size sets it")


class Model(nn.Module):
    """embedding -> encoder -> targets.

    `encode(src, seg)` gives the last hidden states (B, T, H); `forward(src, tgt, seg)` the targets'
    TargetResult.  Segments follow UER-py: seg 0 = padding, 1 = first segment, 2 = second.  With subword
    features, tgt["sub"] (B, T, C) carries each word's character ids (an input, not a label).
    Parameters are created in `__init__` and given values in `init_weights()`, so the model can be
    built on the meta device or under deepspeed.zero.Init.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        _check_vocab(cfg)
        self.config = cfg
        self.embedding = build_embedding(cfg)
        self.encoder = ENCODERS[cfg.encoder](cfg)
        self.target = nn.ModuleDict({name: TARGETS[name](cfg) for name in cfg.target})
        self.tie_weights()

    # ---- weights ------------------------------------------------------------------------------
    def tie_weights(self) -> None:
        """Share the MLM/LM output matrix with the word embedding (config tie_weights)."""
        if not self.config.tie_weights or not len(self.target):
            return
        word_module = self.embedding.word_embedding()
        for head in self.target.values():
            name = getattr(head, "tied_parameter", None)
            if name:
                module_name, param_name = name.rsplit(".", 1)
                tied = head.get_submodule(module_name)
                setattr(tied, param_name, word_module.weight)
                if hasattr(word_module, "init_std"):  # initialised module by module: the shared weight's
                    tied.init_std = word_module.init_std  # last initialisation must be the embedding's

    def init_weights(self) -> None:
        """N(0, 0.02) for matrices and embeddings (N(0, 1) for an embedding a recurrence reads as it is, and
        an output layer tied to it: embeddings/parts.py), zero biases, LayerNorm (1, 0), PyTorch's RNN init."""
        for module in self.modules():
            init_module(module)
        self.tie_weights()

    # ---- computation --------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, seg: torch.Tensor, padded: Union[None, bool, Packing] = None,
               sub: Optional[torch.Tensor] = None, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        """src, seg: (B, T) -> last hidden states (B, T, H).  Dual models take and return pairs.
        padded: False when the batch has no padding (known on the host, e.g. BatchInfo.padded); None: may;
        the batch's Packing (BatchInfo.packing): padded, and where the tokens are (an encoder that runs
        unpadded on it has its output unpacked here).
        sub: (B, T, C) character ids per word, for subword features (else None); task: (B,) or (B, T) task ids
        for a task embedding (else the config's task_id)."""
        hidden = self._hidden(src, seg, padded, sub, task)
        return hidden.padded() if isinstance(hidden, PackedHidden) else hidden

    def _hidden(self, src: torch.Tensor, seg: torch.Tensor, padded: Union[None, bool, Packing],
                sub: Optional[torch.Tensor] = None, task: Optional[torch.Tensor] = None):
        """The encoder's output: (B, T, H), or PackedHidden when it ran unpadded.  task: (B,) task ids for a
        task embedding (tgt["task_type"], ERNIE 2.0), else None."""
        extra = {k: v for k, v in (("sub", sub), ("task", task)) if v is not None}
        emb = self.embedding(src, seg, **extra)
        return self.encoder(emb, seg, padded=padded)

    def forward(self, src: torch.Tensor, tgt: Union[torch.Tensor, Mapping[str, Any]],
                seg: torch.Tensor, padded: Union[None, bool, Packing] = None) -> TargetResult:
        """tgt: one label tensor (or Picked) for a single target, else {target name: labels}; see each
        target's shapes.  padded: as in `encode`; targets that set `takes_packed` (the MLM) get an
        unpadded encoder's packed tokens as they are, the others them unpacked to (B, T, H), once."""
        if not len(self.target):
            raise ValueError("this model config has no target; use Model.encode, or set target in the config")
        inputs = tgt if isinstance(tgt, Mapping) else {}
        hidden = self._hidden(src, seg, padded, inputs.get("sub"), inputs.get(TASK_TYPE_KEY))
        if isinstance(hidden, PackedHidden) and not all(getattr(h, "takes_packed", False) for h in self.target.values()):
            packed, hidden = hidden, hidden.padded()
        else:
            packed = hidden
        if not isinstance(tgt, Mapping):
            if len(self.target) > 1:
                raise ValueError(f"model has targets {list(self.target)}: give tgt as a dict keyed by target name")
            tgt = {next(iter(self.target)): tgt}
        missing = [name for name in self.target if name not in tgt]
        if missing:
            raise ValueError(f"tgt lacks labels for target(s) {missing} (given: {list(tgt)})")
        return TargetResult.combine({name: head(packed if getattr(head, "takes_packed", False) else hidden,
                                                tgt[name], seg) for name, head in self.target.items()})


@torch.no_grad()
def init_module(module: nn.Module) -> None:
    """Give one module's own parameters their initial values (not its children's).

    Called module by module, so an engine can gather each module's partitioned parameters
    around it (ZeRO-3) and initialise exactly as a single process would.
    """
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.normal_(module.weight, std=getattr(module, "init_std", INIT_STD))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):  # an embedding a recurrence reads as it is may set its own init_std
        nn.init.normal_(module.weight, std=getattr(module, "init_std", INIT_STD))
    elif isinstance(module, (LayerNorm, nn.RNNBase, SinusoidalPosEmbedding)):
        module.reset_parameters()
    elif hasattr(module, "reset_own_parameters"):  # a module with a bare nn.Parameter of its own
        module.reset_own_parameters()


def build_model(cfg: ModelConfig, device: Optional[Union[str, torch.device]] = None) -> Model:
    """Build and initialise a model.  On device='meta' nothing is allocated and nothing initialised."""
    if device is None:
        model = Model(cfg)
    else:
        with torch.device(device):
            model = Model(cfg)
    if str(device) != "meta":
        model.init_weights()
    return model
