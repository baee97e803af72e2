"""SentencePiece tokenization (the `sentencepiece` library); the vocabulary is the model's pieces."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

from uer_ds.tokenizers.base import SPECIAL_TOKENS, Span, Tokenizer
from uer_ds.tokenizers.simple import lowered_with_alignment
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

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[Span]]:
        """See Tokenizer.encode_with_offsets.  SentencePiece reports each piece's surface as byte
        offsets into its input (before its own normalisation); they become character offsets, without
        the white space a '▁' piece starts with ('▁the' spans 'the').  A piece made from no
        character (the '▁' SentencePiece puts before text that starts with a letter) spans
        nothing: (start, start)."""
        lowered, index = lowered_with_alignment(text, self.do_lower_case)
        proto = self.sp.encode(lowered, out_type="proto")
        char_at = _characters_of_bytes(lowered)
        ids, spans = [], []
        for piece in proto.pieces:
            start = char_at[piece.begin]
            end = char_at[piece.end - 1] + 1 if piece.end > piece.begin else start
            surface = lowered[start:end]
            if surface.strip():
                start += len(surface) - len(surface.lstrip())
            if index is None:
                start, end = (0, len(text)) if end > start else (0, 0)
            elif end > start:
                start, end = index[start], index[end - 1] + 1
            else:
                start = end = index[start] if start < len(index) else len(text)
            ids.append(piece.id)
            spans.append((start, end))
        return ids, spans

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp.decode_pieces(tokens)

    def _identity_extra(self) -> dict:
        return {"spm_model_sha256": self.model_sha256, "do_lower_case": self.do_lower_case}


def _characters_of_bytes(text: str) -> list[int]:
    """For each byte offset of text's UTF-8 (and the end), the index of the character holding it."""
    char_at: list[int] = []
    for i, ch in enumerate(text):
        char_at += [i] * len(ch.encode("utf-8"))
    return char_at + [len(text)]
