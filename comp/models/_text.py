"""Text machinery shared by the families with a text encoder (bert, huse): the tokenizer,
the encoder, padding and pooling.

Without a backbone, an offline default trains for real on any machine: a small BERT built
from a config in code, with a WordPiece tokenizer trained on the competition's own train
and test text and cached in the workspace (built once, reused by every fold and run on
the same data).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from comp.errors import CompError
from comp.models._base import FoldContext
from comp.typed import Params, param

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PRETRAINED_BODY_LR = 3e-5


@dataclass
class TextEncoderParams(Params):
    """Truncation, and the size of the offline default encoder (unused for a hub model);
    shared by every family with a text encoder."""

    max_len: int = param(128, ge=8)
    vocab_size: int = param(8000, ge=100)
    hidden: int = param(128, ge=8)
    layers: int = param(2, ge=1)
    heads: int = param(2, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.heads:
            raise CompError(f"hidden must be a multiple of heads, got hidden={self.hidden} "
                            f"and heads={self.heads}")


class TextDataset(torch.utils.data.Dataset):
    def __init__(self, input_ids: list[list[int]], labels: np.ndarray | None):
        self.input_ids, self.labels = input_ids, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.input_ids[i], -1 if self.labels is None else int(self.labels[i])


class PadCollate:
    """Pads a batch to its own longest row, not to max_len (dynamic padding)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        return {**self.pad([ids for ids, _ in rows]), "labels": torch.tensor([label for _, label in rows])}

    def pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.pad_id).long()}


def mean_pool(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The encoder's last hidden states averaged over the real (unpadded) tokens."""
    mask = batch["attention_mask"]
    hidden = encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def encode_texts(tokenizer, texts, max_len: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]


def load_tokenizer(backbone: str | None, vocab_size: int, ctx: FoldContext):
    """The tokenizer of `backbone` (hub name or folder), or the offline default's, trained
    on the competition's text and cached per data and vocabulary size."""
    from transformers import AutoTokenizer

    if backbone:
        try:
            return AutoTokenizer.from_pretrained(backbone)
        except (OSError, ValueError) as error:
            raise CompError(f"cannot load the tokenizer of {backbone!r}: {error}") from None
    folder = ctx.cache / f"tokenizer-{ctx.data_hash}-{vocab_size}"
    if not (folder / "tokenizer.json").exists():
        _train_tokenizer(folder, ctx.corpus, vocab_size)
    return AutoTokenizer.from_pretrained(folder)


def _train_tokenizer(folder: Path, corpus: np.ndarray, vocab_size: int) -> None:
    """WordPiece on every train and test text (no labels), written atomically as a folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        (str(t) for t in corpus),
        trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS),
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )
    staging = folder.with_name(f".{folder.name}.{os.getpid()}")
    wrapped.save_pretrained(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process built it meanwhile: theirs is the same
        shutil.rmtree(staging, ignore_errors=True)


def build_encoder(backbone: str | None, p: TextEncoderParams, tokenizer) -> tuple[nn.Module, bool]:
    """The hub encoder `backbone`, or the offline default's small BERT, and whether it is
    pretrained."""
    from transformers import AutoModel, BertConfig, BertModel

    if backbone:
        try:
            return AutoModel.from_pretrained(backbone), True
        except (OSError, ValueError) as error:
            raise CompError(f"cannot load the encoder {backbone!r}: {error}") from None
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=p.hidden, num_hidden_layers=p.layers,
        num_attention_heads=p.heads, intermediate_size=4 * p.hidden,
        max_position_embeddings=max(p.max_len, 16), pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False), False
