"""`comp export mlflow`: every run of the store as an MLflow run in a local tracking store.

One MLflow run per comp run, found again by its `comp.run_id` tag, so exporting twice
changes nothing and a run that changed since (a fold landed, a run finished) replaces
its earlier export. Only a local SQLite store is accepted: the export never talks to a
server.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from comp.data.workspace import Workspace
from comp.errors import CompError
from comp.names import inside
from comp.project import Project
from comp.report import plots
from comp.report.analysis import flatten_params
from comp.runs.leaderboard import Entry, leaderboard
from comp.runs.store import RUN_FILE, RunRecord, RunStore

DEFAULT_STORE = "mlruns.db"
ARTIFACTS = "mlartifacts"  # beside a SQLite store, which keeps no files itself
PARAM_VALUE_LIMIT = 6000  # MLflow refuses longer parameter values
TAG_VALUE_LIMIT = 5000
PARAM_BATCH = 100  # parameters per log_batch call: MLflow's limit
STATUS = {"done": "FINISHED", "failed": "FAILED", "running": "RUNNING"}


@dataclass(frozen=True)
class ExportSummary:
    tracking_uri: str
    experiment: str
    created: int
    updated: int
    unchanged: int


def export_mlflow(project: Project, store: str | None = None,
                  experiment: str | None = None) -> ExportSummary:
    workspace = project.workspace
    config = project.config  # first: no store is made outside a workspace
    name = experiment or config.name
    tracking_uri, artifact_root = tracking_location(workspace, store)
    mlflow = _import_mlflow()
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            experiment_id = client.create_experiment(name, artifact_location=artifact_root)
        else:
            experiment_id = found.experiment_id
        run_store = project.store
        for entry in leaderboard(project):
            counts[_export_run(client, experiment_id, run_store, entry)] += 1
    except mlflow.exceptions.MlflowException as error:
        raise CompError(f"MLflow store {tracking_uri} refused the export: {error.message}") from None
    return ExportSummary(tracking_uri, name, **counts)


def tracking_location(workspace: Workspace, store: str | None) -> tuple[str, str]:
    """The SQLite tracking URI for `--store` (a path or sqlite:///PATH) and the artifact
    folder beside it. MLflow 3 keeps folder stores in maintenance mode, so SQLite only."""
    given = store or DEFAULT_STORE
    if "://" in given and not given.startswith("sqlite:///"):
        raise CompError(f"--store must be a local SQLite file (a path or sqlite:///PATH), got {given!r}")
    database = inside(workspace.root, workspace.path(given.removeprefix("sqlite:///")), "--store")
    if database.is_dir():
        raise CompError(f"--store {database} is a folder: give a file such as {database / DEFAULT_STORE}")
    database.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{database}", (database.parent / ARTIFACTS).as_uri()


def _import_mlflow():
    # MLflow decides on telemetry when it is imported: an export must never phone home.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow.entities
        import mlflow.exceptions
        import mlflow.tracking
    except ImportError:
        raise CompError("comp export mlflow needs MLflow: pip install 'comp[mlflow]'") from None
    return mlflow


def _export_run(client, experiment_id: str, store: RunStore, entry: Entry) -> str:
    """Create, replace or leave the MLflow run of one comp run; say which it was."""
    from mlflow.entities import Param

    record = entry.record
    content = json.dumps(record.to_json(), indent=2, ensure_ascii=False)
    fingerprint = hashlib.sha256((content + entry.state).encode()).hexdigest()[:16]
    earlier = client.search_runs([experiment_id], f"tags.`comp.run_id` = '{record.id}'")
    if any(r.data.tags.get("comp.fingerprint") == fingerprint for r in earlier):
        return "unchanged"
    for run in earlier:
        client.delete_run(run.info.run_id)

    tags = {
        "comp.run_id": record.id, "comp.name": record.name, "comp.model": record.model,
        "comp.state": entry.state, "comp.folds_hash": record.folds_hash,
        "comp.data_hash": record.data_hash, "comp.parents": ",".join(record.parents),
        "comp.fingerprint": fingerprint,
        **{f"comp.parent.{parent}": "1" for parent in record.parents},
        **({"comp.error": record.error[:TAG_VALUE_LIMIT]} if record.error else {}),
    }
    created = _millis(record.created_at)
    finished = _millis(record.finished_at) or created
    run_id = client.create_run(experiment_id, start_time=created, tags=tags, run_name=record.id).info.run_id
    client.log_batch(run_id, metrics=_metrics(store, record, finished))
    params = {"seed": str(record.seed), "n_folds": str(record.n_folds), "metric": record.metric,
              **flatten_params(record.params)}
    values = [Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in params.items()]
    for start in range(0, len(values), PARAM_BATCH):
        client.log_batch(run_id, params=values[start:start + PARAM_BATCH])
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / RUN_FILE).write_text(content, encoding="utf-8")
        if any(s is not None for s in record.fold_scores):
            figure = plots.fold_bars(record.fold_scores, record.cv_score, record.metric)
            figure.savefig(Path(folder) / "fold_scores.png", dpi=plots.DPI)
        client.log_artifacts(run_id, folder)
    status = STATUS.get(record.status, "RUNNING")
    if status == "RUNNING":
        client.update_run(run_id, status=status)
    else:
        client.set_terminated(run_id, status=status, end_time=finished)
    return "updated" if earlier else "created"


def _metrics(store: RunStore, record: RunRecord, timestamp: int) -> list:
    """The CV scores at step 0; fold scores (the run's metric, and every metric where the
    fold recorded them) at step = fold, so MLflow charts them per fold."""
    from mlflow.entities import Metric

    values: dict[str, Any] = {"cv_score": record.cv_score, "duration_s": record.duration_s,
                              **{f"cv_{name}": value for name, value in record.scores.items()}}
    metrics = [Metric(key, float(value), timestamp, 0) for key, value in values.items() if value is not None]
    for k, score in enumerate(record.fold_scores):
        if score is None:
            continue
        metrics.append(Metric("fold_score", float(score), timestamp, k))
        if store.fold_done(record.id, k):
            scores = store.fold_meta(record.id, k).get("scores", {})
            metrics += [Metric(f"fold_{name}", float(value), timestamp, k) for name, value in scores.items()]
    return metrics


def _millis(timestamp: str | None) -> int:
    """Milliseconds since the epoch of an ISO timestamp; 0 where there is none."""
    try:
        return int(datetime.fromisoformat(timestamp).timestamp() * 1000) if timestamp else 0
    except ValueError:
        return 0
