"""`comp compare` and `comp leaderboard --vs` on constructed runs whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from comp.metrics import METRICS
from comp.project import Project
from tests.conftest import comp, one_clear_error


def predictions(workspace: Path, correct: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """OOF probabilities whose argmax is the true class exactly on the `correct` rows (a
    random wrong class elsewhere), and random test probabilities."""
    competition = Project.open(workspace).competition
    y, n_classes = competition.y, competition.n_classes
    rng = np.random.default_rng(seed)
    wrong = (y + rng.integers(1, n_classes, len(y))) % n_classes
    predicted = np.where(correct, y, wrong)
    oof = rng.uniform(0.0, 1.0, (len(y), n_classes))
    oof[np.arange(len(y)), predicted] += n_classes  # the argmax, whatever the noise
    test = rng.uniform(0.0, 1.0, (len(competition.test_ids), n_classes))
    return oof, test


def import_run(workspace: Path, name: str, oof: np.ndarray, test: np.ndarray) -> str:
    folder = workspace / "made" / name
    folder.mkdir(parents=True)
    for split, proba in (("oof", oof), ("test", test)):  # probabilities: rows that sum to one
        np.save(folder / f"{split}.npy", proba / proba.sum(axis=1, keepdims=True))
    comp("import", str(folder), "--name", name, workspace=workspace)
    return name


def better_on_every_fold(workspace: Path) -> tuple[str, str]:
    """Run A right on about 60% of rows; run B right wherever A is, plus half of the rest."""
    n_rows = len(Project.open(workspace).competition.y)
    rng = np.random.default_rng(0)
    a_correct = rng.uniform(size=n_rows) < 0.6
    b_correct = a_correct | (rng.uniform(size=n_rows) < 0.5)
    a = import_run(workspace, "a", *predictions(workspace, a_correct, seed=1))
    b = import_run(workspace, "b", *predictions(workspace, b_correct, seed=1))
    return a, b


def compare_json(workspace: Path, a: str, b: str) -> dict:
    return json.loads(comp("compare", a, b, "--json", workspace=workspace).stdout)


def test_identical_runs_show_no_difference_and_no_warning(tiny):
    oof, test = predictions(tiny, np.random.default_rng(0).uniform(size=400) < 0.7, seed=2)
    import_run(tiny, "same1", oof, test)
    import_run(tiny, "same2", oof, test)
    result = comp("compare", "same1", "same2", workspace=tiny)
    assert "Warning" not in result.stderr
    assert "no significant difference" in result.stdout and "+0.0000 ± 0.0000" in result.stdout
    report = compare_json(tiny, "same1", "same2")
    assert report["folds"]["gains"] == [0.0] * 5
    assert report["folds"]["p_value"] == 1.0 and report["folds"]["wins"] == 0
    assert not report["folds"]["significant"]


def test_a_run_better_on_every_fold_is_significant_in_either_order(tiny):
    a, b = better_on_every_fold(tiny)
    report = compare_json(tiny, a, b)
    folds = report["folds"]
    assert all(gain > 0 for gain in folds["gains"]) and folds["wins"] == 5
    assert folds["significant"] and folds["p_value"] < 0.01
    np.testing.assert_allclose(
        folds["gains"], np.subtract(report["fold_scores"]["b"], report["fold_scores"]["a"]))
    assert report["verdict"].startswith("b-")
    assert f"by {folds['mean']:.4f} ± {folds['std']:.4f} (5/5 folds, p=" in report["verdict"]
    # swapped, the same runs give the same verdict: the better one is still named first
    swapped = comp("compare", b, a, workspace=tiny).stdout
    assert "(5/5 folds" in swapped and swapped.strip().splitlines()[-1].startswith("b-")


def test_leaderboard_vs_shows_the_paired_gain_to_a_reference(tiny):
    a, b = better_on_every_fold(tiny)
    rows = json.loads(comp("leaderboard", "--json", "--vs", a, workspace=tiny).stdout)
    by_name = {row["name"]: row for row in rows}
    assert by_name["a"]["vs"] is None  # the reference itself
    gain = by_name["b"]["vs"]
    assert gain["wins"] == 5 and gain["n"] == 5 and gain["mean"] > 0.05
    assert by_name["b"]["fold_std"] is not None
    table = comp("leaderboard", "--vs", a, workspace=tiny).stdout
    assert f"+{gain['mean']:.4f} (5/5)" in table
    one_clear_error(comp("leaderboard", "--vs", "nope", workspace=tiny, check=False), "unknown run")


def test_runs_on_other_folds_the_same_run_or_unknown_runs_are_refused(tiny):
    a, _ = better_on_every_fold(tiny)
    run_a = json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)
    a_id = next(r["id"] for r in run_a if r["name"] == a)
    comp("folds", "--force", "--seed", "11", workspace=tiny)
    oof, test = predictions(tiny, np.ones(400, dtype=bool), seed=3)
    import_run(tiny, "refolded", oof, test)
    result = comp("compare", a, "refolded", workspace=tiny, check=False)
    one_clear_error(result)
    assert "other folds" in result.stderr and a_id in result.stderr
    one_clear_error(comp("compare", a, a, workspace=tiny, check=False))
    one_clear_error(comp("compare", a, "missing", workspace=tiny, check=False))


def test_seed_repeats_of_both_runs_are_compared_by_their_means(tiny):
    for seed in ("1", "2"):
        comp("run", "tfidf", "--set", "char_max=0", "--seed", seed, "--name", f"word{seed}",
             workspace=tiny)
        comp("run", "tfidf", "--set", "char_max=0", "--set", "C=0.1", "--seed", seed,
             "--name", f"weak{seed}", workspace=tiny)
    report = compare_json(tiny, "weak1", "word1")
    seeds = report["seeds"]
    assert len(seeds["a_scores"]) == len(seeds["b_scores"]) == 2
    assert seeds["gain"] > 0.1  # C=0.1 underfits badly on this data
    assert "seeds: 2 runs like" in comp("compare", "weak1", "word1", workspace=tiny).stdout
    # two seeds of the same model and parameters: the seed comparison would compare a group
    # with itself, so there is none
    assert compare_json(tiny, "word1", "word2")["seeds"] is None


def test_fold_scores_pair_with_the_fold_rows(tiny):
    """The per-fold scores compare uses are those of each fold's held-out rows."""
    a, _ = better_on_every_fold(tiny)
    competition = Project.open(tiny).competition
    folds = Project.open(tiny).folds
    oof = np.load(tiny / "made" / a / "oof.npy")
    expected = [METRICS["f1_weighted"](competition.y[folds.held_out(k)], oof[folds.held_out(k)])
                for k in range(folds.n_folds)]
    report = compare_json(tiny, a, "b")
    np.testing.assert_allclose(report["fold_scores"]["a"], expected, rtol=1e-6)


