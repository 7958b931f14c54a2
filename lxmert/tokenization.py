"""BERT uncased WordPiece tokenisation for LXMERT, on the ``tokenizers`` fast tokenizer, from a local ``vocab.txt``.

The authors tokenise with BERT-base-uncased's WordPiece and cut sentences to 20 tokens, [CLS] and [SEP] included
(``max_seq_length=20``, paper §4.1). Nothing is fetched from a hub: a tokenizer is built from a ``vocab.txt`` on disk,
either BERT's own or one trained here with :func:`lxmert.wordpiece.train_wordpiece`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers.implementations import BertWordPieceTokenizer

from .fileio import atomic_write_text, read_text

VOCAB_FILE = "vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# [CLS] + up to 18 WordPieces + [SEP], as in the authors' pre-training and fine-tuning.
DEFAULT_MAX_LENGTH = 20


class LxmertTokenizer:
    """Uncased BERT WordPiece tokenizer with [CLS]/[SEP] framing, truncation and padding.

    Args:
        vocab_file: a BERT ``vocab.txt`` (one WordPiece per line, id = line number) that holds all five special
            tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
        max_length: the default length cap, special tokens included.
    """

    def __init__(self, vocab_file: str | Path, max_length: int = DEFAULT_MAX_LENGTH):
        self.vocab_file = Path(vocab_file)
        vocab = self._read_vocab(self.vocab_file)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{self.vocab_file} lacks the special tokens {missing}")
        self.vocab: dict[str, int] = vocab
        self.max_length = max_length
        # BERT uncased: lower-case and strip accents, split on whitespace and punctuation, '##' continuations.
        self._backend = BertWordPieceTokenizer(vocab, lowercase=True)
        self.pad_token_id = vocab["[PAD]"]
        self.unk_token_id = vocab["[UNK]"]
        self.cls_token_id = vocab["[CLS]"]
        self.sep_token_id = vocab["[SEP]"]
        self.mask_token_id = vocab["[MASK]"]

    @staticmethod
    def _read_vocab(path: Path) -> dict[str, int]:
        if not path.is_file():
            raise FileNotFoundError(f"no vocabulary file at {path}")
        tokens = read_text(path).splitlines()
        vocab: dict[str, int] = {}
        for index, token in enumerate(tokens):
            # BERT's vocab.txt has no duplicates; if one had, the first id would win, as in transformers.
            vocab.setdefault(token, index)
        if not vocab:
            raise ValueError(f"{path} is an empty vocabulary")
        return vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"LxmertTokenizer({self.vocab_file}, vocab_size={self.vocab_size}, max_length={self.max_length})"
        )

    def __call__(
        self,
        texts: str | Sequence[str],
        max_length: int | None = None,
        padding: bool | str = True,
    ) -> dict[str, torch.Tensor]:
        """Encode sentences to padded id tensors.

        Args:
            texts: one sentence or a batch.
            max_length: cap on tokens per sentence, [CLS] and [SEP] included; longer ones are cut (their
                [SEP] kept). Defaults to the tokenizer's ``max_length`` (20).
            padding: ``True`` or ``"longest"`` pads to the longest sentence of the batch, ``"max_length"`` to
                ``max_length`` (the authors' fixed 20), ``False`` pads nothing (all sentences must then
                have the same length).

        Returns:
            ``input_ids``, ``attention_mask`` (1 = token, 0 = padding) and ``token_type_ids`` (all 0), each a
            ``(B, T)`` long tensor.
        """
        if isinstance(texts, str):
            texts = [texts]
        max_length = self.max_length if max_length is None else max_length
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        if padding not in (True, False, "longest", "max_length"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        encodings = [self.encode(text, max_length) for text in texts]
        lengths = [len(ids) for ids in encodings]
        if padding == "max_length":
            width = max_length
        elif padding:
            width = max(lengths, default=0)
        else:
            if len(set(lengths)) > 1:
                raise ValueError(f"padding=False needs sentences of equal length, got lengths {lengths}")
            width = lengths[0] if lengths else 0
        input_ids = torch.full((len(texts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(len(texts), width, dtype=torch.long)
        for row, ids in enumerate(encodings):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
        }

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """[CLS] + WordPiece ids + [SEP], cut to ``max_length`` with [SEP] kept (no padding)."""
        max_length = self.max_length if max_length is None else max_length
        pieces = self._backend.encode(text, add_special_tokens=False).ids[: max_length - 2]
        return [self.cls_token_id, *pieces, self.sep_token_id]

    def tokenize(self, text: str) -> list[str]:
        """The WordPieces of ``text``, without special tokens or truncation."""
        return self._backend.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.vocab.get(token, self.unk_token_id) for token in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self._backend.id_to_token(i) or "[UNK]" for i in ids]

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Join WordPieces back into text ('##' continuations glued on)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def save(self, directory: str | Path) -> Path:
        """Write ``vocab.txt`` into ``directory`` (atomically) and return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / VOCAB_FILE
        atomic_write_text(path, self.vocab_file.read_text(encoding="utf-8"))
        return path

    @classmethod
    def from_dir(cls, directory: str | Path, max_length: int = DEFAULT_MAX_LENGTH) -> LxmertTokenizer:
        """The tokenizer whose ``vocab.txt`` lies in ``directory``."""
        return cls(Path(directory) / VOCAB_FILE, max_length=max_length)


__all__ = ["DEFAULT_MAX_LENGTH", "LxmertTokenizer", "SPECIAL_TOKENS", "VOCAB_FILE"]
