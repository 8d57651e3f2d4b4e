"""Neural networks for tabular data on the outputs of earlier runs plus the tabular columns
(step 4 of the reference solution): the MLP, ResNet and FT-Transformer of Gorishniy et al.,
"Revisiting Deep Learning Models for Tabular Data" (2021), from `rtdl_revisiting_models`.

Features come from comp.models._features, as for `boost`; the numeric ones are standardised on the
fold's training rows (missing values become the training mean). Each categorical column
(shop id) is a learned embedding: concatenated to the numeric inputs of the MLP and the
ResNet, a feature token of the FT-Transformer; a value unseen in training gets index 0.
Training is the shared loop of comp.models._training (early stopping on held-out weighted F1). The
stored embedding is the representation the last linear layer reads (after the paper's
normalisation and activation for ResNet and FT-Transformer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import default_collate

from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext
from comp.models._features import FeatureMatrix, FeatureParams, FoldFeatures, SecondLevelModel
from comp.models._training import FoldData, FoldModule, NeuralModel, Trainer, TrainParams
from comp.typed import Tune, param


@dataclass
class TabnnParams(FeatureParams, TrainParams):
    arch: Literal["mlp", "resnet", "ftt"] = "mlp"
    n_blocks: int = param(2, ge=1, tune=Tune(1, 4))
    d_block: int = param(128, ge=1, tune=Tune(choices=(64, 128, 256)))
    """Block width (FT-Transformer: the token size, a multiple of `heads`)."""
    dropout: float = param(0.1, ge=0, lt=1, tune=Tune(0.0, 0.5))
    heads: int = param(8, ge=1)
    """FT-Transformer attention heads."""
    categorical_dim: int = param(16, ge=1)
    """MLP and ResNet: size of each categorical column's learned embedding."""
    epochs: int = 30
    batch_size: int = 128
    patience: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch == "ftt" and self.d_block % self.heads:
            raise CompError(f"arch=ftt needs d_block a multiple of heads, got d_block={self.d_block} "
                            f"and heads={self.heads}")


class TabularNet(FoldModule):
    def __init__(self, p: TabnnParams, n_numeric: int, cardinalities: list[int], n_classes: int):
        import rtdl_revisiting_models as rtdl

        super().__init__()
        self.is_transformer = p.arch == "ftt"
        self.categorical = nn.ModuleList()
        if self.is_transformer:
            self.body = rtdl.FTTransformer(
                n_cont_features=n_numeric, cat_cardinalities=cardinalities, d_out=n_classes,
                n_blocks=p.n_blocks, d_block=p.d_block, attention_n_heads=p.heads,
                attention_dropout=p.dropout, ffn_d_hidden=None, ffn_d_hidden_multiplier=4 / 3,
                ffn_dropout=p.dropout, residual_dropout=0.0,
            )
            owner = self.body.backbone
        else:
            self.categorical.extend(nn.Embedding(c, p.categorical_dim) for c in cardinalities)
            d_in = n_numeric + p.categorical_dim * len(cardinalities)
            shape = {"d_in": d_in, "d_out": n_classes, "n_blocks": p.n_blocks, "d_block": p.d_block}
            if p.arch == "mlp":
                self.body = rtdl.MLP(**shape, dropout=p.dropout)
            else:
                self.body = rtdl.ResNet(**shape, d_hidden_multiplier=2.0, dropout1=p.dropout, dropout2=0.0)
            owner = self.body
        # the paper's output block ends in the classifier; what feeds it is the embedding
        output, owner.output = owner.output, None
        layers = list(output) if isinstance(output, nn.Sequential) else [output]
        self.to_embedding, self.head = nn.Sequential(*layers[:-1]), layers[-1]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        numeric, categorical = batch["numeric"], batch["categorical"]
        if self.is_transformer:
            hidden = self.body(numeric, categorical if categorical.shape[1] else None)
        else:
            embedded = [table(categorical[:, i]) for i, table in enumerate(self.categorical)]
            hidden = self.body(torch.cat([numeric, *embedded], dim=1))
        embedding = self.to_embedding(hidden)
        return self.head(embedding), embedding


class TabularRows(torch.utils.data.Dataset):
    def __init__(self, numeric: np.ndarray, categorical: np.ndarray, labels: np.ndarray | None):
        self.numeric = torch.from_numpy(numeric)
        self.categorical = torch.from_numpy(categorical)
        self.labels = torch.full((len(numeric),), -1) if labels is None else torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.numeric)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"numeric": self.numeric[i], "categorical": self.categorical[i], "labels": self.labels[i]}


class Tabnn(SecondLevelModel, NeuralModel):
    family = "tabnn"
    Params = TabnnParams

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        from sklearn.preprocessing import StandardScaler

        p = self.params
        self._features = FoldFeatures(p, ctx)
        train_x = self._features.fit_transform(train)
        self._scaler = StandardScaler().fit(train_x.numeric)
        module = TabularNet(p, train_x.numeric.shape[1], train_x.cardinalities, ctx.n_classes)
        self._trainer = Trainer(p, ctx)
        data = FoldData(
            train=self._rows(train_x, train.y),
            valid=self._rows(self._features.transform(valid), valid.y),
            collate=default_collate,
        )
        self._module = self._trainer.fit(module, data, valid.y)

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        dataset = self._rows(self._features.transform(rows), None)
        return self._trainer.predict(self._module, dataset, default_collate)

    def _rows(self, x: FeatureMatrix, labels: np.ndarray | None) -> TabularRows:
        numeric = np.nan_to_num(self._scaler.transform(x.numeric), nan=0.0).astype(np.float32)
        return TabularRows(numeric, x.categorical, labels)
