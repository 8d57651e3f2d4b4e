"""Frozen pretrained embeddings as a run: one shared space for every fold, and a linear probe.

`text_backbone=NAME` and/or `image_backbone=NAME` (names from `comp weights`, a local folder,
a hub name) encode every train and test row once, without labels and without fine-tuning,
so every fold sees the same vectors: no leakage, and no fold-to-fold drift of the space (what
makes from-scratch embeddings near useless to second-level models). The matrices are cached
in the workspace per data and weights, so every fold, resume and later run reuses them.

Each fold then fits a probe on its training rows: a multinomial logistic regression on the
modalities side by side, each L2-normalised (so text and image weigh the same however many
dimensions each has), whose strength `C` is chosen on an inner split of those training rows
(log loss) and refitted on all of them. Standardising every column instead let the 1,280
image dimensions drown the 384 text ones: on the English demo's fold 0 (MiniLM + Lite0 at
128 px) 0.733 weighted F1 at its best C against 0.780 (C=300) for the normalised blocks, and
a plain LogisticRegression() (C=1) scored 0.719 (benchmarks/embed_probe.py). The stored embedding
(`emb_oof.npy`, `emb_test.npy`) is the raw frozen one, identical in every fold, which is what
`boost` and `tabnn` read with `--set from=<this run>`.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from comp import atomic
from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext, Model, RunSetup, expand_columns
from comp.typed import Params, Tune, param


@dataclass
class EmbedParams(Params):
    text_backbone: str | None = None
    """A text encoder: a name from `comp weights`, a local folder or a hub name."""
    image_backbone: str | None = None
    """A timm model with pretrained weights (`comp weights`, timm's cache, the hub)."""
    max_len: int = param(128, ge=8, tune=Tune(choices=(64, 128, 256)))
    pooling: Literal["auto", "mean", "cls"] = "auto"
    """As in bert: auto takes the encoder's own sentence-transformers pooling."""
    image_size: int | None = param(None, ge=8)
    """None: the backbone's pretrained input size (224 for EfficientNet-Lite0)."""
    batch_size: int = param(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    Cs: list[float] = field(default_factory=lambda: [1.0, 10.0, 30.0, 100.0, 1000.0])
    """Candidate inverse regularisation strengths of the probe, chosen per fold."""
    max_iter: int = param(300, ge=1)
    inner_holdout: float = param(0.2, gt=0, lt=1)
    """Fraction of a fold's training rows that chooses C."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.text_backbone or self.image_backbone):
            raise CompError("embed needs text_backbone=NAME and/or image_backbone=NAME "
                            "(see `comp weights`)")
        if not self.Cs or min(self.Cs) <= 0:
            raise CompError(f"Cs must be positive numbers, got {self.Cs}")
        if self.image_backbone:
            from comp.models._vision import BackboneParams

            BackboneParams(backbone=self.image_backbone, pretrained=True)  # an unknown model fails here
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise CompError("device=cuda was asked for, but this machine has no CUDA GPU")


class Embed(Model):
    family = "embed"
    Params = EmbedParams

    def prepare(self, setup: RunSetup) -> None:
        p = self.params
        if p.text_backbone:
            setup.weights.text_source(p.text_backbone)
        if p.image_backbone:
            from comp.models._vision import check_images

            check_images(setup.train, "embed with image_backbone")
            setup.weights.image_weights(p.image_backbone)

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        from sklearn.linear_model import LogisticRegression

        self._ctx = ctx
        x = self._embeddings(train)
        C = self._choose_C(x, train.y, ctx)
        self._probe = LogisticRegression(C=C, max_iter=self.params.max_iter).fit(x, train.y)
        ctx.stats["probe_C"] = C

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        if self.params.image_backbone and (rows.y is not None or self._ctx.fold == 0):
            from comp.models._vision import count_bad_images

            size = self.params.image_size or 224  # the count does not depend on the size
            count_bad_images(rows.image_paths, size, self._ctx, prefix="" if rows.y is not None else "test_")
        embedding = self._embeddings(rows)
        proba = self._probe.predict_proba(embedding)
        return expand_columns(proba, self._probe.classes_, self._ctx.n_classes), embedding

    def predict_proba(self, rows: Table) -> np.ndarray:
        return self.predict_with_embedding(rows)[0]

    def embed(self, rows: Table) -> np.ndarray:
        return self._embeddings(rows)

    def _choose_C(self, x: np.ndarray, y: np.ndarray, ctx: FoldContext) -> float:
        """The C of least log loss on an inner holdout of the training rows (stratified when
        every class has two rows); one candidate needs no choice."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

        p = self.params
        if len(p.Cs) == 1:
            return p.Cs[0]
        counts = np.unique(y, return_counts=True)[1]
        splitter = StratifiedShuffleSplit if counts.min() >= 2 else ShuffleSplit
        fit_rows, check_rows = next(splitter(1, test_size=p.inner_holdout, random_state=ctx.seed).split(x, y))
        losses = {}
        for C in sorted(p.Cs):
            probe = LogisticRegression(C=C, max_iter=p.max_iter).fit(x[fit_rows], y[fit_rows])
            losses[C] = _log_loss(probe, x[check_rows], y[check_rows])
        ctx.reporter.log(f"fold {ctx.fold}: probe log loss by C: "
                         + ", ".join(f"{C:g} {loss:.4f}" for C, loss in losses.items()))
        return min(losses, key=losses.get)

    # -----------------------------------------------------------------------------------------
    # The frozen embeddings, computed once per data and weights
    # -----------------------------------------------------------------------------------------

    def _embeddings(self, rows: Table) -> np.ndarray:
        """Each modality's embedding of `rows` (L2-normalised), side by side."""
        p = self.params
        parts = []
        if p.text_backbone:
            parts.append(self._cached(rows, "text", self._encode_text))
        if p.image_backbone:
            parts.append(self._cached(rows, "image", self._encode_images))
        return np.hstack(parts).astype(np.float32)

    def _cached(self, rows: Table, modality: str, encode) -> np.ndarray:
        """The rows' embeddings from the workspace cache, encoding (and adding) the rows it
        lacks. Test rows are their own split (the only rows without labels)."""
        ctx, split = self._ctx, "test" if rows.y is None else "train"
        path = ctx.cache / f"embed-{ctx.data_hash}-{self._weights_key(modality)}-{split}.npz"
        index, matrix = np.zeros(0, dtype=np.int64), None
        if path.is_file():
            with np.load(path) as stored:
                index, matrix = stored["index"], stored["matrix"]
        known = dict(zip(index.tolist(), range(len(index)), strict=True))
        missing = np.array([i for i in range(len(rows)) if int(rows.index[i]) not in known], dtype=np.int64)
        if len(missing):
            ctx.reporter.log(f"fold {ctx.fold}: encoding {len(missing)} {split} rows ({modality})")
            new = encode(rows.take(missing)).astype(np.float32)
            new /= np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
            index = np.concatenate([index, rows.index[missing]])
            matrix = new if matrix is None else np.vstack([matrix, new])
            _save_npz(path, index=index, matrix=matrix)
            known = dict(zip(index.tolist(), range(len(index)), strict=True))
        return matrix[[known[int(i)] for i in rows.index]]

    def _weights_key(self, modality: str) -> str:
        """Names the weights and every setting that changes their output."""
        p, weights = self.params, self._ctx.weights
        if modality == "text":
            parts = [weights.text_source(p.text_backbone), p.max_len, p.pooling]
        else:
            local = weights.image_weights(p.image_backbone)
            parts = [p.image_backbone, local.location if local else "timm", p.image_size]
        parts = [str(part) for part in parts]
        for part in parts:
            if Path(part).exists():  # a local folder or file: its contents may change
                parts.append(str(Path(part).stat().st_mtime_ns))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    def _device(self):
        import torch

        if self.params.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.params.device)

    def _encode_text(self, rows: Table) -> np.ndarray:
        from comp.models._text import TextEncoderParams, load_text_backbone

        p, ctx = self.params, self._ctx
        text = load_text_backbone(p.text_backbone, TextEncoderParams(max_len=p.max_len, pooling=p.pooling),
                                  ctx)
        return text.embed(rows.text, p.batch_size, self._device(),
                          track=lambda starts: ctx.reporter.track(starts, f"fold {ctx.fold} text embeddings"))

    def _encode_images(self, rows: Table) -> np.ndarray:
        import torch

        from comp.models._training import inference
        from comp.models._vision import (
            BackboneParams,
            ImageDataset,
            build_backbone,
            collate,
            transforms,
        )

        p, ctx = self.params, self._ctx
        config = BackboneParams(backbone=p.image_backbone, pretrained=True)
        backbone, _ = build_backbone(config, ctx)
        size = p.image_size or backbone.pretrained_cfg["input_size"][-1]
        config = BackboneParams(backbone=p.image_backbone, pretrained=True, image_size=size)
        _, evaluate, mean = transforms(backbone, config)
        device = self._device()
        backbone = backbone.to(device).eval()
        loader = torch.utils.data.DataLoader(ImageDataset(rows.image_paths, None, evaluate, size, mean),
                                             batch_size=p.batch_size, collate_fn=collate)
        batches = ctx.reporter.track(loader, f"fold {ctx.fold} image embeddings")
        with inference(device):
            return np.concatenate([backbone(b["pixel_values"].to(device)).float().cpu().numpy()
                                   for b in batches])


def _log_loss(probe, x: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability of the true class; a class the probe never saw (a rare
    one left out of the inner split) gets the floor probability."""
    column = {label: i for i, label in enumerate(probe.classes_)}
    proba = probe.predict_proba(x)
    true = np.array([proba[r, column[label]] if label in column else 0.0 for r, label in enumerate(y)])
    return float(-np.log(np.clip(true, 1e-15, 1.0)).mean())


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic.write_bytes(path, buffer.getvalue())
