"""A Hugging Face encoder fine-tuned on the product text, by hub name or local folder.

Without `backbone`, an offline default trains for real on any machine: a small BERT
built from a config in code, with a WordPiece tokenizer trained on the competition's
own train and test text and cached in the workspace (built once, reused by every fold
and run on the same data). Mean pooling over the attention mask → dropout → an optional
projection (`emb_dim`, the embedding downstream models consume) → a linear head.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from comp.data import Table
from comp.errors import CompError
from comp.models.base import FoldContext
from comp.neural import FoldData, FoldModule, NeuralModel, Trainer, TrainParams

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PRETRAINED_BODY_LR = 3e-5


@dataclass
class TextEncoderParams:
    """Truncation, and the size of the offline default encoder (unused for a hub model);
    shared by every family with a text encoder."""

    max_len: int = 128
    vocab_size: int = 8000
    hidden: int = 128
    layers: int = 2
    heads: int = 2


@dataclass
class BertParams(TextEncoderParams, TrainParams):
    backbone: str | None = None
    """Hub name or local folder (AutoModel + AutoTokenizer); None: the offline default."""
    dropout: float = 0.1
    emb_dim: int = 0
    """Size of the stored embedding: 0 keeps the encoder's hidden size."""
    epochs: int = 6
    lr: float = 2e-3


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


class EncoderClassifier(FoldModule):
    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float, emb_dim: int,
                 pretrained: bool):
        super().__init__()
        self.body, self.pretrained = encoder, pretrained
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(hidden, emb_dim) if emb_dim else nn.Identity()
        self.head = nn.Linear(emb_dim or hidden, n_classes)

    def default_body_lr(self, lr: float) -> float:
        return PRETRAINED_BODY_LR if self.pretrained else lr

    def enable_gradient_checkpointing(self) -> None:
        self.body.gradient_checkpointing_enable()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.projection(self.dropout(mean_pool(self.body, batch)))
        return self.head(embedding), embedding


class Bert(NeuralModel):
    family = "bert"
    Params = BertParams

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        p = self.params
        self._tokenizer = load_tokenizer(p, ctx)
        encoder, pretrained = build_encoder(p, self._tokenizer)
        module = EncoderClassifier(encoder, ctx.n_classes, p.dropout, p.emb_dim, pretrained)
        self._trainer = Trainer(p, ctx)
        train_ids, valid_ids = self._encode(train), self._encode(valid)
        data = FoldData(
            train=TextDataset(train_ids, train.y), valid=TextDataset(valid_ids, valid.y),
            collate=PadCollate(self._tokenizer.pad_token_id),
            train_lengths=[len(ids) for ids in train_ids],
            valid_lengths=[len(ids) for ids in valid_ids],
        )
        self._module = self._trainer.fit(module, data, valid.y)

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        ids = self._encode(rows)
        return self._trainer.predict(
            self._module, TextDataset(ids, None), PadCollate(self._tokenizer.pad_token_id),
            [len(i) for i in ids],
        )

    def _encode(self, rows: Table) -> list[list[int]]:
        encoded = self._tokenizer(list(rows.text), truncation=True, max_length=self.params.max_len)
        return encoded["input_ids"]


def load_tokenizer(p: BertParams, ctx: FoldContext):
    from transformers import AutoTokenizer

    if p.backbone:
        try:
            return AutoTokenizer.from_pretrained(p.backbone)
        except (OSError, ValueError) as error:
            raise CompError(f"cannot load the tokenizer of {p.backbone!r}: {error}") from None
    folder = ctx.workspace.cache / f"tokenizer-{ctx.data_hash}-{p.vocab_size}"
    if not (folder / "tokenizer.json").exists():
        _train_tokenizer(folder, ctx.corpus, p.vocab_size)
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


def build_encoder(p: BertParams, tokenizer) -> tuple[nn.Module, bool]:
    """The hub encoder `p.backbone`, or the offline default's small BERT, and whether it is
    pretrained."""
    from transformers import AutoModel, BertConfig, BertModel

    if p.backbone:
        try:
            return AutoModel.from_pretrained(p.backbone), True
        except (OSError, ValueError) as error:
            raise CompError(f"cannot load the encoder {p.backbone!r}: {error}") from None
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=p.hidden, num_hidden_layers=p.layers,
        num_attention_heads=p.heads, intermediate_size=4 * p.hidden,
        max_position_embeddings=max(p.max_len, 16), pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False), False
