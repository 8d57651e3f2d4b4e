"""A pretrained Hugging Face encoder fine-tuned on the product text: a name from `comp
weights` (all-MiniLM-L6-v2 offline), a local folder, or a hub name (cointegrated/LaBSE-en-ru
with a network).

Its own tokenizer, length limit and pooling (comp.models._text) → dropout → an optional
projection (`emb_dim`, the embedding downstream models consume) → a linear head. The body
trains at `body_lr` (3e-5 for pretrained weights) with optional layer-wise decay (`llrd`),
the head at `lr`, both after a linear warmup. Without `backbone`, the offline default of
comp.models._text trains from scratch on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from comp.data.competition import Table
from comp.models._base import FoldContext, RunSetup
from comp.models._text import (
    PRETRAINED_BODY_LR,
    PadCollate,
    TextDataset,
    TextEncoder,
    TextEncoderParams,
    load_text_backbone,
)
from comp.models._training import FoldData, FoldModule, NeuralModel, Trainer, TrainParams
from comp.typed import Tune, param


@dataclass
class BertParams(TextEncoderParams, TrainParams):
    backbone: str | None = None
    """A name from `comp weights`, a local Hugging Face folder or a hub name; None: the
    offline default, trained from scratch."""
    dropout: float = param(0.1, ge=0, lt=1, tune=Tune(0.0, 0.5))
    emb_dim: int = param(0, ge=0)
    """Size of the stored embedding: 0 keeps the encoder's hidden size."""
    epochs: int = 6
    lr: float = 2e-3


class EncoderClassifier(FoldModule):
    def __init__(self, encoder: TextEncoder, n_classes: int, dropout: float, emb_dim: int,
                 pretrained: bool):
        super().__init__()
        self.body, self.pretrained = encoder, pretrained
        hidden = encoder.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(hidden, emb_dim) if emb_dim else nn.Identity()
        self.head = nn.Linear(emb_dim or hidden, n_classes)

    def default_body_lr(self, lr: float) -> float:
        return PRETRAINED_BODY_LR if self.pretrained else lr

    def enable_gradient_checkpointing(self) -> None:
        self.body.gradient_checkpointing_enable()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.projection(self.dropout(self.body(batch)))
        return self.head(embedding), embedding


class Bert(NeuralModel):
    family = "bert"
    Params = BertParams

    def prepare(self, setup: RunSetup) -> None:
        if self.params.backbone:
            setup.weights.text_source(self.params.backbone)

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        p = self.params
        self._text = load_text_backbone(p.backbone, p, ctx)
        module = EncoderClassifier(self._text.encoder, ctx.n_classes, p.dropout, p.emb_dim,
                                   self._text.pretrained)
        self._trainer = Trainer(p, ctx)
        train_ids, valid_ids = self._encode(train), self._encode(valid)
        data = FoldData(
            train=TextDataset(train_ids, train.y), valid=TextDataset(valid_ids, valid.y),
            collate=PadCollate(self._text.tokenizer.pad_token_id),
            train_lengths=[len(ids) for ids in train_ids],
            valid_lengths=[len(ids) for ids in valid_ids],
        )
        self._module = self._trainer.fit(module, data, valid.y)

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        ids = self._encode(rows)
        return self._trainer.predict(
            self._module, TextDataset(ids, None), PadCollate(self._text.tokenizer.pad_token_id),
            [len(i) for i in ids],
        )

    def _encode(self, rows: Table) -> list[list[int]]:
        return self._text.encode(rows.text)
