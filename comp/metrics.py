"""Competition metrics on class-index labels and probability matrices.

Each metric is defined on what it needs: argmax metrics on predicted labels, log loss on
each row's probability of its true class. Blending scores thousands of candidate
mixtures and can compute either without building an N × C matrix. Bincounts replace
scikit-learn for speed; tests pin every metric to scikit-learn's definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def label_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> ClassCounts:
    return ClassCounts(
        tp=np.bincount(y[y == pred], minlength=n_classes),
        predicted=np.bincount(pred, minlength=n_classes),
        support=np.bincount(y, minlength=n_classes),
    )


@dataclass(frozen=True)
class ClassCounts:
    """Per-class true positives, predictions and true support: all argmax metrics need."""

    tp: np.ndarray
    predicted: np.ndarray
    support: np.ndarray

    def f1(self) -> np.ndarray:
        denominator = self.support + self.predicted
        return np.divide(2.0 * self.tp, denominator, out=np.zeros(len(self.tp)),
                         where=denominator > 0)


def f1_weighted_counts(counts: ClassCounts) -> float:
    """scikit-learn's f1_score(average="weighted"): per-class F1 weighted by true support."""
    return float((counts.f1() * counts.support).sum() / max(counts.support.sum(), 1))


def f1_macro_counts(counts: ClassCounts) -> float:
    """scikit-learn's f1_score(average="macro") over classes present in truth or prediction."""
    present = (counts.support + counts.predicted) > 0
    return float(counts.f1()[present].mean()) if present.any() else 0.0


def accuracy_counts(counts: ClassCounts) -> float:
    return float(counts.tp.sum() / max(counts.support.sum(), 1))


def log_loss_true(true_proba: np.ndarray) -> float:
    return float(-np.log(np.clip(true_proba.astype(np.float64), 1e-15, 1.0)).mean())


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool = True
    on_counts: Callable[[ClassCounts], float] | None = None
    on_true_proba: Callable[[np.ndarray], float] | None = None

    def __call__(self, y: np.ndarray, proba: np.ndarray) -> float:
        if self.on_counts is not None:
            return self.on_labels(y, proba.argmax(axis=1), proba.shape[1])
        return self.on_true_proba(proba[np.arange(len(y)), y])

    @property
    def is_argmax(self) -> bool:
        return self.on_counts is not None

    def on_labels(self, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
        return self.on_counts(label_counts(y, pred, n_classes))

    def better(self, a: float, b: float) -> bool:
        return a > b if self.greater_is_better else a < b


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("f1_weighted", on_counts=f1_weighted_counts),
        Metric("f1_macro", on_counts=f1_macro_counts),
        Metric("accuracy", on_counts=accuracy_counts),
        Metric("log_loss", greater_is_better=False, on_true_proba=log_loss_true),
    )
}


def score_all(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {name: metric(y, proba) for name, metric in METRICS.items()}
