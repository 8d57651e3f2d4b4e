"""Blending: fast selection equals the dense algorithm; nested scores are honest; guards hold."""

import json

import numpy as np
import pandas as pd
import pytest

from comp.blend import BlendRequest, blend
from comp.blend.library import prepare
from comp.blend.selection import ensemble_selection
from comp.data.workspace import Workspace
from comp.errors import CompError
from comp.metrics import METRICS
from comp.project import Project
from comp.runs.importer import import_run
from tests.conftest import comp

F1 = METRICS["f1_weighted"]


def _dense_selection(probas, y, rows, metric, iterations):
    """The straightforward algorithm: a new mixture per candidate, ties to the lower log loss."""
    total, counts, trajectory = None, np.zeros(len(probas), int), []
    for size in range(iterations):
        mixtures = [p[rows] if total is None else (total + p[rows]) / (size + 1) for p in probas]
        scores = [metric(y[rows], mixture) for mixture in mixtures]
        target = max(scores) if metric.greater_is_better else min(scores)
        tied = [m for m, score in enumerate(scores) if score == target]
        losses = [METRICS["log_loss"](y[rows], mixtures[m]) for m in tied]
        best = tied[int(np.argmin(losses))]
        total = probas[best][rows].copy() if total is None else total + probas[best][rows]
        counts[best] += 1
        trajectory.append(scores[best])
    return counts, trajectory


def _noisy_runs(n_runs, n_rows, n_classes, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_rows)
    runs = []
    for _ in range(n_runs):
        logits = rng.normal(size=(n_rows, n_classes)) * 2
        logits[np.arange(n_rows), y] += rng.uniform(0.5, 3.0)  # runs of different skill
        p = np.exp(logits)
        runs.append((p / p.sum(axis=1, keepdims=True)).astype(np.float32))
    return runs, y


@pytest.mark.parametrize("metric", ["f1_weighted", "log_loss", "accuracy"])
@pytest.mark.parametrize("top_k", [3, 40])
def test_fast_selection_equals_the_dense_algorithm(metric, top_k):
    runs, y = _noisy_runs(6, 2600, 40, seed=1)  # several blocks of the running total
    rows = np.arange(100, 2600)
    library = [prepare(p, y, top_k) for p in runs]
    fast = ensemble_selection(library, y, rows, METRICS[metric], iterations=15, seed=0)
    counts, trajectory = _dense_selection(runs, y, rows, METRICS[metric], 15)
    np.testing.assert_array_equal(fast.counts, counts)
    np.testing.assert_allclose(fast.trajectory, trajectory, rtol=1e-5)


def _import(ws: Workspace, name: str, oof: np.ndarray, test: np.ndarray, tmp_path):
    folder = tmp_path / name
    folder.mkdir()
    for split, proba in (("oof", oof), ("test", test)):  # probabilities: rows that sum to one
        np.save(folder / f"{split}.npy", proba / proba.sum(axis=1, keepdims=True))
    return import_run(ws, folder, name)


def _confident(labels: np.ndarray, n_classes: int, sharpness: float = 4.0) -> np.ndarray:
    p = np.full((len(labels), n_classes), 1.0, dtype=np.float32)
    p[np.arange(len(labels)), labels] += sharpness
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture
def planted(tiny, tmp_path):
    """Two runs, each right on a different half of the classes."""
    ws = Project.open(tiny)
    competition = ws.competition
    y, n_classes, n_test = competition.y, competition.n_classes, len(competition.test_ids)
    rng = np.random.default_rng(0)
    wrong = (y + rng.integers(1, n_classes, len(y))) % n_classes
    first_half = y < n_classes // 2
    left = np.where(first_half, y, wrong)
    right = np.where(first_half, wrong, y)
    test = _confident(rng.integers(0, n_classes, n_test), n_classes)
    # on its wrong half a run is only unsure, so the right run's confidence decides
    sure, unsure = first_half[:, None], ~first_half[:, None]
    runs = {
        "left": np.where(sure, _confident(left, n_classes, 8), _confident(left, n_classes, 1)),
        "right": np.where(unsure, _confident(right, n_classes, 8), _confident(right, n_classes, 1)),
    }
    records = {name: _import(ws, name, p.astype(np.float32), test, tmp_path) for name, p in runs.items()}
    return ws, records


