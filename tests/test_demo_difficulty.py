"""The default demo is hard enough to leave room for better models and blends."""

import pytest

from comp.data import Competition
from comp.demo import DemoSpec
from comp.folds import create_folds
from comp.progress import Reporter
from comp.runner import RunRequest, start_run
from comp.scaffold import init_demo
from comp.workspace import Workspace


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory) -> Workspace:
    workspace = Workspace(tmp_path_factory.mktemp("default_demo"))
    init_demo(workspace, DemoSpec(image_size=None), force=False)
    competition = Competition.load(workspace)
    create_folds(workspace, competition, 5, 42, force=False)
    return workspace


@pytest.mark.parametrize("family", ["fasttext", "tfidf"])
def test_baselines_land_well_inside_the_range(default_demo, family):
    with Reporter.open() as reporter:
        record = start_run(default_demo, RunRequest(model=family, params={}), reporter)
    assert record.status == "done"
    assert 0.5 < record.cv_score < 0.95, f"{family}: {record.cv_score:.4f}"
    # every fold is informative, not one lucky split
    assert min(record.fold_scores) > 0.45