def test_corrected_t_statistic_matches_a_hand_computation():
    from scipy import stats

    from comp.runs.compare import corrected_t_test

    gains = np.array([0.010, 0.020, -0.005, 0.015, 0.012])
    k = 5
    mean = gains.sum() / k
    variance = ((gains - mean) ** 2).sum() / (k - 1)
    t = mean / np.sqrt(variance * (1 / k + 1 / (k - 1)))  # n_test / n_train = 1 / (K - 1)
    assert corrected_t_test(gains, k) == pytest.approx(2 * stats.t.sf(abs(t), k - 1), rel=1e-12)
    plain = stats.ttest_1samp(gains, 0.0).pvalue
    assert corrected_t_test(gains, k) > plain  # the correction only ever widens the doubt
    # r repeats of K folds: 1/(r·K) + n_test/n_train, r·K − 1 degrees of freedom
    repeated = np.tile(gains, 2) + np.repeat([0.0, 0.001], k)
    mean, variance = repeated.mean(), repeated.var(ddof=1)
    t = mean / np.sqrt(variance * (1 / (2 * k) + 1 / (k - 1)))
    assert corrected_t_test(repeated, k, repeats=2) == pytest.approx(2 * stats.t.sf(abs(t), 2 * k - 1))


def test_on_equally_good_models_the_corrected_test_rejects_about_5_percent_the_plain_one_more():
    """K-fold differences of two equally good models are correlated: every pair of folds
    trained on mostly the same rows (correlation about n_test/(n_train + n_test) = 1/K).
    Simulated 4,000 times at K = 5, the plain paired t-test rejects equality far more than
    5% of the time; the corrected test about 5%."""
    from scipy import stats

    from comp.runs.compare import corrected_t_test

    k, trials = 5, 4000
    rho = 1.0 / k
    covariance = (1 - rho) * np.eye(k) + rho * np.ones((k, k))
    gains = np.random.default_rng(0).multivariate_normal(np.zeros(k), covariance * 1e-4, size=trials)
    plain = np.mean([stats.ttest_1samp(g, 0.0).pvalue < 0.05 for g in gains])
    corrected = np.mean([corrected_t_test(g, k) < 0.05 for g in gains])
    assert corrected <= 0.065 and plain > 0.09, (corrected, plain)