def test_complementary_runs_blend_into_something_better_than_both(planted):
    ws, records = planted
    made = blend(ws, BlendRequest(runs=["left", "right"], iterations=10))
    assert made.cv_score > max(records["left"].cv_score, records["right"].cv_score) + 0.2
    weights = [p["weight"] for p in made.details["parents"]]
    assert all(w > 0.2 for w in weights)
    assert made.model == "blend" and made.parents == [records["left"].id, records["right"].id]


def test_selection_picks_the_dominant_run(tiny, tmp_path):
    """`worse` is right only where `good` is right, so mixing it in can only hurt."""
    ws = Project.open(tiny)
    competition = ws.competition
    y, n_classes = competition.y, competition.n_classes
    rng = np.random.default_rng(1)
    wrong = (y + rng.integers(1, n_classes, len(y))) % n_classes
    good_right = rng.random(len(y)) < 0.8
    worse_right = good_right & (rng.random(len(y)) < 0.5)
    test = _confident(np.zeros(len(competition.test_ids), int), n_classes)
    good = _import(ws, "good", _confident(np.where(good_right, y, wrong), n_classes), test, tmp_path)
    _import(ws, "worse", _confident(np.where(worse_right, y, wrong), n_classes), test, tmp_path)
    made = blend(ws, BlendRequest(runs=["good", "worse"], iterations=10))
    weights = {p["name"]: p["weight"] for p in made.details["parents"]}
    assert weights == {"good": 1.0, "worse": 0.0}
    assert made.cv_score == pytest.approx(good.cv_score)


@pytest.mark.parametrize("method", ["caruana", "optimize", "stack"])
def test_nested_score_is_not_above_in_sample_on_noise(tiny, tmp_path, method):
    ws = Project.open(tiny)
    competition = ws.competition
    rng = np.random.default_rng(5)
    shape = (len(competition.y), competition.n_classes)
    test = rng.dirichlet(np.ones(competition.n_classes), len(competition.test_ids))
    for m in range(4):
        _import(ws, f"noise{m}", rng.dirichlet(np.ones(shape[1]), shape[0]).astype(np.float32),
                test.astype(np.float32), tmp_path)
    made = blend(ws, BlendRequest(runs=[f"noise{m}" for m in range(4)], method=method, iterations=20))
    assert made.cv_score <= made.details["in_sample_score"]


def test_import_round_trips_a_run(tiny, tmp_path):
    comp("run", "tfidf", "--run-id", "original", workspace=tiny)
    original = json.loads((tiny / "runs/original/run.json").read_text())
    ws = Project.open(tiny)
    competition = ws.competition
    oof = np.load(tiny / "runs/original/oof.npy")
    test = np.load(tiny / "runs/original/test.npy")
    # the table layout: id column plus one column per class, rows shuffled
    classes = [str(c) for c in competition.classes]
    folder = tmp_path / "table"
    folder.mkdir()
    frame = pd.DataFrame(oof, columns=classes).assign(product_id=competition.train_ids)
    frame.sample(frac=1, random_state=0).to_parquet(folder / "oof.parquet")
    pd.DataFrame(test, columns=classes).assign(product_id=competition.test_ids).to_csv(
        folder / "test.csv", index=False)
    for source in (tiny / "runs/original", folder):
        imported = import_run(ws, source, "copy")
        assert imported.cv_score == pytest.approx(original["cv_score"], abs=1e-6)
        np.testing.assert_allclose(imported.fold_scores, original["fold_scores"], atol=1e-6)
        np.testing.assert_allclose(np.load(tiny / "runs" / imported.id / "test.npy"), test, atol=1e-6)


