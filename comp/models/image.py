"""A timm backbone fine-tuned (or trained from scratch) on the product photos.

Any timm model by name (`backbone`, EfficientNet-B0 by default). With `pretrained=true`
its ImageNet weights come from `comp weights` (`tf_efficientnet_lite0` is packaged, in
EfficientNet-PyTorch keys mapped onto timm's), else timm's own source (its cache, the hub);
weights that cannot be had stop the run before it starts, never a silent random start.
`checkpoint=FILE` loads a local file (timm or EfficientNet-PyTorch keys). Without either
the backbone starts from random weights (the default, so nothing downloads). `freeze_blocks` freezes the stem
and the first blocks (weights and batch-norm statistics). Training uses timm's train
transform (random resized crop, flip, optional colour jitter), prediction its eval transform;
`tta` averages the prediction of each image and its mirror image. Missing and corrupt
images are blank images, counted in run.json (comp.models._vision).

Global average pooling → dropout → an optional projection (`emb_dim`, the embedding
downstream models consume) → a linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext, RunSetup
from comp.models._training import FoldData, FoldModule, NeuralModel, Trainer, TrainParams
from comp.models._vision import (
    BackboneParams,
    ImageDataset,
    build_frozen_backbone,
    check_images,
    collate,
    count_bad_images,
    transforms,
)
from comp.typed import Tune, param


@dataclass
class ImageParams(BackboneParams, TrainParams):
    dropout: float = param(0.2, ge=0, lt=1, tune=Tune(0.0, 0.5))
    emb_dim: int = param(0, ge=0)
    """Size of the stored embedding: 0 keeps the backbone's pooled feature size."""
    tta: bool = False
    """Average the predictions of each image and its horizontal mirror."""
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3




class ImageClassifier(FoldModule):
    def __init__(self, backbone: nn.Module, n_classes: int, dropout: float, emb_dim: int,
                 pretrained: bool, channels_last: bool):
        super().__init__()
        self.body, self.pretrained, self.channels_last = backbone, pretrained, channels_last
        features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(features, emb_dim) if emb_dim else nn.Identity()
        self.head = nn.Linear(emb_dim or features, n_classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def enable_gradient_checkpointing(self) -> None:
        try:
            self.body.set_grad_checkpointing(True)
        except (AssertionError, NotImplementedError, AttributeError):
            raise CompError(f"the backbone {type(self.body).__name__} has no gradient "
                            "checkpointing") from None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = batch["pixel_values"]
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        pooled = self.body(pixels)  # num_classes=0: timm returns the pooled features
        embedding = self.projection(self.dropout(pooled))
        return self.head(embedding), embedding


class ImageModel(NeuralModel):
    family = "image"
    Params = ImageParams

    def prepare(self, setup: RunSetup) -> None:
        check_images(setup.train, "the image family")
        if self.params.pretrained:
            setup.weights.image_weights(self.params.backbone)

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        p = self.params
        check_images(train, "the image family")
        self._ctx = ctx
        backbone, pretrained = build_frozen_backbone(p, ctx)
        self._train_transform, self._eval_transform, self._mean = transforms(backbone, p)
        module = ImageClassifier(backbone, ctx.n_classes, p.dropout, p.emb_dim, pretrained,
                                 p.channels_last)
        count_bad_images(valid.image_paths, p.image_size, ctx, prefix="")
        self._trainer = Trainer(p, ctx)
        data = FoldData(
            train=self._dataset(train.image_paths, train.y, training=True),
            valid=self._dataset(valid.image_paths, valid.y),
            collate=collate,
        )
        self._module = self._trainer.fit(module, data, valid.y)

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        check_images(rows, "the image family")
        paths = rows.image_paths
        if rows.y is None and self._ctx.fold == 0:  # the test set, seen by every fold
            count_bad_images(paths, self.params.image_size, self._ctx, prefix="test_")
        proba, embedding = self._trainer.predict(self._module, self._dataset(paths, None), collate)
        if self.params.tta:
            flipped = self._trainer.predict(self._module, self._dataset(paths, None, flip=True),
                                            collate)
            proba, embedding = (proba + flipped[0]) / 2, (embedding + flipped[1]) / 2
        return proba, embedding

    def _dataset(self, paths: np.ndarray, labels: np.ndarray | None, training: bool = False,
                 flip: bool = False) -> ImageDataset:
        transform = self._train_transform if training else self._eval_transform
        return ImageDataset(paths, labels, transform, self.params.image_size, self._mean, flip)
