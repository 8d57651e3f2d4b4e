"""Per-class additive logit offsets that maximise an argmax metric (weighted F1).

A blend's argmax favours big classes; weighted F1 rewards some recall on the others.
Coordinate ascent tries, class by class, a grid of offsets added to that class's
log-probability and keeps the best. Only rows whose prediction can flip within the grid
are re-evaluated; the rest contribute fixed confusion counts, so a pass over all classes
costs about O(rows × classes) instead of O(rows × classes × grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from comp.metrics import ClassCounts, Metric, label_counts

GRID = np.linspace(-2.0, 2.0, 17)


@dataclass
class ClassOffsets:
    offsets: np.ndarray
    history: list[float] = field(default_factory=list)  # metric after each pass

    def apply(self, log_proba: np.ndarray) -> np.ndarray:
        return log_proba + self.offsets.astype(log_proba.dtype)


def fit_offsets(log_proba: np.ndarray, y: np.ndarray, metric: Metric, passes: int = 2) -> ClassOffsets:
    n_rows, n_classes = log_proba.shape
    offsets = np.zeros(n_classes)
    scores = log_proba.astype(np.float64)  # log_proba + offsets, kept current
    top_arg, top_val = _top2(scores)
    history = [metric.on_labels(y, scores.argmax(axis=1), n_classes)]
    for _ in range(passes):
        for c in range(n_classes):
            # the best other class of each row, were class c removed
            c_first = top_arg[:, 0] == c
            other_arg = np.where(c_first, top_arg[:, 1], top_arg[:, 0])
            other_val = np.where(c_first, top_val[:, 1], top_val[:, 0])
            base = scores[:, c] - offsets[c]
            offsets[c] = _best_offset(metric, y, base, other_arg, other_val, c, offsets[c], n_classes)
            scores[:, c] = base + offsets[c]
            stale = np.flatnonzero((top_arg == c).any(axis=1) | (scores[:, c] > top_val[:, 1]))
            top_arg[stale], top_val[stale] = _top2(scores[stale])
        history.append(metric.on_labels(y, scores.argmax(axis=1), n_classes))
    return ClassOffsets(offsets=offsets, history=history)


def _best_offset(metric, y, base, other_arg, other_val, c, current, n_classes) -> float:
    """The grid offset (or the current one) for class c that scores best; rows whose
    prediction cannot flip within the grid are counted once, not per grid point."""
    always = base + min(GRID[0], current) > other_val
    varying = np.flatnonzero(~always & (base + max(GRID[-1], current) > other_val))
    fixed = np.ones(len(y), dtype=bool)
    fixed[varying] = False
    fixed_counts = label_counts(y[fixed], np.where(always[fixed], c, other_arg[fixed]), n_classes)
    best, best_score = current, None
    for offset in (current, *GRID):
        pred = np.where(base[varying] + offset > other_val[varying], c, other_arg[varying])
        score = metric.on_counts(_added(fixed_counts, label_counts(y[varying], pred, n_classes)))
        if best_score is None or metric.better(score, best_score):
            best, best_score = offset, score
    return float(best)


def _top2(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.argpartition(-scores, 1, axis=1)[:, :2]
    values = np.take_along_axis(scores, index, axis=1)
    swap = values[:, 1] > values[:, 0]
    index[swap], values[swap] = index[swap][:, ::-1], values[swap][:, ::-1]
    return index, values


def _added(a: ClassCounts, b: ClassCounts) -> ClassCounts:
    return ClassCounts(tp=a.tp + b.tp, predicted=a.predicted + b.predicted,
                       support=a.support + b.support)
