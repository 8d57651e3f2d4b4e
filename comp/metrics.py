"""Competition metrics on class-index labels and probability matrices.

Computed with bincounts instead of scikit-learn so scoring hundreds of runs and blend
candidates stays cheap; tests pin them to scikit-learn's definitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool = True


def _f1_per_class(y: np.ndarray, pred: np.ndarray, n_classes: int):
    support = np.bincount(y, minlength=n_classes)
    predicted = np.bincount(pred, minlength=n_classes)
    tp = np.bincount(y[y == pred], minlength=n_classes)
    denominator = support + predicted
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return f1, support, predicted


def f1_weighted(y: np.ndarray, proba: np.ndarray) -> float:
    """scikit-learn's f1_score(average="weighted"): per-class F1 weighted by true support."""
    f1, support, _ = _f1_per_class(y, proba.argmax(axis=1), proba.shape[1])
    return float((f1 * support).sum() / max(support.sum(), 1))


def f1_macro(y: np.ndarray, proba: np.ndarray) -> float:
    """scikit-learn's f1_score(average="macro") over classes present in truth or prediction."""
    f1, support, predicted = _f1_per_class(y, proba.argmax(axis=1), proba.shape[1])
    present = (support + predicted) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == y).mean())


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    p = proba[np.arange(len(y)), y].astype(np.float64)
    return float(-np.log(np.clip(p, 1e-15, 1.0)).mean())


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("f1_weighted", f1_weighted),
        Metric("f1_macro", f1_macro),
        Metric("accuracy", accuracy),
        Metric("log_loss", log_loss, greater_is_better=False),
    )
}


def score_all(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {name: metric.fn(y, proba) for name, metric in METRICS.items()}
