"""HUSE: a text tower, an image tower and a shop embedding trained jointly (arXiv 1911.05978).

- Text tower: the `bert` family's encoder (`text_backbone`: pretrained weights by name, or
  its offline default built from the competition's text) and its pooling → dropout →
  Linear(→ `emb_dim`).
- Image tower: the `image` family's timm backbone (`image_backbone`, first `freeze_blocks`
  frozen) → dropout → Linear(→ `emb_dim`). A missing or corrupt image is a blank image,
  and a learned "missing" vector is added to its embedding; they are counted in run.json's
  stats as the image family counts them.
- Shop: an embedding (`shop_dim`) of the first categorical column (shop_id), over the shops
  of the fold's training rows; index 0, a zero vector, stands for any other shop.
- Fusion: [image, text, shop] → Linear → ReLU → dropout → Linear to the classes. The fused
  vector is the stored embedding (emb_oof.npy, emb_test.npy).

Loss = `w_class`·CE + `w_sem`·L_sem + `w_gap`·L_gap (comp/models/_losses.py). L_sem needs the
distances A between class names, computed once per run by `sem_encoder` and stored as
runs/<id>/class_distance.npy: `tfidf` (default: character n-grams of the full category
paths, so siblings are close; meaningful offline, where the text tower starts untrained),
`backbone` (the text tower's pooled embedding before training: use it with a pretrained
`text_backbone`) or a hub model name. Without class names L_sem is off, with a warning.

Learning rates: `bert_lr` for the text encoder (default as the bert family: 3e-5 for a hub
model, `lr` for the offline default), `body_lr` for the image backbone (default as the
image family: `lr`, or `lr`/10 when pretrained), `lr` for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.markup import escape
from torch import nn

from comp import atomic
from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext, RunSetup
from comp.models._losses import cosine_distances, gap_loss, semantic_loss
from comp.models._text import (
    PRETRAINED_BODY_LR,
    PadCollate,
    TextBackbone,
    TextEncoder,
    TextEncoderParams,
    load_text_backbone,
)
from comp.models._training import FoldData, FoldModule, NeuralModel, Trainer, TrainParams
from comp.models._vision import (
    OK,
    BackboneParams,
    ImageDataset,
    build_frozen_backbone,
    check_images,
    count_bad_images,
    transforms,
)
from comp.typed import Tune, param

CLASS_DISTANCE_FILE = "class_distance.npy"


@dataclass
class HuseParams(TextEncoderParams, TrainParams):
    text_backbone: str | None = None
    """A text encoder from `comp weights`, a local folder or a hub name; None: the bert
    family's offline default, trained from scratch."""
    image_backbone: str = "resnet10t"
    """Any timm model name; small by default so that a CPU trains it (efficientnet_b0 on a GPU)."""
    image_pretrained: bool = False
    """ImageNet weights for the image backbone (`comp weights`, timm's cache, the hub)."""
    image_size: int = param(64, ge=8)
    freeze_blocks: int = param(0, ge=0)
    crop_scale: float = param(0.8, gt=0, le=1)
    channels_last: bool = True
    emb_dim: int = param(512, ge=1)
    """Size of each tower's embedding (and of the classifier's hidden layer)."""
    shop_dim: int = param(10, ge=0)
    """Size of the shop embedding; 0: none."""
    dropout: float = param(0.2, ge=0, lt=1, tune=Tune(0.0, 0.5))
    w_class: float = param(1.0, ge=0)
    w_sem: float = param(0.3, ge=0, tune=Tune(0.0, 1.0))
    w_gap: float = param(0.05, ge=0, tune=Tune(0.0, 0.2))
    """Small by default: towers trained from scratch pulled hard together cost held-out F1 on
    the demo (fold 0, 3 epochs: w_gap=0.3 0.689, w_gap=0 0.733); raise it for pretrained towers."""
    margin: float = param(0.7, gt=0, le=2, tune=Tune(0.3, 1.2))
    """A cosine distance: L_sem only looks at pairs whose class distance and embedding
    distance are below it."""
    sem_encoder: str = "tfidf"
    """What embeds the class names for A: tfidf, backbone (the text tower) or a hub model name."""
    bert_lr: float | None = param(None, gt=0)
    """Learning rate of the text encoder; default: 3e-5 for a hub model, else `lr`."""
    epochs: int = 6
    lr: float = 2e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_class + self.w_sem + self.w_gap == 0:
            raise CompError("w_class, w_sem and w_gap are all 0: the loss would train nothing")
        self.image_params()  # an unknown image_backbone fails here

    def image_params(self) -> BackboneParams:
        return BackboneParams(backbone=self.image_backbone, pretrained=self.image_pretrained,
                              image_size=self.image_size, freeze_blocks=self.freeze_blocks,
                              crop_scale=self.crop_scale, channels_last=self.channels_last)


