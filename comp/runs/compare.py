"""`comp compare A B`: is run B really better than run A, or is it fold noise?

Both runs are scored on the same fixed folds, so their fold scores pair up: the difference
on each fold removes what the folds have in common (a hard fold is hard for both). The
mean and spread of those differences, a test and the number of folds B wins say how much
of a CV gap is real.

The test is the corrected resampled t-test (Nadeau & Bengio 2003): the K fold differences
are not independent, since any two folds' models share (K-2)/(K-1) of their training rows,
so the plain paired t-test, which divides their variance by K, is anti-conservative. The
corrected test multiplies the variance by 1/K + n_test/n_train instead (n_test/n_train =
1/(K-1) for K folds). It is conservative: a gain it calls significant is rarely fold noise.
Where several finished runs repeat A's and B's model and parameters with other seeds, the
repeats are paired in seed order and all their fold differences tested together with
Bouckaert & Frank's (2004) correction for r repeats, 1/(r·K) + n_test/n_train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from comp.errors import CompError
from comp.metrics import METRICS
from comp.project import Project
from comp.runs.store import RunRecord, RunStore

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Paired:
    """B − A per fold, signed so that a positive gain means B is better for the metric."""

    gains: np.ndarray
    p_value: float | None  # None: too few pairs for a test
    test: str = "corrected resampled t-test"

    @property
    def mean(self) -> float:
        return float(self.gains.mean())

    @property
    def std(self) -> float:
        return float(self.gains.std(ddof=1)) if len(self.gains) > 1 else 0.0

    @property
    def wins(self) -> int:
        return int((self.gains > 0).sum())

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE and self.mean != 0

    def to_json(self) -> dict[str, Any]:
        return {"gains": self.gains.tolist(), "mean": self.mean, "std": self.std,
                "wins": self.wins, "n": len(self.gains), "p_value": self.p_value,
                "significant": self.significant, "test": self.test}


@dataclass(frozen=True)
class SeedGroups:
    """The runs that share A's, and B's, model and parameters but not the seed, paired in
    seed order: their CV scores, and the test over all their fold differences."""

    a_scores: list[float]
    b_scores: list[float]
    folds: Paired  # every paired repeat's fold differences

    @property
    def gain(self) -> float:
        return self.folds.mean

    @property
    def p_value(self) -> float | None:
        return self.folds.p_value

    def to_json(self) -> dict[str, Any]:
        return {"a_scores": self.a_scores, "b_scores": self.b_scores, "gain": self.gain,
                "p_value": self.p_value, "repeats": min(len(self.a_scores), len(self.b_scores)),
                "test": "corrected repeated k-fold t-test (Bouckaert & Frank)"}


@dataclass(frozen=True)
class Comparison:
    a: RunRecord
    b: RunRecord
    folds: Paired
    seeds: SeedGroups | None

    @property
    def verdict(self) -> str:
        folds = self.folds
        if not folds.significant:
            return (f"no significant difference: {self.b.id} − {self.a.id} = {folds.mean:+.4f} ± "
                    f"{folds.std:.4f} ({folds.wins}/{len(folds.gains)} folds{_p_text(folds.p_value)}, "
                    f"{folds.test})")
        if folds.mean > 0:
            better, worse, wins = self.b, self.a, folds.wins
        else:
            better, worse, wins = self.a, self.b, int((folds.gains < 0).sum())
        return (f"{better.id} better than {worse.id} by {abs(folds.mean):.4f} ± {folds.std:.4f} "
                f"({wins}/{len(folds.gains)} folds{_p_text(folds.p_value)}, {folds.test})")

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a.id, "b": self.b.id, "metric": self.a.metric,
                "fold_scores": {"a": self.a.fold_scores, "b": self.b.fold_scores},
                "folds": self.folds.to_json(),
                "seeds": None if self.seeds is None else self.seeds.to_json(),
                "verdict": self.verdict}


def _p_text(p_value: float | None) -> str:
    return "" if p_value is None else f", p={p_value:.3g}"


def corrected_t_test(gains: np.ndarray, n_folds: int, repeats: int = 1) -> float | None:
    """Two-sided p-value of the corrected resampled t-test on `repeats` × `n_folds` paired
    differences: t = mean / sqrt(var · (1/(r·K) + n_test/n_train)), r·K − 1 degrees of
    freedom, n_test/n_train = 1/(K−1). Constant differences have no spread to test:
    identical runs differ by chance (p = 1), a constant nonzero gain is as certain as the
    data can say (p = 0)."""
    n = len(gains)
    if n < 2 or n_folds < 2:
        return None
    if np.ptp(gains) <= 1e-12 * max(1.0, float(np.abs(gains).max())):
        return 1.0 if np.allclose(gains, 0.0, atol=1e-12) else 0.0
    variance = float(np.var(gains, ddof=1)) * (1.0 / (repeats * n_folds) + 1.0 / (n_folds - 1))
    statistic = float(np.mean(gains)) / np.sqrt(variance)
    from scipy import stats  # 0.7 s to import: only where a test is computed

    return float(2.0 * stats.t.sf(abs(statistic), n - 1))


def compare(project: Project, ref_a: str, ref_b: str) -> Comparison:
    store = project.store
    a, b = store.resolve(ref_a), store.resolve(ref_b)
    if a.id == b.id:
        raise CompError(f"{ref_a} and {ref_b} are the same run {a.id}: name two runs")
    folds = paired_folds(a, b)
    return Comparison(a, b, folds, _seed_groups(store, a, b))


def paired_folds(a: RunRecord, b: RunRecord) -> Paired:
    """The per-fold gains of B over A; runs on other folds, data or metric are refused."""
    gains = _fold_gains(a, b)
    return Paired(gains, corrected_t_test(gains, len(gains)))


def _fold_gains(a: RunRecord, b: RunRecord) -> np.ndarray:
    for record in (a, b):
        if record.status != "done" or any(score is None for score in record.fold_scores):
            raise CompError(f"run {record.id} is not finished: compare needs every fold's score")
    if a.folds_hash != b.folds_hash:
        raise CompError(f"runs {a.id} and {b.id} were made on other folds: their fold scores do not pair")
    if a.data_hash != b.data_hash:
        raise CompError(f"runs {a.id} and {b.id} were made on other data: their fold scores do not pair")
    if a.metric != b.metric:
        raise CompError(f"runs {a.id} and {b.id} are scored with other metrics ({a.metric}, {b.metric})")
    sign = 1.0 if METRICS[a.metric].greater_is_better else -1.0
    return sign * (np.array(b.fold_scores, dtype=np.float64) - np.array(a.fold_scores, dtype=np.float64))


def _seed_groups(store: RunStore, a: RunRecord, b: RunRecord) -> SeedGroups | None:
    """The corrected repeated test over A's and B's seed repeats, when each has two or more."""
    group_a, group_b = _seed_repeats(store, a), _seed_repeats(store, b)
    if len(group_a) < 2 or len(group_b) < 2 or {r.id for r in group_a} & {r.id for r in group_b}:
        return None
    repeats = min(len(group_a), len(group_b))
    gains = np.concatenate([_fold_gains(x, y) for x, y in zip(group_a[:repeats], group_b[:repeats],
                                                                   strict=True)])
    n_folds = len(a.fold_scores)
    folds = Paired(gains, corrected_t_test(gains, n_folds, repeats), "corrected repeated k-fold t-test")
    return SeedGroups([r.cv_score for r in group_a], [r.cv_score for r in group_b], folds)


def _seed_repeats(store: RunStore, record: RunRecord) -> list[RunRecord]:
    """Finished runs with the record's model, parameters, folds and data, one per seed."""
    by_seed: dict[int, RunRecord] = {record.seed: record}
    for other in store.all():
        if (other.status == "done" and other.cv_score is not None and other.model == record.model
                and other.params == record.params and other.folds_hash == record.folds_hash
                and other.data_hash == record.data_hash and other.metric == record.metric):
            by_seed.setdefault(other.seed, other)
    return sorted(by_seed.values(), key=lambda r: r.seed)


def gains_against(reference: RunRecord, records: list[RunRecord]) -> dict[str, Paired]:
    """Each comparable record's paired gain over the reference (the leaderboard's --vs)."""
    gains = {}
    for record in records:
        if record.id == reference.id:
            continue
        try:
            gains[record.id] = paired_folds(reference, record)
        except CompError:
            continue  # unfinished, other folds or other data: no paired difference
    return gains
