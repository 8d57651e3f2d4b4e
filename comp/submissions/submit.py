"""Submission files: validated against the test set, with provenance beside them.

The provenance (submissions/<name>.json) records everything needed to rebuild the file
byte for byte (`comp reproduce`): the run and its parents recursively, the blend recipe,
the folds and data hashes, the sha256 of the run's test predictions and of the file, and
the versions of the code that encoded it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comp import __version__, atomic
from comp.clock import now
from comp.data.competition import Competition
from comp.errors import CompError
from comp.names import plain_name
from comp.project import Project
from comp.runs.leaderboard import leaderboard
from comp.runs.parents import check_run_matches
from comp.runs.store import RunRecord, RunStore

FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class Submission:
    path: Path
    record: RunRecord
    rows: int


def submit(
    project: Project,
    run_ref: str | None,
    name: str | None = None,
    file_format: str = "csv",
    force: bool = False,
) -> Submission:
    if file_format not in FORMATS:
        raise CompError(f"--format must be csv or parquet, got {file_format!r}")
    if name is not None:
        plain_name(name, "--name")  # before anything is read or written
    workspace, competition, store = project.workspace, project.competition, project.store
    record = store.resolve(run_ref) if run_ref else _best_run(project)
    check_run_matches(record, competition, folds=None, finished=True)
    name = name or record.id
    path = workspace.submissions / f"{name}.{file_format}"
    if path.exists() and not force:
        raise CompError(f"{path} exists: choose another --name or pass --force")
    content, rows = render(competition, store, record.id, file_format)
    provenance = {
        "name": name,
        "file": path.name,
        "format": file_format,
        "sha256": sha256(content),
        "rows": rows,
        "run_id": record.id,
        "run_name": record.name,
        "model": record.model,
        "metric": record.metric,
        "cv_score": record.cv_score,
        "folds_hash": record.folds_hash,
        "data_hash": record.data_hash,
        "test_sha256": predictions_sha256(store, record.id),
        "public_score": None,
        "private_score": None,
        "public_recorded_at": None,
        "run": run_tree(store, record),
        "versions": encoder_versions(),
        "created_at": now(),
    }
    # One submission at a time, checked again under the lock: two `comp submit --name s`
    # at once never leave one's provenance beside the other's file.
    with atomic.locked(workspace.submissions / ".lock"):
        if path.exists() and not force:  # the file is written last: it marks a finished submission
            raise CompError(f"{path} exists: choose another --name or pass --force")
        # Provenance first: a submission killed in between leaves no file without its record.
        atomic.write_json(path.with_suffix(".json"), provenance)
        atomic.write_bytes(path, content)
    return Submission(path=path, record=record, rows=rows)


def render(competition: Competition, store: RunStore, run_id: str, file_format: str) -> tuple[bytes, int]:
    """The submission file's bytes from a run's stored test predictions, and its row count."""
    frame = _frame(competition, store.array(run_id, "test"))
    return _encode(frame, file_format), len(frame)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def predictions_sha256(store: RunStore, run_id: str) -> str:
    return store.array_sha256(run_id, "test")


def encoder_versions() -> dict[str, str]:
    """What decides the file's bytes besides the predictions (parquet embeds the writers)."""
    import pyarrow

    return {"comp": __version__, "pandas": pd.__version__, "pyarrow": pyarrow.__version__}


def run_tree(store: RunStore, record: RunRecord) -> dict[str, Any]:
    """The run and, recursively, the runs it was made from; a blend carries its recipe."""
    node: dict[str, Any] = {
        "id": record.id, "name": record.name, "model": record.model, "params": record.params,
        "seed": record.seed, "cv_score": record.cv_score, "folds_hash": record.folds_hash,
        "data_hash": record.data_hash, "version": record.version,
    }
    if record.model == "blend":
        node["recipe"] = {key: record.details.get(key) for key in ("method", "objective", "full_fit")}
    node["parents"] = [
        run_tree(store, store.load(parent)) if store.exists(parent) else {"id": parent, "missing": True}
        for parent in record.parents
    ]
    return node


def _best_run(project: Project) -> RunRecord:
    done = [e.record for e in leaderboard(project) if e.state == "done"]
    if not done:
        raise CompError("no finished run on the current folds and data: `comp run MODEL` first")
    return done[0]


def _frame(competition: Competition, proba: np.ndarray) -> pd.DataFrame:
    """One row per test product with a known class; anything else is refused."""
    test_ids = competition.test_ids
    if proba.shape != (len(test_ids), competition.n_classes):
        raise CompError(
            f"test predictions have shape {proba.shape}, expected "
            f"{(len(test_ids), competition.n_classes)}"
        )
    if not np.isfinite(proba).all():
        raise CompError("test predictions contain NaN or infinite values")
    classes = np.asarray(competition.classes, dtype=object)
    config = competition.config
    frame = pd.DataFrame({
        config.id_column: test_ids,
        f"predicted_{config.data.target}": classes[proba.argmax(axis=1)],
    })
    if frame[config.id_column].duplicated().any():
        raise CompError("the submission would repeat a test id")
    if len(frame) != len(test_ids) or frame.isna().any().any():
        raise CompError("the submission does not have exactly one prediction per test row")
    return frame


def _encode(frame: pd.DataFrame, file_format: str) -> bytes:
    if file_format == "parquet":
        return frame.to_parquet(index=False)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")
