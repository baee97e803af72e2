"""SentencePiece tokenization (the `sentencepiece` library); the vocabulary is the model's pieces."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

from uer_ds.tokenizers.base import SPECIAL_TOKENS, Tokenizer
from uer_ds.tokenizers.vocab import Vocab

# Where a SentencePiece model has no BERT-style token, its own conventional piece takes the role.
_FALLBACKS = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"}


class SentencePieceTokenizer(Tokenizer):
    kind = "spm"

    def __init__(self, model_path: Union[str, os.PathLike], do_lower_case: bool = False,
                 special_tokens: Optional[dict[str, str]] = None) -> None:
        import sentencepiece

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"spm_model_path '{path}': no such file")
        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as err:
            raise ValueError(f"{path}: not a SentencePiece model ({err})") from None
        self.model_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        vocab = Vocab([self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())], source=str(path))
        chosen = {}
        for role, token in SPECIAL_TOKENS.items():
            chosen[role] = token if token in vocab else _FALLBACKS[role]
        chosen.update(special_tokens or {})
        super().__init__(vocab, chosen)
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        if self.do_lower_case:
            text = text.lower()
        return self.sp.encode(text, out_type=str)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text.lower() if self.do_lower_case else text)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp.decode_pieces(tokens)

    def _identity_extra(self) -> dict:
        return {"spm_model_sha256": self.model_sha256, "do_lower_case": self.do_lower_case}
