"""Per-parent calibration before blending (`comp blend --calibrate`), fitted on OOF rows.

Parents are often calibrated very differently (a boosted model is over-confident, a
heavily regularised one timid), and a weighted average then listens to the loudest one.
Calibrating each parent first puts them on one scale:

- `temperature`: p ∝ p^(1/T) with T minimising the parent's log loss on the fitting rows.
  It keeps each parent's ranking of classes, so the argmax of a lone parent never moves.
- `rank`: each class's probability becomes its percentile among the fitting rows'
  probabilities of that class, renormalised per row (rank averaging). It makes parents'
  scales identical whatever their confidence, which helps argmax metrics when confidence
  differs wildly; it forgets how sure a parent was across classes, so a rare class with a
  small but unusually high probability can win a row, and it ruins log loss.

Inside the nested scheme the calibration of outer fold k is fitted on the other folds'
rows only, like the blend itself; test predictions use the fit on all rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from comp.blend.library import CHUNK_ROWS
from comp.blend.numeric import logsumexp, softmax
from comp.errors import CompError

CALIBRATIONS = ("none", "temperature", "rank")
EPS = 1e-7
SAMPLE_ROWS = 20_000  # rows a temperature or a rank reference is fitted on, at most


class Calibration(ABC):
    @abstractmethod
    def fit(self, dense: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Calibration: ...

    @abstractmethod
    def _transform(self, proba: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        return {}

    def apply(self, dense: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of every row, as float32 rows summing to one."""
        calibrated = np.empty(dense.shape, dtype=np.float32)
        for start in range(0, len(dense), CHUNK_ROWS):
            block = slice(start, start + CHUNK_ROWS)
            calibrated[block] = self._transform(np.asarray(dense[block], dtype=np.float32))
        return calibrated


@dataclass
class Temperature(Calibration):
    temperature: float = 1.0

    def fit(self, dense, y, rows) -> Temperature:
        self.temperature = fit_temperature(dense, y, sample_rows(rows, SAMPLE_ROWS))
        return self

    def _transform(self, proba):
        return tempered(proba, self.temperature)

    def describe(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


@dataclass
class Rank(Calibration):
    reference: np.ndarray | None = None  # [rows, C]: each class's fitted probabilities, sorted

    def fit(self, dense, y, rows) -> Rank:
        self.reference = np.sort(np.asarray(dense[sample_rows(rows, SAMPLE_ROWS)], dtype=np.float32), axis=0)
        return self

    def _transform(self, proba):
        n_reference = len(self.reference)
        # (rank + 1) / (n + 1): never zero, so no row is left without probability mass
        percentile = np.column_stack([
            np.searchsorted(self.reference[:, c], proba[:, c], side="right")
            for c in range(proba.shape[1])
        ]).astype(np.float32) + 1.0
        percentile /= n_reference + 1.0
        return percentile / percentile.sum(axis=1, keepdims=True)


def make_calibration(kind: str) -> Calibration | None:
    if kind not in CALIBRATIONS:
        raise CompError(f"--calibrate must be one of {', '.join(CALIBRATIONS)}, got {kind!r}")
    if kind == "none":
        return None
    return Temperature() if kind == "temperature" else Rank()


def sample_rows(rows: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` of the rows, sorted; the same sample for the same rows."""
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, limit, replace=False))


def tempered(proba: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.maximum(proba, EPS)) / temperature
    return softmax(logits, axis=1).astype(np.float32)


def fit_temperature(dense: np.ndarray, y: np.ndarray, rows: np.ndarray) -> float:
    """The temperature minimising log loss on the rows (searched on log T in [-3, 3])."""
    log_p = np.log(np.maximum(np.asarray(dense[rows], dtype=np.float64), EPS))
    true = log_p[np.arange(len(rows)), y[rows]]

    def loss(log_t: float) -> float:
        t = np.exp(log_t)
        return float((logsumexp(log_p / t, axis=1) - true / t).mean())

    from scipy.optimize import minimize_scalar  # 0.4 s to import: only when calibrating

    return float(np.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x))
