"""Blending methods behind one interface: fit on some rows of the parents' OOF, predict any rows.

The nested scheme in `comp.blend.nested` calls `fit` on each fold's training rows and
`predict` on its held-out rows, so every method's CV score is as honest as a model's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp, softmax

from comp.blend.library import CHUNK_ROWS, RunProbabilities
from comp.blend.selection import ensemble_selection
from comp.errors import CompError
from comp.metrics import Metric

EPS = 1e-7
TEMPERATURE_SAMPLE_ROWS = 20_000


class Blender(ABC):
    method: ClassVar[str]
    test_from_full_fit: ClassVar[bool] = True
    """True: test predictions come from the fit on all rows. False: from the mean of the
    fold fits (stacking, whose meta-models are trained like any model's folds)."""

    @abstractmethod
    def fit(self, library: list[RunProbabilities], y: np.ndarray, rows: np.ndarray) -> None: ...

    @abstractmethod
    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        """Blend the parents' probabilities for the same rows ([n, C] each) into [n, C]."""

    def describe(self) -> dict[str, Any]:
        return {}


class WeightedAverage(Blender):
    """A convex combination of (optionally temperature-scaled) parent probabilities."""

    weights: np.ndarray
    temperatures: np.ndarray | None = None

    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        blended = np.zeros(parts[0].shape, dtype=np.float32)
        for m, part in enumerate(parts):
            if self.weights[m] == 0:
                continue
            for start in range(0, len(part), CHUNK_ROWS):
                block = slice(start, start + CHUNK_ROWS)
                proba = np.asarray(part[block], dtype=np.float32)
                if self.temperatures is not None and self.temperatures[m] != 1.0:
                    proba = _tempered(proba, self.temperatures[m])
                blended[block] += np.float32(self.weights[m]) * proba
        return blended

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"weights": self.weights.tolist()}
        if self.temperatures is not None:
            info["temperatures"] = self.temperatures.tolist()
        return info


@dataclass
class Caruana(WeightedAverage):
    metric: Metric
    iterations: int = 50
    init: int = 0
    bags: int = 1
    bag_fraction: float = 0.5
    seed: int = 0
    method: ClassVar[str] = "caruana"

    def fit(self, library, y, rows) -> None:
        rng = np.random.default_rng(self.seed)
        weights = np.zeros(len(library))
        self.trajectories: list[list[float]] = []
        for bag in range(self.bags):
            members = np.arange(len(library))
            if self.bags > 1:
                size = max(1, round(self.bag_fraction * len(library)))
                members = np.sort(rng.choice(len(library), size=size, replace=False))
            selection = ensemble_selection(
                [library[m] for m in members], y, rows, self.metric, self.iterations,
                init=self.init, seed=self.seed + bag,
            )
            weights[members] += selection.weights / self.bags
            self.trajectories.append(selection.trajectory)
        self.weights = weights

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "trajectory": self.trajectories[0],
                "trajectories": self.trajectories if self.bags > 1 else None}


@dataclass
class Optimized(WeightedAverage):
    """Weights minimising OOF log loss (scipy), optionally after per-run temperatures."""

    temperature: bool = False
    method: ClassVar[str] = "optimize"

    def fit(self, library, y, rows) -> None:
        n_runs = len(library)
        self.temperatures = np.ones(n_runs)
        if self.temperature:
            sample = rows if len(rows) <= TEMPERATURE_SAMPLE_ROWS else np.sort(
                np.random.default_rng(0).choice(rows, TEMPERATURE_SAMPLE_ROWS, replace=False)
            )
            self.temperatures = np.array([_fit_temperature(run.dense, y, sample) for run in library])
            true = np.column_stack([
                _tempered_true(run.dense, y, rows, temperature)
                for run, temperature in zip(library, self.temperatures, strict=True)
            ])
        else:
            true = np.column_stack([run.true_proba[rows] for run in library]).astype(np.float64)
        true = np.clip(true, EPS, 1.0)

        def loss_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
            w = softmax(z)
            mixture = true @ w
            loss = -np.log(mixture).mean()
            grad_w = -(true / mixture[:, None]).mean(axis=0)
            return loss, w * (grad_w - grad_w @ w)  # chain rule through the softmax

        result = minimize(loss_and_grad, np.zeros(n_runs), jac=True, method="L-BFGS-B")
        self.weights = softmax(result.x)
        self.log_loss = float(result.fun)


@dataclass
class Fixed(WeightedAverage):
    """User-given weights, normalised to sum to one; scored like any blend."""

    given: np.ndarray = None  # type: ignore[assignment]
    method: ClassVar[str] = "weights"

    def fit(self, library, y, rows) -> None:
        self.weights = self.given / self.given.sum()


@dataclass
class Stack(Blender):
    """A meta-model on the parents' log-probabilities, trained like a model on the folds."""

    meta: str = "logreg"
    C: float = 1.0
    seed: int = 0
    method: ClassVar[str] = "stack"
    test_from_full_fit: ClassVar[bool] = False
    MAX_FEATURE_CELLS: ClassVar[int] = 400_000_000  # about 1.6 GB of float32 features

    def fit(self, library, y, rows) -> None:
        self.n_classes = library[0].dense.shape[1]
        cells = len(rows) * len(library) * self.n_classes
        if cells > self.MAX_FEATURE_CELLS:
            raise CompError(
                f"stacking {len(library)} runs × {self.n_classes} classes × {len(rows)} rows "
                f"needs {cells * 4 / 2**30:.1f} GiB of features: use --top N or --method caruana"
            )
        features = self._features([run.dense[rows] for run in library])
        if self.meta == "logreg":
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=self.C, max_iter=1000)
        else:
            from lightgbm import LGBMClassifier

            self.model = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                        random_state=self.seed, verbose=-1)
        self.model.fit(features, y[rows])

    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        proba = self.model.predict_proba(self._features(parts))
        full = np.zeros((len(proba), self.n_classes), dtype=np.float32)
        full[:, self.model.classes_] = proba
        return full

    @staticmethod
    def _features(parts: list[np.ndarray]) -> np.ndarray:
        return np.hstack([np.log(np.asarray(p, dtype=np.float32) + EPS) for p in parts])

    def describe(self) -> dict[str, Any]:
        return {"meta": self.meta}


def _tempered(proba: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.maximum(proba, EPS)) / temperature
    return softmax(logits, axis=1).astype(np.float32)


def _fit_temperature(dense: np.ndarray, y: np.ndarray, rows: np.ndarray) -> float:
    log_p = np.log(np.maximum(np.asarray(dense[rows], dtype=np.float64), EPS))
    true = log_p[np.arange(len(rows)), y[rows]]

    def loss(log_t: float) -> float:
        t = np.exp(log_t)
        return float((logsumexp(log_p / t, axis=1) - true / t).mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x))


def _tempered_true(dense, y, rows, temperature) -> np.ndarray:
    out = np.empty(len(rows))
    for start in range(0, len(rows), CHUNK_ROWS):
        block = rows[start:start + CHUNK_ROWS]
        log_p = np.log(np.maximum(np.asarray(dense[block], dtype=np.float64), EPS)) / temperature
        out[start:start + len(block)] = np.exp(
            log_p[np.arange(len(block)), y[block]] - logsumexp(log_p, axis=1)
        )
    return out
