"""Which runs may feed which: the checks every consumer of stored runs applies, and the
read-only view of parent runs that the harness hands a model."""

from __future__ import annotations

import numpy as np

from comp.data.competition import Competition
from comp.data.folds import Folds
from comp.errors import CompError
from comp.metrics import METRICS
from comp.runs.store import RunRecord, RunStore


def check_run_matches(
    record: RunRecord, competition: Competition, folds: Folds | None, finished: bool
) -> None:
    """Refuse, naming the run, one made on other folds (unless `folds` is None), other data
    or other classes, or (with `finished`) one not done."""
    if finished and record.status != "done":
        raise CompError(f"run {record.id} is not finished (status: {record.status})")
    if folds is not None and record.folds_hash != folds.hash:
        raise CompError(
            f"run {record.id} was made on other folds ({record.folds_hash}, now {folds.hash})"
        )
    if record.data_hash != competition.data_hash:
        raise CompError(f"run {record.id} was made on other data (the data files changed)")
    if record.classes != competition.classes:
        raise CompError(f"run {record.id} has other classes than the current train file")
    if record.metric not in METRICS:
        raise CompError(f"run {record.id} uses an unknown metric {record.metric!r}")


class StoredParents:
    """`ParentRuns` over the run store: finished runs on the current folds and data."""

    def __init__(self, store: RunStore, competition: Competition, folds: Folds):
        self._store, self._competition, self._folds = store, competition, folds

    def resolve(self, ref: str) -> str:
        record = self._store.resolve(ref)
        check_run_matches(record, self._competition, self._folds, finished=True)
        return record.id

    def has(self, run_id: str, name: str) -> bool:
        return self._store.has_array(run_id, name)

    def array(self, run_id: str, name: str) -> np.ndarray:
        return self._store.array(run_id, name, mmap=True)

    def fold_array(self, run_id: str, fold: int, name: str) -> np.ndarray:
        array = self._store.fold_array(run_id, fold, name)
        if array is None:
            raise CompError(f"run {run_id} has no {name} for fold {fold}")
        return array

    def snapshot(self, run_ids: list[str], n_folds: int) -> ParentArrays:
        """Every array of these runs, in memory: what a worker without the run store reads."""
        arrays: dict[tuple, np.ndarray] = {}
        for run_id in run_ids:
            for name in RUN_ARRAYS:
                if self.has(run_id, name):
                    arrays[run_id, name] = self._store.array(run_id, name)
            for fold in range(n_folds):
                for name in FOLD_ARRAYS:
                    array = self._store.fold_array(run_id, fold, name)
                    if array is not None:
                        arrays[run_id, fold, name] = array
        return ParentArrays(arrays)


RUN_ARRAYS = ("oof", "test", "emb_oof", "emb_test")
FOLD_ARRAYS = ("valid", "test", "emb_valid", "emb_test")


class ParentArrays:
    """`ParentRuns` over arrays taken from the store by the driver (`StoredParents.snapshot`):
    the runs it holds are the ones the model was pinned to, so `resolve` knows only their ids."""

    def __init__(self, arrays: dict[tuple, np.ndarray]):
        self._arrays = arrays
        self._ids = {key[0] for key in arrays}

    def resolve(self, ref: str) -> str:
        if ref not in self._ids:
            raise CompError(f"run {ref!r} was not shipped with this fold")
        return ref

    def has(self, run_id: str, name: str) -> bool:
        return (run_id, name) in self._arrays

    def array(self, run_id: str, name: str) -> np.ndarray:
        return self._arrays[run_id, name]

    def fold_array(self, run_id: str, fold: int, name: str) -> np.ndarray:
        if (run_id, fold, name) not in self._arrays:
            raise CompError(f"run {run_id} has no {name} for fold {fold}")
        return self._arrays[run_id, fold, name]