class HuseNet(FoldModule):
    """forward(batch) → (logits, fused, image embedding, text embedding). `body` is the image
    backbone (it gets `body_lr`), `text_body` the text encoder (it gets `bert_lr`)."""

    def __init__(self, p: HuseParams, text_encoder: TextEncoder, text_pretrained: bool,
                 image_backbone: nn.Module, image_pretrained: bool, n_shops: int, n_classes: int,
                 class_distance: torch.Tensor | None):
        super().__init__()
        self.body, self.pretrained = image_backbone, image_pretrained
        self.text_body, self.text_pretrained = text_encoder, text_pretrained
        self.bert_lr, self.channels_last, self.margin = p.bert_lr, p.channels_last, p.margin
        self.weights = {"class": p.w_class, "sem": p.w_sem, "gap": p.w_gap}
        features = getattr(image_backbone, "head_hidden_size", None) or image_backbone.num_features
        self.image_projection = nn.Sequential(nn.Dropout(p.dropout), nn.Linear(features, p.emb_dim))
        self.text_projection = nn.Sequential(
            nn.Dropout(p.dropout), nn.Linear(text_encoder.hidden_size, p.emb_dim)
        )
        self.missing_image = nn.Parameter(torch.zeros(p.emb_dim))
        self.shop = nn.Embedding(n_shops + 1, p.shop_dim, padding_idx=0) if n_shops and p.shop_dim else None
        fused = 2 * p.emb_dim + (p.shop_dim if self.shop is not None else 0)
        self.head = nn.Sequential(nn.Linear(fused, p.emb_dim), nn.ReLU(), nn.Dropout(p.dropout),
                                  nn.Linear(p.emb_dim, n_classes))
        # not in the state dict: the same for every epoch, stored once per run
        self.register_buffer("class_distance", class_distance, persistent=False)
        if self.channels_last:
            self.body.to(memory_format=torch.channels_last)

    def body_learning_rates(self, lr: float, body_lr: float | None) -> list[tuple[nn.Module, float]]:
        text_default = PRETRAINED_BODY_LR if self.text_pretrained else lr
        text_lr = self.bert_lr if self.bert_lr is not None else text_default
        return [*super().body_learning_rates(lr, body_lr), (self.text_body, text_lr)]

    def enable_gradient_checkpointing(self) -> None:
        self.text_body.gradient_checkpointing_enable()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        text = self.text_projection(self.text_body(batch))
        pixels = batch["pixel_values"]
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        image = self.image_projection(self.body(pixels))
        image = image + batch["image_missing"].unsqueeze(1).to(image.dtype) * self.missing_image
        parts = [image, text] if self.shop is None else [image, text, self.shop(batch["shop"])]
        fused = torch.cat(parts, dim=1)
        return self.head(fused), fused, image, text

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, fused, image, text = (output.float() for output in outputs)
        labels = batch["labels"]
        terms = {"class": nn.functional.cross_entropy(logits, labels)}
        if self.weights["sem"] and self.class_distance is not None:
            terms["sem"] = semantic_loss(fused, labels, self.class_distance, self.margin)
        if self.weights["gap"]:
            terms["gap"] = gap_loss(image, text)
        return sum(self.weights[name] * term for name, term in terms.items()), terms


class HuseDataset(torch.utils.data.Dataset):
    """(token ids, pixels, image missing?, shop index, label) per row."""

    def __init__(self, input_ids: list[list[int]], images: ImageDataset, shops: np.ndarray,
                 labels: np.ndarray | None):
        self.input_ids, self.images, self.shops, self.labels = input_ids, images, shops, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int):
        image, status = self.images.read(i)
        label = -1 if self.labels is None else int(self.labels[i])
        return self.input_ids[i], self.images.transform(image), status != OK, int(self.shops[i]), label


class HuseCollate:
    def __init__(self, pad_id: int):
        self.text = PadCollate(pad_id)

    def __call__(self, rows) -> dict[str, torch.Tensor]:
        input_ids, pixels, missing, shops, labels = zip(*rows, strict=True)
        return {**self.text.pad(list(input_ids)), "pixel_values": torch.stack(pixels),
                "image_missing": torch.tensor(missing, dtype=torch.float32),
                "shop": torch.tensor(shops), "labels": torch.tensor(labels)}


