"""Ensemble selection (Caruana et al., 2004; AutoGluon's WeightedEnsemble), made fast.

Greedy forward selection with replacement: each iteration adds the library run that most
improves the metric of the running average. The straightforward version builds an
N × C mixture per candidate; here a candidate costs O(N) for most rows:
- log loss needs only each row's true-class probability, a running sum of N numbers;
- an argmax metric needs each row's winning class of `total + P_m`. The ensemble's winner
  w keeps the row unless the runner-up's sum plus P_m's largest probability can reach
  total[w] + P_m[w]: one comparison settles most rows. The rest are settled among the
  candidate's top K classes (only they can beat w by more than its K-th probability), and
  densely where that bound cannot certify it (rare). Floating-point addition is monotone,
  so the result is exactly the dense argmax: same float32 sums, same comparisons
  (`benchmarks/blend.py` checks the picks against the straightforward algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from comp.blend.library import CHUNK_ROWS, RunProbabilities
from comp.metrics import Metric, log_loss_true


@dataclass
class Selection:
    counts: np.ndarray  # times each library run was picked
    trajectory: list[float] = field(default_factory=list)  # score after each pick
    picks: list[int] = field(default_factory=list)  # the run picked at each iteration

    @property
    def weights(self) -> np.ndarray:
        return self.counts / self.counts.sum()


class _RowView:
    """One run's precomputed arrays restricted to the rows being fitted."""

    def __init__(self, run: RunProbabilities, rows: np.ndarray):
        self.dense = run.dense
        self.rows = rows
        self.true_proba = run.true_proba[rows]
        self.top_index = run.top_index[rows]
        self.top_value = run.top_value[rows]
        self.kth_value = run.kth_value[rows]


def ensemble_selection(
    library: list[RunProbabilities],
    y: np.ndarray,
    rows: np.ndarray,
    metric: Metric,
    iterations: int,
    init: int = 0,
    seed: int = 0,
) -> Selection:
    """Select with replacement for `iterations` picks, the first `init` being the best
    distinct solo runs (Caruana's sorted initialisation); ties on the metric go to the
    lower log loss, then to chance."""
    rng = np.random.default_rng(seed)
    views = [_RowView(run, rows) for run in library]
    state = _Ensemble(views, y[rows], metric)
    selection = Selection(counts=np.zeros(len(library), dtype=np.int64))
    if init:
        solo = state.scores()
        order = np.argsort(-solo if metric.greater_is_better else solo, kind="stable")
        for m in order[: min(init, len(views))]:
            state.add(int(m))
            selection.counts[m] += 1
            selection.picks.append(int(m))
            selection.trajectory.append(state.score_with(None))
    while selection.counts.sum() < iterations:
        scores = state.scores()
        target = scores.max() if metric.greater_is_better else scores.min()
        tied = np.flatnonzero(scores == target)
        if len(tied) > 1:
            # argmax metrics plateau: a run that changes no prediction ties with the best;
            # the mixture's log loss tells them apart before chance does
            losses = np.array([state.log_loss_with(m) for m in tied])
            tied = tied[losses == losses.min()]
        best = int(rng.choice(tied))
        state.add(best)
        selection.counts[best] += 1
        selection.picks.append(best)
        selection.trajectory.append(float(scores[best]))
    return selection


class _Ensemble:
    """The running sum of picked runs over the fitted rows, and the metric of adding one."""

    def __init__(self, views: list[_RowView], y: np.ndarray, metric: Metric):
        self.views, self.y, self.metric = views, y, metric
        self.n_classes = views[0].dense.shape[1]
        self.size = 0
        self.true_total = np.zeros(len(y), dtype=np.float32)
        self.total: np.ndarray | None = None  # [n, C], only for argmax metrics
        # per row: the winning class of `total`, its sum and the runner-up's sum, and each
        # run's probability of that class (re-read only where the winner changes)
        self.winner = np.full(len(y), -1, dtype=np.int64)
        self.first = np.empty(len(y), dtype=np.float32)
        self.second = np.empty(len(y), dtype=np.float32)
        self.at_winner = np.empty((len(views), len(y)), dtype=np.float32)

    def add(self, m: int) -> None:
        view = self.views[m]
        self.true_total += view.true_proba
        if self.metric.is_argmax:
            if self.total is None:
                self.total = np.zeros((len(self.y), self.n_classes), dtype=np.float32)
            previous = self.winner.copy()
            for start in range(0, len(view.rows), CHUNK_ROWS):
                block = slice(start, start + CHUNK_ROWS)
                total = self.total[block]
                total += view.dense[view.rows[block]]
                winner, rows = total.argmax(axis=1), np.arange(len(total))
                first = total[rows, winner]
                total[rows, winner] = -np.inf  # for a moment: the runner-up is the max of the rest
                self.second[block] = total.max(axis=1)
                total[rows, winner] = first
                self.winner[block], self.first[block] = winner, first
            changed = np.flatnonzero(self.winner != previous)
            for j, other in enumerate(self.views):
                self.at_winner[j, changed] = other.dense[other.rows[changed], self.winner[changed]]
        self.size += 1

    def scores(self) -> np.ndarray:
        """The metric of the ensemble plus each library run."""
        if not self.metric.is_argmax:
            return np.array([self.score_with(m) for m in range(len(self.views))])
        return np.array([self.metric.on_labels(self.y, pred, self.n_classes)
                         for pred in self._argmax_with_each()])

    def score_with(self, m: int | None) -> float:
        """The metric of the ensemble plus run `m` (or of the ensemble alone)."""
        if not self.metric.is_argmax:
            extra = 0.0 if m is None else self.views[m].true_proba
            size = self.size + (m is not None)
            return self.metric.on_true_proba((self.true_total + extra) / size)
        if m is None:
            return self.metric.on_labels(self.y, self.total.argmax(axis=1), self.n_classes)
        return self.metric.on_labels(self.y, self._argmax_with_each()[m], self.n_classes)

    def log_loss_with(self, m: int) -> float:
        return log_loss_true((self.true_total + self.views[m].true_proba) / (self.size + 1))

    def _argmax_with_each(self) -> np.ndarray:
        """[runs, rows]: each row's winning class of `total + P_m`, for every run m.

        Most rows are settled without looking at their classes: the ensemble's winner w
        gains P_m[w], any other class at most the runner-up's sum plus P_m's largest
        probability, so if that cannot catch up, w still wins. The open rows are settled
        among P_m's top K classes, and densely where that bound cannot certify it."""
        winners = np.empty((len(self.views), len(self.y)), dtype=np.int64)
        if self.total is None:
            for m, view in enumerate(self.views):
                winners[m] = view.top_index[:, 0]
            return winners
        flat_total = self.total.reshape(-1)
        for m, view in enumerate(self.views):
            open_rows = np.flatnonzero(self.first + self.at_winner[m] <= self.second + view.top_value[:, 0])
            winners[m] = self.winner
            if not len(open_rows):
                continue
            index = view.top_index[open_rows]
            values = np.take(flat_total, open_rows[:, None] * self.n_classes + index)
            values += view.top_value[open_rows]
            column = values.argmax(axis=1)
            local = np.arange(len(open_rows))
            winner = index[local, column].astype(np.int64)
            # a class outside the candidate's top K reaches at most first + kth_value
            reach = self.first[open_rows] + view.kth_value[open_rows]
            unsure = np.flatnonzero(values[local, column] <= reach)
            if len(unsure):
                rows = open_rows[unsure]
                winner[unsure] = (self.total[rows] + view.dense[view.rows[rows]]).argmax(axis=1)
            winners[m, open_rows] = winner
        return winners
