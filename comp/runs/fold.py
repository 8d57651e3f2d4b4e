"""One fold of one run as a self-contained job: what it needs travels with it, what it made
comes back, and the run store is never touched here.

The harness trains a fold in its own process (`--executor local`) or ships the job to a Ray
worker (`--executor ray`) that may sit on another machine; both call `train_fold`, so a fold
trained either way is the same computation on the same inputs. Only the process that holds
the run (the driver) writes what comes back.
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comp.data.competition import Table
from comp.errors import CompError
from comp.models import create_model
from comp.models._base import FoldContext, Model, ParentRuns
from comp.models._weights import WeightCatalog
from comp.progress import Reporter
from comp.runs.store import FoldOutput


@dataclass(frozen=True)
class FoldData:
    """What every fold of a run reads: shipped once per run (Ray's object store), not per fold."""

    train: Table
    test: Table
    corpus: np.ndarray
    parents: ParentRuns


@dataclass(frozen=True, kw_only=True)
class FoldJob:
    """Everything but the data that one fold needs; small enough to send with each task."""

    run_id: str
    model: str
    params: dict[str, Any]
    fold: int
    seed: int
    train_rows: np.ndarray
    valid_rows: np.ndarray
    classes: list[Any]
    class_names: list[str] | None
    data_hash: str
    workdir: Path
    run_workdir: Path
    cache: Path
    user_root: Path
    weights: WeightCatalog = field(default_factory=WeightCatalog)

    def context(self, data: FoldData, reporter: Reporter) -> FoldContext:
        return FoldContext(
            fold=self.fold, seed=self.seed, classes=self.classes, class_names=self.class_names,
            workdir=self.workdir, run_workdir=self.run_workdir, cache=self.cache,
            corpus=data.corpus, data_hash=self.data_hash, parents=data.parents, reporter=reporter,
            user_root=self.user_root, weights=self.weights,
        )


@dataclass(frozen=True)
class FoldResult:
    fold: int
    output: FoldOutput
    duration_s: float
    stats: dict[str, Any]
    placement: dict[str, Any] = field(default_factory=dict)
    """Where it ran, when not in the driver: node, thread caps, GPU ids."""


@dataclass(frozen=True)
class FoldFailure:
    """A fold the model could not train: one sentence, and the traceback of a crash."""

    fold: int
    message: str
    traceback: str | None = None


def train_fold(job: FoldJob, data: FoldData, reporter: Reporter) -> FoldResult | FoldFailure:
    """Seed, fit on the fold's training rows, predict its held-out rows and the test rows."""
    model = create_model(job.model, job.params)  # imports the family (torch) before seeding
    seed_everything(job.seed)
    ctx = job.context(data, reporter)
    started = time.perf_counter()
    try:
        output = fit_predict(model, data.train, job.train_rows, job.valid_rows, data.test, ctx)
    except CompError as error:
        return FoldFailure(job.fold, f"fold {job.fold}: {error}")
    except Exception as error:  # noqa: BLE001 - a model crash becomes one sentence + a traceback
        return FoldFailure(job.fold, f"fold {job.fold} of run {job.run_id} failed: "
                           f"{type(error).__name__}: {error}", traceback.format_exc())
    return FoldResult(job.fold, output, round(time.perf_counter() - started, 3), ctx.stats)


def fit_predict(model: Model, train: Table, train_rows: np.ndarray, valid_rows: np.ndarray,
                test: Table, ctx: FoldContext) -> FoldOutput:
    """One fold: fit on `train_rows`, predict the held-out rows and the test table."""
    valid = train.take(valid_rows)
    model.fit(train=train.take(train_rows), valid=valid, ctx=ctx)
    n_classes = ctx.n_classes
    valid_proba, valid_emb = model.predict_with_embedding(valid)
    test_proba, test_emb = model.predict_with_embedding(test)
    return FoldOutput(
        valid_proba=checked_proba(valid_proba, len(valid_rows), n_classes),
        test_proba=checked_proba(test_proba, len(test), n_classes),
        valid_emb=_checked_embedding(valid_emb, len(valid_rows)),
        test_emb=_checked_embedding(test_emb, len(test)),
    )


def checked_proba(proba: np.ndarray, n_rows: int, n_classes: int) -> np.ndarray:
    """Rows normalised to sum to one, as float32; a model bug becomes a clear error."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (n_rows, n_classes):
        raise ValueError(f"expected probabilities of shape {(n_rows, n_classes)}, got {proba.shape}")
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise ValueError("probabilities contain NaN, infinite or negative values")
    sums = proba.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise ValueError(f"{int((sums <= 0).sum())} rows of probabilities are all zero")
    return (proba / sums).astype(np.float32)


def _checked_embedding(embedding: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    if embedding is None:
        return None
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or len(embedding) != n_rows or not np.isfinite(embedding).all():
        raise ValueError(f"embeddings must be finite and of shape ({n_rows}, dim)")
    return embedding


def seed_everything(seed: int) -> None:
    """Seed every RNG a model may use; torch only if a model already imported it."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party libraries draw from the global RNG
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
