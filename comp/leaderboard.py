"""Every run on one table, best cross-validated score first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comp.data import data_hash
from comp.errors import CompError
from comp.folds import stored_folds_hash
from comp.metrics import METRICS
from comp.store import RunRecord, RunStore
from comp.workspace import Workspace


@dataclass(frozen=True)
class Entry:
    record: RunRecord
    state: str  # done | running | partial k/n | failed | stale (other folds or data)

    def row(self) -> dict[str, Any]:
        r = self.record
        return {
            "id": r.id,
            "name": r.name,
            "model": r.model,
            "metric": r.metric,
            "cv_score": r.cv_score,
            "fold_mean": r.fold_mean,
            "fold_std": r.fold_std,
            "fold_scores": r.fold_scores,
            "scores": r.scores,
            "duration_s": r.duration_s,
            "status": r.status,
            "state": self.state,
            "parents": r.parents,
            "created_at": r.created_at,
        }


def current_hashes(workspace: Workspace) -> tuple[str | None, str | None]:
    """The folds and data hashes runs are compared with (None where not made yet)."""
    config = workspace.config()
    try:
        data = data_hash(workspace, config)
    except CompError:
        data = None
    return stored_folds_hash(workspace), data


def leaderboard(workspace: Workspace) -> list[Entry]:
    store = RunStore(workspace.runs)
    folds, data = current_hashes(workspace)
    entries = [Entry(r, _state(store, r, folds, data)) for r in store.all()]
    return sorted(entries, key=_rank)


def _state(store: RunStore, record: RunRecord, folds: str | None, data: str | None) -> str:
    if record.folds_hash != folds or record.data_hash != data:
        return "stale"
    if record.status != "running":
        return record.status
    if any(store.fold_in_progress(record.id, k) for k in range(record.n_folds)):
        return "running"
    return f"partial {len(record.folds_done)}/{record.n_folds}"


def _rank(entry: Entry) -> tuple:
    record = entry.record
    if entry.state != "done" or record.cv_score is None:
        return (1, record.created_at)
    sign = -1 if METRICS[record.metric].greater_is_better else 1
    return (0, sign * record.cv_score, record.created_at)
