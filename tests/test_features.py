"""Second-level features: parents checked by name, every transform fitted in-fold, no leak."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from comp.models import _features as features
from comp.models._features import CategoryCodes
from comp.progress import Reporter
from comp.project import Project
from comp.runs.importer import import_run
from comp.runs.runner import RunRequest, start_run
from tests.conftest import comp


def noisy_parent(workspace, tmp_path, name: str, keep: float, seed: int = 0) -> str:
    """An imported run whose predictions name the true class on a `keep` share of rows."""
    competition = Project.open(workspace).competition
    rng = np.random.default_rng(seed)
    folder = tmp_path / name
    folder.mkdir()
    for split, n_rows, labels in (("oof", len(competition.y), competition.y),
                                  ("test", len(competition.test_ids), None)):
        guesses = rng.integers(competition.n_classes, size=n_rows)
        if labels is not None:
            guesses = np.where(rng.random(n_rows) < keep, labels, guesses)
        proba = np.full((n_rows, competition.n_classes), 0.2 / competition.n_classes)
        proba[np.arange(n_rows), guesses] += 0.8
        np.save(folder / f"{split}.npy", proba.astype(np.float32))
    return import_run(Project.open(workspace), folder, name).id


def cv_of(result) -> float:
    return float(result.stdout.split("f1_weighted ")[1].split()[0])


def test_reducers_are_fitted_on_each_folds_training_rows_only(tiny, tmp_path, monkeypatch):
    parent = noisy_parent(tiny, tmp_path, "weak", keep=0.5)
    fitted_on: list[np.ndarray] = []
    make_reducer = features.make_reducer

    def spying_make_reducer(*args):
        reducer = make_reducer(*args)
        fit_transform = reducer.fit_transform

        def recording_fit_transform(x):
            fitted_on.append(np.array(x))
            return fit_transform(x)

        reducer.fit_transform = recording_fit_transform
        return reducer

    monkeypatch.setattr(features, "make_reducer", spying_make_reducer)
    coded: list[np.ndarray] = []
    fit_codes = CategoryCodes.fit

    def recording_fit_codes(self, columns):
        coded.append(columns.copy())
        return fit_codes(self, columns)

    monkeypatch.setattr(CategoryCodes, "fit", recording_fit_codes)
    request = RunRequest("boost", {"from": "weak", "use": "proba", "reduce": "pca:4", "rounds": "5",
                                   "threads": "1"})
    with Reporter.open(quiet=True) as reporter:
        record = start_run(Project.open(tiny), request, reporter)
    assert record.status == "done" and record.parents == [parent]
    competition = Project.open(tiny).competition
    folds = Project.open(tiny).folds
    oof = np.load(tiny / "runs" / parent / "oof.npy")
    assert len(fitted_on) == len(coded) == folds.n_folds
    for k, (rows, columns) in enumerate(zip(fitted_on, coded, strict=True)):
        np.testing.assert_array_equal(rows, oof[folds.training(k)])
        np.testing.assert_array_equal(columns, competition.train.categorical[folds.training(k)])


def test_a_planted_per_row_category_does_not_inflate_cv(tiny, tmp_path):
    """shop_id := product_id, so every row has a category of its own. Target statistics or
    codes fitted with the held-out rows would read each held-out label off it; fitted on
    the fold's training rows, a held-out row's category is unseen and tells nothing. The
    only other input, a parent that names the true class on 40% of rows, caps what an
    honest model can score."""
    for split in ("train", "test"):
        path = tiny / "data" / f"{split}.parquet"
        frame = pd.read_parquet(path)
        frame["shop_id"] = frame["product_id"]
        frame.to_parquet(path)
    parent = noisy_parent(tiny, tmp_path, "weak", keep=0.4)
    parent_cv = json.loads((tiny / "runs" / parent / "run.json").read_text())["cv_score"]
    for engine in ("catboost", "lightgbm"):
        common = ["--set", "from=weak", "--set", "use=proba", "--set", "reduce=none", "--set", "rounds=60",
                  "--set", f"engine={engine}", "--set", "threads=1"]
        planted = cv_of(comp("run", "boost", *common, workspace=tiny))
        without = cv_of(comp("run", "boost", *common, "--set", "tabular=false", workspace=tiny))
        assert planted < without + 0.05 and planted < parent_cv + 0.1, (engine, planted, without, parent_cv)


def test_category_codes_come_from_training_rows_and_unseen_values_are_zero():
    train = np.array([["7"], ["3"], ["7"], ["9"]], dtype=object)
    codes = CategoryCodes().fit(train)
    assert codes.cardinalities == [4]
    transformed = codes.transform(np.array([["3"], ["5"], ["9"], ["7"], [""]], dtype=object))
    np.testing.assert_array_equal(transformed[:, 0], [1, 0, 3, 2, 0])  # sorted: 3, 7, 9
    np.testing.assert_array_equal(train[:, 0], ["7", "3", "7", "9"])  # untouched


def test_parents_on_other_folds_unfinished_or_unusable_are_refused_by_name(tiny, tmp_path):
    weak = noisy_parent(tiny, tmp_path, "weak", keep=0.5)
    unfinished = comp("run", "tfidf", "--fold", "0", "--set", "max_features=500", "--set", "char_max=0",
                      workspace=tiny).stdout.split()[1].rstrip(":")
    refusals = [
        (["from=nope"], "unknown run 'nope'"),
        ([f"from={unfinished}"], f"run {unfinished} is not finished"),
        (["from=weak", "use=emb"], f"run {weak} has none of use=emb"),
        (["from=weak", "reduce=pca:0"], "reduce must be none, pca:D or umap:D"),
        (["use=emb"], "boost needs parent runs"),
    ]
    for settings, sentence in refusals:
        overrides = [arg for setting in settings for arg in ("--set", setting)]
        result = comp("run", "boost", *overrides, workspace=tiny, check=False)
        assert result.returncode == 2 and sentence in result.stderr, (settings, result.stderr)
        assert "Traceback" not in result.stderr

    comp("folds", "--force", "--seed", "7", workspace=tiny)
    result = comp("run", "boost", "--set", "from=weak", "--set", "use=proba", workspace=tiny, check=False)
    assert result.returncode == 2 and f"run {weak} was made on other folds" in result.stderr
    models = [json.loads(p.read_text())["model"] for p in (tiny / "runs").glob("*/run.json")]
    assert "boost" not in models