def test_import_rejects_bad_predictions(tiny, tmp_path):
    ws = Project.open(tiny)
    competition = ws.competition
    shape = (len(competition.y), competition.n_classes)
    good_test = np.full((len(competition.test_ids), shape[1]), 1.0 / shape[1], np.float32)
    bad = np.full(shape, 1.0 / shape[1], np.float32)
    bad[3, 2] = np.nan
    with pytest.raises(CompError, match="NaN"):
        _import(ws, "bad", bad, good_test, tmp_path)
    with pytest.raises(CompError, match="shape"):
        _import(ws, "short", bad[:-1], good_test, tmp_path)


def test_guards_reject_runs_on_other_folds(planted):
    ws, records = planted
    path = ws.workspace.runs / records["left"].id / "run.json"
    record = json.loads(path.read_text())
    record["folds_hash"] = "0000"
    path.write_text(json.dumps(record))
    with pytest.raises(CompError, match=f"run {records['left'].id} was made on other folds"):
        blend(ws, BlendRequest(runs=["left", "right"]))


def test_run_blend_blend_of_blends_submit_through_the_cli(tiny):
    comp("run", "tfidf", "--name", "tf", workspace=tiny)
    comp("run", "fasttext", "--set", "epoch=5", "--name", "ft", workspace=tiny)
    out = comp("blend", "--name", "level2", "--explain", workspace=tiny).stdout
    assert "nested" in out and "disagreement" in out
    comp("blend", "tf", "ft", "--method", "stack", "--name", "stacked", workspace=tiny)
    comp("blend", "tf", "ft", "--weights", "tf=0.7,ft=0.3", "--name", "fixed", workspace=tiny)
    comp("blend", "level2", "stacked", "--method", "optimize", "--name", "level3", workspace=tiny)
    board = json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)
    by_name = {e["name"]: e for e in board}
    assert by_name["level3"]["parents"] == [by_name["level2"]["id"], by_name["stacked"]["id"]]
    fixed = json.loads((tiny / "runs" / by_name["fixed"]["id"] / "run.json").read_text())
    assert [p["weight"] for p in fixed["details"]["parents"]] == pytest.approx([0.7, 0.3])
    comp("submit", "level3", "--name", "final", workspace=tiny)
    submission = pd.read_csv(tiny / "submissions/final.csv")
    assert len(submission) == len(pd.read_parquet(tiny / "data/test.parquet"))


def test_class_offsets_raise_weighted_f1_of_a_biased_blend():
    from comp.blend.offsets import fit_offsets

    rng = np.random.default_rng(0)
    n, n_classes = 3000, 30
    y = rng.choice(n_classes, n, p=np.r_[0.4, np.full(n_classes - 1, 0.6 / (n_classes - 1))])
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 1.5
    logits[:, 1] += 1.0  # a model that over-predicts class 1
    log_proba = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    fitted = fit_offsets(log_proba, y, F1)
    assert fitted.history[-1] > fitted.history[0] + 0.01
    assert fitted.offsets[1] < 0  # the over-predicted class is pushed down
    assert F1(y, fitted.apply(log_proba)) == pytest.approx(fitted.history[-1])


def test_offsets_are_scored_nested_beside_the_plain_blend(planted):
    ws, _ = planted
    made = blend(ws, BlendRequest(runs=["left", "right"], method="stack", offsets=True))
    without = blend(ws, BlendRequest(runs=["left", "right"], method="stack"))
    # the score "without offsets" beside it is the nested score of the same blend without them
    assert made.details["nested_without_offsets"] == pytest.approx(without.cv_score, abs=1e-12)
    assert len(made.details["full_fit"]["offsets"]) == ws.competition.n_classes
    with pytest.raises(CompError, match="argmax metric"):
        blend(ws, BlendRequest(runs=["left", "right"], metric="log_loss", offsets=True))


def test_shared_logit_stack_learns_to_trust_the_better_run(planted):
    ws, records = planted
    made = blend(ws, BlendRequest(runs=["left", "right"], method="stack"))
    assert made.details["full_fit"]["meta"] == "logit"
    assert made.cv_score > max(r.cv_score for r in records.values())
