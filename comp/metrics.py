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


def _f1_per_class(y: np.ndarray, pred: np.ndarray, n_classes: int):
    support = np.bincount(y, minlength=n_classes)
    predicted = np.bincount(pred, minlength=n_classes)
    tp = np.bincount(y[y == pred], minlength=n_classes)
    denominator = support + predicted
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return f1, support, predicted


def f1_weighted_labels(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """scikit-learn's f1_score(average="weighted"): per-class F1 weighted by true support."""
    f1, support, _ = _f1_per_class(y, pred, n_classes)
    return float((f1 * support).sum() / max(support.sum(), 1))


def f1_macro_labels(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """scikit-learn's f1_score(average="macro") over classes present in truth or prediction."""
    f1, support, predicted = _f1_per_class(y, pred, n_classes)
    present = (support + predicted) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def accuracy_labels(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    return float((pred == y).mean())


def log_loss_true(true_proba: np.ndarray) -> float:
    return float(-np.log(np.clip(true_proba.astype(np.float64), 1e-15, 1.0)).mean())


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool = True
    on_labels: Callable[[np.ndarray, np.ndarray, int], float] | None = None
    on_true_proba: Callable[[np.ndarray], float] | None = None

    def __call__(self, y: np.ndarray, proba: np.ndarray) -> float:
        if self.on_labels is not None:
            return self.on_labels(y, proba.argmax(axis=1), proba.shape[1])
        return self.on_true_proba(proba[np.arange(len(y)), y])

    def better(self, a: float, b: float) -> bool:
        return a > b if self.greater_is_better else a < b


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("f1_weighted", on_labels=f1_weighted_labels),
        Metric("f1_macro", on_labels=f1_macro_labels),
        Metric("accuracy", on_labels=accuracy_labels),
        Metric("log_loss", greater_is_better=False, on_true_proba=log_loss_true),
    )
}


def score_all(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {name: metric(y, proba) for name, metric in METRICS.items()}
