"""`comp export mlflow`: real runs of a tiny workspace exported into a local SQLite store
and read back with MLflow's own client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comp.report.analysis import flatten_params
from tests.conftest import comp
from tests.test_report import COMPETITION_NAME, workspace_with_runs


@pytest.fixture(scope="module")
def mlflow():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield pytest.importorskip("mlflow.tracking",
                                  reason="MLflow is not installed: pip install 'comp[mlflow]'")


@pytest.fixture(scope="module")
def workspace(tiny_template: Path, tmp_path_factory) -> Path:
    return workspace_with_runs(tiny_template, tmp_path_factory.mktemp("mlflow") / "ws", "mix")


def _runs(root: Path) -> list[dict]:
    return json.loads(comp("leaderboard", "--json", workspace=root).stdout)


def _exported(mlflow, store: Path, experiment: str) -> dict[str, object]:
    """The active MLflow runs of an experiment, by comp run id."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    by_id = {run.data.tags["comp.run_id"]: run for run in runs}
    assert len(by_id) == len(runs), "a comp run was exported twice"
    return by_id


def test_export_twice_creates_once_with_params_metrics_tags_and_artifacts(workspace: Path, mlflow):
    runs = _runs(workspace)
    first = comp("export", "mlflow", workspace=workspace)
    assert f"{len(runs)} created, 0 updated, 0 unchanged" in first.stdout
    second = comp("export", "mlflow", workspace=workspace)
    assert f"0 created, 0 updated, {len(runs)} unchanged" in second.stdout

    store = workspace / "mlruns.db"
    exported = _exported(mlflow, store, COMPETITION_NAME)  # the competition's name in comp.toml
    assert sorted(exported) == sorted(r["id"] for r in runs)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    for run in runs:
        mlrun = exported[run["id"]]
        record = json.loads((workspace / "runs" / run["id"] / "run.json").read_text())
        tags = mlrun.data.tags
        assert tags["comp.model"] == run["model"] and tags["comp.state"] == run["state"]
        assert tags["comp.folds_hash"] == record["folds_hash"]
        assert mlrun.info.run_name == run["id"]
        assert mlrun.info.status == {"done": "FINISHED", "failed": "FAILED"}[run["status"]]
        expected = {"seed": str(record["seed"]), "n_folds": "5", "metric": record["metric"],
                    **flatten_params(record["params"])}
        assert mlrun.data.params == expected
        history = client.get_metric_history(mlrun.info.run_id, "fold_score")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (k, pytest.approx(s)) for k, s in enumerate(run["fold_scores"]) if s is not None]
        artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
        local = Path(client.download_artifacts(mlrun.info.run_id, "run.json", str(workspace / "dl")))
        assert json.loads(local.read_text())["id"] == run["id"]
        if run["status"] == "done":
            assert mlrun.data.metrics["cv_score"] == pytest.approx(run["cv_score"])
            assert artifacts == {"run.json", "fold_scores.png"}
            # Trained folds record every metric; a blend's folds only the run's metric.
            folds = client.get_metric_history(mlrun.info.run_id, "fold_log_loss")
            assert sorted(m.step for m in folds) == ([] if run["model"] == "blend" else list(range(5)))
        else:
            assert "cv_score" not in mlrun.data.metrics and artifacts == {"run.json"}
            assert "ValueError" in tags["comp.error"] and "min_df" in tags["comp.error"]
    blend = next(r for r in runs if r["model"] == "blend")
    blend_tags = exported[blend["id"]].data.tags
    assert blend_tags["comp.parents"] == ",".join(blend["parents"])
    assert all(blend_tags[f"comp.parent.{parent}"] == "1" for parent in blend["parents"])


@pytest.mark.slow  # in `make test-all`: a second export round
def test_a_run_that_changed_is_replaced_not_duplicated(workspace: Path, mlflow, tmp_path: Path):
    root = tmp_path / "ws"
    shutil.copytree(workspace, root)
    store = root / "elsewhere" / "tracking.db"
    comp("run", "tfidf", "--set", "char_max=0", "--fold", "0", "--run-id", "late", workspace=root)
    before = comp("export", "mlflow", "--store", str(store), "--experiment", "mine", workspace=root)
    assert "created, 0 updated" in before.stdout
    assert _exported(mlflow, store, "mine")["late"].info.status == "RUNNING"

    comp("run", "--resume", "late", workspace=root)
    after = comp("export", "mlflow", "--store", f"sqlite:///{store}", "--experiment", "mine",
                 workspace=root)
    assert "0 created, 1 updated" in after.stdout
    exported = _exported(mlflow, store, "mine")
    assert exported["late"].info.status == "FINISHED"
    assert exported["late"].data.tags["comp.state"] == "done"
    assert (root / "elsewhere" / "mlartifacts").is_dir()


def test_a_remote_or_folder_store_is_refused_in_one_sentence(workspace: Path):
    remote = comp("export", "mlflow", "--store", "http://localhost:5000", workspace=workspace, check=False)
    assert remote.returncode == 2
    assert remote.stderr.strip().startswith("error: --store must be a local SQLite file")
    folder = comp("export", "mlflow", "--store", str(workspace), workspace=workspace, check=False)
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    assert "Traceback" not in remote.stderr + folder.stderr


def test_outside_a_workspace_no_store_is_made(tmp_path: Path):
    result = comp("export", "mlflow", "--experiment", "x", workspace=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.startswith("error: no comp.toml in")
    assert list(tmp_path.iterdir()) == []


def test_without_mlflow_the_error_says_how_to_install_it(workspace: Path):
    """A Python where `import mlflow` fails, as without the extra."""
    code = ("import sys; sys.modules['mlflow'] = None; sys.argv = ['comp', 'export', 'mlflow']; "
            "from comp.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COMP_WORKSPACE": str(workspace)})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: comp export mlflow needs MLflow: pip install 'comp[mlflow]'"
