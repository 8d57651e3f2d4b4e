"""Every run on one table, best cross-validated score first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comp.metrics import METRICS
from comp.project import Project
from comp.runs.store import RunRecord, RunStore


@dataclass(frozen=True)
class Entry:
    record: RunRecord
    state: str  # done | running | partial k/n | pruned k/n | failed | stale (other folds or data) | corrupt

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


def leaderboard(project: Project) -> list[Entry]:
    """Every run, best first; the data is hashed, never parsed."""
    store = project.store
    folds, data = project.folds_hash, project.data_hash
    records, broken = store.scan()
    entries = [Entry(r, _state(store, r, folds, data)) for r in records]
    entries += [Entry(_unreadable(run_id), "corrupt") for run_id in broken]
    return sorted(entries, key=_rank)


def _unreadable(run_id: str) -> RunRecord:
    """A placeholder for a run whose run.json cannot be read: listed, never used."""
    return RunRecord(id=run_id, name=run_id, model="?", params={}, status="corrupt", created_at="",
                     duration_s=0.0, folds_hash="", data_hash="", metric="", cv_score=None,
                     fold_scores=[], classes=[])


def _state(store: RunStore, record: RunRecord, folds: str | None, data: str | None) -> str:
    if record.folds_hash != folds or record.data_hash != data:
        return "stale"
    if record.status == "failed" and record.details.get("pruned"):
        return f"pruned {len(record.folds_done)}/{record.n_folds}"  # a tuning trial stopped early
    if record.status != "running":
        return record.status
    if any(store.fold_in_progress(record.id, k) for k in range(record.n_folds)):
        return "running"
    # counted on disk: a process killed after writing a fold but before refreshing run.json
    # leaves run.json's folds_done one behind
    done = sum(store.fold_done(record.id, k) for k in range(record.n_folds))
    return f"partial {done}/{record.n_folds}"


def _rank(entry: Entry) -> tuple:
    record = entry.record
    if entry.state != "done" or record.cv_score is None:
        return (1, record.created_at)
    sign = -1 if METRICS[record.metric].greater_is_better else 1
    return (0, sign * record.cv_score, record.created_at)