class Huse(NeuralModel):
    family = "huse"
    Params = HuseParams

    def prepare(self, setup: RunSetup) -> None:
        check_images(setup.train, "the huse family")
        if self.params.text_backbone:
            setup.weights.text_source(self.params.text_backbone)
        if self.params.image_pretrained:
            setup.weights.image_weights(self.params.image_backbone)

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        p = self.params
        image_params = p.image_params()
        check_images(train, "the huse family")
        self._ctx = ctx
        self._text = load_text_backbone(p.text_backbone, p, ctx)
        image_backbone, image_pretrained = build_frozen_backbone(image_params, ctx)
        self._train_transform, self._eval_transform, self._mean = transforms(image_backbone, image_params)
        self._shops = self._shop_vocabulary(train, ctx)
        class_distance = self._class_distance(ctx)
        module = HuseNet(p, self._text.encoder, self._text.pretrained, image_backbone, image_pretrained,
                         len(self._shops), ctx.n_classes,
                         None if class_distance is None else torch.from_numpy(class_distance))
        count_bad_images(valid.image_paths, p.image_size, ctx, prefix="")
        self._count_unknown_shops(valid, prefix="")
        self._trainer = Trainer(p, ctx)
        train_ids, valid_ids = self._encode(train), self._encode(valid)
        data = FoldData(
            train=self._dataset(train, train_ids, training=True), valid=self._dataset(valid, valid_ids),
            collate=HuseCollate(self._text.tokenizer.pad_token_id),
            train_lengths=[len(ids) for ids in train_ids], valid_lengths=[len(ids) for ids in valid_ids],
        )
        self._module = self._trainer.fit(module, data, valid.y)

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        check_images(rows, "the huse family")
        if rows.y is None and self._ctx.fold == 0:  # the test set, seen by every fold
            count_bad_images(rows.image_paths, self.params.image_size, self._ctx, prefix="test_")
            self._count_unknown_shops(rows, prefix="test_")
        ids = self._encode(rows)
        return self._trainer.predict(self._module, self._dataset(rows, ids),
                                     HuseCollate(self._text.tokenizer.pad_token_id), [len(i) for i in ids])

    def _encode(self, rows: Table) -> list[list[int]]:
        return self._text.encode(rows.text)

    def _dataset(self, rows: Table, input_ids: list[list[int]], training: bool = False) -> HuseDataset:
        transform = self._train_transform if training else self._eval_transform
        images = ImageDataset(rows.image_paths, None, transform, self.params.image_size, self._mean)
        return HuseDataset(input_ids, images, self._shop_index(rows), rows.y)

    # -----------------------------------------------------------------------------------------
    # Shops
    # -----------------------------------------------------------------------------------------

    def _shop_vocabulary(self, train: Table, ctx: FoldContext) -> dict[str, int]:
        """Shop → index from 1, over the fold's training rows ("" is no shop: index 0)."""
        if not self.params.shop_dim:
            return {}
        if not train.categorical_names:
            ctx.reporter.log(f"fold {ctx.fold}: comp.toml lists no categorical column, so huse "
                             "trains without a shop embedding")
            return {}
        shops = sorted(set(train.categorical[:, 0]) - {""})
        return {shop: i for i, shop in enumerate(shops, 1)}

    def _shop_index(self, rows: Table) -> np.ndarray:
        if not self._shops:
            return np.zeros(len(rows), dtype=np.int64)
        return np.array([self._shops.get(shop, 0) for shop in rows.categorical[:, 0]], dtype=np.int64)

    def _count_unknown_shops(self, rows: Table, prefix: str) -> None:
        if self._shops:
            self._ctx.stats[f"{prefix}unknown_shops"] = int((self._shop_index(rows) == 0).sum())

    # -----------------------------------------------------------------------------------------
    # Class distances (A)
    # -----------------------------------------------------------------------------------------

    def _class_distance(self, ctx: FoldContext) -> np.ndarray | None:
        """A, computed by the first fold and stored with the run; None when L_sem is off."""
        p = self.params
        if not p.w_sem:
            return None
        if not ctx.class_names:
            ctx.reporter.log(f"WARNING: fold {ctx.fold}: the data have no class names "
                             "(data.target_name), so huse trains without the semantic loss")
            ctx.stats["semantic_loss"] = "off: no class names"
            return None
        path = ctx.run_workdir / CLASS_DISTANCE_FILE
        if path.exists():
            return np.load(path)
        names = [str(name) for name in ctx.class_names]
        if p.sem_encoder == "tfidf":
            distance = _tfidf_distances(names)
        elif p.sem_encoder == "backbone":
            distance = _encoder_distances(self._text, names)
        else:
            distance = _encoder_distances(load_text_backbone(p.sem_encoder, TextEncoderParams(), ctx), names)
        distance = distance.astype(np.float32)
        np.fill_diagonal(distance, 0.0)
        atomic.save_npy(path, distance)
        close = (distance < p.margin).sum() - len(names)
        ctx.reporter.log(escape(f"fold {ctx.fold}: class distances from {p.sem_encoder!r}: {close} of "
                                f"{len(names) * (len(names) - 1)} class pairs closer than margin {p.margin}"))
        return distance


def _tfidf_distances(names: list[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit_transform(names)
    return np.clip(1.0 - (vectors @ vectors.T).toarray(), 0.0, 2.0)


def _encoder_distances(text: TextBackbone, names: list[str]) -> np.ndarray:
    """Cosine distances between the class names as the encoder pools them."""
    return cosine_distances(torch.from_numpy(text.embed(names))).clamp(0.0, 2.0).numpy()
