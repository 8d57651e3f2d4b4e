"""The model contract, checked over every registered family (as scikit-learn's
check_estimator and timm's tests over list_models()): a new family gets these for free.

On a tiny real demo, each family is fitted through the harness's own fold call on fold 0
with the rarest class removed from its training rows, and must give, for the held-out and
the test rows, probabilities of the right shape in the shared class order that sum to one,
little probability for the class it never saw, the same output for the same seed, and
embeddings of one width when it stores them. Its parameters must refuse every value
outside their declared ranges when built, and a bad `--set` must leave runs/ untouched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from comp.errors import CompError
from comp.models import available_models, create_model, model_class
from comp.models._base import RunSetup
from comp.progress import Reporter
from comp.project import Project
from comp.runs.fold import seed_everything
from comp.runs.runner import fold_context
from comp.typed import declared_range
from tests.conftest import comp, one_clear_error, tree_digest

# Small settings so that every family trains in seconds; a family missing here runs with
# its defaults (slower, still checked).
FAST = {
    "bert": {"epochs": 2, "hidden": 32, "layers": 1, "max_len": 32, "vocab_size": 1000},
    "image": {"backbone": "resnet10t", "image_size": 16, "epochs": 1},
    "huse": {"epochs": 4, "patience": 0, "image_size": 16, "hidden": 32, "layers": 1, "max_len": 32,
             "vocab_size": 1000, "emb_dim": 16, "shop_dim": 4},
    "fasttext": {"epoch": 5},
    "tfidf": {"min_df": 1, "char_max": 0},
    "embed": {"text_backbone": "all-MiniLM-L6-v2", "max_len": 32, "Cs": "1,10"},
    "boost": {"rounds": 20, "threads": 1, "reduce": "none"},
    "tabnn": {"epochs": 15, "patience": 0, "lr": 0.003, "n_blocks": 1, "d_block": 16, "categorical_dim": 4},
}
SECOND_LEVEL = {"boost", "tabnn"}  # they need a parent run: `from=`


@pytest.fixture(scope="module")
def contract_workspace(tmp_path_factory, tiny_template) -> Path:
    """The tiny demo with one finished tfidf run to serve as a parent."""
    import shutil

    root = tmp_path_factory.mktemp("contract") / "ws"
    shutil.copytree(tiny_template, root)
    comp("run", "tfidf", "--name", "parent", "--set", "min_df=1", "--set", "char_max=0", workspace=root)
    return root


def _params(family: str) -> dict:
    params = dict(FAST.get(family, {}))
    if family in SECOND_LEVEL:
        params["from"] = "parent"
    return params


def _fit_fold(project: Project, family: str, train_rows: np.ndarray, seed: int, scratch: Path):
    """The raw outputs of one fold model: what the family returns before the harness checks it."""
    model = create_model(family, _params(family))
    model.prepare(RunSetup(train=project.competition.train, parents=_parents(project)))
    competition, folds = project.competition, project.folds
    seed_everything(seed)
    with Reporter.open(quiet=True) as reporter:
        ctx = fold_context(project, fold=0, seed=seed, workdir=scratch / "fold", run_workdir=scratch,
                           reporter=reporter)
        valid = competition.train.take(folds.held_out(0))
        model.fit(train=competition.train.take(train_rows), valid=valid, ctx=ctx)
        return model.predict_with_embedding(valid), model.predict_with_embedding(competition.test)


def _parents(project: Project):
    from comp.runs.parents import StoredParents

    return StoredParents(project.store, project.competition, project.folds)


def test_every_family_is_checked():
    assert set(available_models()) == set(FAST), "a family without FAST settings runs with its defaults"


@pytest.mark.parametrize("family", available_models())
def test_family_honours_the_model_contract(contract_workspace, tmp_path, family):
    project = Project.open(contract_workspace)
    competition, folds = project.competition, project.folds
    train_rows = folds.training(0)
    counts = np.bincount(competition.y[train_rows], minlength=competition.n_classes)
    unseen = int(np.argmin(np.where(counts > 0, counts, np.inf)))
    train_rows = train_rows[competition.y[train_rows] != unseen]
    n_valid, n_test, n_classes = len(folds.held_out(0)), len(competition.test), competition.n_classes

    valid_out, test_out = _fit_fold(project, family, train_rows, 7, tmp_path / "a")
    (valid_proba, valid_emb), (test_proba, test_emb) = valid_out, test_out
    for proba, rows in ((valid_proba, n_valid), (test_proba, n_test)):
        proba = np.asarray(proba)
        assert proba.shape == (rows, n_classes)
        assert np.isfinite(proba).all() and (proba >= 0).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
        # the class missing from training: every column exists, it gets less than its share
        assert proba[:, unseen].mean() < 1.0 / n_classes
    # the shared class order: columns in another order would name almost no row right
    y_valid = competition.y[folds.held_out(0)]
    assert (np.asarray(valid_proba).argmax(axis=1) == y_valid).mean() > 2.0 / n_classes
    assert (valid_emb is None) == (test_emb is None)
    if valid_emb is not None:
        assert valid_emb.ndim == 2 and valid_emb.shape[1] == test_emb.shape[1] > 0
        assert len(valid_emb) == n_valid and len(test_emb) == n_test

    (again, _), _ = _fit_fold(project, family, train_rows, 7, tmp_path / "b")
    np.testing.assert_array_equal(np.asarray(valid_proba), np.asarray(again))


def _out_of_range(bounds) -> list[float]:
    """Values just outside each declared bound."""
    values = []
    for bound, step in ((bounds.ge, -1), (bounds.gt, 0), (bounds.le, 1), (bounds.lt, 0)):
        if bound is not None:
            values.append(bound + step if step else bound)
    return values


@pytest.mark.parametrize("family", available_models())
def test_family_refuses_every_out_of_range_value_when_built(family):
    cls = model_class(family)
    ranged = [(f.name, declared_range(cls.Params, f.name)) for f in dataclasses.fields(cls.Params)]
    ranged = [(name, bounds) for name, bounds in ranged if bounds is not None]
    assert ranged, f"{family} declares no parameter ranges"
    for name, bounds in ranged:
        written = name.removesuffix("_")
        for value in _out_of_range(bounds):
            with pytest.raises(CompError, match=written):
                create_model(family, {**_params(family), written: str(value)})
    with pytest.raises(CompError, match="unknown key"):
        create_model(family, {"no_such_parameter": "1"})


@pytest.mark.parametrize("family", available_models())
def test_a_bad_set_fails_before_anything_is_written(contract_workspace, family):
    cls = model_class(family)
    name, bounds = next((f.name, declared_range(cls.Params, f.name)) for f in dataclasses.fields(cls.Params)
                        if declared_range(cls.Params, f.name) is not None)
    before = tree_digest(contract_workspace / "runs")
    settings = [item for key, value in _params(family).items() for item in ("--set", f"{key}={value}")]
    bad = _out_of_range(bounds)[0]
    result = comp("run", family, *settings, "--set", f"{name.removesuffix('_')}={bad}",
                  workspace=contract_workspace, check=False)
    one_clear_error(result, name.removesuffix("_"))
    assert tree_digest(contract_workspace / "runs") == before


def test_image_size_4_is_refused_before_a_run_exists(contract_workspace):
    before = tree_digest(contract_workspace / "runs")
    one_clear_error(comp("run", "image", "--set", "image_size=4", workspace=contract_workspace, check=False),
                    "image_size must be at least 8")
    assert tree_digest(contract_workspace / "runs") == before
