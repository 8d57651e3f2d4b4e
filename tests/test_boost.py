"""`boost`: tiny real runs of every CPU engine on the embeddings of real bert and image runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from comp.metrics import METRICS
from comp.project import Project
from tests.conftest import comp, finished_run

FAST = ["--set", "from=bert,image", "--set", "rounds=40", "--set", "threads=1"]


@pytest.fixture(scope="module")
def with_parents(tiny_template, tmp_path_factory):
    """A tiny workspace with a finished bert and image run (named bert and image)."""
    workspace = tmp_path_factory.mktemp("parents") / "ws"
    shutil.copytree(tiny_template, workspace)
    comp("run", "bert", "--set", "epochs=1", "--set", "max_len=32", "--set", "hidden=32", "--set", "layers=1",
         workspace=workspace)
    comp("run", "image", "--set", "backbone=resnet10t", "--set", "image_size=16", "--set", "epochs=1",
         workspace=workspace)
    return workspace


@pytest.fixture
def parents(with_parents, tmp_path):
    workspace = tmp_path / "ws"
    shutil.copytree(with_parents, workspace)
    return workspace


def run_id_of(result) -> str:
    return result.stdout.split()[1].rstrip(":")


def parent_ids(workspace) -> dict[str, str]:
    records = [json.loads(p.read_text()) for p in (workspace / "runs").glob("*/run.json")]
    return {r["name"]: r["id"] for r in records}


@pytest.mark.parametrize("engine, settings", [
    ("lightgbm", ["--set", "use=emb,proba"]),
    ("catboost", ["--set", "reduce_each=false", "--set", "reduce=pca:8"]),
])
def test_each_cpu_engine_learns_from_its_parents_and_records_them(parents, engine, settings):
    run_id = run_id_of(comp("run", "boost", *FAST, "--set", f"engine={engine}", *settings,
                            workspace=parents))
    record, oof, test = finished_run(parents, run_id)
    ids = parent_ids(parents)
    assert record["parents"] == record["params"]["from_"] == [ids["bert"], ids["image"]]
    y = Project.open(parents).competition.y
    prior = np.tile(np.bincount(y) / len(y), (len(y), 1))
    assert record["cv_score"] > METRICS["f1_weighted"](y, prior) + 0.1
    assert record["stats"]["rounds"] > 0  # summed over the folds


@pytest.mark.slow  # in `make test-all`: UMAP compiles with numba, 20 s
def test_umap_reduction_and_fold_matched_test_features_run_one_fold(parents):
    result = comp("run", "boost", *FAST, "--fold", "0", "--set", "reduce=umap:3",
                  "--set", "test_features=fold", workspace=parents)
    assert "1/5 folds done" in result.stdout
    fold = parents / "runs" / run_id_of(result) / "folds" / "0"
    assert np.load(fold / "valid.npy").shape[1] == np.load(fold / "test.npy").shape[1] == 12


def test_fold_matched_test_features_come_from_the_parent_fold_model(parents):
    """Without reduction the test features are the parent fold's test outputs: a boost run
    on one parent's probabilities differs between test_features=fold and mean."""
    common = ["run", "boost", *FAST, "--fold", "0", "--set", "from=bert", "--set", "use=proba",
              "--set", "reduce=none", "--set", "tabular=false"]
    tests = [
        np.load(parents / "runs" / run_id_of(comp(*common, "--set", f"test_features={mode}",
                                                  workspace=parents)) / "folds" / "0" / "test.npy")
        for mode in ("fold", "mean")
    ]
    assert not np.allclose(*tests)


def test_a_boost_run_blends_with_its_parents(parents):
    boost = run_id_of(comp("run", "boost", *FAST, workspace=parents))
    result = comp("blend", boost, "bert", "image", "--method", "caruana", "--name", "stacked",
                  workspace=parents)
    blend = json.loads(next((parents / "runs").glob("stacked-*/run.json")).read_text())
    assert blend["status"] == "done" and boost in blend["parents"], result.stdout
    assert boost in comp("leaderboard", workspace=parents).stdout


def test_pyboost_on_a_cpu_machine_stops_with_one_sentence_before_any_run_exists(parents):
    pytest.importorskip("py_boost")
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount():
            pytest.skip("this machine has a CUDA GPU")
    except (ImportError, RuntimeError):
        pass
    before = sorted(p.name for p in (parents / "runs").iterdir())
    result = comp("run", "boost", "--fold", "all", "--set", "engine=pyboost", workspace=parents, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: boost parameter: engine=pyboost needs a CUDA GPU with cupy installed and this machine "
        "has none: use engine=lightgbm or engine=catboost"
    ]
    assert sorted(p.name for p in (parents / "runs").iterdir()) == before
