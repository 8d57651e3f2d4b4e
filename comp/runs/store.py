"""The run store: runs/<run_id>/ with run.json, oof.npy, test.npy and per-fold outputs.

Its layout is a contract that other tools read (docs/run-store.md); only comp.runs knows
it. Every write is atomic; a fold is done exactly when its fold.json exists, which is
written after its arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comp import atomic
from comp.errors import CompError
from comp.names import is_plain

RUN_FILE = "run.json"
FOLD_FILE = "fold.json"
STUDIES = "studies"  # runs/studies/: `comp tune`'s journals, the one folder of runs/ that is no run


@dataclass
class RunRecord:
    """run.json. The first block of fields is the contract of docs/run-store.md; the rest is extra."""

    id: str
    name: str
    model: str
    params: dict[str, Any]
    status: str  # running | done | failed
    created_at: str
    duration_s: float
    folds_hash: str
    data_hash: str
    metric: str
    cv_score: float | None
    fold_scores: list[float | None]
    classes: list[Any]
    parents: list[str] = field(default_factory=list)
    n_folds: int = 0
    seed: int = 0
    folds_done: list[int] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    fold_mean: float | None = None
    fold_std: float | None = None
    finished_at: str | None = None
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    """Family-specific facts, e.g. a blend's weights, trajectory and diversity."""
    version: str = ""
    git_commit: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FoldOutput:
    """What one fold model produced for its held-out rows and for the test rows."""

    valid_proba: np.ndarray
    test_proba: np.ndarray
    valid_emb: np.ndarray | None = None
    test_emb: np.ndarray | None = None


