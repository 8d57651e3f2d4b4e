"""The default demo is hard enough to leave room for better models and blends."""

import pytest

from comp.data.demo import DemoSpec
from comp.data.scaffold import init_demo
from comp.progress import Reporter
from comp.project import Project
from comp.runs.runner import RunRequest, start_run


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory) -> Project:
    project = Project.open(tmp_path_factory.mktemp("default_demo"))
    init_demo(project.workspace, DemoSpec(image_size=None), force=False)
    project.make_folds(5, 42, force=False)
    return project


@pytest.mark.slow  # in `make test-all`: the full-size demo, 45 s
@pytest.mark.parametrize("family", ["fasttext", "tfidf"])
def test_baselines_land_well_inside_the_range(default_demo, family):
    with Reporter.open() as reporter:
        record = start_run(default_demo, RunRequest(model=family, params={}), reporter)
    assert record.status == "done"
    assert 0.5 < record.cv_score < 0.95, f"{family}: {record.cv_score:.4f}"
    # every fold is informative, not one lucky split
    assert min(record.fold_scores) > 0.45
