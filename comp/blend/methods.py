"""Blending methods behind one interface: fit on some rows of the parents' OOF, predict any rows.

The nested scheme in `comp.blend` calls `fit` on each fold's training rows and
`predict` on its held-out rows, so every method's CV score is as honest as a model's.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from comp.blend.calibration import EPS, SAMPLE_ROWS, fit_temperature, sample_rows, tempered
from comp.blend.library import CHUNK_ROWS, RunProbabilities
from comp.blend.numeric import logsumexp, softmax
from comp.blend.offsets import fit_offsets
from comp.blend.selection import ensemble_selection
from comp.errors import CompError
from comp.metrics import Metric


class Blender(ABC):
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
                    proba = tempered(proba, self.temperatures[m])
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

    def fit(self, library, y, rows) -> None:
        n_runs = len(library)
        self.temperatures = np.ones(n_runs)
        if self.temperature:
            sample = sample_rows(rows, SAMPLE_ROWS)
            self.temperatures = np.array([fit_temperature(run.dense, y, sample) for run in library])
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

        from scipy.optimize import minimize  # 0.4 s to import: only for the methods that need it

        result = minimize(loss_and_grad, np.zeros(n_runs), jac=True, method="L-BFGS-B")
        self.weights = softmax(result.x)


@dataclass
class Fixed(WeightedAverage):
    """User-given weights, normalised to sum to one; scored like any blend."""

    given: np.ndarray = None  # type: ignore[assignment]

    def fit(self, library, y, rows) -> None:
        self.weights = self.given / self.given.sum()


@dataclass
class Stack(Blender):
    """A meta-model on the parents' log-probabilities, trained like a model on the folds.

    `logit` (default) scales to hundreds of classes: z_c = Σ_m a_m·log p_m,c + b_c, one
    weight per parent shared by all classes plus a bias per class, fitted by L-BFGS on at
    most `max_rows` rows. `logreg` is a full multinomial regression on all parents' columns
    (M·C features per class: only for few classes) and `lightgbm` a boosted meta-model.
    """

    meta: str = "logit"
    C: float = 1.0
    max_rows: int = 20_000
    seed: int = 0
    test_from_full_fit: ClassVar[bool] = False
    MAX_FEATURE_CELLS: ClassVar[int] = 400_000_000  # about 1.6 GB of float32 features

    def fit(self, library, y, rows) -> None:
        if self.meta not in {"logit", "logreg", "lightgbm"}:
            raise CompError(f"--meta must be logit, logreg or lightgbm, got {self.meta!r}")
        self.n_classes = library[0].dense.shape[1]
        if self.meta == "logit" and len(rows) > self.max_rows:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, self.max_rows, replace=False))
        cells = len(rows) * len(library) * self.n_classes
        if cells > self.MAX_FEATURE_CELLS:
            raise CompError(
                f"stacking {len(library)} runs × {self.n_classes} classes × {len(rows)} rows "
                f"needs {cells * 4 / 2**30:.1f} GiB of features: use --meta logit, --top N "
                "or --method caruana"
            )
        log_probas = [_log(run.dense[rows]) for run in library]
        if self.meta == "logit":
            self.model = _SharedLogit(l2=1.0 / (self.C * len(rows))).fit(log_probas, y[rows])
            return
        if self.meta == "logreg":
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=self.C, max_iter=1000)
        else:
            from lightgbm import LGBMClassifier

            self.model = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                        random_state=self.seed, verbose=-1)
        with warnings.catch_warnings():
            # an unconverged meta-model is judged by its nested score, not by a warning
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*converge.*")
            self.model.fit(np.hstack(log_probas), y[rows])

    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        log_probas = [_log(p) for p in parts]
        if self.meta == "logit":
            return self.model.predict_proba(log_probas)
        proba = self.model.predict_proba(np.hstack(log_probas))
        full = np.zeros((len(proba), self.n_classes), dtype=np.float32)
        full[:, self.model.classes_] = proba
        return full

    @property
    def weights(self) -> np.ndarray | None:
        """The logit meta-model's coefficient per parent; other meta-models have none."""
        return self.model.coef if self.meta == "logit" else None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"meta": self.meta}
        if self.weights is not None:
            info["weights"] = self.weights.tolist()
        return info


class _SharedLogit:
    """Multinomial logistic regression whose per-parent coefficient is shared by all classes."""

    def __init__(self, l2: float):
        self.l2 = l2

    def fit(self, log_probas: list[np.ndarray], y: np.ndarray) -> _SharedLogit:
        n_runs, n_classes = len(log_probas), log_probas[0].shape[1]
        onehot_rows = np.arange(len(y))

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            coef, bias = theta[:n_runs], theta[n_runs:]
            z = self._logits(log_probas, coef, bias)
            log_norm = logsumexp(z, axis=1)
            loss = (log_norm - z[onehot_rows, y]).mean() + 0.5 * self.l2 * bias @ bias
            delta = np.exp(z - log_norm[:, None])
            delta[onehot_rows, y] -= 1.0
            delta /= len(y)
            grad_coef = [float((delta * lp).sum()) for lp in log_probas]
            return loss, np.concatenate([grad_coef, delta.sum(axis=0) + self.l2 * bias])

        start = np.concatenate([np.full(n_runs, 1.0 / n_runs), np.zeros(n_classes)])
        from scipy.optimize import minimize

        result = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B")
        self.coef, self.bias = result.x[:n_runs], result.x[n_runs:]
        return self

    def predict_proba(self, log_probas: list[np.ndarray]) -> np.ndarray:
        return softmax(self._logits(log_probas, self.coef, self.bias), axis=1).astype(np.float32)

    @staticmethod
    def _logits(log_probas, coef, bias) -> np.ndarray:
        z = np.tile(bias, (len(log_probas[0]), 1))
        for weight, lp in zip(coef, log_probas, strict=True):
            z += weight * lp
        return z


def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(proba, dtype=np.float32) + EPS)


@dataclass
class WithOffsets(Blender):
    """Any blend followed by per-class logit offsets tuned for the metric on the rows the
    blend was fitted on; the nested score shows whether they help on unseen rows."""

    inner: Blender
    metric: Metric

    @property
    def test_from_full_fit(self) -> bool:  # type: ignore[override]
        return self.inner.test_from_full_fit

    def fit(self, library, y, rows) -> None:
        self.inner.fit(library, y, rows)
        fitted = np.concatenate([
            self.inner.predict([run.dense[rows[start:start + CHUNK_ROWS]] for run in library])
            for start in range(0, len(rows), CHUNK_ROWS)
        ])
        self.offsets = fit_offsets(_log(fitted), y[rows], self.metric)

    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        return self.with_offsets(self.inner.predict(parts))

    def with_offsets(self, blended: np.ndarray) -> np.ndarray:
        return softmax(self.offsets.apply(_log(blended)), axis=1).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "offsets": np.round(self.offsets.offsets, 4).tolist(),
                "offsets_in_sample_history": self.offsets.history}


def _tempered_true(dense, y, rows, temperature) -> np.ndarray:
    out = np.empty(len(rows))
    for start in range(0, len(rows), CHUNK_ROWS):
        block = rows[start:start + CHUNK_ROWS]
        log_p = np.log(np.maximum(np.asarray(dense[block], dtype=np.float64), EPS)) / temperature
        out[start:start + len(block)] = np.exp(
            log_p[np.arange(len(block)), y[block]] - logsumexp(log_p, axis=1)
        )
    return out