class RunStore:
    def __init__(self, root: Path):
        self.root = root

    def run_dir(self, run_id: str) -> Path:
        """The run's folder; an id that is not a plain name names no run (never a path)."""
        if not is_plain(run_id):
            raise CompError(f"unknown run {run_id!r}: run ids are plain names (see `comp leaderboard`)")
        return self.root / run_id

    @property
    def studies(self) -> Path:
        """Where `comp tune` keeps its studies."""
        return self.root / STUDIES

    def fold_dir(self, run_id: str, fold: int) -> Path:
        return self.run_dir(run_id) / "folds" / str(fold)

    def new_run_dir(self, stem: str) -> str:
        """Reserve a fresh run id `<stem>-<6 hex>`; mkdir is the atomic claim."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = f"{stem}-{os.urandom(3).hex()}"
            try:
                self.run_dir(run_id).mkdir()
                return run_id
            except FileExistsError:
                continue

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RUN_FILE).exists()

    def save(self, record: RunRecord) -> None:
        atomic.write_json(self.run_dir(record.id) / RUN_FILE, record.to_json())

    def load(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / RUN_FILE
        try:
            return RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CompError(f"unknown run {run_id!r}: `comp leaderboard` lists the runs") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise CompError(f"{path} is not a valid run record: {error}") from None

    def resolve(self, ref: str) -> RunRecord:
        """A run by id, or by name when exactly one run has that name."""
        if is_plain(ref) and self.exists(ref):
            return self.load(ref)
        named = [r for r in self.all() if r.name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(r.id for r in named)
            raise CompError(f"several runs are named {ref!r} ({ids}): give the run id")
        raise CompError(f"unknown run {ref!r}: `comp leaderboard` lists the runs")

    def all(self) -> list[RunRecord]:
        """Every readable run; folders without run.json (a run being created) are skipped."""
        return self.scan()[0]

    def scan(self) -> tuple[list[RunRecord], list[str]]:
        """The readable run records, and the ids of run folders whose run.json is not one."""
        if not self.root.exists():
            return [], []
        records, broken = [], []
        for path in sorted(self.root.glob(f"*/{RUN_FILE}")):
            try:
                records.append(RunRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (json.JSONDecodeError, TypeError, OSError, UnicodeDecodeError):
                broken.append(path.parent.name)
        return records, broken

    def locked(self, run_id: str):
        """Serialise read-modify-write of run.json between processes sharing runs/."""
        return atomic.locked(self.run_dir(run_id) / ".lock")

    def fold_lock(self, run_id: str, fold: int):
        """Held while a process trains this fold, so a second process skips it."""
        return atomic.try_locked(self.fold_dir(run_id, fold) / ".lock")

    def fold_in_progress(self, run_id: str, fold: int) -> bool:
        return atomic.is_locked(self.fold_dir(run_id, fold) / ".lock")

    def fold_done(self, run_id: str, fold: int) -> bool:
        return (self.fold_dir(run_id, fold) / FOLD_FILE).exists()

    def write_fold(self, run_id: str, fold: int, output: FoldOutput, meta: dict[str, Any]) -> None:
        folder = self.fold_dir(run_id, fold)
        arrays = {
            "valid.npy": output.valid_proba,
            "test.npy": output.test_proba,
            "emb_valid.npy": output.valid_emb,
            "emb_test.npy": output.test_emb,
        }
        for name, array in arrays.items():
            if array is not None:
                atomic.save_npy(folder / name, array)
        atomic.write_json(folder / FOLD_FILE, meta)  # last: marks the fold done

    def fold_meta(self, run_id: str, fold: int) -> dict[str, Any]:
        return json.loads((self.fold_dir(run_id, fold) / FOLD_FILE).read_text(encoding="utf-8"))

    def fold_array(self, run_id: str, fold: int, name: str) -> np.ndarray | None:
        path = self.fold_dir(run_id, fold) / f"{name}.npy"
        return np.load(path) if path.exists() else None

    def assemble_run_arrays(self, run_id: str, held_out: list[np.ndarray]) -> None:
        """oof.npy (and emb_oof.npy) from each fold's held-out rows (`held_out[k]`, train
        file positions); test.npy (and emb_test.npy) as the mean over the fold models."""
        n_train = sum(len(rows) for rows in held_out)
        for fold_name, run_name in (("valid", "oof"), ("emb_valid", "emb_oof")):
            parts = [self.fold_array(run_id, k, fold_name) for k in range(len(held_out))]
            if any(p is None for p in parts):
                continue
            assembled = np.zeros((n_train, parts[0].shape[1]), dtype=np.float32)
            for rows, part in zip(held_out, parts, strict=True):
                assembled[rows] = part
            atomic.save_npy(self.run_dir(run_id) / f"{run_name}.npy", assembled)
        for name in ("test", "emb_test"):
            parts = [self.fold_array(run_id, k, name) for k in range(len(held_out))]
            if all(p is not None for p in parts):
                mean = np.mean(np.stack(parts), axis=0, dtype=np.float64).astype(np.float32)
                atomic.save_npy(self.run_dir(run_id) / f"{name}.npy", mean)

    def write_run_arrays(self, run_id: str, **arrays: np.ndarray) -> None:
        """Run-level arrays by name (oof, test, emb_oof, emb_test)."""
        for name, array in arrays.items():
            atomic.save_npy(self.run_dir(run_id) / f"{name}.npy", array)

    def array_sha256(self, run_id: str, name: str) -> str:
        """The sha256 of a run-level array's file, as written."""
        return hashlib.sha256((self.run_dir(run_id) / f"{name}.npy").read_bytes()).hexdigest()

    def has_array(self, run_id: str, name: str) -> bool:
        return (self.run_dir(run_id) / f"{name}.npy").exists()

    def array(self, run_id: str, name: str, mmap: bool = False) -> np.ndarray:
        """oof, test, emb_oof or emb_test of a finished run."""
        path = self.run_dir(run_id) / f"{name}.npy"
        if not path.exists():
            raise CompError(f"run {run_id} has no {name}.npy (status: {self.load(run_id).status})")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise CompError(f"run {run_id}'s {name}.npy is damaged ({error}): run it again") from None

