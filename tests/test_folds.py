import numpy as np
import pytest

from comp.data.folds import folds_hash, load_folds, make_folds
from comp.errors import CompError
from comp.project import Project
from tests.conftest import comp


def _long_tail_labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = [500, 200, 80, 30, 11, 7, 5, 4, 3, 2, 1, 1]
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def test_folds_are_stratified_and_balanced():
    y = _long_tail_labels()
    fold = make_folds(y, 5, seed=1)
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 1
    for cls in np.unique(y):
        per_fold = np.bincount(fold[y == cls], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, f"class {cls}: {per_fold}"


def test_rare_classes_are_spread_never_dropped():
    y = _long_tail_labels()
    fold = make_folds(y, 5, seed=1)
    assert len(fold) == len(y) and set(fold) == set(range(5))
    for cls, count in zip(*np.unique(y, return_counts=True), strict=True):
        if count <= 5:  # every row of a rare class lands in a different fold
            assert len(set(fold[y == cls])) == count
    # the single-row classes do not all pile into fold 0
    singletons = [c for c, n in zip(*np.unique(y, return_counts=True), strict=True) if n == 1]
    assert len({int(fold[y == c][0]) for c in singletons}) == len(singletons)


def test_folds_are_deterministic_by_seed_and_hashed_by_content():
    y = _long_tail_labels()
    ids = np.arange(len(y)) + 1000
    a, b, c = make_folds(y, 5, 7), make_folds(y, 5, 7), make_folds(y, 5, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert folds_hash(ids, a) == folds_hash(ids, b) != folds_hash(ids, c)
    assert folds_hash(ids, a) != folds_hash(ids + 1, a)


def test_folds_file_matches_train_and_refuses_change_under_runs(tiny):
    project = Project.open(tiny)
    workspace, competition = project.workspace, project.competition
    folds = project.folds
    assert np.array_equal(folds.ids, competition.train_ids)
    assert folds.n_folds == 5
    # same settings: nothing changes
    _, changed = project.make_folds(5, competition.config.cv.seed, force=False)
    assert not changed
    comp("run", "tfidf", "--fold", "0", workspace=tiny)
    with pytest.raises(CompError, match="runs use it"):
        Project.open(tiny).make_folds(4, 0, force=False)
    result = comp("folds", "--n-folds", "4", workspace=tiny, check=False)
    assert result.returncode == 2 and "--force" in result.stderr
    assert load_folds(workspace, competition).hash == folds.hash
    comp("folds", "--n-folds", "4", "--force", workspace=tiny)
    assert load_folds(workspace, competition).n_folds == 4
